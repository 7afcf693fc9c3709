/**
 * Connectors of a {@link Link}: dialling an endpoint (TCP, TLS, Unix), the
 * connect timeout, the TLS 1.3 wait for the listener's acceptance, and
 * reconnecting with backoff (`reconnect` / `connectFailed` events, short-lived
 * connections counted as failures) until removed. A connected socket becomes a
 * connection through {@link Connections.adopt}. Builds on node:net and node:tls.
 * @module
 */
import net from 'node:net';
import tls from 'node:tls';
import { ClosedError, ConnectionError, InvalidArgumentError, InvalidEndpointError, TlsError, type SnakeMQError } from '../errors.js';
import { createLogger } from '../util/log.js';
import type { Conn, Connections, LinkState } from './connection.js';
import { parseEndpoint } from './endpoint.js';
import type { LinkEmitter } from './event-source.js';
import { resolveConnectorOptions, type ConnectorOptions, type ResolvedConnectorOptions } from './options.js';
import { definedOnly, messageOf, wrapSocketError } from './socket-util.js';
import { TLS13_ACCEPT_WAIT_MS, createConnectorContext } from './tls-handshake.js';
import type { Endpoint, ParsedEndpoint } from './types.js';

const log = createLogger('snakemq:link');

/** One connector. @internal */
export interface ConnectorEntry {
  readonly kind: 'connector';
  readonly key: string;
  readonly parsed: ParsedEndpoint;
  readonly opts: ResolvedConnectorOptions;
  readonly secureContext: tls.SecureContext | undefined;
  /** Consecutive failures (short-lived connections included) since the last stable connection. */
  failures: number;
  timer: NodeJS.Timeout | undefined;
  attempt: { socket: net.Socket; closed: Promise<void> } | undefined;
  conn: Conn | undefined;
  removed: boolean;
  /** The last failed attempt's error (management reads it). */
  lastError: SnakeMQError | undefined;
}

/** The connectors of one Link. @internal */
export class Connectors {
  readonly #events: LinkEmitter;
  readonly #link: LinkState;
  readonly #conns: Connections;
  readonly #connectors = new Map<string, ConnectorEntry>();

  constructor(events: LinkEmitter, link: LinkState, conns: Connections) {
    this.#events = events;
    this.#link = link;
    this.#conns = conns;
  }

