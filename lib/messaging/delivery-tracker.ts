/**
 * What happens to messages a queue let go of: a {@link DeliveryTracker} per
 * queue keeps, by sequence number, the fate (written, acknowledged, dropped)
 * of entries that were detached once written (in flight as frames only, see
 * in-flight), so that their `Delivery` promises still settle.
 * @module
 */
import type { SnakeMQError } from '../errors.js';
import type { QueueEntry } from './delivery.js';

interface DropRange {
  from: number;
  to: number;
  reason: SnakeMQError;
}

/** Detached entries per epoch (see {@link TrackerRef}): one WeakRef per this many messages. */
const EPOCH_SIZE = 1024;

/**
 * How an entry refers to its queue's {@link DeliveryTracker}. Entries not
 * detached share the tracker's `root`; detached ones are handed out in
 * epochs of {@link EPOCH_SIZE}: an epoch that was garbage-collected (the
 * tracker holds old epochs through WeakRefs only) means no Delivery of its
 * messages is left to ask about their fate, which is how the tracker knows
 * which drop records it may forget.
 */
export class TrackerRef {
  /** Lowest sequence number detached into this epoch. */
  minSeq = Infinity;
  /** Highest sequence number detached into this epoch. */
  maxSeq = -Infinity;
  constructor(readonly tracker: DeliveryTracker) {}
}

/**
 * Detached entries with a pending promise, in sequence order (they are
 * usually asked in send order: appended; otherwise sorted once, when next
 * looked at). Settled ones stay until they reach the front, so that no
 * removal is ever a search or a shift of the list.
 */
class WatchList {
  private items: (QueueEntry | undefined)[] = [];
  private head = 0;
  private sorted = true;

  add(entry: QueueEntry): void {
    const items = this.items;
    if (items.length > this.head && items[items.length - 1]!.seq > entry.seq) this.sorted = false;
    items.push(entry);
  }

  private sort(): void {
    this.items = (this.items.slice(this.head) as QueueEntry[]).sort((a, b) => a.seq - b.seq);
    this.head = 0;
    this.sorted = true;
  }

  /** Calls `fn` on every watched entry numbered `from` to `to` (binary search to the first). */
  each(from: number, to: number, fn: (e: QueueEntry) => void): void {
    if (!this.sorted) this.sort();
    const items = this.items;
    let lo = this.head;
    let hi = items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (items[mid]!.seq < from) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < items.length; i++) {
      const e = items[i]!;
      if (e.seq > to) break;
      fn(e);
    }
  }

  /** Takes entries off the front while `done` holds for them (or they are settled), calling `settle` on the unsettled. */
  popWhile(done: (e: QueueEntry) => boolean, settle: (e: QueueEntry) => void): void {
    if (!this.sorted) this.sort();
    const items = this.items;
    while (this.head < items.length) {
      const e = items[this.head]!;
      const settled = e.settledNow;
      if (!settled && !done(e)) break;
      items[this.head++] = undefined;
      if (!settled) settle(e);
    }
    if (this.head === items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > items.length) {
      this.items = items.slice(this.head);
      this.head = 0;
    }
  }
}

/**
 * What a queue tells the entries it let go of once written (detached
 * entries: Messaging keeps only their frames, see `QueueEntry.detach`). They
 * are numbered in write order, which is also the order in which they leave
 * the queue, so that "acknowledged" is one number; drops are rare (only after
 * a reconnect, or at close) and kept as sorted ranges (binary search; a run
 * of one kind is one range, in whatever order it comes). Entries with
 * pending promises are watched, in order.
 *
 * Drop records are forgotten once no Delivery can ask about them: a
 * detached entry asks only while the application holds it, and it holds its
 * epoch ({@link TrackerRef}); a record outside the sequence numbers of every
 * epoch still alive (the current one included) can never be asked about
 * again. Entries not yet detached never ask, and one that is detached later
 * carries a sequence number that was not dropped (a dropped message leaves
 * its queue).
 */
export class DeliveryTracker {
  /** Every detached message numbered up to this one was acknowledged (unless dropped). */
  ackedSeq = 0;
  /**
   * How many entries of this queue have a pending `written()` promise:
   * while none has (and nobody listens to `sent`), Messaging does not track
   * writes of acknowledged-mode messages one by one, and lets entries go
   * once written (detached). Per queue, so one queue's (or one Messaging's)
   * waiting caller changes nothing for the others.
   */
  writtenWaiters = 0;
  /** The reference of entries not detached (never collected while the tracker lives; asks nothing). */
  readonly root: TrackerRef = new TrackerRef(this);
  /** Packets up to this id were written on the current connection... */
  private sentId = 0;
  /** ...of those from this id on (the first detached one written on it). */
  private sentFloor = Infinity;
  /** Non-overlapping, sorted by `from`. */
  private readonly drops: DropRange[] = [];
  /** `drops.length` after the last prune: the next one comes when it doubled, or at an epoch's turn. */
  private prunedAt = 0;
  private epoch: TrackerRef = new TrackerRef(this);
  private epochLeft = EPOCH_SIZE;
  /** Older epochs, oldest first; collected ones are removed at each prune. */
  private epochs: WeakRef<TrackerRef>[] = [];
  /** `epochs.length` after the last prune: the next one comes when it doubled. */
  private liveEpochs = 0;
  private readonly deliverWatch = new WatchList();
  private readonly writeWatch = new WatchList();

