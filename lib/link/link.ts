import { Buffer } from 'node:buffer';
import { lstat, unlink } from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import {
  ClosedError,
  ConnectionError,
  ConnectionLimitError,
  InvalidArgumentError,
  InvalidEndpointError,
  InvalidOptionsError,
  SnakeMQError,
  TlsError,
  UnknownConnectionError,
} from '../errors.js';
import { createLogger } from '../util/log.js';
import { parseEndpoint } from './endpoint.js';
import { TypedEventSource } from './event-source.js';
import {
  DEFAULT_TLS_HANDSHAKE_TIMEOUT,
  resolveConnectorOptions,
  resolveLinkOptions,
  resolveListenerOptions,
  type ConnectorOptions,
  type LinkOptions,
  type ListenerOptions,
  type ResolvedConnectorOptions,
  type TlsOptions,
} from './options.js';
import type {
  ConnId,
  ConnectionInfo,
  DisconnectReason,
  Endpoint,
  ParsedEndpoint,
  TlsInfo,
  Transport,
} from './types.js';

const log = createLogger('snakemq:link');

/** Longest wait, after a TLS 1.3 handshake, for a sign that the listener accepted our certificate. */
const TLS13_ACCEPT_WAIT_MS = 1000;

type Side = ConnectionInfo['side'];

interface Conn {
  readonly id: ConnId;
  readonly socket: net.Socket;
  readonly info: ConnectionInfo;
  readonly owner: ListenerEntry | ConnectorEntry;
  needDrain: boolean;
  closing: boolean;
  localReason: SnakeMQError | undefined;
  error: SnakeMQError | undefined;
  graceTimer: NodeJS.Timeout | undefined;
  gone: boolean;
  /** performance.now() when it was established. */
  readonly since: number;
  /** Confirmed good by {@link Link.markEstablished}: its end restarts the backoff whatever its age. */
  confirmed: boolean;
  /** Made when someone waits for the close (most connections just end: no promise per connection). */
  closed: Promise<void> | undefined;
  resolveClosed: (() => void) | undefined;
}

interface ListenerEntry {
  readonly kind: 'listener';
  readonly requested: ParsedEndpoint;
  url: string;
  readonly server: net.Server;
  readonly tls: boolean;
  readonly conns: Set<Conn>;
  /** Raw sockets of a TLS listener whose handshake has not finished. */
  readonly handshaking: Set<net.Socket>;
  stopped: boolean;
  stopping: Promise<void> | undefined;
}

interface ConnectorEntry {
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
}

/**
 * The socket layer: any number of listeners and connectors over TCP, TLS and
 * Unix sockets, with symmetric connections (a peer does not care who dialled).
 * Connectors reconnect until removed. Failures are reported as events
 * ({@link LinkEvents}) carrying typed errors; nothing is ever emitted as
 * `'error'` and no socket error escapes to the process.
 *
 * Debug logging: `DEBUG=snakemq:link`.
 *
 * @example
 * ```ts
 * const link = new Link();
 * link.on('connect', (info) => link.send(info.id, Buffer.from('hello')));
 * const url = await link.addListener('tcp://127.0.0.1:0'); // e.g. tcp://127.0.0.1:41234
 * link.addConnector('tls://peer.example:4000', { tls: { ca, key, cert } });
 * ```
 */
export class Link extends TypedEventSource implements Transport {
  readonly #opts: Required<LinkOptions>;
  readonly #conns = new Map<ConnId, Conn>();
  readonly #listeners = new Set<ListenerEntry>();
  readonly #connectors = new Map<string, ConnectorEntry>();
  /** addListener calls still in progress; close() waits for them. */
  readonly #starting = new Set<Promise<unknown>>();
  /** Accepted sockets (all listeners, TLS handshakes included) not yet closed: what maxConnections bounds. */
  #accepted = 0;
  #nextId: ConnId = 1;
  #closed = false;
  #closing: Promise<void> | undefined;

  /** @throws InvalidOptionsError on unknown keys or bad values. */
  constructor(options?: LinkOptions) {
    super();
    this.#opts = resolveLinkOptions(options);
  }

