/**
 * `udp://` endpoints of a {@link Link}: a listener is one bound datagram
 * socket that hands every datagram within its size limit and source policy
 * up as a `datagram` event; a connector is one unbound socket sending to its
 * target, presented to the layers above as a connection (`connect` at once,
 * {@link ConnectionInfo.datagram} set, the peer's identity given by the
 * `identity` option). No handshake, no reconnect, no stream: see docs/datagrams.md.
 * Builds on node:dgram. Connection ids are negative (never a stream's).
 * @module
 */
import type { Buffer } from 'node:buffer';
import dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIPv4, isIPv6 } from 'node:net';
import {
  ClosedError,
  ConnectionError,
  DatagramTooLargeError,
  InvalidArgumentError,
  InvalidOptionsError,
  UnknownConnectionError,
  type SnakeMQError,
} from '../errors.js';
import { createLogger } from '../util/log.js';
import { is, validateOptions } from '../util/options.js';
import type { LinkState } from './connection.js';
import type { LinkEmitter } from './event-source.js';
import type { ConnectorOptions, ListenerOptions } from './options.js';
import type { ConnId, ConnectionInfo, ParsedEndpoint } from './types.js';

const log = createLogger('snakemq:link');

/**
 * Default `maxDatagramSize` of `udp://` listeners and connectors: the largest
 * UDP payload over IPv4 (65,535 − 8 − 20). Over a real network anything
 * above the path MTU (about 1,472 bytes on Ethernet) is fragmented, and one
 * lost fragment loses the datagram: set it lower there.
 */
export const DEFAULT_MAX_DATAGRAM_SIZE = 65_507;
/** How long close() waits for datagrams handed to a socket to be sent before closing it anyway (ms). */
export const DATAGRAM_CLOSE_WAIT = 1_000;

/** Counters of a Link's `udp://` sockets (see {@link Link.datagramCounters}). */
export interface LinkDatagramCounters {
  /** Datagrams received by listeners and passed up. */
  received: number;
  /** Datagrams received over the listener's `maxDatagramSize`: dropped. */
  oversize: number;
  /** Datagrams whose source the listener's `allowSource` refused (or that threw): dropped. */
  refused: number;
  /** Datagrams connectors handed to the kernel. */
  sent: number;
  /** Datagrams a connector failed to send (the error went to the sender's callback). */
  sendFailed: number;
}

interface DatagramEntry {
  readonly id: ConnId;
  readonly kind: 'listener' | 'connector';
  /** Bound URL (listener) or connector key. */
  url: string;
  readonly requested: string;
  readonly socket: dgram.Socket;
  info: ConnectionInfo;
  readonly max: number;
  readonly allow: ((address: string, port: number) => boolean) | null;
  readonly host: string;
  readonly port: number;
  /** Sends handed to the socket, not yet called back. */
  pending: number;
  flushed: (() => void) | null;
  closing: Promise<void> | undefined;
}

/** The `udp://` listeners and connectors of one Link. @internal */
export class Datagrams {
  readonly counters: LinkDatagramCounters = { received: 0, oversize: 0, refused: 0, sent: 0, sendFailed: 0 };
  readonly #events: LinkEmitter;
  readonly #link: LinkState;
  readonly #byId = new Map<ConnId, DatagramEntry>();
  readonly #starting = new Set<Promise<unknown>>();
  #nextId: ConnId = -1;

  constructor(events: LinkEmitter, link: LinkState) {
    this.#events = events;
    this.#link = link;
  }

