/**
 * Options of {@link Publisher} and {@link Subscriber}: their types, defaults
 * (`DEFAULT_…`) and validation (unknown keys are refused).
 * @module
 */
import type { DurableStore } from './durable-store.js';
import type { PubJson } from './pub-message.js';
import { DEFAULT_MAX_FILTER_LENGTH } from './subject-index.js';
import { is, validateOptions, type OptionCheck } from '../util/options.js';

/** Default most filters one subscriber may hold at a publisher: 256. */
export const DEFAULT_MAX_FILTERS = 256;
/** Default most subscriber peers one publisher serves at once: 10,000. */
export const DEFAULT_MAX_SUBSCRIBERS = 10_000;
/** Default messages a publisher holds for one connected subscriber beyond its messaging high-water mark: 1,024. */
export const DEFAULT_SUBSCRIBER_QUEUE = 1024;
/** Default bytes of published frames held so for one subscriber: 4 MiB. */
export const DEFAULT_SUBSCRIBER_QUEUE_BYTES = 4 * 1024 * 1024;
/** Default most durable subscriptions one publisher keeps: 1,000. */
export const DEFAULT_MAX_DURABLE = 1000;
/** Default most messages queued for one durable subscriber (away or not): 100,000. */
export const DEFAULT_DURABLE_MAX_MESSAGES = 100_000;
/** Default longest time a message waits for an away durable subscriber: one day, in seconds. */
export const DEFAULT_DURABLE_TTL = 86_400;
/** Default messages a Subscriber buffers for its iterators before dropping the oldest: 16,384. */
export const DEFAULT_SUBSCRIBER_BUFFER = 16_384;

/** What a publisher knows of one subscriber when its queue overflows. */
export interface SubscriberInfo {
  /** The subscriber's identity. */
  readonly ident: string;
  /** Its filters, as it sent them. */
  readonly topics: readonly string[];
  readonly durable: boolean;
  /** What the subscriber asked for (its `overflow` option). */
  readonly requested: OverflowAction;
  /** Messages held for it now (at the publisher, beyond messaging's high-water mark; for a durable one, in its queue). */
  readonly queued: number;
  /** Messages dropped or refused for it so far. */
  readonly dropped: number;
}

/** What to do with a message that does not fit a subscriber's queue: drop the oldest held to make room, or refuse the new one. */
export type OverflowAction = 'drop-oldest' | 'reject';

/**
 * Decides, per subscriber and each time its queue is full, what gives way.
 * Called only on overflow. A durable subscriber's backlog is its messaging
 * queue, where nothing is taken out of the middle: for it `'drop-oldest'`
 * acts as `'reject'` (the oldest, in order, are kept).
 */
export type SubscriberOverflowPolicy = (subscriber: SubscriberInfo) => OverflowAction;

/** The default {@link SubscriberOverflowPolicy}: what the subscriber asked for (drop-oldest unless it asked `'reject'`). */
export const defaultOverflow: SubscriberOverflowPolicy = (s) => s.requested;

/** Options of {@link Publisher}. */
export interface PublisherOptions {
  /** Most filters in one subscription; a longer list is refused. @default 256 (`DEFAULT_MAX_FILTERS`) */
  maxFilters?: number;
  /** Longest filter, in UTF-16 code units. @default 1024 (`DEFAULT_MAX_FILTER_LENGTH`) */
  maxFilterLength?: number;
  /** Most subscriber peers at once; a new one beyond is refused. @default 10000 (`DEFAULT_MAX_SUBSCRIBERS`) */
  maxSubscribers?: number;
  /**
   * Messages held for one connected subscriber whose messaging queue is at
   * its high-water mark (`writable()` false); beyond, `overflow` decides.
   * @default 1024 (`DEFAULT_SUBSCRIBER_QUEUE`)
   */
  maxQueue?: number;
  /** The same in bytes of published frames. @default 4194304 (4 MiB, `DEFAULT_SUBSCRIBER_QUEUE_BYTES`) */
  maxQueueBytes?: number;
  /** @default {@link defaultOverflow} */
  overflow?: SubscriberOverflowPolicy;
  /** Most durable subscriptions kept; a new one beyond is refused. @default 1000 (`DEFAULT_MAX_DURABLE`) */
  maxDurable?: number;
  /** Most messages queued for one durable subscriber; beyond, new ones are refused for it. @default 100000 (`DEFAULT_DURABLE_MAX_MESSAGES`) */
  durableMaxMessages?: number;
  /** Longest wait of a message for an away durable subscriber, in seconds (a subscriber may ask less). @default 86400 (`DEFAULT_DURABLE_TTL`) */
  durableTtl?: number;
  /**
   * Where durable subscriptions are kept so that a restarted publisher goes
   * on holding messages for subscribers still away. Default: memory only.
   * Give a {@link FileDurableStore} (and storage to the messaging, which
   * keeps the held messages) to survive a restart.
   */
  durableStore?: DurableStore;
  /** Who may subscribe; a refused identity gets a refusal. @default every identity */
  allow?: (ident: string) => boolean;
  /** `user@host` written into published messages. @default this process's user and host */
  sender?: string;
}

