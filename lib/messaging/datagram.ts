/**
 * Messaging over `udp://` (see docs/datagrams.md): each message is one
 * datagram of two snakeMQ packets, `[u32 len][IDENTIFICATION of the
 * sender][u32 len][MESSAGE]` (docs/protocol.md, "Datagrams"). Sending: a
 * udp connector's connection is bound to the identity its `identity` option
 * names, at once; `send()` to that identity builds the datagram and hands it
 * to the socket — no queue, no acknowledgement, no storage (persistent
 * messages are refused), `delivered()` settles once it was written.
 * Receiving: a listener's datagrams are parsed strictly, the sender's claimed
 * identity goes through `authorize` (with a ConnectionInfo marked
 * `datagram`), and the message goes to dispatch like any other. A bad
 * datagram is counted and dropped; nothing else happens.
 * @module
 */
import { Buffer, isUtf8 } from 'node:buffer';
import { DatagramPersistentError, DatagramTooLargeError, type SnakeMQError } from '../errors.js';
import type { ConnectionInfo, ConnId } from '../link/types.js';
import { HEADER_SIZE } from '../packeter/decoder.js';
import { createLogger } from '../util/log.js';
import type { MessagingCore } from './core.js';
import { deliver, safeEmit } from './dispatch.js';
import { FrameType, isValidIdent, MAX_IDENT_BYTES, MESSAGE_HEADER_SIZE, WIRE_TTL_INFINITE, encodeIdentification, writeMessageFrame } from './frames.js';
import { FLAG_PERSISTENT, Message, viewOf } from './message.js';
import type { Delivery, DeliveryState } from './types.js';

const log = createLogger('snakemq:messaging');
/** At most one log line about bad datagrams per this many ms (the count of the others is in it). */
const BAD_LOG_INTERVAL = 1_000;
/** Bytes of a MESSAGE frame without data. */
const MESSAGE_FRAME_MIN = 1 + MESSAGE_HEADER_SIZE;
/** The shortest datagram: a 1-byte identity and a MESSAGE without data. */
export const MIN_DATAGRAM_SIZE = HEADER_SIZE + 2 + HEADER_SIZE + MESSAGE_FRAME_MIN;

/** Counters of a Messaging's datagrams (see {@link Messaging.datagramCounters}). */
export interface DatagramCounters {
  /** Datagrams received from `udp://` listeners. */
  received: number;
  /** Of those, handed over as messages (hooks, `message`, iterators). */
  delivered: number;
  /** Dropped: not exactly `[u32 len][IDENTIFICATION][u32 len][MESSAGE]` with consistent lengths. */
  malformed: number;
  /** Dropped: the identity is empty, not UTF-8, over 50 characters, or this peer's own. */
  badIdentity: number;
  /** Dropped: the `authorize` policy refused the claimed identity (or threw). */
  unauthorized: number;
  /** Messages sent as datagrams (handed to the socket). */
  sent: number;
  /** Messages whose datagram the socket failed to send (their delivery rejected). */
  sendFailed: number;
}

/** What a valid datagram holds: the claimed sender and where its MESSAGE frame starts (it ends with the datagram). */
export interface ParsedDatagram {
  readonly ident: string;
  readonly start: number;
}

/** Why {@link parseDatagram} refused a datagram. */
export type DatagramProblem = 'malformed' | 'identity';

/**
 * Strictly parses one datagram (see the module): exactly two packets, an
 * IDENTIFICATION of 1 to 200 bytes of valid UTF-8 making 1 to 50 characters
 * without lone surrogates, then a MESSAGE of at least 25 bytes ending the
 * datagram. Reads only `buf`; allocates only the identity string.
 */
export function parseDatagram(buf: Buffer, cache?: IdentCache): ParsedDatagram | DatagramProblem {
  const len = buf.length;
  if (len < MIN_DATAGRAM_SIZE) return 'malformed';
  const identLen = buf.readUInt32BE(0);
  if (identLen < 2 || identLen > 1 + MAX_IDENT_BYTES || buf[HEADER_SIZE] !== FrameType.IDENTIFICATION) return 'malformed';
  const mOff = HEADER_SIZE + identLen;
  if (mOff + HEADER_SIZE + MESSAGE_FRAME_MIN > len) return 'malformed';
  const mLen = buf.readUInt32BE(mOff);
  const start = mOff + HEADER_SIZE;
  if (mLen < MESSAGE_FRAME_MIN || start + mLen !== len || buf[start] !== FrameType.MESSAGE) return 'malformed';
  // A stream of datagrams from one sender repeats its identity: checked once, then compared bytewise.
  if (cache !== undefined && cache.ident !== null && cache.holds(buf, HEADER_SIZE + 1, mOff)) return { ident: cache.ident, start };
  if (!isUtf8(buf.subarray(HEADER_SIZE + 1, mOff))) return 'identity';
  const ident = buf.toString('utf8', HEADER_SIZE + 1, mOff);
  if (!isValidIdent(ident)) return 'identity';
  if (cache !== undefined) {
    cache.length = buf.copy(cache.bytes, 0, HEADER_SIZE + 1, mOff);
    cache.ident = ident;
  }
  return { ident, start };
}