  /** See {@link Link.addListener} for `udp://`. */
  async listen(parsed: ParsedEndpoint, options?: ListenerOptions): Promise<string> {
    if (this.#link.closed) throw new ClosedError('link is closed');
    const o = resolveDatagramListenerOptions(parsed, options);
    for (const e of this.#byId.values()) {
      if (e.kind === 'listener' && (e.requested === parsed.url || e.url === parsed.url) && parsed.port !== 0) {
        throw new InvalidArgumentError(`a listener on ${parsed.url} already exists`);
      }
    }
    const start = this.#bind(parsed, o.maxDatagramSize ?? DEFAULT_MAX_DATAGRAM_SIZE, o.allowSource ?? null);
    this.#starting.add(start);
    try {
      return await start;
    } finally {
      this.#starting.delete(start);
    }
  }

  async #bind(parsed: ParsedEndpoint, max: number, allow: ((address: string, port: number) => boolean) | null): Promise<string> {
    const host = await resolveHost(parsed.host!);
    const socket = dgram.createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' });
    await new Promise<void>((resolve, reject) => {
      const failed = (error: Error) => reject(new ConnectionError(`cannot listen on ${parsed.url}: ${error.message}`, { cause: error }));
      socket.once('error', failed);
      socket.bind(parsed.port, host, () => {
        socket.off('error', failed);
        resolve();
      });
    }).catch((error: unknown) => {
      socket.close();
      throw error;
    });
    const addr = socket.address();
    const url = `udp://${isIPv6(addr.address) ? `[${addr.address}]` : addr.address}:${addr.port}`;
    const id = this.#nextId--;
    const entry: DatagramEntry = {
      id,
      kind: 'listener',
      url,
      requested: parsed.url,
      socket,
      info: Object.freeze({ id, side: 'listener', endpoint: url, localAddress: addr.address, localPort: addr.port, datagram: true }),
      max,
      allow,
      host,
      port: addr.port,
      pending: 0,
      flushed: null,
      closing: undefined,
    };
    this.#byId.set(id, entry);
    if (this.#link.closed) {
      await this.#stop(entry);
      throw new ClosedError('link closed while the listener was starting');
    }
    const counters = this.counters;
    const events = this.#events;
    socket.on('message', (msg: Buffer, rinfo: dgram.RemoteInfo) => {
      if (msg.length > max) {
        counters.oversize++;
        return;
      }
      if (allow !== null) {
        let ok = false;
        try {
          ok = allow(rinfo.address, rinfo.port) === true;
        } catch {
          // A throwing policy refuses, like one returning false.
        }
        if (!ok) {
          counters.refused++;
          return;
        }
      }
      counters.received++;
      events.emit('datagram', id, msg, rinfo.address, rinfo.port);
    });
    // A receive error (e.g. ICMP noise) never ends the listener and never reaches the process.
    socket.on('error', (error) => log(`udp listener ${url}: ${error.message}`));
    log(`listening on ${url}`);
    return url;
  }

