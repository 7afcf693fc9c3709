/**
 * {@link Subscriber}: subscribes at publishers by identity and receives the
 * messages published on matching subjects.
 * @module
 */
import { EventEmitter } from 'eventemitter3';
import { ClosedError, InvalidArgumentError, PubSubFrameError, SubscriptionRefusedError } from '../errors.js';
import { Message } from '../messaging/message.js';
import { log } from './log.js';
import { DataKind, SUB_FLAG_DURABLE, SUB_FLAG_REJECT, decodeConfirm, decodePublished, encodeSubscribe, HeadCache, isWord } from './frames.js';
import { subscriberOptions, type ResolvedSubscriberOptions, type SubscriberOptions } from './options.js';
import { decodeJsonData, PubMessage, trustedPubMessage, type PubData, type PubMessageInit } from './pub-message.js';
import { PubStream } from './pub-stream.js';
import { parseFilter, SubjectIndex } from './subject-index.js';
import { SubscriberHub } from './subscriber-hub.js';
import type { PubSubTransport } from './transport.js';

/** A {@link PubMessage} as received: with the identity of the publisher it came from. */
export class ReceivedPubMessage extends PubMessage {
  constructor(
    init: PubMessageInit,
    /** Identity of the publishing peer. */
    readonly from: string,
  ) {
    super(init);
  }
}

/** Events of {@link Subscriber}. No `'error'` event. */
export interface SubscriberEvents {
  /** A message on a subscribed subject. */
  message: (message: ReceivedPubMessage) => void;
  /** `publisher` confirmed the current topics: from now on it sends what matches them. Again after each reconnect. */
  subscribed: (publisher: string, topics: readonly string[]) => void;
  /** `publisher` refused the subscription (its limits, an invalid filter, not served); `ready` rejects with the error. */
  refused: (publisher: string, error: SubscriptionRefusedError) => void;
  /** A connection with `publisher` came up (the subscription is sent on it). */
  publisherConnected: (publisher: string) => void;
  /** The connection with `publisher` ended; it is re-subscribed when it is back. */
  publisherLost: (publisher: string) => void;
  /** `publisher` sent a malformed frame: dropped, everything else goes on. */
  badFrame: (publisher: string, error: PubSubFrameError) => void;
  /** An iterator's buffer was full (`maxBuffered`): its oldest message was dropped. `dropped`: the count so far. */
  overflow: (dropped: number) => void;
}

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(e: Error): void;
  settled: boolean;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A subscriber that never awaits `ready` must not get an unhandled rejection.
  promise.catch(() => {});
  const d: Deferred = {
    promise,
    settled: false,
    resolve: () => {
      d.settled = true;
      resolve();
    },
    reject: (e) => {
      d.settled = true;
      reject(e);
    },
  };
  return d;
}

/**
 * Subscribes at the publishers named in `publishers` (peer identities) to
 * the subjects matching `topics`, and receives their messages.
 *
 * ```ts
 * const sub = new Subscriber(messaging, { publishers: ['bob'], topics: ['/counter'] });
 * await sub.ready;                     // bob confirmed: nothing published from now on is missed
 * for await (const msg of sub) console.log(msg.subject, msg.data, msg.from);
 * ```
 *
 * The subscription is sent when a publisher connects and again after every
 * reconnect (a restarted publisher learns it again). Filters: see
 * {@link parseFilter} (PostTroll's raw prefixes, or tokens with `*` and `>`).
 * A durable subscriber (`durable: true`) asks each publisher to keep what
 * matches while it is away; it is forgotten only on `unsubscribe()` of all
 * topics, not on `close()`.
 *
 * Messages arrive as the `message` event and through iterators
 * (`for await`, {@link messages}); an iterator nobody reads drops its
 * oldest past `maxBuffered`. Attaches to a Messaging it does not own.
 * One Subscriber per publisher per Messaging.
 */
export class Subscriber extends EventEmitter<SubscriberEvents> implements AsyncIterable<ReceivedPubMessage> {
  readonly options: Readonly<ResolvedSubscriberOptions>;
  private readonly hub: SubscriberHub;
  private readonly publisherSet: Set<string>;
  private topicList: string[] = [];
  private index = new SubjectIndex<string>();
  private seq = 0;
  private readonly confirmed = new Map<string, number>();
  private readonly sentAny = new Set<string>();
  private readyState: Deferred = deferred();
  private readonly streams = new Set<PubStream<ReceivedPubMessage>>();
  private isClosed = false;
  private droppedCount = 0;
  private lastSubject: string | null = null;
  /** Per publisher, its last frame head (publishers repeat subject, type and sender). */
  private readonly heads = new Map<string, HeadCache>();
  private lastMatch = false;

  constructor(
    private readonly messaging: PubSubTransport,
    options: SubscriberOptions,
  ) {
    super();
    this.options = subscriberOptions(options);
    if (messaging.closed) throw new ClosedError('Subscriber: messaging is closed');
    this.publisherSet = new Set(this.options.publishers);
    this.setTopics([...new Set(this.options.topics)]);
    this.hub = SubscriberHub.of(messaging);
    this.hub.register(this, [...this.publisherSet]);
    this.seq = 1;
    for (const p of this.publisherSet)
      if (messaging.isConnected(p)) this.sendTo(p);
      else messaging.reach?.(p);
    this.checkReady();
  }

