/**
 * Sending, last step: messages written and not yet acknowledged. In
 * acknowledged mode consecutive frames are kept as a {@link FrameRun} of the
 * write batch instead of an object per message; an ACK takes them off the
 * front, a disconnect puts them back into the queue. A plain protocol-1 peer
 * cannot acknowledge: there a message leaves once written (`sent`).
 * @module
 */
import { Buffer } from 'node:buffer';
import { ProtocolError, SnakeMQError } from '../errors.js';
import type { ConnId } from '../link/types.js';
import { HEADER_SIZE } from '../packeter/decoder.js';
import type { Slab } from '../packeter/packeter.js';
import { checkDrain } from './backpressure.js';
import type { MessagingCore } from './core.js';
import { QUEUE_ENTRY_OVERHEAD, QueueEntry } from './delivery.js';
import { fail, Mode, type PeerConn } from './handshake.js';
import { Message, viewOf } from './message.js';
import { PeerQueue, queueOf, retire } from './peer-queue.js';
import { unstore } from './persist.js';
/**
 * Consecutive MESSAGE frames of detached entries (see `QueueEntry.detach`) in
 * flight, as written in a retained write batch: what a re-send needs is these
 * bytes, so no object per message stays alive until it is acknowledged.
 */
/** */
export class FrameRun {
  constructor(
    readonly slab: Slab,
    /** Where the first frame not acknowledged yet starts (at its 4-byte header). */
    public start: number,
    /** Where the last frame ends. */
    public end: number,
    /** Sequence number of the first frame. */
    public firstSeq: number,
    public count: number,
    /** What the frames count against the queue's byte limit. */
    public cost: number,
    public lastPacketId: number,
  ) {}
}

/** @internal */
export type InFlight = QueueEntry | FrameRun;

/**
 * Entries for the first `k` frames of a run, copied out of its write batch,
 * with the sequence numbers of the detached entries (which learn their fate
 * from them).
 */
export function runEntries(s: MessagingCore, queue: PeerQueue, run: FrameRun, k: number): QueueEntry[] {
  const slabView = run.slab.view;
  let to = run.start;
  for (let i = 0; i < k; i++) to += HEADER_SIZE + slabView.getUint32(to);
  const buf = Buffer.from(run.slab.buf.subarray(run.start, to));
  const view = viewOf(buf);
  const out: QueueEntry[] = [];
  let off = 0;
  for (let i = 0; i < k; i++) {
    const start = off + HEADER_SIZE;
    const end = start + view.getUint32(off);
    out.push(QueueEntry.ofFrame(queue.ident, buf, view, start, end, run.firstSeq + i, queue.tracker));
    off = end;
  }
  return out;
}

/**
 * Acknowledges the first `k` messages of the run at the front of the
 * in-flight list; calls `each` (when given) with each one's message.
 */
export function ackRun(s: MessagingCore, queue: PeerQueue, run: FrameRun, k: number, each: ((message: Message) => void) | null): void {
  if (each !== null) for (const e of runEntries(s, queue, run, k)) each(e.message);
  const lastSeq = run.firstSeq + k - 1;
  if (k === run.count) {
    queue.inflight.shift();
    if (queue.openRun === run) queue.openRun = null;
    if (queue.written > 0) queue.written--;
    queue.bytes -= run.cost;
    s.packeter.release(run.slab);
  } else {
    const view = run.slab.view;
    let off = run.start;
    let cost = 0;
    for (let i = 0; i < k; i++) {
      const size = view.getUint32(off);
      cost += size - 25 + QUEUE_ENTRY_OVERHEAD;
      off += HEADER_SIZE + size;
    }
    run.start = off;
    run.cost -= cost;
    queue.bytes -= cost;
    run.firstSeq += k;
    run.count -= k;
  }
  queue.count -= k;
  queue.inflightCount -= k;
  queue.tracker.acked(lastSeq);
}

