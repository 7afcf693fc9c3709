import type { SnakeMQError } from '../errors.js';
import type { Delivery, DeliveryState } from './types.js';
import { DEFAULT_TTL, Message, currentUuidPool, reserveUuid, uuidAt } from './message.js';
import { FLAG_RESENT, WIRE_TTL_INFINITE } from './frames.js';
import type { DeliveryTracker, TrackerRef } from './delivery-tracker.js';

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (error: SnakeMQError) => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: SnakeMQError) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const STAGE_PERSISTED = 1;
const STAGE_WRITTEN = 2;
const STAGE_DELIVERED = 4;
const STORED = 8;
const RESENT = 16;
/** Written and let go: its fate is kept by its queue's {@link DeliveryTracker}, by sequence number. */
const DETACHED = 32;

/** Bytes each queued message counts against `maxQueueBytes` on top of its data. */
export const QUEUE_ENTRY_OVERHEAD = 128;

/** What few entries need: a drop reason, promises someone waits for. */
interface Extra {
  dropReason: SnakeMQError | null;
  waiters: [Deferred | null, Deferred | null, Deferred | null];
}

/**
 * A queued message and its progress. It carries what goes on the wire (data,
 * flags, uuid) itself, so that a send of bytes makes this one object and no
 * {@link Message} until someone asks for it (`message`, events). Promises are
 * made only when asked for. A queue holds millions of these and the garbage
 * collector copies the ones in flight: every field counts.
 *
 */
export class QueueEntry implements Delivery {
  readonly ident: string;
  readonly data: Buffer;
  readonly flags: number;
  /** Where the uuid lives (see Message's `uuidSource`). */
  readonly uuidView: DataView;
  readonly uuidOffset: number;
  /** Seconds of TTL left; counts down only while the peer is away. */
  ttl: number | null;
  /** Packet id of the last transmission, 0 before the first. */
  packetId = 0;
  /** Sequence number in its queue once written detached (then kept by the entries re-made from its frame), else 0. */
  seq = 0;
  /**
   * Its queue's tracker, through the epoch it was detached in (see
   * {@link TrackerRef}), or the tracker's root before: where a detached entry
   * (or one re-made from a detached frame) learns or tells its fate, and
   * where pending `written()` promises are counted.
   */
  private ref: TrackerRef;
  private bits: number;
  private extra: Extra | null = null;
  private msg: Message | null;

  private constructor(
    ref: TrackerRef,
    ident: string,
    data: Buffer,
    flags: number,
    uuidView: DataView,
    uuidOffset: number,
    ttl: number | null,
    msg: Message | null,
    persisted: boolean,
  ) {
    this.ref = ref;
    this.ident = ident;
    this.data = data;
    this.flags = flags;
    this.uuidView = uuidView;
    this.uuidOffset = uuidOffset;
    this.ttl = ttl;
    this.bits = persisted ? STAGE_PERSISTED : 0;
    this.msg = msg;
  }

  /** An entry of the queue `tracker` belongs to, for a caller's Message (which it keeps: `message` is that object). */
  static of(ident: string, message: Message, ttl: number | null, persisted: boolean, tracker: DeliveryTracker): QueueEntry {
    return new QueueEntry(tracker.root, ident, message.data, message.flags, message.uuidSource, message.uuidOffset, ttl, message, persisted);
  }

  /** An entry of the queue `tracker` belongs to, for bare data: a fresh uuid, no flags, no TTL limit; the Message is made only if asked for. */
  static ofData(ident: string, data: Buffer, tracker: DeliveryTracker): QueueEntry {
    const off = reserveUuid();
    return new QueueEntry(tracker.root, ident, data, 0, currentUuidPool(), off, DEFAULT_TTL, null, true);
  }

  /**
   * The entry of a detached message, made again from its MESSAGE frame (the
   * payload `view[start..end)` of a buffer that is its own) to be re-sent:
   * it carries the detached entry's sequence number and tracker, to tell it
   * its fate.
   */
  static ofFrame(ident: string, buf: Buffer, view: DataView, start: number, end: number, seq: number, tracker: DeliveryTracker): QueueEntry {
    const wire = view.getUint32(start + 17);
    const flags = (view.getUint32(start + 21) & ~FLAG_RESENT) >>> 0;
    const entry = new QueueEntry(
      tracker.root,
      ident,
      buf.subarray(start + 25, end),
      flags,
      view,
      start + 1,
      wire === WIRE_TTL_INFINITE ? null : wire,
      null,
      true,
    );
    entry.seq = seq;
    entry.bits |= RESENT;
    return entry;
  }

  /**
   * Whether Messaging may let go of it once written (see {@link detach}): not
   * stored, nobody waiting on it yet, no TTL to count down, no flag bit that
   * the RESENT mark would hide.
   */
  get detachable(): boolean {
    return (this.bits & STORED) === 0 && this.extra === null && this.ttl === null && (this.flags & FLAG_RESENT) === 0;
  }

  /**
   * @internal Written and let go by Messaging, which keeps only its frame:
   * from now on its state comes from `tracker` (acknowledged up to which
   * sequence number, dropped which), asked when somebody looks.
   */
  detach(tracker: DeliveryTracker, seq: number): void {
    this.ref = tracker.epochFor(seq);
    this.seq = seq;
    this.bits |= DETACHED;
  }

  /** Its queue's {@link DeliveryTracker}. */
  get tracker(): DeliveryTracker {
    return this.ref.tracker;
  }

