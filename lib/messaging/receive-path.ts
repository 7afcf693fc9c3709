/**
 * Receiving: every packet of a connection, MESSAGE frames first (one loop
 * over a chunk's run of them, dedup of re-sent ones), then the other frame
 * types; messages go on to dispatch. Also the ACK batching of what was
 * received (a few at once, a busy stream once per event-loop turn).
 * @module
 */
import { Buffer } from 'node:buffer';
import { IncompatibleProtocolError, SnakeMQError } from '../errors.js';
import type { ConnId } from '../link/types.js';
import { HEADER_SIZE, type PacketDecoder, wholePacketEnd } from '../packeter/decoder.js';
import { createLogger } from '../util/log.js';
import type { MessagingCore } from './core.js';
import { deliver } from './dispatch.js';
import {
  decodeFrame,
  encodeAck,
  encodeIncompatibleProtocol,
  encodePong,
  FEATURE_ACK,
  FLAG_RESENT,
  FrameType,
  messageBeforeIdentification,
  PROTOCOL_VERSION,
  WIRE_TTL_INFINITE,
} from './frames.js';
import { fail, Mode, onIdentification, type PeerConn, probeAnswered, settleMode } from './handshake.js';
import { onAck } from './in-flight.js';
import { Message, viewOf } from './message.js';
import { decodeRefused, FRAME_REFUSED } from './refusal.js';
import { RecentUuids } from './uuid-window.js';

const log = createLogger('snakemq:messaging');
const VIEW_CACHE_LIMIT = 1024 * 1024;
/** Fewer messages than this received in one go are acknowledged at once (after their handlers); more wait (see ackLater). */
const ACK_NOW_BELOW = 64;
/** A busy stream's ACK waits for more messages (one turn at a time, while they keep coming) up to this many. */
const ACK_BATCH = 8192;
/** ...but for at most this many turns. */
const ACK_MAX_DEFERS = 16;
const RESOLVED: Promise<void> = Promise.resolve();

export function onPacket(s: MessagingCore, connId: ConnId, buf: Buffer, start: number, end: number): void {
  let conn = s.lastConn;
  if (conn === null || conn.id !== connId) {
    conn = s.conns.get(connId) ?? null;
    if (conn === null) return;
    s.lastConn = conn;
  }
  if (conn.closing) return;
  conn.alive = true;
  if (conn.stash !== null) {
    // Its identity is being checked: nothing of it is looked at before that is decided (see claim).
    conn.stash.push(Buffer.from(buf.subarray(start, end)));
    return;
  }
  if (conn.probedBy !== null) probeAnswered(s, conn);
  if (end - start >= 25 && buf[start] === FrameType.MESSAGE && conn.ident !== null) {
    if (conn.mode === Mode.Pending) settleMode(s, conn, Mode.Legacy);
    const view = viewFor(s, buf);
    const ttl = view.getUint32(start + 17);
    return onMessage(s, conn, conn.ident, buf, view, start, end, ttl === WIRE_TTL_INFINITE ? null : ttl, view.getUint32(start + 21));
  }
  const payload = buf.subarray(start, end);
  let frame;
  try {
    frame = decodeFrame(payload);
  } catch (error) {
    fail(s, conn, error as SnakeMQError);
    return;
  }
  switch (frame.type) {
    case FrameType.MESSAGE:
      // Well-formed messages from identified peers took the fast path above.
      return fail(s, conn, messageBeforeIdentification());
    case FrameType.ACK:
      return onAck(s, conn, frame.count);
    case FrameType.PROTOCOL_VERSION:
      if (frame.version !== PROTOCOL_VERSION) {
        s.packeter.sendPacket(connId, encodeIncompatibleProtocol());
        return fail(s, conn, new IncompatibleProtocolError(`peer speaks protocol version ${frame.version}, not ${PROTOCOL_VERSION}`));
      }
      return;
    case FrameType.INCOMPATIBLE_PROTOCOL:
      return fail(s, conn, new IncompatibleProtocolError('peer reported our protocol version as incompatible'));
    case FrameType.IDENTIFICATION:
      return onIdentification(s, conn, frame.ident);
    case FrameType.PING:
      settleMode(s, conn, Mode.Legacy);
      s.packeter.sendPacket(connId, encodePong());
      return;
    case FrameType.PONG:
      settleMode(s, conn, Mode.Legacy);
      return;
    case FrameType.EXTENSIONS:
      if (conn.ident !== null && conn.mode === Mode.Pending) {
        conn.peerAcks = (frame.features & FEATURE_ACK) !== 0 && s.options.acknowledgements;
        settleMode(s, conn, conn.peerAcks ? Mode.Ack : Mode.Legacy);
      }
      return;
    default:
      if (frame.code === FRAME_REFUSED) {
        // The peer is about to close: remember why, for handshakeFailed.
        conn.failure = conn.refusal = decodeRefused(payload, conn.ident ?? conn.endpoint);
        return;
      }
      if (conn.ident !== null) settleMode(s, conn, Mode.Legacy);
      log(`conn ${connId}: ignoring unknown frame type ${frame.code}`);
  }
}

/**
 * The common case of {@link onPacket} in one loop: consecutive whole MESSAGE
 * packets of a chunk from an identified peer. Stops (for the general path) at
 * anything else: another frame type, a short or re-sent message, a packet
 * not wholly in the chunk or over the size limit.
 */
