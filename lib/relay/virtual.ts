/**
 * Relayed connections: a connection offered to Messaging that runs through
 * a relay, as one stream of ordinary packets wrapped in RELAY frames on the
 * connection to that relay. Messaging does its whole protocol over it
 * (handshake, acknowledgements, keepalive, re-sends), end to end with the
 * remote peer. Here: opening and closing one, sending on it within the flow
 * control window, and handing over what arrives for it.
 * @module
 */
import { Buffer } from 'node:buffer';
import { PacketTooLargeError, RelayError, UnknownConnectionError } from '../errors.js';
import type { ConnectionInfo, ConnId } from '../link/types.js';
import { FrameType, MAX_IDENT_BYTES, truncateIdent } from '../messaging/frames.js';
import { createLogger } from '../util/log.js';
import { CloseReason, Control, encodePairControl, encodeRelayHead, type RelayHead } from './frames.js';
import type { RealConn, RelayCore, VirtualConn } from './state.js';

const log = createLogger('snakemq:relay');
const REASONS: Record<number, string> = {
  [CloseReason.CLOSED]: 'closed',
  [CloseReason.UNREACHABLE]: 'unreachable',
  [CloseReason.REFUSED]: 'refused',
  [CloseReason.OVERFLOW]: 'overflow',
  [CloseReason.HOP_LIMIT]: 'hop-limit',
};

/** The name of a CLOSE reason byte. */
export function reasonName(reason: number): string {
  return REASONS[reason] ?? `reason ${reason}`;
}

/** Opens a relayed connection to `remote` over `real` and tells Messaging; null when at `maxRelayedConnections`. */
export function openVirtual(r: RelayCore, real: RealConn, remote: string, side: 'connector' | 'listener'): VirtualConn | null {
  if (r.virtuals.size >= r.options.maxRelayedConnections) {
    log(`not opening a relayed connection to ${remote}: ${r.virtuals.size} open (maxRelayedConnections)`);
    return null;
  }
  const id: ConnId = r.nextVirtualId++;
  const info: ConnectionInfo = { id, side, endpoint: `relay://${real.ident}/${remote}` };
  const v: VirtualConn = {
    kind: 'virtual',
    id,
    remote,
    real,
    info,
    head: encodeRelayHead(0, r.identity, remote),
    outstanding: 0,
    blocked: false,
    maxPacket: Infinity,
    lastPacketId: 0,
    sentUpTo: 0,
    paused: false,
    closed: false,
    bytesIn: 0,
    bytesOut: 0,
  };
  r.virtuals.set(id, v);
  r.virtualByRemote.set(remote, v);
  real.virtuals.set(remote, v);
  log(`relayed connection ${id} to ${remote} via ${real.ident} (${side})`);
  r.emit('connect', info);
  return v;
}

/**
 * Ends a relayed connection: the remote side is told (CLOSE) unless it
 * told us, and Messaging gets its `disconnect` on the next tick (never from
 * inside a call it made).
 */
export function closeVirtual(r: RelayCore, v: VirtualConn, tellRemote: boolean, why: string): void {
  if (v.closed) return;
  v.closed = true;
  r.virtuals.delete(v.id);
  if (r.virtualByRemote.get(v.remote) === v) r.virtualByRemote.delete(v.remote);
  if (v.real.virtuals.get(v.remote) === v) v.real.virtuals.delete(v.remote);
  if (v.real.lastTarget === v) v.real.lastTarget = null;
  if (v.paused) resumeReal(r, v.real);
  if (tellRemote) r.control(v.real, encodePairControl(Control.CLOSE, CloseReason.CLOSED, r.identity, v.remote));
  log(`relayed connection ${v.id} to ${v.remote} ended: ${why}`);
  process.nextTick(() => r.emit('disconnect', v.id));
}

/** Ends a relayed connection for a failure on it, reported to Messaging as `protocolError` first. */
export function failVirtual(r: RelayCore, v: VirtualConn, error: RelayError | PacketTooLargeError): void {
  if (v.closed) return;
  r.emit('protocolError', v.id, error);
  closeVirtual(r, v, true, error.message);
}

/** The relayed connection `connId` for sending; throws as the Packeter would for a connection that is gone. */
export function sendable(r: RelayCore, connId: ConnId): VirtualConn {
  const v = r.virtuals.get(connId);
  if (v === undefined || v.closed || v.real.closed) throw new UnknownConnectionError(`no connection ${connId}`);
  return v;
}