/** The last valid identity {@link parseDatagram} saw, as bytes (a fixed 200-byte buffer) and as a string. */
export class IdentCache {
  readonly bytes = Buffer.alloc(MAX_IDENT_BYTES);
  length = 0;
  ident: string | null = null;

  /** Whether `buf[from, to)` are the cached identity's bytes. */
  holds(buf: Buffer, from: number, to: number): boolean {
    const n = to - from;
    if (n !== this.length) return false;
    const b = this.bytes;
    for (let i = 0; i < n; i++) if (buf[from + i] !== b[i]) return false;
    return true;
  }
}

/** Per-Messaging datagram state, made at the first udp connector or datagram. */
export class DatagramState {
  readonly counters: DatagramCounters = { received: 0, delivered: 0, malformed: 0, badIdentity: 0, unauthorized: 0, sent: 0, sendFailed: 0 };
  /** Connector connection → the identity it is bound to. */
  readonly byConn = new Map<ConnId, { ident: string; max: number }>();
  /** This peer's IDENTIFICATION packet, the head of every datagram it sends. */
  readonly identPacket: Buffer;
  /** The identity of the last good datagram (see {@link parseDatagram}). */
  readonly identCache = new IdentCache();
  lastBadLog = 0;
  badSinceLog = 0;

  constructor(identity: string) {
    const frame = encodeIdentification(identity);
    this.identPacket = Buffer.allocUnsafe(HEADER_SIZE + frame.length);
    this.identPacket.writeUInt32BE(frame.length, 0);
    frame.copy(this.identPacket, HEADER_SIZE);
  }
}

/** The datagram state of `s`, made on first use. */
export function datagramState(s: MessagingCore): DatagramState {
  return (s.datagrams ??= new DatagramState(s.identity));
}

/** A udp connector's connection: bound to its identity at once (no handshake). */
export function onDatagramConnect(s: MessagingCore, info: ConnectionInfo): void {
  const ident = info.identity;
  if (info.side !== 'connector' || ident === undefined) return;
  if (!isValidIdent(ident) || ident === s.identity) {
    log(`udp connector ${info.endpoint}: identity '${ident}' cannot be a peer's; nothing is sent through it`);
    return;
  }
  const d = datagramState(s);
  d.byConn.set(info.id, { ident, max: info.maxDatagramSize ?? Number.MAX_SAFE_INTEGER });
  (s.udpRoutes ??= new Map()).set(ident, info.id);
  log(`${ident}: reached by datagrams through ${info.endpoint} (conn ${info.id})`);
}

/** A udp connector was removed (or the link closed): its identity is no longer reached by datagrams. */
export function onDatagramDisconnect(s: MessagingCore, connId: ConnId): void {
  const route = s.datagrams?.byConn.get(connId);
  if (route === undefined) return;
  s.datagrams!.byConn.delete(connId);
  const routes = s.udpRoutes;
  if (routes !== null && routes.get(route.ident) === connId) {
    routes.delete(route.ident);
    // Another udp connector for the same identity takes over, else none is left.
    for (const [id, other] of s.datagrams!.byConn) if (other.ident === route.ident) routes.set(route.ident, id);
    if (routes.size === 0) s.udpRoutes = null;
  }
}

/**
 * `send()` to an identity bound to a udp connector: one datagram now.
 * @throws {@link DatagramPersistentError} for a persistent message.
 * @throws {@link DatagramTooLargeError} when the datagram would be over the connector's `maxDatagramSize`.
 */