  /** Whether {@link close} (without an id) was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Listen on an endpoint. Any number of listeners may coexist. A stale Unix
   * socket file (nobody accepting on it) is replaced; the file is removed again
   * by {@link removeListener} / {@link close}.
   *
   * @returns the bound address as a URL: port 0 is replaced by the port the OS
   *   picked, a host name by the address, e.g. `tcp://127.0.0.1:41234`.
   * @throws (rejects) InvalidEndpointError, InvalidOptionsError (including a
   *   missing or misspelt TLS option, or unusable key/cert), ConnectionError
   *   (e.g. `EADDRINUSE`, the Node error as `cause`), ClosedError after close().
   */
  async addListener(endpoint: Endpoint, options?: ListenerOptions): Promise<string> {
    if (this.closed) throw new ClosedError('link is closed');
    const parsed = parseEndpoint(endpoint);
    const opts = resolveListenerOptions(parsed, options);
    let server: net.Server;
    if (opts.tls) {
      const t = opts.tls;
      try {
        server = tls.createServer({
          ...contextOptions(t),
          handshakeTimeout: t.handshakeTimeout ?? DEFAULT_TLS_HANDSHAKE_TIMEOUT,
          ...definedOnly({ requestCert: t.requestCert ?? false, rejectUnauthorized: t.rejectUnauthorized }),
        } as tls.TlsOptions);
      } catch (err) {
        throw new InvalidOptionsError(`listener ${parsed.url}: unusable TLS key/certificate: ${messageOf(err)}`, {
          cause: err,
        });
      }
    } else {
      server = net.createServer();
    }
    const entry: ListenerEntry = {
      kind: 'listener',
      requested: parsed,
      url: parsed.url,
      server,
      tls: parsed.tls,
      conns: new Set(),
      handshaking: new Set(),
      stopped: false,
      stopping: undefined,
    };
    this.#wireServer(entry, opts.tls?.requestCert === true && opts.tls.rejectUnauthorized);

    const start = (async () => {
      await listen(server, parsed, opts.backlog);
      entry.url = boundUrl(server, parsed);
      this.#listeners.add(entry);
      if (this.closed) {
        await this.#stopListener(entry);
        throw new ClosedError('link is closed');
      }
      log(`listening on ${entry.url}`);
      return entry.url;
    })();
    this.#starting.add(start);
    try {
      return await start;
    } finally {
      this.#starting.delete(start);
    }
  }