  /** The publishers subscribed at. */
  get publishers(): readonly string[] {
    return [...this.publisherSet];
  }

  /** The filters in force (as given). */
  get topics(): readonly string[] {
    return this.topicList;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Messages dropped because an iterator's buffer was full. */
  get dropped(): number {
    return this.droppedCount;
  }

  /**
   * Resolves once every publisher confirmed the current topics: a message
   * published after that is not missed. Waits for publishers not connected
   * yet; rejects with {@link SubscriptionRefusedError} when one refuses, with
   * {@link ClosedError} on `close()`.
   */
  get ready(): Promise<void> {
    return this.readyState.promise;
  }

  /**
   * Subscribes at one more publisher (discovery uses it as publishers come
   * and go); resolves as {@link ready} does for the new set.
   * @throws InvalidArgumentError when another Subscriber on this messaging subscribes at it.
   */
  addPublisher(publisher: string): Promise<void> {
    this.checkOpen();
    if (typeof publisher !== 'string' || publisher === '') throw new InvalidArgumentError('Subscriber.addPublisher: publisher must be a non-empty identity');
    if (this.publisherSet.has(publisher)) return this.readyState.promise;
    this.hub.add(this, publisher);
    this.publisherSet.add(publisher);
    if (this.readyState.settled) this.readyState = deferred();
    if (this.messaging.isConnected(publisher)) this.sendTo(publisher);
    else this.messaging.reach?.(publisher);
    return this.readyState.promise;
  }

  /** Stops subscribing at `publisher`: a non-durable subscription there is withdrawn (a durable one stays, as on `close()`). */
  removePublisher(publisher: string): void {
    if (this.isClosed || !this.publisherSet.delete(publisher)) return;
    if (!this.options.durable && this.sentAny.has(publisher) && this.messaging.isConnected(publisher)) {
      this.messaging.send(publisher, new Message(encodeSubscribe(this.seq, 0, null, []), { ttl: 0 }));
    }
    this.hub.remove(this, publisher);
    this.heads.delete(publisher);
    this.confirmed.delete(publisher);
    this.sentAny.delete(publisher);
    this.checkReady();
  }

  /** Whether `publisher` confirmed the current topics on its current connection. */
  isConfirmed(publisher: string): boolean {
    return this.confirmed.get(publisher) === this.seq;
  }

  /**
   * Adds filters; resolves as {@link ready} does for the new set.
   * @throws InvalidFilterError for an invalid filter (nothing changed).
   */
  subscribe(...topics: string[]): Promise<void> {
    this.checkOpen();
    const next = [...this.topicList];
    for (const t of topics) if (!next.includes(t)) next.push(t);
    return this.change(next);
  }

  /** Removes filters, or all of them without arguments (a durable subscription is then forgotten by the publishers). */
  unsubscribe(...topics: string[]): Promise<void> {
    this.checkOpen();
    const next = topics.length === 0 ? [] : this.topicList.filter((t) => !topics.includes(t));
    return this.change(next);
  }

  /** Received messages as an async iterator; ends on `close()`. With `signal`, aborting it ends the iterator with {@link AbortedError}. */
  messages(options?: { signal?: AbortSignal }): AsyncIterableIterator<ReceivedPubMessage> {
    const s = new PubStream<ReceivedPubMessage>(
      this.options.maxBuffered,
      () => this.emit('overflow', ++this.droppedCount),
      (x) => this.streams.delete(x),
      options?.signal,
    );
    if (this.isClosed) s.end();
    else if (!s.done) this.streams.add(s);
    return s;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<ReceivedPubMessage> {
    return this.messages();
  }

  /**
   * Stops receiving: iterators end, a pending `ready` rejects with
   * {@link ClosedError}. A non-durable subscription is withdrawn from the
   * publishers still connected; a durable one stays (the publishers keep
   * collecting for this identity). Idempotent.
   */
  close(): Promise<void> {
    if (this.isClosed) return Promise.resolve();
    if (!this.options.durable && this.topicList.length > 0 && !this.messaging.closed) {
      this.topicList = [];
      this.seq++;
      for (const p of this.publisherSet) if (this.messaging.isConnected(p)) this.sendTo(p);
    }
    this.shutDown();
    return Promise.resolve();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private shutDown(): void {
    this.isClosed = true;
    this.hub.unregister(this);
    if (!this.readyState.settled) this.readyState.reject(new ClosedError('Subscriber closed'));
    for (const s of [...this.streams]) s.end();
    this.streams.clear();
  }

  private checkOpen(): void {
    if (this.isClosed) throw new ClosedError('Subscriber closed');
  }

  /**
   * Whether `subject` matches the topics. Publishers repeat subjects, so
   * the last answer is kept until the subject or the topics change.
   * @throws PubSubFrameError for a subject that is not a word (empty, or with whitespace).
   */
  private matches(subject: string): boolean {
    if (subject === this.lastSubject) return this.lastMatch;
    if (!isWord(subject)) throw new PubSubFrameError('published frame with an empty subject or whitespace in it');
    const m = this.index.forEachMatch(subject, noop) > 0;
    this.lastSubject = subject;
    this.lastMatch = m;
    return m;
  }

  private setTopics(topics: string[]): void {
    this.lastSubject = null;
    const index = new SubjectIndex<string>({ maxFilterLength: this.options.maxFilterLength });
    for (const t of topics) index.add(parseFilter(t, { maxFilterLength: this.options.maxFilterLength }), t);
    this.index = index;
    this.topicList = topics;
  }

  private change(topics: string[]): Promise<void> {
    this.setTopics(topics);
    this.seq++;
    if (this.readyState.settled) this.readyState = deferred();
    for (const p of this.publisherSet) if (this.messaging.isConnected(p)) this.sendTo(p);
    return this.readyState.promise;
  }

  private sendTo(publisher: string): void {
    if (this.topicList.length === 0 && !this.sentAny.has(publisher)) {
      // Nothing to withdraw: confirm locally (and do not make a durable publisher forget us).
      this.confirmed.set(publisher, this.seq);
      this.checkReady();
      return;
    }
    this.sentAny.add(publisher);
    const flags = (this.options.durable ? SUB_FLAG_DURABLE : 0) | (this.options.overflow === 'reject' ? SUB_FLAG_REJECT : 0);
    const frame = encodeSubscribe(this.seq, flags, this.options.ttl, this.topicList);
    this.messaging.send(publisher, new Message(frame, { ttl: 0 }));
  }

  private checkReady(): void {
    if (this.readyState.settled) return;
    for (const p of this.publisherSet) if (this.confirmed.get(p) !== this.seq) return;
    this.readyState.resolve();
  }

  /** @internal */
  onConnect(publisher: string): void {
    if (this.isClosed) return;
    this.emit('publisherConnected', publisher);
    this.sendTo(publisher);
  }

  /** @internal */
  onDisconnect(publisher: string): void {
    this.confirmed.delete(publisher);
    this.sentAny.delete(publisher);
    if (!this.isClosed) this.emit('publisherLost', publisher);
  }

  /** @internal */
  onTransportClose(): void {
    if (!this.isClosed) this.shutDown();
  }

  /** @internal */
  onConfirm(publisher: string, data: Buffer): void {
    if (this.isClosed) return;
    let c;
    try {
      c = decodeConfirm(data);
    } catch (err) {
      this.emit('badFrame', publisher, err as PubSubFrameError);
      return;
    }
    if (c.seq !== this.seq) return;
    if (!c.ok) {
      const error = new SubscriptionRefusedError(`${publisher} refused the subscription: ${c.reason}`);
      if (log.enabled) log(error.message);
      this.emit('refused', publisher, error);
      if (!this.readyState.settled) this.readyState.reject(error);
      return;
    }
    this.confirmed.set(publisher, c.seq);
    if (log.enabled) log(`${publisher} confirmed ${this.topicList.length} filter(s)`);
    this.emit('subscribed', publisher, this.topicList);
    this.checkReady();
  }

  /** @internal */
  onPublished(publisher: string, data: Buffer): void {
    if (this.isClosed) return;
    let msg: ReceivedPubMessage;
    try {
      let cache = this.heads.get(publisher);
      if (cache === undefined) this.heads.set(publisher, (cache = new HeadCache()));
      const f = decodePublished(data, cache);
      if (!this.matches(f.subject)) return;
      let d: PubData = '';
      let binary = false;
      switch (f.kind) {
        case DataKind.Text:
          d = f.data.toString('utf8');
          break;
        case DataKind.Bytes:
          d = f.data;
          binary = true;
          break;
        case DataKind.BinaryString:
          d = f.data.toString('latin1');
          binary = true;
          break;
        case DataKind.Json:
          d = decodeJsonData(f.data.toString('utf8'), this.options.reviveString);
          break;
      }
      if (!isWord(f.type) || !isWord(f.sender) || (f.version !== undefined && !isWord(f.version))) {
        throw new PubSubFrameError('published frame with an empty type or sender, or whitespace in its type, sender or version');
      }
      const init: PubMessageInit = {
        subject: f.subject,
        type: f.type,
        sender: f.sender,
        time: new Date(f.timeMs),
        micros: f.micros,
        version: f.version,
        binary,
        data: d,
      };
      msg = trustedPubMessage(makeReceived, true, init, publisher);
    } catch (err) {
      const e = err instanceof PubSubFrameError ? err : new PubSubFrameError(`published frame refused: ${(err as Error).message}`, { cause: err });
      if (log.enabled) log(`bad frame from ${publisher}: ${e.message}`);
      this.emit('badFrame', publisher, e);
      return;
    }
    this.emit('message', msg);
    for (const s of this.streams) s.push(msg);
  }
}

function noop(): void {}

function makeReceived(init: PubMessageInit, from: string): ReceivedPubMessage {
  return new ReceivedPubMessage(init, from);
}