  /** See {@link Link.addConnector}. */
  add(endpoint: Endpoint, options?: ConnectorOptions): string {
    if (this.#link.closed) throw new ClosedError('link is closed');
    const parsed = parseEndpoint(endpoint);
    if (parsed.transport === 'tcp' && parsed.port === 0) {
      throw new InvalidEndpointError(`invalid endpoint ${parsed.url}: cannot connect to port 0`);
    }
    if (this.#connectors.has(parsed.url)) {
      throw new InvalidArgumentError(`a connector to ${parsed.url} already exists`);
    }
    const opts = resolveConnectorOptions(parsed, options);
    const secureContext = opts.tls ? createConnectorContext(parsed, opts.tls) : undefined;
    const c: ConnectorEntry = {
      kind: 'connector',
      key: parsed.url,
      parsed,
      opts,
      secureContext,
      failures: 0,
      timer: undefined,
      attempt: undefined,
      conn: undefined,
      removed: false,
      lastError: undefined,
    };
    this.#connectors.set(c.key, c);
    log(`connector ${c.key} added`);
    this.#dial(c);
    return c.key;
  }

  /** See {@link Link.removeConnector}. */
  async remove(endpoint: Endpoint): Promise<void> {
    const key = typeof endpoint === 'string' && this.#connectors.has(endpoint) ? endpoint : parseEndpoint(endpoint).url;
    const c = this.#connectors.get(key);
    if (!c) throw new InvalidArgumentError(`no connector for ${key}`);
    await this.#stop(c);
  }

  /** The connectors, in the order they were added. */
  list(): IterableIterator<ConnectorEntry> {
    return this.#connectors.values();
  }

  /** Stops every connector; the promises resolve once each one's sockets are closed. */
  stopAll(): Promise<void>[] {
    return [...this.#connectors.values()].map((c) => this.#stop(c));
  }

  /** See {@link Link.markEstablished}. */
  markEstablished(c: Conn | undefined): void {
    if (!c || c.owner.kind !== 'connector' || c.owner.conn !== c) return;
    c.confirmed = true;
    c.owner.failures = 0;
  }

  /** A connection ended (after its `disconnect`): its connector, if any, schedules the next attempt. */
  connectionEnded(c: Conn): void {
    const owner = c.owner;
    if (owner.kind === 'connector' && !owner.removed && !this.#link.closed) {
      // Timestamps rather than a timer per connection: a connection that did
      // not live stableAfter ms counts as one more failed attempt.
      const stable = c.confirmed || performance.now() - c.since >= owner.opts.stableAfter;
      owner.failures = stable ? 1 : owner.failures + 1;
      this.#scheduleReconnect(owner);
    }
  }

  #dial(c: ConnectorEntry): void {
    c.timer = undefined;
    if (c.removed || this.#link.closed) return;
    const p = c.parsed;
    const target = p.transport === 'tcp' ? { host: p.host!, port: p.port! } : { path: p.path! };
    let phase: 'connect' | 'handshake' | 'acceptance' = 'connect';
    let failure: SnakeMQError | undefined;
    let socket: net.Socket;
    try {
      if (p.tls) {
        const t = c.opts.tls!;
        socket = tls.connect({
          ...target,
          secureContext: c.secureContext,
          rejectUnauthorized: t.rejectUnauthorized,
          ...definedOnly({ servername: t.servername, checkServerIdentity: t.checkServerIdentity }),
        });
      } else {
        socket = net.connect(target);
      }
    } catch (err) {
      this.#attemptFailed(c, wrapSocketError(err, `connect to ${c.key} failed`));
      return;
    }
    let timer = setTimeout(() => {
      const cause = Object.assign(new Error(`timed out after ${c.opts.connectTimeout} ms`), { code: 'ETIMEDOUT' });
      failure ??=
        phase === 'connect'
          ? new ConnectionError(`connect to ${c.key} timed out`, { cause })
          : new TlsError(`TLS handshake with ${c.key} timed out`, { cause });
      socket.destroy();
    }, c.opts.connectTimeout);
    const onError = (err: Error) => {
      failure ??=
        phase === 'connect'
          ? wrapSocketError(err, `connect to ${c.key} failed`)
          : new TlsError(`TLS handshake with ${c.key} failed: ${messageOf(err)}`, { cause: err });
    };
    const onClose = () => {
      clearTimeout(timer);
      clearImmediate(settle);
      c.attempt = undefined;
      if (c.removed || this.#link.closed) return;
      if (!failure && phase === 'acceptance') {
        const cause = new Error('connection closed by the peer right after the TLS 1.3 handshake');
        failure = new TlsError(`${c.key} refused the connection after the TLS handshake (client certificate rejected?)`, {
          cause,
        });
      }
      this.#attemptFailed(c, failure ?? new ConnectionError(`connection to ${c.key} closed before it was established`));
    };
    const onEarlyData = (chunk: Buffer) => {
      const conn = established();
      this.#events.emit('data', conn.id, chunk);
    };
    let conn: Conn | undefined;
    const established = (): Conn => {
      if (conn) return conn;
      clearTimeout(timer);
      clearImmediate(settle);
      socket.off('error', onError);
      socket.off('close', onClose);
      socket.off('session', onSession);
      socket.off('data', onEarlyData);
      c.attempt = undefined;
      conn = this.#conns.adopt(socket, 'connector', c);
      return conn;
    };
    let ticket = false;
    let settle: NodeJS.Immediate | undefined;
    const onSession = () => {
      ticket = true;
      // Not from inside the ticket callback: writes made there (by `connect`
      // handlers) can get stuck in Node's TLS layer.
      if (phase === 'acceptance') settle ??= setImmediate(established);
    };
    socket.on('error', onError);
    socket.on('close', onClose);
    if (p.tls) {
      // A TLS 1.3 client finishes its handshake before the listener has checked
      // the client certificate; a listener that refuses it just closes. So the
      // connection counts as accepted once the listener shows it kept us: a
      // session ticket (sent after that check) or data. Servers that send
      // neither are accepted after TLS13_ACCEPT_WAIT_MS.
      socket.on('session', onSession);
      socket.once('connect', () => (phase = 'handshake'));
      socket.once('secureConnect', () => {
        if (ticket || (socket as tls.TLSSocket).getProtocol() !== 'TLSv1.3') {
          established();
          return;
        }
        phase = 'acceptance';
        clearTimeout(timer);
        timer = setTimeout(established, Math.min(TLS13_ACCEPT_WAIT_MS, c.opts.connectTimeout));
        socket.on('data', onEarlyData);
      });
    } else {
      socket.once('connect', established);
    }
    c.attempt = { socket, closed: new Promise((r) => socket.once('close', () => r())) };
  }

  #attemptFailed(c: ConnectorEntry, error: SnakeMQError): void {
    log(`connect to ${c.key} failed: ${error.message}`);
    c.lastError = error;
    this.#events.emit('connectFailed', c.key, error);
    if (c.removed || this.#link.closed) return;
    c.failures += 1;
    this.#scheduleReconnect(c);
  }

  #scheduleReconnect(c: ConnectorEntry): void {
    const attempt = c.failures;
    let delay: number;
    try {
      delay = c.opts.reconnectDelay(attempt);
    } catch (err) {
      log(`reconnectDelay threw (${messageOf(err)}); retrying in 1000 ms`);
      delay = 1000;
    }
    if (typeof delay !== 'number' || !Number.isFinite(delay) || delay < 0) delay = 0;
    delay = Math.min(delay, 2 ** 31 - 1);
    c.timer = setTimeout(() => this.#dial(c), delay);
    if (log.enabled) log(`reconnect to ${c.key}: attempt ${attempt} in ${Math.round(delay)} ms`);
    this.#events.emit('reconnect', c.key, attempt, delay);
  }

  #stop(c: ConnectorEntry): Promise<void> {
    c.removed = true;
    if (this.#connectors.get(c.key) === c) this.#connectors.delete(c.key);
    clearTimeout(c.timer);
    c.timer = undefined;
    const waits: Promise<void>[] = [];
    if (c.attempt) {
      c.attempt.socket.destroy();
      waits.push(c.attempt.closed);
    }
    if (c.conn) waits.push(this.#conns.close(c.conn));
    log(`connector ${c.key} removed`);
    return Promise.all(waits).then(() => undefined);
  }
}