  /**
   * Stop listening: no new connections are accepted and the ones accepted by
   * this listener are closed (`disconnect` with `by: 'local'`). Resolves once
   * the server and those sockets are closed.
   *
   * @param endpoint the URL returned by {@link addListener}, or the endpoint
   *   passed to it (when that is unambiguous).
   * @throws (rejects) InvalidEndpointError, InvalidArgumentError when no such listener exists.
   */
  async removeListener(endpoint: Endpoint): Promise<void> {
    if (this.#closing) return this.#closing;
    const parsed = parseEndpoint(endpoint);
    const all = [...this.#listeners];
    let entry = all.find((l) => l.url === parsed.url);
    if (!entry) {
      const byRequest = all.filter((l) => l.requested.url === parsed.url);
      if (byRequest.length > 1) {
        throw new InvalidArgumentError(`${parsed.url} matches several listeners; pass the URL addListener returned`);
      }
      entry = byRequest[0];
    }
    if (!entry) throw new InvalidArgumentError(`no listener on ${parsed.url}`);
    await this.#stopListener(entry);
  }

  /**
   * Connect to an endpoint, now and again after every disconnect or failed
   * attempt until {@link removeConnector}. Each failed attempt emits
   * `connectFailed` (ConnectionError, or TlsError when the TLS handshake
   * failed, with the Node error as `cause`); each scheduled retry emits
   * `reconnect(key, attempt, delayMs)`. A connection that ends before it lived
   * `stableAfter` ms (and was not confirmed with {@link markEstablished})
   * counts as a failed attempt, so the delays keep growing.
   *
   * @returns the connector key: the endpoint's canonical URL.
   * @throws InvalidEndpointError (also for port 0), InvalidOptionsError,
   *   InvalidArgumentError when a connector for this endpoint exists,
   *   ClosedError after close().
   */
  addConnector(endpoint: Endpoint, options?: ConnectorOptions): string {
    if (this.closed) throw new ClosedError('link is closed');
    const parsed = parseEndpoint(endpoint);
    if (parsed.transport === 'tcp' && parsed.port === 0) {
      throw new InvalidEndpointError(`invalid endpoint ${parsed.url}: cannot connect to port 0`);
    }
    if (this.#connectors.has(parsed.url)) {
      throw new InvalidArgumentError(`a connector to ${parsed.url} already exists`);
    }
    const opts = resolveConnectorOptions(parsed, options);
    let secureContext: tls.SecureContext | undefined;
    if (opts.tls) {
      const t = opts.tls;
      try {
        secureContext = tls.createSecureContext(contextOptions(t));
      } catch (err) {
        throw new InvalidOptionsError(`connector ${parsed.url}: unusable TLS key/certificate: ${messageOf(err)}`, {
          cause: err,
        });
      }
    }
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
    };
    this.#connectors.set(c.key, c);
    log(`connector ${c.key} added`);
    this.#dial(c);
    return c.key;
  }

  /**
   * Stop a connector: no more attempts, pending timers cancelled, its
   * connection (if any) closed with `by: 'local'`. Resolves once its socket is closed.
   * @param endpoint the key returned by {@link addConnector}, or the same endpoint.
   * @throws (rejects) InvalidEndpointError, InvalidArgumentError when no such connector exists.
   */
  async removeConnector(endpoint: Endpoint): Promise<void> {
    if (this.#closing) return this.#closing;
    const key = typeof endpoint === 'string' && this.#connectors.has(endpoint) ? endpoint : parseEndpoint(endpoint).url;
    const c = this.#connectors.get(key);
    if (!c) throw new InvalidArgumentError(`no connector for ${key}`);
    await this.#stopConnector(c);
  }

  /**
   * Queue bytes on a connection. Returns false once the connection's unsent
   * bytes reach `highWaterMark` (a `drain` event follows when they fall below
   * it); the data is queued anyway. `onWritten` runs once the bytes were handed
   * to the kernel, or with an error (never synchronously): UnknownConnectionError
   * for an unknown id, ClosedError when the link or connection is closing,
   * ConnectionError when the socket failed first.
   * @throws InvalidArgumentError when `data` is not a Buffer/Uint8Array.
   */
  send(connId: ConnId, data: Buffer, onWritten?: (error?: SnakeMQError) => void): boolean {
    if (!(data instanceof Uint8Array)) throw new InvalidArgumentError('send: data must be a Buffer');
    if (this.closed) return failSend(onWritten, new ClosedError('link is closed'));
    const c = this.#conns.get(connId);
    if (!c) return failSend(onWritten, new UnknownConnectionError(`no connection ${connId}`));
    const s = c.socket;
    if (c.closing || s.destroyed || s.writableEnded) {
      return failSend(onWritten, new ClosedError(`connection ${connId} is closing`));
    }
    s.write(data, (err?: Error | null) => this.#afterWrite(c, err, onWritten));
    if (s.writableLength >= this.#opts.highWaterMark) {
      c.needDrain = true;
      return false;
    }
    return true;
  }

  /**
   * {@link send} of several buffers, in order, handed to the kernel together
   * (one vectored write): a small header and a big payload sent by reference
   * leave as one write, not a tiny one and a big one. `onWritten` runs once for all.
   * @throws InvalidArgumentError when a chunk is not a Buffer/Uint8Array.
   */
  sendv(connId: ConnId, chunks: readonly Buffer[], onWritten?: (error?: SnakeMQError) => void): boolean {
    if (chunks.length === 0 || !chunks.every((d) => d instanceof Uint8Array)) throw new InvalidArgumentError('sendv: chunks must be Buffers');
    const c = this.#conns.get(connId);
    if (this.closed || c === undefined || c.closing || c.socket.destroyed || c.socket.writableEnded) return this.send(connId, chunks[0]!, onWritten);
    const s = c.socket;
    s.cork();
    for (let i = 0; i < chunks.length - 1; i++) s.write(chunks[i]!);
    const ok = this.send(connId, chunks[chunks.length - 1]!, onWritten);
    s.uncork();
    return ok;
  }

  /** Whether {@link send} on this connection would currently return true. */
  isWritable(connId: ConnId): boolean {
    const c = this.#conns.get(connId);
    if (!c || this.closed || c.closing) return false;
    const s = c.socket;
    return !s.destroyed && !s.writableEnded && s.writableLength < this.#opts.highWaterMark;
  }

  /** Stop reading from a connection (receive-side backpressure). Unknown ids are ignored. */
  pause(connId: ConnId): void {
    const c = this.#conns.get(connId);
    if (c && !c.closing) c.socket.pause();
  }

  /** Resume reading from a paused connection. Unknown ids are ignored. */
  resume(connId: ConnId): void {
    this.#conns.get(connId)?.socket.resume();
  }

  /** Info of a connection, until its `disconnect` event. */
  connection(connId: ConnId): ConnectionInfo | undefined {
    return this.#conns.get(connId)?.info;
  }

  /** Ids of the live connections, in creation order. */
  connectionIds(): ConnId[] {
    return [...this.#conns.keys()];
  }

  /**
   * Tell the Link that a connection it made is known to be good (say the peer
   * identified itself), before it lived `stableAfter` ms: its connector's
   * reconnect backoff restarts now, and when this connection ends the next
   * attempt is attempt 1. No-op for unknown ids and for accepted
   * (listener-side) connections.
   */
  markEstablished(connId: ConnId): void {
    const c = this.#conns.get(connId);
    if (!c || c.owner.kind !== 'connector' || c.owner.conn !== c) return;
    c.confirmed = true;
    c.owner.failures = 0;
  }

  /**
   * With an id: close that connection (`disconnect` with `by: 'local'` and
   * `reason` as `error`), after trying for `closeTimeout` ms to flush what was
   * sent; resolves when its socket is closed (at once for unknown or closed ids).
   *
   * A connector whose connection is closed this way reconnects, as after any
   * disconnect; use {@link removeConnector} to stop it.
   *
   * Without an id: close everything (listeners, connectors, reconnect timers,
   * connections) and resolve once every socket and server is closed. Idempotent;
   * afterwards `addListener`/`addConnector` fail with ClosedError and `send`
   * returns false.
   */
  close(connId?: ConnId, reason?: SnakeMQError): Promise<void> {
    if (connId !== undefined) {
      const c = this.#conns.get(connId);
      return c ? this.#closeConn(c, reason) : Promise.resolve();
    }
    if (!this.#closing) {
      this.#closed = true;
      this.#closing = this.#closeAll();
    }
    return this.#closing;
  }

  async #closeAll(): Promise<void> {
    log('closing link');
    const waits: Promise<unknown>[] = [];
    for (const c of this.#connectors.values()) waits.push(this.#stopConnector(c));
    for (const l of this.#listeners) waits.push(this.#stopListener(l));
    for (const c of this.#conns.values()) waits.push(this.#closeConn(c));
    // addListener calls in flight stop their own server when they see the link closed.
    for (const s of this.#starting) waits.push(s.catch(() => undefined));
    await Promise.all(waits);
    log('link closed');
  }

  #wireServer(entry: ListenerEntry, mustAuthorize: boolean): void {
    const server = entry.server;
    server.on('error', (err) => {
      // Errors while starting to listen are reported by addListener itself.
      if (server.listening) log(`listener ${entry.url}: ${messageOf(err)}`);
    });
    if (!entry.tls) {
      server.on('connection', (socket: net.Socket) => {
        if (this.#admit(entry, socket)) this.#accept(entry, socket);
      });
      return;
    }
    // Raw sockets refused by #admit: their TLSSocket (made by Node before our
    // 'connection' listener runs) then reports a reset we must not pass on.
    const refused = new WeakSet<net.Socket>();
    server.on('connection', (raw: net.Socket) => {
      raw.on('error', () => undefined);
      if (!this.#admit(entry, raw)) {
        refused.add(raw);
        return;
      }
      entry.handshaking.add(raw);
      raw.once('close', () => entry.handshaking.delete(raw));
    });
    server.on('secureConnection', (socket: tls.TLSSocket) => {
      const raw = rawSocketOf(socket);
      if (raw) entry.handshaking.delete(raw);
      if (raw && refused.has(raw)) {
        socket.destroy();
        return;
      }
      if (mustAuthorize && !socket.authorized) {
        // Node already refuses these; kept as a guard so no unauthorized peer ever reaches `connect`.
        socket.destroy();
        this.#acceptFailed(entry, socket, new Error(String(socket.authorizationError)));
        return;
      }
      this.#accept(entry, socket);
    });
    server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
      // Node leaves the socket open after some of these (a handshake timeout
      // among them): it would hold its descriptor until the client goes away.
      const raw = rawSocketOf(socket);
      socket.destroy();
      raw?.destroy();
      if (raw && refused.has(raw)) return;
      this.#acceptFailed(entry, socket, err);
    });
  }

  /**
   * Counts an accepted socket against maxConnections, or destroys it at once
   * (`acceptFailed` with ConnectionLimitError) when the Link holds that many.
   */
  #admit(entry: ListenerEntry, socket: net.Socket): boolean {
    const limit = this.#opts.maxConnections;
    if (this.#accepted >= limit && !entry.stopped && !this.closed) {
      socket.on('error', () => undefined);
      socket.destroy();
      const error = new ConnectionLimitError(limit, `${entry.url}: connection refused: ${limit} accepted connections already open (maxConnections)`);
      log(error.message);
      this.emit('acceptFailed', entry.url, error);
      return false;
    }
    this.#accepted++;
    socket.once('close', () => this.#accepted--);
    return true;
  }

  #acceptFailed(entry: ListenerEntry, socket: tls.TLSSocket, err: Error): void {
    if (entry.stopped || this.closed) return;
    const why = socket.authorizationError
      ? `client certificate rejected (${String(socket.authorizationError)})`
      : messageOf(err);
    const error = new TlsError(`${entry.url}: TLS handshake with a client failed: ${why}`, { cause: err });
    log(error.message);
    this.emit('acceptFailed', entry.url, error);
  }

  #accept(entry: ListenerEntry, socket: net.Socket): void {
    if (entry.stopped || this.closed) {
      socket.on('error', () => undefined);
      socket.destroy();
      return;
    }
    this.#adopt(socket, 'listener', entry);
  }

  #adopt(socket: net.Socket, side: Side, owner: ListenerEntry | ConnectorEntry): Conn {
    const id = this.#nextId++;
    const tcp = (owner.kind === 'listener' ? owner.requested : owner.parsed).transport === 'tcp';
    if (tcp) {
      socket.setNoDelay(this.#opts.noDelay);
      socket.setKeepAlive(this.#opts.keepAlive, this.#opts.keepAliveInitialDelay);
    }
    const info: ConnectionInfo = Object.freeze({
      id,
      side,
      endpoint: owner.kind === 'listener' ? owner.url : owner.key,
      ...(tcp
        ? definedOnly({
            remoteAddress: socket.remoteAddress,
            remotePort: socket.remotePort,
            localAddress: socket.localAddress,
            localPort: socket.localPort,
          })
        : {}),
      ...(socket instanceof tls.TLSSocket ? { tls: tlsInfo(socket) } : {}),
    });
    const conn: Conn = {
      id,
      socket,
      info,
      owner,
      needDrain: false,
      closing: false,
      localReason: undefined,
      error: undefined,
      graceTimer: undefined,
      gone: false,
      since: performance.now(),
      confirmed: false,
      closed: undefined,
      resolveClosed: undefined,
    };
    socket.on('data', (chunk: Buffer) => {
      if (!conn.closing) this.emit('data', id, chunk);
    });
    socket.on('error', (err) => {
      conn.error ??= wrapSocketError(err, `connection ${id} (${info.endpoint})`);
      // Node keeps some sockets open after an error (a TLS renegotiation
      // attack, ERR_TLS_SESSION_ATTACK, among them): a failed connection ends here.
      socket.destroy();
    });
    socket.on('close', () => this.#onConnClose(conn));
    this.#conns.set(id, conn);
    if (owner.kind === 'listener') owner.conns.add(conn);
    else owner.conn = conn;
    if (log.enabled) log(`connect #${id} ${side} ${info.endpoint} ${describePeer(info)}`);
    this.emit('connect', info);
    return conn;
  }

  #afterWrite(c: Conn, err: Error | null | undefined, onWritten?: (error?: SnakeMQError) => void): void {
    if (onWritten) {
      onWritten(
        err
          ? (c.error ?? wrapSocketError(err, `connection ${c.id}: write failed`))
          : undefined,
      );
    }
    if (!err && c.needDrain && !c.closing && !c.gone && c.socket.writableLength < this.#opts.highWaterMark) {
      c.needDrain = false;
      this.emit('drain', c.id);
    }
  }

  #closeConn(c: Conn, reason?: SnakeMQError): Promise<void> {
    if (c.closing || c.gone) return closedOf(c);
    c.closing = true;
    c.localReason = reason;
    if (log.enabled) log(`closing #${c.id}${reason ? `: ${reason.message}` : ''}`);
    // Keep reading so the peer's FIN is seen; incoming data is dropped from now on.
    c.socket.resume();
    c.socket.end();
    c.graceTimer = setTimeout(() => c.socket.destroy(), this.#opts.closeTimeout);
    return closedOf(c);
  }

  #onConnClose(c: Conn): void {
    if (c.gone) return;
    c.gone = true;
    clearTimeout(c.graceTimer);
    this.#conns.delete(c.id);
    const owner = c.owner;
    if (owner.kind === 'listener') owner.conns.delete(c);
    else if (owner.conn === c) owner.conn = undefined;
    let reason: DisconnectReason;
    if (c.closing) reason = c.localReason ? { by: 'local', error: c.localReason } : { by: 'local' };
    else if (c.error) reason = { by: 'error', error: c.error };
    else reason = { by: 'remote' };
    if (log.enabled) log(`disconnect #${c.id} ${c.info.endpoint} by ${reason.by}${reason.error ? `: ${reason.error.message}` : ''}`);
    this.emit('disconnect', c.id, reason);
    c.resolveClosed?.();
    if (owner.kind === 'connector' && !owner.removed && !this.closed) {
      // Timestamps rather than a timer per connection: a connection that did
      // not live stableAfter ms counts as one more failed attempt.
      const stable = c.confirmed || performance.now() - c.since >= owner.opts.stableAfter;
      owner.failures = stable ? 1 : owner.failures + 1;
      this.#scheduleReconnect(owner);
    }
  }

  #dial(c: ConnectorEntry): void {
    c.timer = undefined;
    if (c.removed || this.closed) return;
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
      if (c.removed || this.closed) return;
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
      this.emit('data', conn.id, chunk);
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
      conn = this.#adopt(socket, 'connector', c);
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
    this.emit('connectFailed', c.key, error);
    if (c.removed || this.closed) return;
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
    this.emit('reconnect', c.key, attempt, delay);
  }

  #stopConnector(c: ConnectorEntry): Promise<void> {
    c.removed = true;
    if (this.#connectors.get(c.key) === c) this.#connectors.delete(c.key);
    clearTimeout(c.timer);
    c.timer = undefined;
    const waits: Promise<void>[] = [];
    if (c.attempt) {
      c.attempt.socket.destroy();
      waits.push(c.attempt.closed);
    }
    if (c.conn) waits.push(this.#closeConn(c.conn));
    log(`connector ${c.key} removed`);
    return Promise.all(waits).then(() => undefined);
  }

  #stopListener(entry: ListenerEntry): Promise<void> {
    if (entry.stopping) return entry.stopping;
    entry.stopped = true;
    entry.stopping = (async () => {
      this.#listeners.delete(entry);
      const serverClosed = new Promise<void>((resolve) => entry.server.close(() => resolve()));
      for (const raw of entry.handshaking) raw.destroy();
      await Promise.all([serverClosed, ...[...entry.conns].map((c) => this.#closeConn(c))]);
      log(`stopped listening on ${entry.url}`);
    })();
    return entry.stopping;
  }
}

/** Resolves once the connection's socket closed. */
function closedOf(c: Conn): Promise<void> {
  if (c.gone) return Promise.resolve();
  return (c.closed ??= new Promise<void>((resolve) => (c.resolveClosed = resolve)));
}

function failSend(onWritten: ((error?: SnakeMQError) => void) | undefined, error: SnakeMQError): false {
  if (onWritten) process.nextTick(onWritten, error);
  return false;
}

/** Listen, replacing a stale Unix socket file once. Node errors are wrapped. */
async function listen(server: net.Server, p: ParsedEndpoint, backlog: number): Promise<void> {
  const opts: net.ListenOptions =
    p.transport === 'tcp' ? { host: p.host!, port: p.port!, backlog } : { path: p.path!, backlog };
  try {
    await listenOnce(server, opts);
    return;
  } catch (err) {
    const path = p.path;
    const retry =
      path !== undefined && !path.startsWith('\0') && (err as NodeJS.ErrnoException).code === 'EADDRINUSE' && (await isStaleSocket(path));
    if (!retry) throw new ConnectionError(`cannot listen on ${p.url}: ${messageOf(err)}`, { cause: err });
    await unlink(path).catch(() => undefined);
    log(`removed stale socket file ${path}`);
  }
  try {
    await listenOnce(server, opts);
  } catch (err) {
    throw new ConnectionError(`cannot listen on ${p.url}: ${messageOf(err)}`, { cause: err });
  }
}

function listenOnce(server: net.Server, opts: net.ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(opts);
  });
}

/** A socket file nobody accepts on (left behind by a crashed process). */
async function isStaleSocket(path: string): Promise<boolean> {
  try {
    if (!(await lstat(path)).isSocket()) return false;
  } catch {
    return false;
  }
  return new Promise((resolve) => {
    const probe = net.connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(false);
    });
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED' || err.code === 'ENOENT'));
  });
}

function boundUrl(server: net.Server, p: ParsedEndpoint): string {
  const addr = server.address();
  if (p.transport !== 'tcp' || addr === null || typeof addr === 'string') return p.url;
  const host = net.isIPv6(addr.address) ? `[${addr.address}]` : addr.address;
  return `${p.tls ? 'tls' : 'tcp'}://${host}:${addr.port}`;
}

function tlsInfo(socket: tls.TLSSocket): TlsInfo {
  const cert = socket.getPeerCertificate() as tls.PeerCertificate | null | undefined;
  return Object.freeze({
    protocol: socket.getProtocol(),
    cipher: socket.getCipher()?.name ?? '',
    authorized: socket.authorized,
    ...(socket.authorizationError ? { authorizationError: String(socket.authorizationError) } : {}),
    peerCertificate: cert ?? {},
  });
}

/**
 * tls.Server wraps each accepted socket in a TLSSocket and keeps the raw one
 * as `_parent` (Node internals, unchanged for a decade); knowing it lets
 * removeListener abort handshakes still in progress without touching
 * established connections. Without it, those are closed abruptly instead.
 */
function rawSocketOf(socket: tls.TLSSocket): net.Socket | undefined {
  const parent = (socket as unknown as { _parent?: unknown })._parent;
  return parent instanceof net.Socket ? parent : undefined;
}

const TLS_CODE = /^(ERR_SSL_|ERR_TLS_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_)/;

function wrapSocketError(err: unknown, context: string): SnakeMQError {
  if (err instanceof SnakeMQError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const message = `${context}: ${messageOf(err)}`;
  return typeof code === 'string' && TLS_CODE.test(code)
    ? new TlsError(message, { cause: err })
    : new ConnectionError(message, { cause: err });
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function describePeer(info: ConnectionInfo): string {
  const peer = info.remoteAddress !== undefined ? `${info.remoteAddress}:${info.remotePort}` : 'unix';
  return info.tls ? `${peer} ${info.tls.protocol} authorized=${info.tls.authorized}` : peer;
}

/** Drops undefined values (Node treats some present-but-undefined TLS keys differently). */
/** The TLS options that make a secure context (the same for listeners and connectors). */
function contextOptions(t: TlsOptions): tls.SecureContextOptions {
  return definedOnly({
    key: t.key,
    cert: t.cert,
    ca: t.ca,
    passphrase: t.passphrase,
    ciphers: t.ciphers,
    minVersion: t.minVersion,
    maxVersion: t.maxVersion,
  }) as tls.SecureContextOptions;
}

function definedOnly<T extends Record<string, unknown>>(obj: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}