  /** See {@link Link.addConnector} for `udp://`. */
  connect(parsed: ParsedEndpoint, options?: ConnectorOptions): string {
    if (this.#link.closed) throw new ClosedError('link is closed');
    if (parsed.port === 0) throw new InvalidArgumentError(`cannot send datagrams to port 0 (${parsed.url})`);
    const o = resolveDatagramConnectorOptions(parsed, options);
    const identity = o.identity;
    for (const e of this.#byId.values()) {
      if (e.kind === 'connector' && e.url === parsed.url) throw new InvalidArgumentError(`a connector to ${parsed.url} already exists`);
    }
    const host = parsed.host!;
    const socket = dgram.createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' });
    socket.on('error', (error) => log(`udp connector ${parsed.url}: ${error.message}`));
    const id = this.#nextId--;
    const entry: DatagramEntry = {
      id,
      kind: 'connector',
      url: parsed.url,
      requested: parsed.url,
      socket,
      info: Object.freeze({
        id,
        side: 'connector',
        endpoint: parsed.url,
        remoteAddress: host,
        remotePort: parsed.port,
        datagram: true,
        identity,
        maxDatagramSize: o.maxDatagramSize ?? DEFAULT_MAX_DATAGRAM_SIZE,
      }),
      max: o.maxDatagramSize ?? DEFAULT_MAX_DATAGRAM_SIZE,
      allow: null,
      host,
      port: parsed.port!,
      pending: 0,
      flushed: null,
      closing: undefined,
    };
    this.#byId.set(id, entry);
    log(`udp connector ${parsed.url} for '${identity}' (conn ${id})`);
    // At once: a send() right after connect() already finds the peer's route.
    this.#events.emit('connect', entry.info);
    return parsed.url;
  }

  /** Whether `connId` is one of these sockets. */
  has(connId: ConnId): boolean {
    return this.#byId.has(connId);
  }

  info(connId: ConnId): ConnectionInfo | undefined {
    return this.#byId.get(connId)?.info;
  }

  /** See {@link Transport.sendDatagram}. */
  send(connId: ConnId, datagram: Buffer, onWritten?: (error?: SnakeMQError) => void): void {
    const e = this.#byId.get(connId);
    if (e === undefined || e.kind !== 'connector' || e.closing !== undefined || this.#link.closed) {
      const error =
        e === undefined || e.kind !== 'connector'
          ? new UnknownConnectionError(`no udp connector ${connId}`)
          : new ClosedError(`udp connector ${e.url} is closing`);
      if (onWritten) process.nextTick(onWritten, error);
      return;
    }
    if (datagram.length > e.max) {
      throw new DatagramTooLargeError(`a datagram of ${datagram.length} bytes is over maxDatagramSize ${e.max} of ${e.url}`, datagram.length, e.max);
    }
    e.pending++;
    const counters = this.counters;
    e.socket.send(datagram, e.port, e.host, (error) => {
      if (error) {
        counters.sendFailed++;
        onWritten?.(new ConnectionError(`datagram to ${e.url} not sent: ${error.message}`, { cause: error }));
      } else {
        counters.sent++;
        onWritten?.();
      }
      if (--e.pending === 0 && e.flushed !== null) e.flushed();
    });
  }

  /** The entry of a udp endpoint given to removeListener/removeConnector. */
  find(kind: 'listener' | 'connector', url: string): ConnId | undefined {
    for (const e of this.#byId.values()) if (e.kind === kind && (e.url === url || e.requested === url)) return e.id;
    return undefined;
  }

  /** Closes one socket (a connector's connection ends with `disconnect`); at once for unknown ids. */
  close(connId: ConnId): Promise<void> {
    const e = this.#byId.get(connId);
    return e === undefined ? Promise.resolve() : this.#stop(e);
  }

  /** Closes every socket; also the listeners still starting. */
  stopAll(): Promise<unknown>[] {
    const waits: Promise<unknown>[] = [...this.#byId.values()].map((e) => this.#stop(e));
    for (const s of this.#starting) waits.push(s.catch(() => undefined));
    return waits;
  }

  #stop(e: DatagramEntry): Promise<void> {
    e.closing ??= (async () => {
      if (e.pending > 0) {
        // What send() handed over leaves before the socket closes (closing would cancel it).
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, DATAGRAM_CLOSE_WAIT);
          e.flushed = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      await new Promise<void>((resolve) => {
        try {
          e.socket.close(() => resolve());
        } catch {
          resolve();
        }
      });
      this.#byId.delete(e.id);
      log(`udp ${e.kind} ${e.url} closed`);
      if (e.kind === 'connector') this.#events.emit('disconnect', e.id, { by: 'local' });
    })();
    return e.closing;
  }
}

/** @internal Validates the options of a `udp://` listener (unknown keys, such as `tls` or `backlog`, refused). */
export function resolveDatagramListenerOptions(parsed: ParsedEndpoint, options: unknown): Pick<ListenerOptions, 'maxDatagramSize' | 'allowSource'> {
  return validateOptions<Pick<ListenerOptions, 'maxDatagramSize' | 'allowSource'>>(
    `listener ${parsed.url}`,
    options,
    { maxDatagramSize: is.integer(1, DEFAULT_MAX_DATAGRAM_SIZE), allowSource: is.function() },
    {},
  );
}

/** @internal Validates the options of a `udp://` connector: `identity` required, TLS and reconnect options refused. */
export function resolveDatagramConnectorOptions(parsed: ParsedEndpoint, options: unknown): { identity: string; maxDatagramSize?: number } {
  const o = validateOptions<Pick<ConnectorOptions, 'identity' | 'maxDatagramSize'>>(
    `connector ${parsed.url}`,
    options,
    { identity: is.string(), maxDatagramSize: is.integer(1, DEFAULT_MAX_DATAGRAM_SIZE) },
    {},
  );
  const identity = o.identity;
  if (identity === undefined) {
    throw new InvalidOptionsError(`connector ${parsed.url}: udp:// connectors need 'identity', the identity of the peer that listens there`);
  }
  if (!plausibleIdentity(identity)) {
    throw new InvalidOptionsError(`connector ${parsed.url}: 'identity' must be 1 to 50 characters without lone surrogates`);
  }
  return { identity, ...(o.maxDatagramSize === undefined ? {} : { maxDatagramSize: o.maxDatagramSize }) };
}

async function resolveHost(host: string): Promise<string> {
  if (isIPv4(host) || isIPv6(host)) return host;
  return (await lookup(host)).address;
}

/** The identity rules of messaging (1..50 code points, no lone surrogate), checked here so that `connect()` fails fast. */
function plausibleIdentity(ident: string): boolean {
  if (ident.length === 0 || /\p{Cs}/u.test(ident)) return false;
  let n = 0;
  for (const _ of ident) if (++n > 50) return false;
  return true;
}
