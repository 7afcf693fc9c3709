/**
 * Options of {@link Messaging}: their types, defaults (`DEFAULT_…`) and
 * validation. Builds on lib/util/options.ts.
 * @module
 */
import type { RelayOptions } from '../relay/options.js';
import type { ConnectionInfo } from '../link/types.js';
import type { QueuesStorage } from '../storage/types.js';
import { is, validateOptions } from '../util/options.js';

/** Default per-identity queue limit in messages. */
export const DEFAULT_MAX_QUEUE_MESSAGES = 4_194_304;
/** Default per-identity queue limit in bytes (payloads plus `QUEUE_ENTRY_OVERHEAD` each): 512 MiB. */
export const DEFAULT_MAX_QUEUE_BYTES = 512 * 1024 * 1024;
/** Default number of recent message uuids remembered per identity to drop re-sent duplicates. */
export const DEFAULT_DEDUP_WINDOW = 65_536;
/** Default time to wait for any sign of life after a keepalive PING: 500 ms. */
export const DEFAULT_KEEPALIVE_WAIT = 500;
/** Default number of received messages an async iterator buffers before reading pauses. */
export const DEFAULT_STREAM_HIGH_WATER_MARK = 16_384;

/** Default time a new connection has to identify itself (PROTOCOL_VERSION and IDENTIFICATION): 10 s. */
export const DEFAULT_IDENTIFY_TIMEOUT = 10_000;
/** Default largest packet accepted from a connection before it identified itself: 4 KiB. */
export const DEFAULT_MAX_HANDSHAKE_PACKET_SIZE = 4096;
/** Default time the state of a disconnected identity with nothing queued is kept (for de-duplication after a reconnect): 5 minutes. */
export const DEFAULT_IDLE_IDENTITY_GRACE = 5 * 60_000;
/** Default number of disconnected identities with nothing queued whose state is kept (the least recently seen go first). */
export const DEFAULT_MAX_IDLE_IDENTITIES = 10_000;
/**
 * Default per-identity high-water mark in messages (see
 * {@link MessagingOptions.highWaterMark}): 4,096. Enough to keep a
 * connection busy between acknowledgements (a receiver acknowledges a stream
 * at least once per event-loop turn; 4,096 small messages are several 64 KiB
 * write batches), small enough that a sender that waits for `drain` holds
 * about a megabyte of small messages, not the millions `maxQueueMessages`
 * allows. Only `writable()`/`drained()`/`sendWhenReady()` look at it: `send()`
 * never waits and never throws because of it.
 */
export const DEFAULT_PEER_HIGH_WATER_MARK = 4096;
/** Default per-identity high-water mark in bytes (counted like `maxQueueBytes`): 16 MiB. */
export const DEFAULT_PEER_HIGH_WATER_MARK_BYTES = 16 * 1024 * 1024;

/**
 * Decides whether a peer may take the identity it claims on a connection
 * (see {@link MessagingOptions.authorize}); `certificateIdentity()` is a
 * ready policy binding identities to TLS certificates.
 */
export type AuthorizePolicy = (identity: string, connection: ConnectionInfo) => boolean;

/** What to do when a send would exceed a queue's limits. */
export type OverflowPolicy = 'reject' | 'drop-oldest';

