/**
 * {@link Publisher}: publishes messages on subjects to the peers whose
 * subscriptions match, over the connections of a Messaging.
 * @module
 */
import { Buffer } from 'node:buffer';
import { EventEmitter } from 'eventemitter3';
import { ClosedError, InvalidOptionsError, type InvalidFilterError, type PubSubFrameError, SubscriptionRefusedError, type StorageError } from '../errors.js';
import { Message } from '../messaging/message.js';
import { log } from './log.js';
import type { DurableRecord } from './durable-store.js';
import {
  DataKind,
  SUBSCRIBE_PREFIX,
  SUB_FLAG_DURABLE,
  SUB_FLAG_REJECT,
  decodeSubscribe,
  encodeConfirm,
  encodePublishedHead,
  encodePublishedWith,
  type PublishHeader,
} from './frames.js';
import { publisherOptions, type PublisherOptions, type ResolvedPublisherOptions, type SubscriberInfo } from './options.js';
import { checkPubWord, defaultSender, encodeJsonData, PubMessage, type PubData } from './pub-message.js';
import { Publication } from './publication.js';
import { parseFilter, SubjectIndex } from './subject-index.js';
import { SubscriberQueue, type Copy } from './subscriber-queue.js';
import type { PubSubTransport } from './transport.js';

/** Events of {@link Publisher}. No `'error'` event: nothing a peer sends can crash the process. */
export interface PublisherEvents {
  /** A subscriber's subscription is in force (new, changed, or re-sent after a reconnect). */
  subscribe: (ident: string, topics: readonly string[], durable: boolean) => void;
  /** A subscriber is gone: it unsubscribed everything, or (not durable) disconnected. */
  unsubscribe: (ident: string, reason: 'unsubscribed' | 'disconnected') => void;
  /**
   * A subscriber's queue overflowed: messages for it are being dropped or
   * refused (per the overflow policy). Once per episode: again only after its
   * queue emptied.
   */
  slowSubscriber: (ident: string, info: SubscriberInfo) => void;
  /** A subscription was refused (limits, an invalid filter, `allow`); the subscriber was told why. */
  refused: (ident: string, error: SubscriptionRefusedError) => void;
  /** A peer sent a malformed subscription frame: dropped (and refused), everything else goes on. */
  badFrame: (ident: string, error: PubSubFrameError) => void;
  /** The durable store failed to load or save. Subscriptions in memory are still in force. */
  storeError: (error: StorageError) => void;
}

/** Options of one `publish()` call: PostTroll's header fields beyond subject and type. */
export interface PublishOptions {
  /** @default now */
  time?: Date;
  /** Microseconds beyond `time`'s milliseconds (0..999). @default 0 */
  micros?: number;
  /** @default chosen as {@link PubMessage.wireVersion} does */
  version?: string;
  /** String data is binary (`binary/octet-stream`, one byte per character). @default false */
  binary?: boolean;
}

const PUBLISH_OPTION_KEYS = new Set(['time', 'micros', 'version', 'binary']);
const EMPTY = Buffer.alloc(0);

/**
 * Publishes on subjects to the subscribers of a Messaging's peers.
 *
 * ```ts
 * const pub = new Publisher(messaging);
 * await pub.publish('/counter', 'info', { n: 1 }); // written to every current subscriber
 * ```
 *
 * A subscriber sends its filters when it connects (and again after every
 * reconnect); a message is encoded once and the same bytes are queued for
 * every matching subscriber, through that subscriber's messaging queue
 * (acknowledgements, TTL, dedup). Each subscriber's backlog is bounded (see
 * {@link PublisherOptions}): a slow one never holds up the others. A
 * non-durable subscription ends with its connection; a durable one keeps
 * collecting (bounded, with TTL, persistent when the messaging has storage).
 *
 * Attaches to a Messaging it does not own: `close()` stops publishing and
 * forgets the subscribers, and the Messaging stays open.
 */
export class Publisher extends EventEmitter<PublisherEvents> {
  readonly options: Readonly<ResolvedPublisherOptions>;
  /** Resolves once the durable store is loaded (at once without one); publish after it to reach durable subscribers that are away. */
  readonly ready: Promise<void>;
  private readonly index: SubjectIndex<SubscriberQueue>;
  private readonly queues = new Map<string, SubscriberQueue>();
  private readonly sender: Buffer;
  private readonly unhook: () => void;
  private durableCount = 0;
  /** Bumped on every change of the index, so that {@link matchesOf} knows its cached answer is stale. */
  private indexVersion = 0;
  private matchSubject: string | null = null;
  private matchVersion = -1;
  private matchList: readonly SubscriberQueue[] = [];
  private headCache: { subject: string; type: string; sender: Buffer; version: string | undefined; head: Buffer } | null = null;
  private isClosed = false;
  private saving: Promise<void> = Promise.resolve();
  private pendingSave: Promise<void> | null = null;

