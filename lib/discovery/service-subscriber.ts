/**
 * {@link ServiceSubscriber}: subscribes by service name. It asks the
 * nameservers for the publishers of its services, connects to each and
 * subscribes there, and follows the nameservers' `/address/<service>`
 * publications: a publisher that appears later is picked up, one that
 * expired is dropped.
 * @module
 */
import { EventEmitter } from 'eventemitter3';
import { ClosedError, InvalidOptionsError, type NameserverError } from '../errors.js';
import { parseEndpoint } from '../link/endpoint.js';
import type { ConnectorOptions } from '../link/options.js';
import type { Peer } from '../peer/peer.js';
import type { OverflowAction } from '../pubsub/options.js';
import type { PubJson } from '../pubsub/pub-message.js';
import { SubjectIndex, parseFilter } from '../pubsub/subject-index.js';
import { Subscriber, type ReceivedPubMessage } from '../pubsub/subscriber.js';
import { PubStream } from '../pubsub/pub-stream.js';
import { checkAnnouncement, SUPPORTED_MESSAGE_VERSION } from './announcement.js';
import { NameserverClient } from './client.js';
import { heartbeatSubject } from './heartbeat.js';
import { log } from './log.js';
import type { ServiceEntry } from './nameserver.js';
import { is, validateOptions } from '../util/options.js';

/** Default most publishers a ServiceSubscriber follows at once (what nameservers can make it connect to): 1,000. */
export const DEFAULT_MAX_PUBLISHERS = 1000;

/** Default multiple of a publisher's heartbeat interval after which it counts as silent: 3. */
export const DEFAULT_HEARTBEAT_MULTIPLE = 3;

/** Options of {@link ServiceSubscriber.start}. */
export interface ServiceSubscriberOptions {
  /** Service names (or aliases) whose publishers to subscribe at; `''` = every service. */
  services: readonly string[];
  /** Filters, as for {@link Subscriber}. @default [] */
  topics?: readonly string[];
  /** Listener URLs of the nameservers to ask (`tcp://host:port`, `tls://…`). */
  nameservers: readonly string[];
  /** As {@link SubscriberOptions.durable}. @default false */
  durable?: boolean;
  /** As {@link SubscriberOptions.overflow}. @default 'drop-oldest' */
  overflow?: OverflowAction;
  /** As {@link SubscriberOptions.maxBuffered}. @default 16384 */
  maxBuffered?: number;
  /** As {@link SubscriberOptions.reviveString}. */
  reviveString?: (value: string) => PubJson;
  /** Ms to wait for the nameservers' first answer. @default 10000 */
  lookupTimeout?: number;
  /**
   * Heartbeat interval of the publishers, in ms: with it, a publisher from
   * which no `/heartbeat/<service>` arrived within `heartbeatMultiple` times
   * it is reported `publisherSilent` (once, until it beats again).
   * @default undefined (not watched)
   */
  heartbeatInterval?: number;
  /** @default 3 (`DEFAULT_HEARTBEAT_MULTIPLE`) */
  heartbeatMultiple?: number;
  /** Most publishers followed at once; more found are refused (`publisherRefused`): a nameserver cannot make this peer open connections without bound. @default 1000 (`DEFAULT_MAX_PUBLISHERS`) */
  maxPublishers?: number;
  /** Options of the connectors made to publishers (reconnect delay, TLS…). */
  connector?: ConnectorOptions;
  /** Options of the connectors made to the nameservers (TLS for `tls://` nameservers…). @default the peer's */
  nameserverConnector?: ConnectorOptions;
}