/** `sendPacket` on a relayed connection: `[head][u32 size][payload][tail]` on the real one. */
export function sendVirtual(r: RelayCore, v: VirtualConn, payload: Uint8Array, tail: Uint8Array | undefined): number {
  const size = payload.byteLength + (tail === undefined ? 0 : tail.byteLength);
  const max = r.below.options.maxPacketSize - v.head.length - 4;
  if (size > max) throw new PacketTooLargeError(size, max);
  const hl = v.head.length;
  const first = Buffer.allocUnsafe(hl + 4 + payload.byteLength);
  v.head.copy(first, 0);
  first.writeUInt32BE(size, hl);
  first.set(payload, hl + 4);
  const id = r.below.sendPacket(v.real.id, first, tail);
  v.outstanding += size;
  v.bytesOut += size;
  v.lastPacketId = id;
  return id;
}

/** Writability of a relayed connection: the real one takes data and the window is not used up. */
export function virtualWritable(r: RelayCore, v: VirtualConn): boolean {
  if (v.closed) return false;
  if (v.outstanding < r.options.window && r.below.isWritable(v.real.id)) return true;
  v.blocked = true;
  return false;
}

/** Credit from the relay for what we sent to `remote`: the window opens again. */
export function onCredit(r: RelayCore, real: RealConn, remote: string, bytes: number): void {
  const v = real.virtuals.get(remote);
  if (v === undefined) return;
  v.outstanding = Math.max(0, v.outstanding - bytes);
  maybeDrain(r, v);
}

/** Emits the `drain` a blocked relayed connection is owed, once it is writable again. */
export function maybeDrain(r: RelayCore, v: VirtualConn): void {
  if (!v.blocked || v.closed || v.outstanding >= r.options.window || !r.below.isWritable(v.real.id)) return;
  v.blocked = false;
  r.emit('drain', v.id);
}

/**
 * A RELAY frame for us from `real` (a relay): to its relayed connection,
 * opened here by the stream's first packet (PROTOCOL_VERSION) when the
 * relay is trusted. The inner IDENTIFICATION must name the source the
 * relay gave, or the connection is closed before anything of it is
 * delivered.
 */
export function receiveVirtual(r: RelayCore, real: RealConn, head: RelayHead, buf: Buffer, end: number): void {
  const innerStart = head.lenAt + 4;
  let v = real.virtuals.get(head.src);
  if (v === undefined) {
    if (!real.trusted || head.hops === 0) {
      r.counters.refused++;
      log(`relayed stream from ${head.src} via ${real.ident} refused: ${head.hops === 0 ? 'not relayed' : 'relay not trusted'}`);
      r.control(real, encodePairControl(Control.CLOSE, CloseReason.REFUSED, r.identity, head.src));
      return;
    }
    // Only a stream's first packet opens it: a late packet of a closed stream must not start a half one.
    if (buf[innerStart] !== FrameType.PROTOCOL_VERSION) {
      r.control(real, encodePairControl(Control.CLOSE, CloseReason.CLOSED, r.identity, head.src));
      return;
    }
    const other = r.virtualByRemote.get(head.src);
    if (other !== undefined || r.byIdent.has(head.src)) {
      // One connection per remote: a second path is refused, Messaging keeps the one it has.
      r.counters.refused++;
      r.control(real, encodePairControl(Control.CLOSE, CloseReason.REFUSED, r.identity, head.src));
      return;
    }
    v = openVirtual(r, real, head.src, 'listener') ?? undefined;
    if (v === undefined) {
      r.counters.refused++;
      r.control(real, encodePairControl(Control.CLOSE, CloseReason.REFUSED, r.identity, head.src));
      return;
    }
  }
  if (v.closed) return;
  const size = end - innerStart;
  if (size > v.maxPacket) return failVirtual(r, v, new PacketTooLargeError(size, v.maxPacket));
  if (buf[innerStart] === FrameType.IDENTIFICATION) {
    const ident = truncateIdent(buf.toString('utf8', innerStart + 1, Math.min(end, innerStart + 1 + MAX_IDENT_BYTES)));
    if (ident !== v.remote) {
      r.counters.forged++;
      return failVirtual(r, v, new RelayError('forged', `relayed connection from ${v.remote} via ${real.ident} identified itself as '${ident.slice(0, 60)}'`));
    }
  }
  v.bytesIn += size;
  r.sink!(v.id, buf, innerStart, end);
}

/** Pauses reading from a real connection (counted: Messaging's own pause and relayed connections' share it). */
export function pauseReal(r: RelayCore, real: RealConn): void {
  if (real.pauses++ === 0 && !real.closed) r.below.pause(real.id);
}

/** Ends one {@link pauseReal}. */
export function resumeReal(r: RelayCore, real: RealConn): void {
  if (real.pauses > 0 && --real.pauses === 0 && !real.closed) r.below.resume(real.id);
}