export function onRun(s: MessagingCore, connId: ConnId, chunk: Buffer, off: number, decoder: PacketDecoder): number {
  const conn = s.lastConn;
  if (conn === null || conn.id !== connId) return off;
  const ident = conn.ident;
  if (ident === null || conn.closing || conn.mode === Mode.Pending) return off;
  const view = viewFor(s, chunk);
  const len = chunk.length;
  const max = decoder.maxPacketSize;
  const acks = conn.peerAcks;
  const recent = acks && s.options.dedupWindow > 0 ? (conn.recent ?? recentOf(s, conn, ident)) : null;
  const from = off;
  for (;;) {
    const end = wholePacketEnd(view, len, off, max);
    const start = off + HEADER_SIZE;
    if (end < 0 || end - start < 25 || chunk[start] !== FrameType.MESSAGE) break;
    const flags = view.getUint32(start + 21);
    if (acks && (flags & FLAG_RESENT) !== 0) break;
    off = end;
    conn.messagesIn++;
    if (recent !== null) recent.record(view, start + 1);
    if (acks && conn.toAck++ === 0 && !conn.ackQueued && conn.ackImmediate === null) {
      conn.ackQueued = true;
      void RESOLVED.then(conn.ackCheck);
    }
    const ttl = view.getUint32(start + 17);
    deliver(s, connId, ident, Message.fromFrame(chunk, view, start, end, ttl === WIRE_TTL_INFINITE ? null : ttl, flags));
    if (conn.closing || decoder.stopped) break;
  }
  if (off !== from) {
    conn.alive = true;
    if (conn.probedBy !== null) probeAnswered(s, conn);
  }
  return off;
}

/**
 * A DataView over a received buffer. Packets of one socket read share its
 * buffer: one view serves them all (not kept for a big buffer, which holds
 * one message and should not outlive it).
 */
export function viewFor(s: MessagingCore, buf: Buffer): DataView {
  if (buf === s.inBuf) return s.inView;
  const view = viewOf(buf);
  if (buf.length <= VIEW_CACHE_LIMIT) {
    s.inView = view;
    s.inBuf = buf;
  }
  return view;
}

/** The identity's recent uuids, kept across its connections. */
export function recentOf(s: MessagingCore, conn: PeerConn, ident: string): RecentUuids {
  let recent = s.dedup.get(ident);
  if (recent === undefined) s.dedup.set(ident, (recent = new RecentUuids(s.options.dedupWindow)));
  conn.recent = recent;
  return recent;
}

export function onMessage(
  s: MessagingCore,
  conn: PeerConn,
  ident: string,
  buf: Buffer,
  view: DataView,
  start: number,
  end: number,
  ttl: number | null,
  flags: number,
): void {
  conn.messagesIn++;
  if (conn.peerAcks) {
    let fresh = true;
    const resent = (flags & FLAG_RESENT) !== 0;
    if (resent) flags = (flags & ~FLAG_RESENT) >>> 0;
    if (s.options.dedupWindow > 0) {
      const recent = conn.recent ?? recentOf(s, conn, ident);
      if (resent) fresh = recent.checkResent(view, start + 1);
      else recent.record(view, start + 1);
    }
    if (conn.toAck++ === 0 && !conn.ackQueued && conn.ackImmediate === null) {
      conn.ackQueued = true;
      void RESOLVED.then(conn.ackCheck);
    }
    if (!fresh) {
      log(`conn ${conn.id}: duplicate ${buf.toString('hex', start + 1, start + 17)} from ${ident} not delivered again`);
      return;
    }
  }
  deliver(s, conn.id, ident, Message.fromFrame(buf, view, start, end, ttl, flags));
}

/**
 * Right after the code that handled the messages of a read (and its
 * microtasks: a reply made there has taken the ACK along already): a few
 * messages are acknowledged now, in the same write batch; a busy stream
 * once per event-loop turn.
 */
export function ackSoon(s: MessagingCore, conn: PeerConn): void {
  conn.ackQueued = false;
  if (conn.toAck === 0 || conn.closing) return;
  if (conn.toAck < ACK_NOW_BELOW) sendAck(s, conn);
  else if (conn.ackImmediate === null) {
    // The turn's check phase comes before the next read could tell whether the stream goes on: wait for one.
    conn.ackSeen = -1;
    conn.ackImmediate = setImmediate(ackLater, s, conn);
  }
}

export function ackLater(s: MessagingCore, conn: PeerConn): void {
  conn.ackImmediate = null;
  // Messages still arriving: one ACK for several reads' worth saves writes on both sides.
  // It goes out at the first turn that brought nothing new, so a sender waiting for it waits one turn at most.
  const n = conn.toAck;
  if (n > conn.ackSeen && n < ACK_BATCH && conn.ackDefers < ACK_MAX_DEFERS && !conn.closing) {
    conn.ackSeen = n;
    conn.ackDefers++;
    conn.ackImmediate = setImmediate(ackLater, s, conn);
    return;
  }
  sendAck(s, conn);
}

export function sendAck(s: MessagingCore, conn: PeerConn): void {
  if (conn.ackImmediate !== null) {
    clearImmediate(conn.ackImmediate);
    conn.ackImmediate = null;
  }
  conn.ackDefers = 0;
  if (conn.toAck === 0 || conn.closing || !s.conns.has(conn.id)) return;
  const count = conn.toAck;
  conn.toAck = 0;
  try {
    s.packeter.sendPacket(conn.id, encodeAck(count));
  } catch (error) {
    // The packeter already let the connection go (closed below Messaging): nothing to acknowledge to.
    log(`conn ${conn.id}: ACK not sent: ${(error as Error).message}`);
  }
}