/** Events of {@link ServiceSubscriber}. */
export interface ServiceSubscriberEvents {
  message: (message: ReceivedPubMessage) => void;
  /** A publisher of a wanted service became known: it is connected to and subscribed at. */
  publisherFound: (entry: ServiceEntry) => void;
  /** A publisher expired at the nameserver (or unregistered): it was dropped. */
  publisherExpired: (identity: string) => void;
  /** No heartbeat from `identity` within the allowed time. */
  publisherSilent: (identity: string, silentFor: number) => void;
  /** A silent publisher beats again. */
  publisherAlive: (identity: string) => void;
  /** A publisher confirmed the subscription (again after each reconnect). */
  subscribed: (publisher: string) => void;
  /** A publisher announced a message version newer than this library reads: not subscribed at. */
  publisherRefused: (entry: ServiceEntry, reason: string) => void;
  /** A lookup failed (no nameserver answered in time); following goes on. */
  lookupFailed: (error: NameserverError) => void;
}

interface Known {
  readonly identity: string;
  url: string | null;
  lastBeat: number;
  silent: boolean;
}

function checkOptions(given: ServiceSubscriberOptions) {
  const list = (v: unknown) => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? undefined : 'must be an array of strings');
  const o = validateOptions<
    Required<Omit<ServiceSubscriberOptions, 'reviveString' | 'heartbeatInterval' | 'connector' | 'nameserverConnector'>> & ServiceSubscriberOptions
  >(
    'ServiceSubscriber',
    given,
    {
      services: (v) => list(v) ?? ((v as string[]).length === 0 ? 'must name at least one service (or "" for all)' : undefined),
      topics: list,
      nameservers: (v) => list(v) ?? ((v as string[]).length === 0 ? 'must name at least one nameserver URL' : undefined),
      durable: is.boolean(),
      overflow: is.oneOf('drop-oldest', 'reject'),
      maxBuffered: is.integer(1),
      reviveString: is.function(),
      lookupTimeout: is.integer(1),
      maxPublishers: is.integer(1),
      heartbeatInterval: is.integer(10),
      heartbeatMultiple: is.number(1, 1000),
      connector: (v) => (typeof v === 'object' && v !== null ? undefined : 'must be an object'),
      nameserverConnector: (v) => (typeof v === 'object' && v !== null ? undefined : 'must be an object'),
    },
    {
      services: [],
      topics: [],
      nameservers: [],
      durable: false,
      overflow: 'drop-oldest',
      maxBuffered: 16_384,
      lookupTimeout: 10_000,
      heartbeatMultiple: DEFAULT_HEARTBEAT_MULTIPLE,
      maxPublishers: DEFAULT_MAX_PUBLISHERS,
    },
  );
  for (const url of o.nameservers) {
    try {
      parseEndpoint(url);
    } catch (err) {
      throw new InvalidOptionsError(`ServiceSubscriber: nameserver ${JSON.stringify(url)} is not an endpoint URL`, { cause: err });
    }
  }
  return o;
}

/** An endpoint to connect to: the first that is not loopback, else the first. */
function pickEndpoint(endpoints: readonly string[]): string {
  const remote = endpoints.find((e) => {
    const p = parseEndpoint(e);
    return p.host === undefined || !(p.host.startsWith('127.') || p.host === '::1' || p.host === 'localhost');
  });
  return remote ?? endpoints[0]!;
}

/**
 * Subscribes at the publishers of services found through nameservers.
 *
 * ```ts
 * const sub = await ServiceSubscriber.start(peer, { services: ['radar'], topics: ['/oper'], nameservers: ['tcp://ns.example:5557'] });
 * for await (const msg of sub) console.log(msg.subject, msg.from);
 * ```
 *
 * It needs a {@link Peer} (it adds and removes connectors). One per peer.
 */
export class ServiceSubscriber extends EventEmitter<ServiceSubscriberEvents> implements AsyncIterable<ReceivedPubMessage> {
  /** The data subscription (at the publishers found). */
  readonly subscriber: Subscriber;
  private readonly addresses: Subscriber;
  private readonly client: NameserverClient;
  private readonly known = new Map<string, Known>();
  private readonly topicIndex = new SubjectIndex<string>();
  private readonly services: ReadonlySet<string>;
  private readonly streams = new Set<PubStream<ReceivedPubMessage>>();
  private timer: NodeJS.Timeout | null = null;
  private isClosed = false;
  private starting = true;
  /** Messages that arrived while `start()` had not returned yet: handed out just after, so listeners attached then miss none. */
  private early: ReceivedPubMessage[] | null = [];
  /** Why the last lookup failed (no nameserver answered in time), or `undefined` after one succeeded. Failures after `start()` are also `lookupFailed` events. */
  lookupError: NameserverError | undefined;