  /** The epoch an entry detached now with sequence number `seq` refers to. */
  epochFor(seq: number): TrackerRef {
    if (--this.epochLeft < 0) {
      this.epochs.push(new WeakRef(this.epoch));
      this.epoch = new TrackerRef(this);
      this.epochLeft = EPOCH_SIZE - 1;
      if (this.epochs.length >= 2 * this.liveEpochs + 16) this.prune();
    }
    const epoch = this.epoch;
    if (seq < epoch.minSeq) epoch.minSeq = seq;
    if (seq > epoch.maxSeq) epoch.maxSeq = seq;
    return epoch;
  }

  /** A detached message was written in packet `packetId` on the current connection. */
  wrote(packetId: number): void {
    if (this.sentFloor === Infinity) this.sentFloor = packetId;
  }

  /** Whether the packet (of a detached message) is known written on the current connection. */
  isWritten(packetId: number): boolean {
    return packetId >= this.sentFloor && packetId <= this.sentId;
  }

  /** Packets up to `lastId` were written. */
  sent(lastId: number): void {
    this.sentId = lastId;
    this.writeWatch.popWhile(
      (e) => this.isWritten(e.packetId),
      (e) => e.markWritten(),
    );
  }

  /** The connection ended: what was written on it is not known written on the next. */
  disconnected(): void {
    this.sentId = 0;
    this.sentFloor = Infinity;
  }

  /** Messages numbered up to `seq` were acknowledged. */
  acked(seq: number): void {
    if (seq <= this.ackedSeq) return;
    this.ackedSeq = seq;
    const done = (e: QueueEntry): boolean => e.seq <= seq;
    const deliver = (e: QueueEntry): void => e.markDelivered();
    this.deliverWatch.popWhile(done, deliver);
    this.writeWatch.popWhile(done, deliver);
  }

  /** The messages numbered `from` to `to` left their queue undelivered (each number is dropped at most once). */
  dropped(from: number, to: number, reason: SnakeMQError): void {
    const drops = this.drops;
    // Where it goes: after the last range that starts before it.
    let lo = 0;
    let hi = drops.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (drops[mid]!.from < from) lo = mid + 1;
      else hi = mid;
    }
    const prev = lo > 0 ? drops[lo - 1]! : undefined;
    const next = drops[lo];
    const kind = reason.constructor;
    // Drops come in runs (an overflowing queue, a close): one range for a run of one kind.
    if (prev !== undefined && prev.to === from - 1 && prev.reason.constructor === kind) {
      prev.to = to;
      if (next !== undefined && next.from === to + 1 && next.reason.constructor === kind) {
        prev.to = next.to;
        drops.splice(lo, 1);
      }
    } else if (next !== undefined && next.from === to + 1 && next.reason.constructor === kind) {
      next.from = from;
    } else if (lo === drops.length) drops.push({ from, to, reason });
    else drops.splice(lo, 0, { from, to, reason });
    const drop = (e: QueueEntry): void => e.drop(reason);
    this.deliverWatch.each(from, to, drop);
    this.writeWatch.each(from, to, drop);
    if (drops.length >= 2 * this.prunedAt + 16) this.prune();
  }

  /** Why the message numbered `seq` was dropped, or null. */
  dropReasonOf(seq: number): SnakeMQError | null {
    const drops = this.drops;
    // The last range starting at or before seq.
    let lo = 0;
    let hi = drops.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (drops[mid]!.from <= seq) lo = mid + 1;
      else hi = mid;
    }
    const r = lo > 0 ? drops[lo - 1]! : undefined;
    return r !== undefined && seq <= r.to ? r.reason : null;
  }

  /** A detached entry has a pending promise (of being written, when `written`; else of delivery). */
  watch(entry: QueueEntry, written: boolean): void {
    (written ? this.writeWatch : this.deliverWatch).add(entry);
  }

  /**
   * @internal The sequence numbers a Delivery may still ask about, as sorted
   * disjoint `[min, max]` spans: those of the epochs not collected (watched
   * entries hold theirs). Forgets the collected epochs.
   */
  askable(): [number, number][] {
    const spans: [number, number][] = [];
    if (this.epoch.minSeq <= this.epoch.maxSeq) spans.push([this.epoch.minSeq, this.epoch.maxSeq]);
    const live: WeakRef<TrackerRef>[] = [];
    for (const ref of this.epochs) {
      const epoch = ref.deref();
      if (epoch === undefined) continue;
      live.push(ref);
      spans.push([epoch.minSeq, epoch.maxSeq]);
    }
    this.epochs = live;
    this.liveEpochs = live.length;
    spans.sort((a, b) => a[0] - b[0]);
    const out: [number, number][] = [];
    for (const span of spans) {
      const last = out[out.length - 1];
      if (last !== undefined && span[0] <= last[1] + 1) last[1] = Math.max(last[1], span[1]);
      else out.push(span);
    }
    return out;
  }

  /** @internal Drop ranges kept (for tests and memory checks). */
  get dropRanges(): number {
    return this.drops.length;
  }

  /** Forgets the drop records that no {@link askable} span reaches (and the collected epochs). */
  prune(): void {
    const spans = this.askable();
    const drops = this.drops;
    let k = 0;
    let n = 0;
    for (const r of drops) {
      while (k < spans.length && spans[k]![1] < r.from) k++;
      if (k < spans.length && spans[k]![0] <= r.to) drops[n++] = r;
    }
    drops.length = n;
    this.prunedAt = n;
  }
}
