/**
 * In-memory stand-in for two connected Messaging instances, enough for RPC:
 * identities, TTL-0 drops, queued messages for TTL > 0, receive hooks,
 * connect/disconnect/reconnect, and controllable message loss.
 */
import { EventEmitter } from 'eventemitter3';
import { ClosedError, MessageExpiredError, type SnakeMQError } from '../../lib/errors.js';
import { Message } from '../../lib/messaging/message.js';
import type { Delivery, DeliveryState } from '../../lib/messaging/types.js';
import type { RpcTransport } from '../../lib/rpc/types.js';

interface FakeEvents {
  connect: (connId: number, ident: string) => void;
  disconnect: (connId: number, ident: string) => void;
  message: (connId: number, ident: string, message: Message) => void;
  drop: (ident: string, message: Message, reason: SnakeMQError) => void;
  close: () => void;
}

export class FakeDelivery implements Delivery {
  state: DeliveryState = 'queued';
  private reason: SnakeMQError | undefined;
  private waiters: { resolve: () => void; reject: (e: SnakeMQError) => void }[] = [];
  constructor(
    readonly ident: string,
    readonly message: Message,
    /** Told of a drop, as Messaging emits `drop`. */
    private readonly onDrop?: (d: FakeDelivery, reason: SnakeMQError) => void,
  ) {}
  persisted(): Promise<void> {
    return Promise.resolve();
  }
  written(): Promise<void> {
    if (this.state === 'written') return Promise.resolve();
    if (this.reason) return Promise.reject(this.reason);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }
  delivered(): Promise<void> {
    return this.written();
  }
  markWritten(): void {
    if (this.state !== 'queued') return;
    this.state = 'written';
    for (const w of this.waiters.splice(0)) w.resolve();
  }
  drop(reason: SnakeMQError): void {
    if (this.state !== 'queued') return;
    this.state = 'dropped';
    this.reason = reason;
    for (const w of this.waiters.splice(0)) w.reject(reason);
    this.onDrop?.(this, reason);
  }
}

/** One record of traffic through the fake network. */
export interface TraceEntry {
  readonly from: string;
  readonly to: string;
  readonly data: Buffer;
  /** `delivered`, `lost` (dropped in flight by a rule or a disconnect) or `dropped` (TTL 0, peer away). */
  outcome: 'pending' | 'delivered' | 'lost' | 'dropped';
}

export type LossRule = (from: string, to: string, data: Buffer) => boolean;

export class FakeMessaging extends EventEmitter<FakeEvents> implements RpcTransport {
  peer!: FakeMessaging;
  net!: FakeNetwork;
  private hooks: { matcher: string | Uint8Array | RegExp; handler: (connId: number, ident: string, message: Message) => void }[] = [];
  closed = false;

  constructor(readonly identity: string) {
    super();
  }

  get hookCount(): number {
    return this.hooks.length;
  }

  /** Like `Messaging.close()`: `closed` at once, the `close` event before anything else. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.emit('close');
  }

  send(ident: string, message: Message): Delivery {
    if (this.closed) throw new ClosedError('messaging closed');
    const d = new FakeDelivery(ident, message, (dropped, reason) => this.emit('drop', dropped.ident, dropped.message, reason));
    if (ident !== this.peer.identity) {
      d.drop(new MessageExpiredError(`unknown peer ${ident}`));
      return d;
    }
    this.net.transmit(this, d);
    return d;
  }

  isConnected(ident: string): boolean {
    return this.net.connected && ident === this.peer.identity;
  }

  addReceiveHook(matcher: string | Uint8Array | RegExp, handler: (connId: number, ident: string, message: Message) => void): () => void {
    const entry = { matcher, handler };
    this.hooks.push(entry);
    return () => {
      const i = this.hooks.indexOf(entry);
      if (i >= 0) this.hooks.splice(i, 1);
    };
  }

  /** Delivers `data` as if it came from `fromIdent` (bypasses the network). */
  inject(fromIdent: string, data: Buffer | string): void {
    this.receive(this.net.connId, fromIdent, new Message(data));
  }