export interface ResolvedPublisherOptions {
  maxFilters: number;
  maxFilterLength: number;
  maxSubscribers: number;
  maxQueue: number;
  maxQueueBytes: number;
  overflow: SubscriberOverflowPolicy;
  maxDurable: number;
  durableMaxMessages: number;
  durableTtl: number;
  durableStore: DurableStore | undefined;
  allow: ((ident: string) => boolean) | undefined;
  sender: string | undefined;
}

const isObject: OptionCheck = (v) =>
  typeof v === 'object' && v !== null && typeof (v as DurableStore).load === 'function' ? undefined : 'must be a DurableStore';

export function publisherOptions(given: unknown): ResolvedPublisherOptions {
  return validateOptions<ResolvedPublisherOptions>(
    'Publisher',
    given,
    {
      maxFilters: is.integer(1, 0xffff),
      maxFilterLength: is.integer(1, 0x3fff),
      maxSubscribers: is.integer(1),
      maxQueue: is.integer(1),
      maxQueueBytes: is.integer(1),
      overflow: is.function(),
      maxDurable: is.integer(0),
      durableMaxMessages: is.integer(1),
      durableTtl: is.integer(0, 0xfffffffe),
      durableStore: isObject,
      allow: is.function(),
      sender: (v) => (typeof v === 'string' && v !== '' && !/\s/.test(v) ? undefined : 'must be a non-empty string without whitespace'),
    },
    {
      maxFilters: DEFAULT_MAX_FILTERS,
      maxFilterLength: DEFAULT_MAX_FILTER_LENGTH,
      maxSubscribers: DEFAULT_MAX_SUBSCRIBERS,
      maxQueue: DEFAULT_SUBSCRIBER_QUEUE,
      maxQueueBytes: DEFAULT_SUBSCRIBER_QUEUE_BYTES,
      overflow: defaultOverflow,
      maxDurable: DEFAULT_MAX_DURABLE,
      durableMaxMessages: DEFAULT_DURABLE_MAX_MESSAGES,
      durableTtl: DEFAULT_DURABLE_TTL,
      durableStore: undefined,
      allow: undefined,
      sender: undefined,
    },
  );
}

/** Options of {@link Subscriber}. */
export interface SubscriberOptions {
  /** Identities of the publishers to subscribe at (more with `addPublisher()`). One Subscriber per publisher on a messaging. */
  publishers: readonly string[];
  /** Filters (see {@link parseFilter}); more can be added with `subscribe()`. @default [] (nothing until `subscribe()`) */
  topics?: readonly string[];
  /** Ask each publisher to keep matching messages while this peer is away, under its identity. @default false */
  durable?: boolean;
  /** Seconds a publisher should hold a message for this durable subscriber; `null`: the publisher's maximum. @default null */
  ttl?: number | null;
  /** What the publisher should do when this subscriber's queue there is full. @default 'drop-oldest' */
  overflow?: OverflowAction;
  /** Messages buffered for unread iterators; beyond, the oldest is dropped and `overflow` emitted. @default 16384 (`DEFAULT_SUBSCRIBER_BUFFER`) */
  maxBuffered?: number;
  /** Policy for strings in JSON data, as in {@link decodePostTroll}; e.g. {@link revivePostTrollDates}. @default none */
  reviveString?: (value: string) => PubJson;
  /** Longest filter accepted by `subscribe()`, in UTF-16 code units (a publisher may allow less). @default 1024 */
  maxFilterLength?: number;
}

export interface ResolvedSubscriberOptions {
  publishers: readonly string[];
  topics: readonly string[];
  durable: boolean;
  ttl: number | null;
  overflow: OverflowAction;
  maxBuffered: number;
  reviveString: ((value: string) => PubJson) | undefined;
  maxFilterLength: number;
}

const stringList =
  (nonEmpty: boolean): OptionCheck =>
  (v) =>
    Array.isArray(v) && v.every((x) => typeof x === 'string') && (!nonEmpty || v.length > 0)
      ? undefined
      : `must be ${nonEmpty ? 'a non-empty' : 'an'} array of strings`;

export function subscriberOptions(given: unknown): ResolvedSubscriberOptions {
  return validateOptions<ResolvedSubscriberOptions>(
    'Subscriber',
    given,
    {
      publishers: stringList(false),
      topics: stringList(false),
      durable: is.boolean(),
      ttl: (v) => (v === null || (Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xfffffffe) ? undefined : 'must be null or whole seconds'),
      overflow: is.oneOf('drop-oldest', 'reject'),
      maxBuffered: is.integer(1),
      reviveString: is.function(),
      maxFilterLength: is.integer(1, 0x3fff),
    },
    {
      publishers: [],
      topics: [],
      durable: false,
      ttl: null,
      overflow: 'drop-oldest',
      maxBuffered: DEFAULT_SUBSCRIBER_BUFFER,
      reviveString: undefined,
      maxFilterLength: DEFAULT_MAX_FILTER_LENGTH,
    },
  );
}
