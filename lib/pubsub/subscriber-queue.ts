/**
 * One subscriber as its publisher sees it: its filters, whether it is
 * durable, and the path of a published frame to it. A frame goes into the
 * messaging queue of the subscriber while that queue is writable; beyond its
 * high-water mark it waits here (bounded: `maxQueue`, `maxQueueBytes`) until
 * `drain`; a full queue asks the overflow policy what gives way. A durable
 * subscriber's frames always go to the messaging queue (persistent, with its
 * TTL, up to `durableMaxMessages`), so they wait there, stored, while it is away.
 * @module
 */
import { Message } from '../messaging/message.js';
import type { Delivery } from '../messaging/types.js';
import { Deque } from '../util/deque.js';
import type { OverflowAction, ResolvedPublisherOptions, SubscriberInfo } from './options.js';
import type { PubSubTransport } from './transport.js';

/** How one copy of a published message ended for one subscriber. */
export type CopyOutcome = 'written' | 'dropped';

/** A copy that waits at the publisher; settles when handed to messaging and written, or dropped. */
export class HeldCopy {
  delivery: Delivery | null = null;
  dropped = false;
  private waiters: ((outcome: CopyOutcome) => void)[] | null = null;

  constructor(readonly frame: Buffer) {}

  /** Settles with the outcome. */
  outcome(): Promise<CopyOutcome> {
    if (this.dropped) return Promise.resolve('dropped');
    if (this.delivery) return written(this.delivery);
    return new Promise((resolve) => (this.waiters ??= []).push(resolve));
  }

  sent(delivery: Delivery): void {
    this.delivery = delivery;
    const w = this.waiters;
    if (w === null) return;
    this.waiters = null;
    const p = written(delivery);
    for (const fn of w) void p.then(fn);
  }

  drop(): void {
    this.dropped = true;
    const w = this.waiters;
    this.waiters = null;
    if (w !== null) for (const fn of w) fn('dropped');
  }
}

/** A copy for a durable subscriber that is away: it waits in its messaging queue (stored when there is storage). */
export class AwayCopy {
  constructor(readonly delivery: Delivery) {}
}

/** What {@link SubscriberQueue.deliver} made of one copy. */
export type Copy = Delivery | HeldCopy | AwayCopy | 'dropped';

export function written(d: Delivery): Promise<CopyOutcome> {
  return d.written().then(
    () => 'written',
    () => 'dropped',
  );
}

export class SubscriberQueue {
  topics: readonly string[] = [];
  durable = false;
  requested: OverflowAction = 'drop-oldest';
  /** Seconds a durable copy may wait for the subscriber while it is away. */
  ttl = 0;
  flags = 0;
  connected: boolean;
  dropped = 0;
  /** Whether `slowSubscriber` was emitted since the queue was last empty. */
  slow = false;
  private readonly held = new Deque<HeldCopy>();
  private heldBytes = 0;
  private liveOptions = { ttl: 0 };
  private durableOptions = { ttl: 0, persistent: true };

  constructor(
    readonly ident: string,
    private readonly transport: PubSubTransport,
    private readonly options: ResolvedPublisherOptions,
    private readonly onSlow: (q: SubscriberQueue) => void,
  ) {
    this.connected = transport.isConnected(ident);
  }

  get queued(): number {
    return this.durable ? this.transport.queueLength(this.ident) : this.held.length;
  }

  configure(topics: readonly string[], durable: boolean, ttl: number, flags: number, requested: OverflowAction): void {
    this.topics = topics;
    this.durable = durable;
    this.ttl = ttl;
    this.flags = flags;
    this.requested = requested;
    this.durableOptions = { ttl, persistent: true };
    if (durable) this.flush();
  }

  /** Queues one copy of `frame`. */
  deliver(frame: Buffer): Copy {
    const t = this.transport;
    if (this.durable) {
      if (t.queueLength(this.ident) >= this.options.durableMaxMessages) {
        this.overflowed();
        return 'dropped';
      }
      const d = t.send(this.ident, new Message(frame, this.durableOptions));
      return this.connected ? d : new AwayCopy(d);
    }
    if (this.held.length === 0 && t.writable(this.ident)) return t.send(this.ident, new Message(frame, this.liveOptions));
    if (this.held.length >= this.options.maxQueue || this.heldBytes + frame.length > this.options.maxQueueBytes) {
      const action = this.held.length === 0 ? 'reject' : this.options.overflow(this.info());
      if (action === 'reject') {
        this.overflowed();
        return 'dropped';
      }
      while (this.held.length > 0 && (this.held.length >= this.options.maxQueue || this.heldBytes + frame.length > this.options.maxQueueBytes)) {
        const old = this.held.shift()!;
        this.heldBytes -= old.frame.length;
        old.drop();
        this.overflowed();
      }
    }
    const copy = new HeldCopy(frame);
    this.held.push(copy);
    this.heldBytes += frame.length;
    return copy;
  }

  /** Moves held copies into messaging while it is writable (on `drain`). */
  pump(): void {
    const t = this.transport;
    while (this.held.length > 0 && t.writable(this.ident)) {
      const copy = this.held.shift()!;
      this.heldBytes -= copy.frame.length;
      copy.sent(t.send(this.ident, new Message(copy.frame, this.liveOptions)));
    }
    if (this.held.length === 0) this.slow = false;
  }

  /** A durable subscriber takes what is held into its messaging queue (stored, with its TTL). */
  private flush(): void {
    while (this.held.length > 0) {
      const copy = this.held.shift()!;
      this.heldBytes -= copy.frame.length;
      if (this.transport.queueLength(this.ident) >= this.options.durableMaxMessages) {
        copy.drop();
        this.overflowed();
      } else {
        copy.sent(this.transport.send(this.ident, new Message(copy.frame, this.durableOptions)));
      }
    }
  }

  /** Drops everything held (the subscriber left, or the publisher closes). */
  clear(): void {
    while (this.held.length > 0) this.held.shift()!.drop();
    this.heldBytes = 0;
  }

  private overflowed(): void {
    this.dropped++;
    if (this.slow) return;
    this.slow = true;
    this.onSlow(this);
  }

  /** The subscriber's queue is below its high-water mark again, or emptied. */
  caughtUp(): void {
    if (this.held.length === 0) this.slow = false;
  }

  /** What the overflow policy, `slowSubscriber` and `Publisher.subscriber()` are given: a copy, not this object. */
  info(): SubscriberInfo {
    return Object.freeze({
      ident: this.ident,
      topics: this.topics,
      durable: this.durable,
      requested: this.requested,
      queued: this.queued,
      dropped: this.dropped,
    });
  }

  get heldCount(): number {
    return this.held.length;
  }
}
