import type { SnakeMQError } from '../errors.js';
import type { Delivery, DeliveryState } from './types.js';
import { DEFAULT_TTL, Message, currentUuidPool, reserveUuid, uuidAt } from './message.js';

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
 * @internal
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
  private bits: number;
  private extra: Extra | null = null;
  private msg: Message | null;

  private constructor(ident: string, data: Buffer, flags: number, uuidView: DataView, uuidOffset: number, ttl: number | null, msg: Message | null, persisted: boolean) {
    this.ident = ident;
    this.data = data;
    this.flags = flags;
    this.uuidView = uuidView;
    this.uuidOffset = uuidOffset;
    this.ttl = ttl;
    this.bits = persisted ? STAGE_PERSISTED : 0;
    this.msg = msg;
  }

  /** An entry for a caller's Message (which it keeps: `message` is that object). */
  static of(ident: string, message: Message, ttl: number | null, persisted = false): QueueEntry {
    return new QueueEntry(ident, message.data, message.flags, message.uuidSource, message.uuidOffset, ttl, message, persisted);
  }

  /** An entry for bare data: a fresh uuid, no flags, no TTL limit; the Message is made only if asked for. */
  static ofData(ident: string, data: Buffer): QueueEntry {
    const off = reserveUuid();
    return new QueueEntry(ident, data, 0, currentUuidPool(), off, DEFAULT_TTL, null, true);
  }

  /** The message (made on first use for an entry of bare data, then always the same object). */
  get message(): Message {
    return (this.msg ??= Message.fromParts(this.data, DEFAULT_TTL, this.flags, this.uuidView, this.uuidOffset));
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
    if (this.extra?.dropReason != null) return 'dropped';
    if (this.bits & STAGE_DELIVERED) return 'acknowledged';
    if (this.bits & STAGE_WRITTEN) return 'written';
    if (this.bits & STAGE_PERSISTED) return 'persisted';
    return 'queued';
  }

  /** Whether the entry has left its queue (delivered or dropped). */
  get settled(): boolean {
    return (this.bits & STAGE_DELIVERED) !== 0 || this.extra?.dropReason != null;
  }

  get isWritten(): boolean {
    return (this.bits & STAGE_WRITTEN) !== 0;
  }

  persisted(): Promise<void> {
    return this.wait(0, STAGE_PERSISTED);
  }

  written(): Promise<void> {
    if (!(this.bits & STAGE_WRITTEN) && this.extra?.waiters[1] == null && this.extra?.dropReason == null) QueueEntry.writtenWaiters++;
    return this.wait(1, STAGE_WRITTEN);
  }

  /**
   * @internal How many entries have a pending `written()` promise: while none
   * has (and nobody listens to `sent`), Messaging does not track writes of
   * acknowledged-mode messages one by one.
   */
  static writtenWaiters = 0;

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
    if (this.extra === null) {
      this.bits |= STAGE_WRITTEN | STAGE_DELIVERED;
      return;
    }
    this.reach(1, STAGE_WRITTEN);
    this.reach(2, STAGE_DELIVERED);
  }

  /** @internal Ends the entry undelivered; pending promises of unreached stages reject. */
  drop(reason: SnakeMQError): void {
    if (this.settled) return;
    const extra = (this.extra ??= { dropReason: null, waiters: [null, null, null] });
    extra.dropReason = reason;
    const w = extra.waiters;
    if (w[1] !== null) QueueEntry.writtenWaiters--;
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
    if (this.bits & stage) return Promise.resolve();
    const extra = (this.extra ??= { dropReason: null, waiters: [null, null, null] });
    if (extra.dropReason !== null) return Promise.reject(extra.dropReason);
    const d = (extra.waiters[slot] ??= deferred());
    return d.promise;
  }

  private reach(slot: 0 | 1 | 2, stage: number): void {
    if (this.bits & stage) return;
    this.bits |= stage;
    const d = this.extra?.waiters[slot];
    if (d) {
      this.extra!.waiters[slot] = null;
      if (slot === 1) QueueEntry.writtenWaiters--;
      d.resolve();
    }
  }
}

/** A FIFO ring buffer with O(1) push and shift (power-of-two capacity). @internal */
export class Deque<T> {
  private buf: (T | undefined)[] = new Array(16);
  private head = 0;
  private size = 0;

  get length(): number {
    return this.size;
  }

  push(item: T): void {
    if (this.size === this.buf.length) this.resize(this.buf.length * 2);
    this.buf[(this.head + this.size) & (this.buf.length - 1)] = item;
    this.size++;
  }

  peek(): T | undefined {
    return this.size === 0 ? undefined : this.buf[this.head];
  }

  at(index: number): T | undefined {
    return index < this.size ? this.buf[(this.head + index) & (this.buf.length - 1)] : undefined;
  }

  shift(): T | undefined {
    if (this.size === 0) return undefined;
    const item = this.buf[this.head];
    this.buf[this.head] = undefined;
    this.head = (this.head + 1) & (this.buf.length - 1);
    this.size--;
    return item;
  }

  /** Removes and returns everything, in order. */
  drain(): T[] {
    const out = this.toArray();
    this.buf = new Array(16);
    this.head = 0;
    this.size = 0;
    return out;
  }

  /** Puts items in front, keeping their order. */
  unshiftAll(front: T[]): void {
    if (front.length === 0) return;
    this.replace(front.concat(this.toArray()));
  }

  /** Keeps the items for which `keep` returns true. */
  filter(keep: (item: T) => boolean): void {
    this.replace(this.toArray().filter(keep));
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = 0; i < this.size; i++) yield this.buf[(this.head + i) & (this.buf.length - 1)]!;
  }

  private toArray(): T[] {
    const out = new Array<T>(this.size);
    for (let i = 0; i < this.size; i++) out[i] = this.buf[(this.head + i) & (this.buf.length - 1)]!;
    return out;
  }

  private replace(items: T[]): void {
    let cap = 16;
    while (cap < items.length) cap *= 2;
    const buf = new Array<T | undefined>(cap);
    for (let i = 0; i < items.length; i++) buf[i] = items[i];
    this.buf = buf;
    this.head = 0;
    this.size = items.length;
  }

  private resize(cap: number): void {
    const buf = new Array<T | undefined>(cap);
    for (let i = 0; i < this.size; i++) buf[i] = this.buf[(this.head + i) & (this.buf.length - 1)];
    this.buf = buf;
    this.head = 0;
  }
}