  /** A detached entry catches up with what its tracker knows. */
  private sync(): void {
    if ((this.bits & STAGE_DELIVERED) !== 0 || this.extra?.dropReason != null) return;
    const tracker = this.ref.tracker;
    const reason = tracker.dropReasonOf(this.seq);
    if (reason !== null) this.drop(reason);
    else if (this.seq <= tracker.ackedSeq) this.markDelivered();
    else if (tracker.isWritten(this.packetId)) this.markWritten();
  }

  /** The message (made on first use for an entry of bare data, then always the same object). */
  get message(): Message {
    return (this.msg ??= Message.fromParts(this.data, this.ttl, this.flags, this.uuidView, this.uuidOffset));
  }

  /** The 16-byte uuid. */
  get uuid(): Buffer {
    return this.msg !== null ? this.msg.uuid : uuidAt(this.uuidView, this.uuidOffset);
  }

  /** The uuid as 32 lowercase hex characters. */
  get id(): string {
    return this.uuid.toString('hex');
  }

  /** Bytes this entry counts against its queue's limit. */
  get cost(): number {
    return this.data.length + QUEUE_ENTRY_OVERHEAD;
  }

  /** Whether it is (or is being) kept in durable storage. */
  get stored(): boolean {
    return (this.bits & STORED) !== 0;
  }

  set stored(on: boolean) {
    this.bits = on ? this.bits | STORED : this.bits & ~STORED;
  }

  /** Whether it may have reached the peer before (sent on a connection that ended, or loaded from storage). */
  get resent(): boolean {
    return (this.bits & RESENT) !== 0;
  }

  set resent(on: boolean) {
    this.bits = on ? this.bits | RESENT : this.bits & ~RESENT;
  }

  get state(): DeliveryState {
    if (this.bits & DETACHED) this.sync();
    if (this.extra?.dropReason != null) return 'dropped';
    if (this.bits & STAGE_DELIVERED) return 'acknowledged';
    if (this.bits & STAGE_WRITTEN) return 'written';
    if (this.bits & STAGE_PERSISTED) return 'persisted';
    return 'queued';
  }

  /** @internal Whether it is known delivered or dropped (without asking the tracker). */
  get settledNow(): boolean {
    return (this.bits & STAGE_DELIVERED) !== 0 || this.extra?.dropReason != null;
  }

  /** Whether the entry has left its queue (delivered or dropped). */
  get settled(): boolean {
    if (this.bits & DETACHED) this.sync();
    return (this.bits & STAGE_DELIVERED) !== 0 || this.extra?.dropReason != null;
  }

  get isWritten(): boolean {
    if (this.bits & DETACHED) this.sync();
    return (this.bits & STAGE_WRITTEN) !== 0;
  }

  persisted(): Promise<void> {
    return this.wait(0, STAGE_PERSISTED);
  }

  written(): Promise<void> {
    if (this.bits & DETACHED) this.sync();
    if (!(this.bits & STAGE_WRITTEN) && this.extra?.waiters[1] == null && this.extra?.dropReason == null) this.ref.tracker.writtenWaiters++;
    return this.wait(1, STAGE_WRITTEN);
  }

  delivered(): Promise<void> {
    return this.wait(2, STAGE_DELIVERED);
  }

  /** @internal */
  markPersisted(): void {
    this.reach(0, STAGE_PERSISTED);
  }

  /** @internal */
  markWritten(): void {
    this.reach(1, STAGE_WRITTEN);
  }

  /** @internal */
  markDelivered(): void {
    if (this.extra === null && this.seq === 0) {
      this.bits |= STAGE_WRITTEN | STAGE_DELIVERED;
      return;
    }
    this.reach(1, STAGE_WRITTEN);
    this.reach(2, STAGE_DELIVERED);
    // Made again from a detached frame: the detached entry learns it from the tracker.
    if (this.seq !== 0 && (this.bits & DETACHED) === 0) this.ref.tracker.acked(this.seq);
  }

  /** @internal Ends the entry undelivered; pending promises of unreached stages reject. */
  drop(reason: SnakeMQError): void {
    if ((this.bits & STAGE_DELIVERED) !== 0 || this.extra?.dropReason != null) return;
    if (this.seq !== 0 && (this.bits & DETACHED) === 0) this.ref.tracker.dropped(this.seq, this.seq, reason);
    const extra = (this.extra ??= { dropReason: null, waiters: [null, null, null] });
    extra.dropReason = reason;
    const w = extra.waiters;
    if (w[1] !== null) this.ref.tracker.writtenWaiters--;
    extra.waiters = [null, null, null];
    for (let i = 0; i < 3; i++) w[i]?.reject(reason);
  }

  /** @internal Rejects the persisted stage only (storage failed); the message stays queued. */
  failPersist(reason: SnakeMQError): void {
    const d = this.extra?.waiters[0];
    if (d) {
      this.extra!.waiters[0] = null;
      d.reject(reason);
    }
  }

  private wait(slot: 0 | 1 | 2, stage: number): Promise<void> {
    const detached = (this.bits & DETACHED) !== 0;
    if (detached) this.sync();
    if (this.bits & stage) return Promise.resolve();
    const extra = (this.extra ??= { dropReason: null, waiters: [null, null, null] });
    if (extra.dropReason !== null) return Promise.reject(extra.dropReason);
    let d = extra.waiters[slot];
    if (d === null) {
      d = extra.waiters[slot] = deferred();
      if (detached) this.ref.tracker.watch(this, slot === 1);
    }
    return d.promise;
  }

  private reach(slot: 0 | 1 | 2, stage: number): void {
    if (this.bits & stage) return;
    this.bits |= stage;
    const d = this.extra?.waiters[slot];
    if (d) {
      this.extra!.waiters[slot] = null;
      if (slot === 1) this.ref.tracker.writtenWaiters--;
      d.resolve();
    }
  }
}