  private constructor(
    private readonly peer: Peer,
    private readonly o: ReturnType<typeof checkOptions>,
  ) {
    super();
    this.services = new Set(o.services);
    for (const t of o.topics) this.topicIndex.add(parseFilter(t), t);
    const topics = [...o.topics];
    if (o.heartbeatInterval !== undefined) for (const s of o.services) topics.push(heartbeatSubject(s));
    this.subscriber = new Subscriber(peer.messaging, {
      publishers: [],
      topics,
      durable: o.durable,
      overflow: o.overflow,
      maxBuffered: o.maxBuffered,
      reviveString: o.reviveString,
    });
    this.subscriber.on('message', this.onMessage);
    this.subscriber.on('subscribed', (p) => this.emit('subscribed', p));
    this.addresses = new Subscriber(peer.messaging, { publishers: [], topics: o.services.map((s) => (s === '' ? '/address/' : `/address/${s}`)) });
    this.addresses.on('message', this.onAddress);
    // A nameserver (re)confirmed: what changed while it was away is learnt by asking again.
    this.addresses.on('subscribed', (ns) => void this.lookupAt(ns));
    this.client = new NameserverClient(peer, {
      nameservers: [...o.nameservers],
      timeout: o.lookupTimeout,
      ...(o.nameserverConnector ? { connect: o.nameserverConnector } : {}),
    });
    this.client.on('nameserver', (_url, identity) => {
      if (!this.isClosed) void this.addresses.addPublisher(identity);
    });
  }

  /**
   * Starts following: resolves after the first lookup answered, or failed
   * (then {@link lookupError} says why, and publishers are still picked up
   * once a nameserver connects and publishes or answers).
   */
  static async start(peer: Peer, options: ServiceSubscriberOptions): Promise<ServiceSubscriber> {
    if (peer.closed) throw new ClosedError('ServiceSubscriber: peer is closed');
    const s = new ServiceSubscriber(peer, checkOptions(options));
    for (const n of s.client.nameservers()) if (n.identity !== undefined) void s.addresses.addPublisher(n.identity);
    await s.lookupAll();
    s.starting = false;
    // After the caller's code that follows `await start()` (a microtask) has attached its listeners.
    setImmediate(() => s.flushEarly());
    if (s.o.heartbeatInterval !== undefined) {
      s.timer = setInterval(() => s.checkBeats(), Math.max(10, Math.floor(s.o.heartbeatInterval / 2)));
      s.timer.unref();
    }
    return s;
  }

  /** Identities of the publishers subscribed at now. */
  get publishers(): readonly string[] {
    return [...this.known.keys()];
  }

