/**
 * Publish/subscribe on subjects, with PostTroll's message model.
 * @module
 */
export { Publisher, type PublisherEvents, type PublishOptions } from './publisher.js';
export { Publication, type PublishResult } from './publication.js';
export { Subscriber, ReceivedPubMessage, type SubscriberEvents } from './subscriber.js';
export { FileDurableStore, type DurableStore, type DurableRecord } from './durable-store.js';
export {
  DEFAULT_MAX_FILTERS,
  DEFAULT_MAX_SUBSCRIBERS,
  DEFAULT_SUBSCRIBER_QUEUE,
  DEFAULT_SUBSCRIBER_QUEUE_BYTES,
  DEFAULT_MAX_DURABLE,
  DEFAULT_DURABLE_MAX_MESSAGES,
  DEFAULT_DURABLE_TTL,
  DEFAULT_SUBSCRIBER_BUFFER,
  defaultOverflow,
  type OverflowAction,
  type SubscriberOverflowPolicy,
  type SubscriberInfo,
  type PublisherOptions,
  type SubscriberOptions,
} from './options.js';
export {
  PubMessage,
  PubDateTime,
  encodePostTroll,
  decodePostTroll,
  revivePostTrollDates,
  defaultSender,
  POSTTROLL_MAGIC,
  POSTTROLL_MAX_VERSION,
  DEFAULT_POSTTROLL_MAX_BYTES,
  type PubData,
  type PubJson,
  type PubMessageInit,
  type DecodePostTrollOptions,
} from './pub-message.js';
export {
  SubjectIndex,
  parseFilter,
  matchesFilter,
  DEFAULT_MAX_FILTER_LENGTH,
  DEFAULT_MAX_FILTER_COMPONENTS,
  type SubjectFilter,
  type FilterLimits,
  type SubjectIndexOptions,
} from './subject-index.js';
export { MAX_SUBJECT_BYTES, MAX_WORD_BYTES } from './frames.js';
export type { PubSubTransport } from './transport.js';