export function onAck(s: MessagingCore, conn: PeerConn, count: number): void {
  if (conn.ident === null || conn.mode !== Mode.Ack) return;
  const queue = queueOf(s, conn.ident);
  if (count > queue.inflightCount) {
    return fail(s, conn, new ProtocolError(`peer acknowledged ${count} messages, only ${queue.inflightCount} in flight`));
  }
  const emitAck = s.emitter.listenerCount('acknowledged') > 0;
  const emitSent = s.emitter.listenerCount('sent') > 0;
  const inflight = queue.inflight;
  const ident = conn.ident;
  const each = emitAck ? (message: Message) => s.emitter.emit('acknowledged', ident, message) : null;
  const removed: Buffer[] = [];
  while (count > 0) {
    const item = inflight.peek()!;
    if (item instanceof FrameRun) {
      const k = Math.min(count, item.count);
      ackRun(s, queue, item, k, each);
      count -= k;
      continue;
    }
    inflight.shift();
    queue.inflightCount--;
    count--;
    if (queue.written > 0) queue.written--;
    else if (emitSent) s.emitter.emit('sent', ident, item.message);
    retire(s, queue, item, removed);
    if (emitAck) s.emitter.emit('acknowledged', ident, item.message);
  }
  unstore(s, ident, removed);
  if (queue.blocked) checkDrain(s, queue);
}

export function onSent(s: MessagingCore, connId: ConnId, lastId: number): void {
  const conn = s.conns.get(connId);
  if (conn === undefined || conn.ident === null || s.byIdent.get(conn.ident) !== conn) return;
  const queue = queueOf(s, conn.ident);
  const inflight = queue.inflight;
  const emitSent = s.emitter.listenerCount('sent') > 0;
  if (conn.mode === Mode.Legacy) {
    // A plain protocol-1 peer cannot acknowledge: a message leaves the queue once its bytes were written.
    const removed: Buffer[] = [];
    let entry;
    while ((entry = inflight.peek()) !== undefined && !(entry instanceof FrameRun) && entry.packetId <= lastId) {
      inflight.shift();
      queue.inflightCount--;
      retire(s, queue, entry, removed);
      if (emitSent) s.emitter.emit('sent', conn.ident, entry.message);
    }
    unstore(s, conn.ident, removed);
    if (queue.blocked) checkDrain(s, queue);
    return;
  }
  const tracker = queue.trackerIfAny;
  if (tracker !== null) tracker.sent(lastId);
  // Writes are tracked one by one only for someone who asked (acknowledgements settle the rest).
  if (!emitSent && (tracker === null || tracker.writtenWaiters === 0)) return;
  let item;
  while ((item = inflight.at(queue.written)) !== undefined) {
    if (item instanceof FrameRun) {
      // Detached frames: their entries learn it from the tracker.
      if (item.lastPacketId > lastId) break;
      queue.written++;
      continue;
    }
    if (item.packetId > lastId) break;
    queue.written++;
    item.markWritten();
    if (emitSent) s.emitter.emit('sent', conn.ident, item.message);
  }
}

/** At a disconnect: everything not known delivered goes back to the front of the queue, in order, for the next connection. */
export function requeueInFlight(s: MessagingCore, queue: PeerQueue): void {
  const back: QueueEntry[] = [];
  for (const item of queue.inflight.drain()) {
    if (item instanceof FrameRun) {
      // Detached messages: made again from their frames, which the write batch kept.
      for (const e of runEntries(s, queue, item, item.count)) back.push(e);
      s.packeter.release(item.slab);
    } else {
      item.resent = true;
      back.push(item);
    }
  }
  queue.openRun = null;
  queue.inflightCount = 0;
  queue.written = 0;
  queue.trackerIfAny?.disconnected();
  queue.items.unshiftAll(back);
}

/** At close: everything in flight is dropped with `reason`. */
export function dropAllInFlight(s: MessagingCore, queue: PeerQueue, reason: SnakeMQError): void {
  for (const item of queue.inflight.drain()) {
    if (item instanceof FrameRun) {
      queue.tracker.dropped(item.firstSeq, item.firstSeq + item.count - 1, reason);
      s.packeter.release(item.slab);
    } else item.drop(reason);
  }
  queue.openRun = null;
  queue.inflightCount = 0;
}