/** Options of {@link Messaging}. All times in milliseconds. */
export interface MessagingOptions {
  /**
   * Where persistent messages are kept so they survive a restart (e.g.
   * `SqliteQueuesStorage`). Without one, every queue lives in memory only.
   * @default null
   */
  storage?: QueuesStorage | null;
  /**
   * Send a PING when nothing was received on a connection for this long;
   * `null` turns keepalive off (snakeMQ's default).
   * @default null
   */
  keepaliveInterval?: number | null;
  /** After a PING, close the connection if nothing arrives within this time. @default 500 */
  keepaliveWait?: number;
  /**
   * Announce and use the acknowledged-delivery extension (docs/protocol.md).
   * Off, this peer behaves as a plain protocol-1 peer (messages leave the
   * queue once written to the socket).
   * @default true
   */
  acknowledgements?: boolean;
  /** Recent uuids remembered per identity to recognise re-sent messages. @default 65536 */
  dedupWindow?: number;
  /** Per-identity queue limit in messages. @default 4194304 */
  maxQueueMessages?: number;
  /** Per-identity queue limit in bytes (data + 128 per message). @default 536870912 */
  maxQueueBytes?: number;
  /** `reject`: `send` throws {@link QueueFullError}; `drop-oldest`: the oldest unsent message is dropped (`drop` event). @default 'reject' */
  overflow?: OverflowPolicy;
  /**
   * Messages an async iterator may buffer: when a message takes an iterator
   * to this mark, reading pauses on the connection that delivered it (and on
   * every other connection that delivers to a full iterator) until no
   * iterator is full. Other peers keep flowing.
   * @default 16384
   */
  streamHighWaterMark?: number;
  /**
   * A connection that has not sent PROTOCOL_VERSION and IDENTIFICATION
   * within this time is closed ({@link IdentificationTimeoutError}).
   * @default 10000
   */
  identifyTimeout?: number;
  /**
   * Largest packet accepted from a connection until it identified itself:
   * the handshake frames are a few bytes, so a peer cannot make us buffer
   * big packets before we know who it is. Partial packets of all such
   * connections together are also bounded by the Packeter's `restrictedBudget`.
   * @default 4096
   */
  maxHandshakePacketSize?: number;
  /**
   * An identity that disconnected with nothing queued keeps its state (queue,
   * de-duplication window, storage row) this long, so that a quick reconnect
   * still recognises re-sent messages; then it is freed.
   * @default 300000 (5 minutes)
   */
  idleIdentityGrace?: number;
  /**
   * At most this many such idle identities are kept; past it the least
   * recently disconnected one is freed at once, grace period or not.
   * @default 10000
   */
  maxIdleIdentities?: number;
  /**
   * Called at IDENTIFICATION, before the identity is bound and before any
   * later frame of the connection is decoded or acknowledged: returning
   * anything but `true` (or throwing) refuses the connection, which is
   * closed with an {@link UnauthorizedError} (`protocolError` here, and a
   * REFUSED frame tells the peer). Synchronous on purpose: frames read in the
   * same chunk are decided on before the next one is looked at.
   * `certificateIdentity()` requires the identity to be the verified TLS
   * peer certificate's CN or a DNS subject alternative name.
   * @default null (every identity is accepted)
   */
  authorize?: AuthorizePolicy | null;
  /**
   * Per-identity high-water mark in messages, for senders that want
   * backpressure: `writable(ident)` is false once the identity's queue
   * (queued plus in flight, not yet acknowledged: `queueLength(ident)`) is at
   * or above it, and stays false until the queue falls to the low-water mark,
   * half of it (`Math.floor(highWaterMark / 2)`), when `drain` is emitted.
   * `send()` itself ignores it (the hard limit is `maxQueueMessages`).
   * @default 4096 (`DEFAULT_PEER_HIGH_WATER_MARK`)
   */
  highWaterMark?: number;
  /**
   * The same in bytes (data + 128 per message, as `maxQueueBytes` counts);
   * the low-water mark is half of it too.
   * @default 16777216 (16 MiB, `DEFAULT_PEER_HIGH_WATER_MARK_BYTES`)
   */
  highWaterMarkBytes?: number;
  /**
   * Relaying through a peer (docs/relay.md): `{}` (or `true`) lets this
   * peer reach peers through relays and be reached that way; a relay adds
   * `forward: true` and `allow`. `messaging.relay` then tells what it does.
   * @default null (no relaying: frames of relays are ignored)
   */
  relay?: RelayOptions | true | null;
}

/** {@link MessagingOptions} with every default filled in. */
export type ResolvedMessagingOptions = Required<MessagingOptions>;

/** Validates `options` and fills in the defaults. @internal */
export function resolveMessagingOptions(options: MessagingOptions | undefined): ResolvedMessagingOptions {
  return validateOptions<ResolvedMessagingOptions>(
    'Messaging',
    options,
    {
      storage: (v) => (v === null || (typeof v === 'object' && typeof (v as QueuesStorage).push === 'function') ? undefined : 'must be a QueuesStorage'),
      keepaliveInterval: is.nullableNumber(1),
      keepaliveWait: is.number(1),
      acknowledgements: is.boolean(),
      dedupWindow: is.integer(0, 1 << 24),
      maxQueueMessages: is.integer(1),
      maxQueueBytes: is.integer(1),
      overflow: is.oneOf('reject', 'drop-oldest'),
      streamHighWaterMark: is.integer(1),
      identifyTimeout: is.integer(1, 2 ** 31 - 1),
      maxHandshakePacketSize: is.integer(64),
      idleIdentityGrace: is.integer(0, 2 ** 31 - 1),
      maxIdleIdentities: is.integer(0),
      highWaterMark: is.integer(1),
      highWaterMarkBytes: is.integer(1),
      authorize: (v) => (v === null || typeof v === 'function' ? undefined : 'must be a function or null'),
      relay: (v) => (v === null || v === true || (typeof v === 'object' && !Array.isArray(v)) ? undefined : 'must be relay options, true or null'),
    },
    {
      storage: null,
      keepaliveInterval: null,
      keepaliveWait: DEFAULT_KEEPALIVE_WAIT,
      acknowledgements: true,
      dedupWindow: DEFAULT_DEDUP_WINDOW,
      maxQueueMessages: DEFAULT_MAX_QUEUE_MESSAGES,
      maxQueueBytes: DEFAULT_MAX_QUEUE_BYTES,
      overflow: 'reject',
      streamHighWaterMark: DEFAULT_STREAM_HIGH_WATER_MARK,
      identifyTimeout: DEFAULT_IDENTIFY_TIMEOUT,
      maxHandshakePacketSize: DEFAULT_MAX_HANDSHAKE_PACKET_SIZE,
      idleIdentityGrace: DEFAULT_IDLE_IDENTITY_GRACE,
      maxIdleIdentities: DEFAULT_MAX_IDLE_IDENTITIES,
      highWaterMark: DEFAULT_PEER_HIGH_WATER_MARK,
      highWaterMarkBytes: DEFAULT_PEER_HIGH_WATER_MARK_BYTES,
      authorize: null,
      relay: null,
    },
  );
}
