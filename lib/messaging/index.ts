export {
  Messaging,
  DEFAULT_DEDUP_WINDOW,
  DEFAULT_PEER_HIGH_WATER_MARK,
  DEFAULT_PEER_HIGH_WATER_MARK_BYTES,
  DEFAULT_KEEPALIVE_WAIT,
  DEFAULT_MAX_QUEUE_BYTES,
  DEFAULT_MAX_QUEUE_MESSAGES,
  DEFAULT_STREAM_HIGH_WATER_MARK,
} from './messaging.js';
export { QUEUE_ENTRY_OVERHEAD } from './delivery.js';
export type { MessagingOptions, OverflowPolicy, ReceiveHookHandler, ResolvedMessagingOptions } from './messaging.js';
export type { MessagingStats, PeerStats } from './messaging.js';
export { Message, FLAG_PERSISTENT, TTL_INFINITE, MAX_TTL, DEFAULT_TTL, randomUuid } from './message.js';
export type { MessageOptions } from './message.js';
export type { DatagramCounters } from './datagram.js';
export type { ReceivedMessage } from './stream.js';
export { Verdict, LOOPBACK_CONN_ID, MAX_HELD_RECEIVED } from './intercept.js';
export type {
  DropVerdict,
  ErrorVerdict,
  ForwardVerdict,
  InterceptResult,
  Interceptor,
  ReceiveInterceptor,
  ReturnVerdict,
  SendInterceptor,
} from './intercept.js';
export type { Delivery, DeliveryState, MessagingEvents } from './types.js';