  /** Resolves once every publisher found so far confirmed the subscription. */
  get ready(): Promise<void> {
    return this.subscriber.ready;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  messages(options?: { signal?: AbortSignal }): AsyncIterableIterator<ReceivedPubMessage> {
    const s = new PubStream<ReceivedPubMessage>(
      this.o.maxBuffered,
      () => {},
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

  /** Stops: the subscriptions, the nameserver client and the connectors it made end; the peer stays open. Idempotent. */
  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    if (this.timer !== null) clearInterval(this.timer);
    for (const s of [...this.streams]) s.end();
    await Promise.all([this.subscriber.close(), this.addresses.close()]);
    const urls = [...this.known.values()].map((k) => k.url).filter((u): u is string => u !== null);
    this.known.clear();
    await Promise.all([this.client.close(), ...urls.map((u) => this.peer.disconnect(u).catch(() => {}))]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private async lookupAll(): Promise<void> {
    for (const service of this.services) {
      try {
        for (const e of await this.client.lookup(service, { timeout: this.o.lookupTimeout })) this.found(e);
        this.lookupError = undefined;
      } catch (err) {
        if (this.isClosed) return;
        this.lookupError = err as NameserverError;
        if (!this.starting) this.emit('lookupFailed', err as NameserverError);
      }
    }
  }

  private async lookupAt(_nameserver: string): Promise<void> {
    if (!this.isClosed) await this.lookupAll();
  }

  private found(entry: ServiceEntry): void {
    if (this.isClosed || entry.identity === this.peer.messaging.identity) return;
    if (!(entry.version <= SUPPORTED_MESSAGE_VERSION)) {
      this.emit('publisherRefused', entry, `message version ${entry.version} is newer than ${SUPPORTED_MESSAGE_VERSION}`);
      return;
    }
    if (this.known.has(entry.identity)) return;
    if (this.known.size >= this.o.maxPublishers) {
      this.emit('publisherRefused', entry, `${this.o.maxPublishers} publishers followed already (maxPublishers)`);
      return;
    }
    const url = this.peer.isConnected(entry.identity) ? null : pickEndpoint(entry.endpoints);
    const k: Known = { identity: entry.identity, url: url === null ? null : this.peer.connect(url, this.o.connector), lastBeat: Date.now(), silent: false };
    this.known.set(entry.identity, k);
    if (log.enabled) log(`found ${entry.identity} (${entry.services.join(', ')}) at ${url ?? 'an existing connection'}`);
    void this.subscriber.addPublisher(entry.identity).catch(() => {});
    this.emit('publisherFound', entry);
  }

  private expired(identity: string): void {
    const k = this.known.get(identity);
    if (k === undefined) return;
    this.known.delete(identity);
    this.subscriber.removePublisher(identity);
    if (k.url !== null) void this.peer.disconnect(k.url).catch(() => {});
    if (log.enabled) log(`${identity} expired`);
    this.emit('publisherExpired', identity);
  }

  private readonly onAddress = (m: ReceivedPubMessage): void => {
    const d = m.data as Record<string, unknown> | null;
    if (typeof d !== 'object' || d === null) return;
    if (d.status === false) {
      if (typeof d.identity === 'string') this.expired(d.identity);
      return;
    }
    let a;
    try {
      a = checkAnnouncement({ identity: d.identity, endpoints: d.endpoints, services: d.service, version: d.supported_message_version });
    } catch {
      return;
    }
    if (!this.services.has('') && !a.services.some((s) => this.services.has(s))) return;
    this.found({ ...a, receivedAt: Date.now(), source: `nameserver:${m.from}` });
  };

  private readonly onMessage = (m: ReceivedPubMessage): void => {
    const k = this.known.get(m.from);
    if (k !== undefined && m.type === 'beat' && m.subject.startsWith('/heartbeat/')) {
      k.lastBeat = Date.now();
      if (k.silent) {
        k.silent = false;
        this.emit('publisherAlive', m.from);
      }
    }
    if (this.topicIndex.forEachMatch(m.subject, noop) === 0) return;
    if (this.early !== null) {
      this.early.push(m);
      if (this.early.length > this.o.maxBuffered) this.early.shift();
      return;
    }
    this.deliver(m);
  };

  private deliver(m: ReceivedPubMessage): void {
    this.emit('message', m);
    for (const s of this.streams) s.push(m);
  }

  private flushEarly(): void {
    const early = this.early;
    this.early = null;
    if (early !== null && !this.isClosed) for (const m of early) this.deliver(m);
  }

  private checkBeats(): void {
    const limit = this.o.heartbeatInterval! * this.o.heartbeatMultiple;
    const now = Date.now();
    for (const k of this.known.values()) {
      if (k.silent || now - k.lastBeat <= limit) continue;
      k.silent = true;
      this.emit('publisherSilent', k.identity, now - k.lastBeat);
    }
  }
}

function noop(): void {}