export function sendDatagram(s: MessagingCore, ident: string, connId: ConnId, message: Message | Uint8Array | string): Delivery {
  const d = datagramState(s);
  const route = d.byConn.get(connId)!;
  const m = message instanceof Message ? message : new Message(message);
  if ((m.flags & FLAG_PERSISTENT) !== 0) {
    throw new DatagramPersistentError(`'${ident}' is reached over udp:// only: a persistent message cannot be kept until delivered there`);
  }
  const data = m.data;
  const head = d.identPacket;
  const size = head.length + HEADER_SIZE + MESSAGE_FRAME_MIN + data.length;
  if (size > route.max) {
    throw new DatagramTooLargeError(
      `a message of ${data.length} bytes for '${ident}' makes a datagram of ${size} bytes, over maxDatagramSize ${route.max}`,
      size,
      route.max,
    );
  }
  const out = Buffer.allocUnsafe(size);
  head.copy(out, 0);
  out.writeUInt32BE(MESSAGE_FRAME_MIN + data.length, head.length);
  writeMessageFrame(out, viewOf(out), head.length + HEADER_SIZE, data, m.flags, m.uuidSource, m.uuidOffset, m.ttl, 0);
  const delivery = new DatagramDelivery(ident, m);
  const written = (error?: SnakeMQError): void => {
    if (error === undefined) {
      d.counters.sent++;
      delivery.settle(null);
      safeEmit(s, 'sent', ident, m);
    } else {
      d.counters.sendFailed++;
      delivery.settle(error);
      safeEmit(s, 'drop', ident, m, error);
    }
  };
  // The Packeter itself (a layer between it and Messaging, such as a relay, does not carry datagrams).
  s.emitter.packeter.sendDatagram(connId, out, written);
  return delivery;
}

/** A listener's datagram: parsed, authorized, delivered — or counted and dropped. */
export function onDatagram(s: MessagingCore, connId: ConnId, buf: Buffer, address: string, port: number): void {
  if (s.isClosed) return;
  const d = datagramState(s);
  const c = d.counters;
  c.received++;
  const parsed = parseDatagram(buf, d.identCache);
  if (typeof parsed === 'string') {
    if (parsed === 'malformed') c.malformed++;
    else c.badIdentity++;
    return bad(d, `malformed datagram (${parsed}) of ${buf.length} bytes from ${address}:${port}`);
  }
  const ident = parsed.ident;
  if (ident === s.identity) {
    c.badIdentity++;
    return bad(d, `datagram from ${address}:${port} claims this peer's own identity '${ident}'`);
  }
  const authorize = s.options.authorize;
  if (authorize !== null) {
    const info: ConnectionInfo = {
      id: connId,
      side: 'listener',
      endpoint: s.packeter.connection(connId)?.endpoint ?? 'udp',
      remoteAddress: address,
      remotePort: port,
      datagram: true,
    };
    let allowed = false;
    try {
      allowed = authorize(ident, info) === true;
    } catch {
      // A throwing policy refuses.
    }
    if (!allowed) {
      c.unauthorized++;
      return bad(d, `datagram from ${address}:${port} claiming '${ident}' refused by authorize`);
    }
  }
  const start = parsed.start;
  const view = viewOf(buf);
  const ttl = view.getUint32(start + 17);
  c.delivered++;
  deliver(s, connId, ident, Message.fromFrame(buf, view, start, buf.length, ttl === WIRE_TTL_INFINITE ? null : ttl, view.getUint32(start + 21)));
}

function bad(d: DatagramState, what: string): void {
  if (!log.enabled) return;
  const now = Date.now();
  if (now - d.lastBadLog < BAD_LOG_INTERVAL) {
    d.badSinceLog++;
    return;
  }
  const more = d.badSinceLog > 0 ? ` (and ${d.badSinceLog} more bad datagrams since the last report)` : '';
  d.lastBadLog = now;
  d.badSinceLog = 0;
  log(`${what}: dropped${more}`);
}

/** The {@link Delivery} of a datagram: written (and so delivered, as far as this side will ever know) or failed. */
class DatagramDelivery implements Delivery {
  state: DeliveryState = 'queued';
  #error: SnakeMQError | null = null;
  #waiting: { promise: Promise<void>; resolve: () => void; reject: (e: SnakeMQError) => void } | null = null;

  constructor(
    readonly ident: string,
    readonly message: Message,
  ) {}

  /** At once: a datagram is never stored. */
  persisted(): Promise<void> {
    return Promise.resolve();
  }

  written(): Promise<void> {
    if (this.state === 'written') return Promise.resolve();
    if (this.#error !== null) return Promise.reject(this.#error);
    if (this.#waiting === null) {
      let resolve!: () => void;
      let reject!: (e: SnakeMQError) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.#waiting = { promise, resolve, reject };
    }
    return this.#waiting.promise;
  }

  /** The same as {@link written}: no acknowledgement ever comes for a datagram. */
  delivered(): Promise<void> {
    return this.written();
  }

  settle(error: SnakeMQError | null): void {
    this.state = error === null ? 'written' : 'dropped';
    this.#error = error;
    const w = this.#waiting;
    if (w === null) return;
    if (error === null) w.resolve();
    else w.reject(error);
  }
}