  receive(connId: number, from: string, message: Message): void {
    for (const { matcher, handler } of this.hooks) {
      const hit =
        matcher instanceof RegExp
          ? matcher.test(message.data.toString('latin1'))
          : message.data.subarray(0, Buffer.byteLength(matcher as string)).equals(Buffer.from(matcher as string));
      if (hit) {
        handler(connId, from, message);
        return;
      }
    }
    this.emit('message', connId, from, message);
  }
}

/**
 * Two peers and the wire between them. Messages travel on `setImmediate`,
 * so a disconnect can happen while one is in flight.
 */
export class FakeNetwork {
  readonly a: FakeMessaging;
  readonly b: FakeMessaging;
  connected = false;
  connId = 0;
  private epoch = 0;
  readonly trace: TraceEntry[] = [];
  /** Rules that silently lose messages in flight (the sender sees them written). Return true to lose. */
  readonly lossRules: LossRule[] = [];
  private waiting: { from: FakeMessaging; delivery: FakeDelivery }[] = [];

  constructor(identA = 'alice', identB = 'bob') {
    this.a = new FakeMessaging(identA);
    this.b = new FakeMessaging(identB);
    this.a.peer = this.b;
    this.b.peer = this.a;
    this.a.net = this;
    this.b.net = this;
  }

  connect(): void {
    if (this.connected) return;
    this.connected = true;
    this.epoch++;
    this.connId++;
    this.a.emit('connect', this.connId, this.b.identity);
    this.b.emit('connect', this.connId, this.a.identity);
    const waiting = this.waiting.splice(0);
    for (const w of waiting) this.transmit(w.from, w.delivery);
  }

  disconnect(): void {
    if (!this.connected) return;
    this.connected = false;
    this.a.emit('disconnect', this.connId, this.b.identity);
    this.b.emit('disconnect', this.connId, this.a.identity);
  }

  /** Loses the next `count` messages matching `filter` (default: any). */
  loseNext(filter: LossRule = () => true, count = 1): void {
    let left = count;
    const rule: LossRule = (from, to, data) => {
      if (left <= 0 || !filter(from, to, data)) return false;
      if (--left === 0) this.lossRules.splice(this.lossRules.indexOf(rule), 1);
      return true;
    };
    this.lossRules.push(rule);
  }

  sentBy(ident: string, prefix: string): TraceEntry[] {
    return this.trace.filter((t) => t.from === ident && t.data.subarray(0, prefix.length).toString('latin1') === prefix);
  }

  transmit(from: FakeMessaging, d: FakeDelivery): void {
    const ttl = d.message.ttl;
    if (!this.connected) {
      if (ttl === 0) {
        this.trace.push({ from: from.identity, to: d.ident, data: d.message.data, outcome: 'dropped' });
        d.drop(new MessageExpiredError('peer not connected (TTL 0)'));
      } else {
        this.waiting.push({ from, delivery: d });
      }
      return;
    }
    const epoch = this.epoch;
    const entry: TraceEntry = { from: from.identity, to: d.ident, data: d.message.data, outcome: 'pending' };
    this.trace.push(entry);
    setImmediate(() => {
      if (!this.connected || this.epoch !== epoch) {
        entry.outcome = 'lost';
        if (ttl === 0) d.drop(new MessageExpiredError('connection lost (TTL 0)'));
        else this.waiting.push({ from, delivery: d });
        return;
      }
      d.markWritten();
      if (this.lossRules.some((rule) => rule(entry.from, entry.to, entry.data))) {
        entry.outcome = 'lost';
        return;
      }
      entry.outcome = 'delivered';
      from.peer.receive(this.connId, from.identity, d.message);
    });
  }
}

/** Resolves after pending immediates (in-flight fake messages) have run, `rounds` times. */
export async function flush(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
}

export function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