  constructor(
    private readonly messaging: PubSubTransport,
    options?: PublisherOptions,
  ) {
    super();
    this.options = publisherOptions(options);
    if (messaging.closed) throw new ClosedError('Publisher: messaging is closed');
    this.index = new SubjectIndex({ maxFilterLength: this.options.maxFilterLength });
    this.sender = Buffer.from(this.options.sender ?? defaultSender(), 'utf8');
    this.unhook = messaging.addReceiveHook(SUBSCRIBE_PREFIX, (_c, ident, m) => this.onSubscribe(ident, m.data));
    messaging.on('connect', this.onConnect);
    messaging.on('disconnect', this.onDisconnect);
    messaging.on('drain', this.onDrain);
    messaging.on('close', this.onClose);
    this.ready = this.load();
  }

  /** Identities subscribed now (durable ones away included). */
  subscribers(): string[] {
    return [...this.queues.keys()];
  }

  /** How many subscribers are subscribed now (durable ones away included). */
  get subscriberCount(): number {
    return this.queues.size;
  }

  /** Subscribers connected now. */
  get connectedCount(): number {
    let n = 0;
    for (const q of this.queues.values()) if (q.connected) n++;
    return n;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** What the publisher knows of `ident`'s subscription, or `undefined`. */
  subscriber(ident: string): SubscriberInfo | undefined {
    return this.queues.get(ident)?.info();
  }

  /**
   * Publishes `data` on `subject` with `type`. Data: a string (`text/ascii`,
   * or binary with `binary: true`), a `Uint8Array` (bytes, written as given:
   * the cheap way to publish raw bytes) or a JSON value (PostTroll's JSON
   * rules, see {@link PubMessage}); `''`/`undefined` is no data.
   *
   * Awaiting the returned {@link Publication} waits until the message was
   * written to every subscriber connected now (or dropped for it).
   * @throws PubMessageError for an invalid subject, type, version or data; ClosedError after `close()`.
   */
  publish(subject: string, type: string, data?: PubData, options?: PublishOptions): Publication {
    checkPubWord('subject', subject);
    checkPubWord('type', type);
    let binary = false;
    if (options !== undefined) {
      for (const k in options)
        if (!PUBLISH_OPTION_KEYS.has(k)) throw new InvalidOptionsError(`publish: unknown option '${k}' (known: binary, micros, time, version)`);
      if (options.time !== undefined || options.micros !== undefined || options.version !== undefined) {
        return this.publishMessage(new PubMessage({ subject, type, sender: this.senderText, data, ...options }));
      }
      if (options.binary !== undefined && typeof options.binary !== 'boolean') throw new InvalidOptionsError(`publish: option 'binary' must be a boolean`);
      binary = options.binary === true;
    }
    if (data === undefined || data === '') return this.fanOut(this.header(subject, type), DataKind.None, EMPTY);
    if (typeof data === 'string') return this.fanOut(this.header(subject, type), binary ? DataKind.BinaryString : DataKind.Text, data);
    if (data instanceof Uint8Array) return this.fanOut(this.header(subject, type), DataKind.Bytes, data);
    return this.publishMessage(new PubMessage({ subject, type, sender: this.senderText, data, binary }));
  }

  private header(subject: string, type: string): PublishHeader {
    return { subject, type, sender: this.sender, version: undefined, timeMs: Date.now(), micros: 0 };
  }

  /** Publishes a {@link PubMessage} as it is (its sender, time and version). */
  publishMessage(msg: PubMessage): Publication {
    const header: PublishHeader = {
      subject: msg.subject,
      type: msg.type,
      sender: msg.sender === this.senderText ? this.sender : Buffer.from(msg.sender, 'utf8'),
      version: msg.version,
      timeMs: msg.time.getTime(),
      micros: msg.micros,
    };
    const d = msg.data;
    if (d === '') return this.fanOut(header, DataKind.None, EMPTY);
    if (d instanceof Uint8Array) return this.fanOut(header, DataKind.Bytes, d);
    if (typeof d === 'string') return this.fanOut(header, msg.binary ? DataKind.BinaryString : DataKind.Text, d);
    const zone = !(msg.wireVersion <= 'v1.01');
    return this.fanOut({ ...header, version: msg.version ?? msg.wireVersion }, DataKind.Json, encodeJsonData(d, zone));
  }

  private get senderText(): string {
    return this.options.sender ?? defaultSender();
  }

  private fanOut(header: PublishHeader, kind: DataKind, data: Uint8Array | string): Publication {
    if (this.isClosed) throw new ClosedError('Publisher closed');
    // Encoded once (also without subscribers: a field too long throws either way); the same bytes go to every subscriber.
    const frame = encodePublishedWith(this.headOf(header), kind, header.timeMs, header.micros, data);
    const to = this.matchesOf(header.subject);
    const copies: Copy[] = new Array<Copy>(to.length);
    for (let i = 0; i < to.length; i++) copies[i] = to[i]!.deliver(frame);
    return new Publication(to, copies);
  }

  /** The frame head of the last subject, type, sender and version, kept: publishers repeat them. */
  private headOf(h: PublishHeader): Buffer {
    const c = this.headCache;
    if (c !== null && c.subject === h.subject && c.type === h.type && c.sender === h.sender && c.version === h.version) return c.head;
    const head = encodePublishedHead(h.subject, h.type, h.sender, h.version);
    this.headCache = { subject: h.subject, type: h.type, sender: h.sender, version: h.version, head };
    return head;
  }

  /** The subscribers matching `subject`: the last answer is kept until the subject or a subscription changes (never mutated: publications hold it). */
  private matchesOf(subject: string): readonly SubscriberQueue[] {
    if (subject === this.matchSubject && this.matchVersion === this.indexVersion) return this.matchList;
    const list: SubscriberQueue[] = [];
    this.index.forEachMatch(subject, (q) => list.push(q));
    this.matchSubject = subject;
    this.matchVersion = this.indexVersion;
    this.matchList = list;
    return list;
  }

  /** Stops publishing: subscribers are forgotten here (a durable subscriber's held messages stay in the messaging queues). Idempotent. */
  close(): Promise<void> {
    if (this.isClosed) return this.saving;
    this.isClosed = true;
    this.unhook();
    const m = this.messaging;
    m.off('connect', this.onConnect);
    m.off('disconnect', this.onDisconnect);
    m.off('drain', this.onDrain);
    m.off('close', this.onClose);
    for (const q of this.queues.values()) q.clear();
    this.queues.clear();
    this.index.clear();
    this.indexVersion++;
    const store = this.options.durableStore;
    return (this.saving = this.saving.then(() => store?.close()).catch(() => {}));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private onSubscribe(ident: string, data: Buffer): void {
    if (this.isClosed) return;
    const o = this.options;
    const seq = data.length >= 10 ? data.readUInt32BE(6) : 0;
    let frame;
    try {
      frame = decodeSubscribe(data, { maxFilters: o.maxFilters, maxFilterBytes: o.maxFilterLength * 3 });
    } catch (err) {
      const e = err as PubSubFrameError;
      if (log.enabled) log(`bad subscription frame from ${ident}: ${e.message}`);
      this.emit('badFrame', ident, e);
      this.refuse(ident, seq, e.message, e);
      return;
    }
    if (o.allow !== undefined && !o.allow(ident)) return this.refuse(ident, seq, `${this.messaging.identity} does not serve ${ident}`);
    const topics = frame.filters;
    let q = this.queues.get(ident);
    if (topics.length === 0) {
      this.confirm(ident, seq);
      if (q !== undefined) this.remove(q, 'unsubscribed');
      return;
    }
    const parsed = [];
    for (const t of topics) {
      try {
        parsed.push(parseFilter(t, { maxFilterLength: o.maxFilterLength }));
      } catch (err) {
        return this.refuse(ident, seq, (err as InvalidFilterError).message, err);
      }
    }
    const durable = (frame.flags & SUB_FLAG_DURABLE) !== 0;
    if (q === undefined && this.queues.size >= o.maxSubscribers) return this.refuse(ident, seq, `${o.maxSubscribers} subscribers already (maxSubscribers)`);
    if (durable && !q?.durable && this.durableCount >= o.maxDurable)
      return this.refuse(ident, seq, `${o.maxDurable} durable subscriptions already (maxDurable)`);
    if (q === undefined) {
      q = new SubscriberQueue(ident, this.messaging, o, this.onSlow);
      this.queues.set(ident, q);
    } else {
      for (const t of q.topics) this.index.remove(t, q);
    }
    for (const f of parsed) this.index.add(f, q);
    this.indexVersion++;
    if (q.durable) this.durableCount--;
    if (durable) this.durableCount++;
    const ttl = frame.ttl === null ? o.durableTtl : Math.min(frame.ttl, o.durableTtl);
    const wasDurable = q.durable;
    q.configure(topics, durable, ttl, frame.flags, (frame.flags & SUB_FLAG_REJECT) !== 0 ? 'reject' : 'drop-oldest');
    q.connected = this.messaging.isConnected(ident);
    if (log.enabled) log(`${ident} subscribed to ${topics.length} filter(s)${durable ? ', durable' : ''}`);
    this.emit('subscribe', ident, topics, durable);
    // A durable subscription is confirmed once it is stored: `ready` then means it survives a crash.
    if (durable || wasDurable) void this.save().then(() => this.confirm(ident, seq));
    else this.confirm(ident, seq);
  }

  private refuse(ident: string, seq: number, reason: string, cause?: unknown): void {
    const error = new SubscriptionRefusedError(`subscription of ${ident} refused: ${reason}`, { cause });
    this.emit('refused', ident, error);
    this.reply(ident, encodeConfirm(seq, false, reason));
  }

  private confirm(ident: string, seq: number): void {
    this.reply(ident, encodeConfirm(seq, true));
  }

  private reply(ident: string, frame: Buffer): void {
    if (this.messaging.closed) return;
    this.messaging.send(ident, new Message(frame, { ttl: 0 }));
  }

  private remove(q: SubscriberQueue, reason: 'unsubscribed' | 'disconnected'): void {
    for (const t of q.topics) this.index.remove(t, q);
    this.indexVersion++;
    this.queues.delete(q.ident);
    q.clear();
    if (q.durable) {
      this.durableCount--;
      void this.save();
    }
    if (log.enabled) log(`${q.ident} ${reason}`);
    this.emit('unsubscribe', q.ident, reason);
  }

  private readonly onSlow = (q: SubscriberQueue): void => {
    if (log.enabled) log(`slow subscriber ${q.ident}: ${q.queued} queued, ${q.dropped} dropped`);
    this.emit('slowSubscriber', q.ident, q.info());
  };

  private readonly onConnect = (_connId: number, ident: string): void => {
    const q = this.queues.get(ident);
    if (q !== undefined) q.connected = true;
  };

  private readonly onDisconnect = (_connId: number, ident: string): void => {
    const q = this.queues.get(ident);
    if (q === undefined) return;
    if (q.durable) {
      q.connected = false;
      return;
    }
    this.remove(q, 'disconnected');
  };

  private readonly onDrain = (ident: string): void => {
    this.queues.get(ident)?.pump();
  };

  private readonly onClose = (): void => {
    void this.close();
  };

  private async load(): Promise<void> {
    const store = this.options.durableStore;
    if (store === undefined) return;
    let records: DurableRecord[];
    try {
      records = await store.load();
    } catch (err) {
      this.emit('storeError', err as StorageError);
      return;
    }
    if (this.isClosed) return;
    for (const r of records) {
      if (this.queues.has(r.ident) || this.durableCount >= this.options.maxDurable) continue;
      const parsed = [];
      try {
        for (const t of r.filters) parsed.push(parseFilter(t, { maxFilterLength: this.options.maxFilterLength }));
      } catch {
        continue;
      }
      const q = new SubscriberQueue(r.ident, this.messaging, this.options, this.onSlow);
      q.configure(r.filters, true, Math.min(r.ttl, this.options.durableTtl), r.flags, (r.flags & SUB_FLAG_REJECT) !== 0 ? 'reject' : 'drop-oldest');
      this.queues.set(r.ident, q);
      this.durableCount++;
      for (const f of parsed) this.index.add(f, q);
      this.indexVersion++;
    }
  }

  /** Writes the durable subscriptions, one save at a time, coalescing changes made meanwhile; settles when a save that covers the change is done. */
  private save(): Promise<void> {
    const store = this.options.durableStore;
    if (store === undefined) return Promise.resolve();
    if (this.pendingSave !== null) return this.pendingSave;
    const next = this.saving.then(async () => {
      this.pendingSave = null;
      const records: DurableRecord[] = [];
      for (const q of this.queues.values()) if (q.durable) records.push({ ident: q.ident, filters: q.topics, ttl: q.ttl, flags: q.flags });
      try {
        await store.save(records);
      } catch (err) {
        this.emit('storeError', err as StorageError);
      }
    });
    this.pendingSave = next;
    this.saving = next;
    return next;
  }
}
