/**
 * Sending, third step: queued messages are written as MESSAGE frames
 * straight into the Packeter's write batch (once per tick per queue, or at
 * once while the connection takes data and nothing waits ahead), checking
 * writability once per batch's worth; each written message moves in flight
 * (see in-flight), as its entry or, in acknowledged mode, as its frame only.
 * @module
 */
import { Buffer } from 'node:buffer';
import { nextTick } from 'node:process';
import type { ConnId } from '../link/types.js';
import { HEADER_SIZE } from '../packeter/decoder.js';
import type { MessagingCore } from './core.js';
import { QUEUE_ENTRY_OVERHEAD, QueueEntry } from './delivery.js';
import { FLAG_RESENT, writeMessageFrame, writeMessageHeadOf } from './frames.js';
import { Mode } from './handshake.js';
import { FrameRun } from './in-flight.js';
import { PeerQueue, queueOf, wantPeer } from './peer-queue.js';
import { sendAck } from './receive-path.js';

export function schedulePump(s: MessagingCore, queue: PeerQueue): void {
  if (queue.pumpScheduled) return;
  if (queue.conn === null) return wantPeer(s, queue);
  queue.pumpScheduled = true;
  s.dirty.add(queue);
  if (s.pumpTick) return;
  s.pumpTick = true;
  nextTick(() => {
    s.pumpTick = false;
    for (const q of s.dirty) {
      q.pumpScheduled = false;
      pump(s, q);
    }
    s.dirty.clear();
  });
}

export function pump(s: MessagingCore, queue: PeerQueue): void {
  queue.direct = false;
  const conn = queue.conn;
  if (conn === null || conn.mode === Mode.Pending || conn.closing || !s.loaded || s.isClosed) return;
  const items = queue.items;
  // Piggyback a pending acknowledgement on the data going out anyway: one write instead of two.
  if (conn.toAck > 0 && items.length > 0) sendAck(s, conn);
  const resentFlag = conn.mode === Mode.Ack ? FLAG_RESENT : 0;
  const connId = conn.id;
  // Writability only changes when the packeter hands a batch to the socket: check once per batch's worth.
  const recheck = s.packeter.options.writeBatchSize;
  let budget = queue.budget;
  const queued = items.length;
  while (items.length > 0) {
    if (budget <= 0) {
      if (!s.packeter.isWritable(connId)) break;
      budget = recheck;
    }
    budget -= write(s, queue, connId, items.shift()!, resentFlag);
  }
  queue.budget = budget;
  conn.messagesOut += queued - items.length;
  queue.direct = items.length === 0;
}

/** Writes `entry` at once if the connection still takes data without buffering more. */
export function writeNow(s: MessagingCore, queue: PeerQueue, entry: QueueEntry): boolean {
  const conn = queue.conn!;
  if (conn.closing) return (queue.direct = false);
  if (queue.budget <= 0) {
    if (!s.packeter.isWritable(conn.id)) return false;
    queue.budget = s.packeter.options.writeBatchSize;
  }
  if (conn.toAck > 0) sendAck(s, conn);
  conn.messagesOut++;
  queue.budget -= write(s, queue, conn.id, entry, conn.mode === Mode.Ack ? FLAG_RESENT : 0);
  return true;
}

/** Hands one entry's MESSAGE frame to the packeter and moves it in flight; returns the bytes written. */
export function write(s: MessagingCore, queue: PeerQueue, connId: ConnId, entry: QueueEntry, resentFlag: number): number {
  const data = entry.data;
  const size = data.length + 25;
  const extraFlags = entry.resent ? resentFlag : 0;
  const packeter = s.packeter;
  if (size + 4 > packeter.options.writeBatchSize) {
    // Big data goes to the socket by reference, behind its 25-byte head.
    const head = Buffer.allocUnsafe(25);
    writeMessageHeadOf(head, entry.flags, entry.uuidView, entry.uuidOffset, entry.ttl, extraFlags);
    entry.packetId = packeter.sendPacket(connId, head, data);
  } else {
    const id = (entry.packetId = packeter.allocPacket(connId, size));
    const offset = packeter.allocatedOffset;
    writeMessageFrame(packeter.allocated, packeter.allocatedView, offset, data, entry.flags, entry.uuidView, entry.uuidOffset, entry.ttl, extraFlags);
    // Acknowledged mode, and nothing needs the entry until the ACK: keep its frame only (no object alive per message in flight).
    if (resentFlag !== 0 && entry.detachable && queue.tracker.writtenWaiters === 0 && !s.deliveryListened) {
      keepFrame(s, queue, entry, id, offset - HEADER_SIZE, offset + size);
      return size + 4;
    }
  }
  queue.inflight.push(entry);
  queue.openRun = null;
  queue.inflightCount++;
  return size + 4;
}

/** Keeps the frame just written at `[start, end)` of the packeter's batch as the entry's place in flight, and lets the entry go. */
export function keepFrame(s: MessagingCore, queue: PeerQueue, entry: QueueEntry, packetId: number, start: number, end: number): void {
  const slab = s.packeter.allocatedSlab!;
  const seq = entry.seq > 0 ? entry.seq : queue.nextSeq++;
  const cost = entry.data.length + QUEUE_ENTRY_OVERHEAD;
  const run = queue.openRun;
  if (run !== null && run.end === start && run.slab === slab && run.firstSeq + run.count === seq) {
    run.end = end;
    run.count++;
    run.cost += cost;
    run.lastPacketId = packetId;
  } else {
    s.packeter.retain(slab);
    queue.inflight.push((queue.openRun = new FrameRun(slab, start, end, seq, 1, cost, packetId)));
  }
  queue.inflightCount++;
  queue.tracker.wrote(packetId);
  entry.detach(queue.tracker, seq);
}

export function onDrain(s: MessagingCore, connId: ConnId): void {
  const conn = s.conns.get(connId);
  if (conn?.ident != null) schedulePump(s, queueOf(s, conn.ident));
}
