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
import { PacketDecoder } from '../packeter/decoder.js';
import type { Slab } from '../packeter/write-batch.js';
import { Deque } from '../util/deque.js';
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
    slab: null,
    used: 0,
    flushFrom: 0,
    lastPacketId: 0,
    carriers: new Deque(),
    decoder: new PacketDecoder(r.below.options.maxPacketSize),
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
  v.decoder.stop();
  r.dirty.delete(v);
  v.slab = null;
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

/**
 * `allocPacket` on a relayed connection: room for `[u32 size][payload]` in
 * its own batch, which goes out as one RELAY frame (flushed once per tick,
 * or when full). Returns the packet's id; the batch is `v.slab`, the
 * payload starts at the returned offset.
 */
export function allocVirtual(r: RelayCore, v: VirtualConn, size: number): number {
  const need = 4 + size;
  let slab = v.slab;
  if (slab === null || v.used + need > slab.buf.length) {
    flushVirtual(r, v);
    slab = v.slab = newSlab(r, Math.max(need, r.below.options.writeBatchSize));
    v.used = v.flushFrom = 0;
  }
  const at = v.used;
  slab.view.setUint32(at, size);
  v.used = at + need;
  v.outstanding += need;
  v.bytesOut += size;
  if (v.used - v.flushFrom === need) {
    r.dirty.add(v);
    if (!r.flushScheduled) {
      r.flushScheduled = true;
      process.nextTick(flushDirty, r);
    }
  }
  return (v.lastPacketId = r.nextPacketId++);
}

/** `sendPacket` on a relayed connection: after what is batched, a RELAY frame of its own. */
export function sendVirtual(r: RelayCore, v: VirtualConn, payload: Uint8Array, tail: Uint8Array | undefined): number {
  const size = payload.byteLength + (tail === undefined ? 0 : tail.byteLength);
  const max = r.below.options.maxPacketSize - v.head.length - 4;
  if (size > max) throw new PacketTooLargeError(size, max);
  flushVirtual(r, v);
  const hl = v.head.length;
  const first = Buffer.allocUnsafe(hl + 4 + payload.byteLength);
  v.head.copy(first, 0);
  first.writeUInt32BE(size, hl);
  first.set(payload, hl + 4);
  const realId = r.below.sendPacket(v.real.id, first, tail);
  v.outstanding += 4 + size;
  v.bytesOut += size;
  const id = (v.lastPacketId = r.nextPacketId++);
  v.carriers.push([realId, id]);
  return id;
}

/** Hands what is batched for `v` to its real connection as one RELAY frame. */
export function flushVirtual(r: RelayCore, v: VirtualConn): void {
  const slab = v.slab;
  if (slab === null || v.used === v.flushFrom || v.closed || v.real.closed) return;
  // A big run goes by reference: the batch is never written again (a fresh one follows), and kept frames read it.
  const realId = r.below.sendPacket(v.real.id, v.head, slab.buf.subarray(v.flushFrom, v.used));
  v.flushFrom = v.used;
  v.carriers.push([realId, v.lastPacketId]);
}

function flushDirty(r: RelayCore): void {
  r.flushScheduled = false;
  for (const v of r.dirty) flushVirtual(r, v);
  r.dirty.clear();
}

function newSlab(r: RelayCore, size: number): Slab {
  const buf = Buffer.allocUnsafe(size);
  const slab: Slab = {
    buf,
    view: new DataView(buf.buffer, buf.byteOffset, buf.byteLength),
    pending: 0,
    open: true,
    failed: false,
    retained: 0,
    pooled: false,
    tail: 0,
  };
  r.ownSlabs.add(slab);
  return slab;
}

/** The real connection wrote up to `realId`: the relayed packets it carried are written too. */
export function onCarried(r: RelayCore, v: VirtualConn, realId: number): void {
  let last = -1;
  let c;
  while ((c = v.carriers.peek()) !== undefined && c[0] <= realId) {
    last = c[1];
    v.carriers.shift();
  }
  if (last >= 0) r.emit('sent', v.id, last);
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
  const innerStart = head.at;
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
  deliverRun(r, v, buf, innerStart, end);
}

/**
 * The inner packets of one RELAY frame, to Messaging: runs of MESSAGE
 * packets through its run taker, the rest one by one, each IDENTIFICATION
 * checked against the source the relay named. A malformed run ends the
 * relayed connection.
 */
export function deliverRun(r: RelayCore, v: VirtualConn, buf: Buffer, from: number, end: number): void {
  if (v.closed) return;
  // The run taker reads to the end of the buffer it is given: give it this frame's inner packets only.
  const chunk = buf.subarray(from, end);
  const len = chunk.length;
  const run = r.run;
  const decoder = v.decoder;
  let off = 0;
  while (off < len && !v.closed) {
    if (len - off < 4) return failVirtual(r, v, new RelayError('forged', `relayed connection from ${v.remote}: a broken packet in a RELAY frame`));
    const size = chunk.readUInt32BE(off);
    const start = off + 4;
    const stop = start + size;
    if (stop > len || size === 0) return failVirtual(r, v, new RelayError('forged', `relayed connection from ${v.remote}: a broken packet in a RELAY frame`));
    if (size > decoder.maxPacketSize) return failVirtual(r, v, new PacketTooLargeError(size, decoder.maxPacketSize));
    if (run !== undefined && chunk[start] === FrameType.MESSAGE) {
      const next = run(v.id, chunk, off, decoder);
      if (next > off) {
        v.bytesIn += next - off;
        off = next;
        continue;
      }
    }
    if (chunk[start] === FrameType.IDENTIFICATION) {
      const ident = truncateIdent(chunk.toString('utf8', start + 1, Math.min(stop, start + 1 + MAX_IDENT_BYTES)));
      if (ident !== v.remote) {
        r.counters.forged++;
        return failVirtual(
          r,
          v,
          new RelayError('forged', `relayed connection from ${v.remote} via ${v.real.ident} identified itself as '${ident.slice(0, 60)}'`),
        );
      }
    }
    v.bytesIn += 4 + size;
    r.sink!(v.id, chunk, start, stop);
    off = stop;
  }
}

/** Pauses reading from a real connection (counted: Messaging's own pause and relayed connections' share it). */
export function pauseReal(r: RelayCore, real: RealConn): void {
  if (real.pauses++ === 0 && !real.closed) r.below.pause(real.id);
}

/** Ends one {@link pauseReal}. */
export function resumeReal(r: RelayCore, real: RealConn): void {
  if (real.pauses > 0 && --real.pauses === 0 && !real.closed) r.below.resume(real.id);
}
