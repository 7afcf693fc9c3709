import type { SnakeMQError } from '../errors.js';
import type { Delivery, DeliveryState } from './types.js';
import type { Message } from './message.js';

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

/**
 * A queued message and its progress. Promises are made only when asked for,
 * so a send that nobody awaits costs one object.
 * @internal
 */
export class QueueEntry implements Delivery {
  readonly ident: string;
  readonly message: Message;
  /** Seconds of TTL left; counts down only while the peer is away. */
  ttl: number | null;
  /** Packet id of the last transmission, 0 before the first. */
  packetId = 0;
  /** Bytes this entry counts against its queue's limit. */
  readonly cost: number;
  /** Whether it is (or is being) kept in durable storage. */
  stored = false;
  /** Whether it may have reached the peer before (sent on a connection that ended, or loaded from storage). */
  resent = false;
  private stages = 0;
  private dropReason: SnakeMQError | null = null;
  private waiters: [Deferred | null, Deferred | null, Deferred | null] | null = null;

  constructor(ident: string, message: Message, ttl: number | null, cost: number, persisted = false) {
    this.ident = ident;
    this.message = message;
    this.ttl = ttl;
    this.cost = cost;
    if (persisted) this.stages = STAGE_PERSISTED;
  }

  get state(): DeliveryState {
    if (this.dropReason !== null) return 'dropped';
    if (this.stages & STAGE_DELIVERED) return 'acknowledged';
    if (this.stages & STAGE_WRITTEN) return 'written';
    if (this.stages & STAGE_PERSISTED) return 'persisted';
    return 'queued';
  }

  /** Whether the entry has left its queue (delivered or dropped). */
  get settled(): boolean {
    return this.dropReason !== null || (this.stages & STAGE_DELIVERED) !== 0;
  }

  get isWritten(): boolean {
    return (this.stages & STAGE_WRITTEN) !== 0;
  }

  persisted(): Promise<void> {
    return this.wait(0, STAGE_PERSISTED);
  }

  written(): Promise<void> {
    if (!(this.stages & STAGE_WRITTEN) && this.waiters?.[1] == null && this.dropReason === null) QueueEntry.writtenWaiters++;
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
    this.reach(1, STAGE_WRITTEN);
    this.reach(2, STAGE_DELIVERED);
  }

  /** @internal Ends the entry undelivered; pending promises of unreached stages reject. */
  drop(reason: SnakeMQError): void {
    if (this.settled) return;
    this.dropReason = reason;
    const w = this.waiters;
    if (w === null) return;
    this.waiters = null;
    if (w[1] !== null) QueueEntry.writtenWaiters--;
    for (let i = 0; i < 3; i++) w[i]?.reject(reason);
  }

  /** @internal Rejects the persisted stage only (storage failed); the message stays queued. */
  failPersist(reason: SnakeMQError): void {
    const d = this.waiters?.[0];
    if (d) {
      this.waiters![0] = null;
      d.reject(reason);
    }
  }

  private wait(slot: 0 | 1 | 2, stage: number): Promise<void> {
    if (this.stages & stage) return Promise.resolve();
    if (this.dropReason !== null) return Promise.reject(this.dropReason);
    this.waiters ??= [null, null, null];
    const d = (this.waiters[slot] ??= deferred());
    return d.promise;
  }

  private reach(slot: 0 | 1 | 2, stage: number): void {
    if (this.stages & stage) return;
    this.stages |= stage;
    const d = this.waiters?.[slot];
    if (d) {
      this.waiters![slot] = null;
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
