/**
 * Every error snakemq-ts raises or reports is a {@link SnakeMQError}: it has a
 * `name` (the class name), a stable `code` (`SMQ_ERR_…`) you can switch on, and
 * a `cause` when it wraps something else (a Node socket error, an SQLite error…).
 *
 * Errors caused by a remote peer's input are never thrown into the event loop:
 * they are reported through events (`protocolError`, `connectFailed`, …) and
 * the offending connection is closed.
 *
 * @module
 */

/** Stable error codes. Match on these, not on messages. */
export const ErrorCode = {
  INVALID_ENDPOINT: 'SMQ_ERR_INVALID_ENDPOINT',
  INVALID_OPTIONS: 'SMQ_ERR_INVALID_OPTIONS',
  INVALID_ARGUMENT: 'SMQ_ERR_INVALID_ARGUMENT',
  CLOSED: 'SMQ_ERR_CLOSED',
  CONNECTION: 'SMQ_ERR_CONNECTION',
  TLS: 'SMQ_ERR_TLS',
  CONNECTION_LIMIT: 'SMQ_ERR_CONNECTION_LIMIT',
  UNKNOWN_CONNECTION: 'SMQ_ERR_UNKNOWN_CONNECTION',
  PACKET_TOO_LARGE: 'SMQ_ERR_PACKET_TOO_LARGE',
  BUFFER_LIMIT: 'SMQ_ERR_BUFFER_LIMIT',
  PROTOCOL: 'SMQ_ERR_PROTOCOL',
  INCOMPATIBLE_PROTOCOL: 'SMQ_ERR_INCOMPATIBLE_PROTOCOL',
  DUPLICATE_IDENTITY: 'SMQ_ERR_DUPLICATE_IDENTITY',
  NOT_IDENTIFIED: 'SMQ_ERR_NOT_IDENTIFIED',
  KEEPALIVE_TIMEOUT: 'SMQ_ERR_KEEPALIVE_TIMEOUT',
  QUEUE_FULL: 'SMQ_ERR_QUEUE_FULL',
  MESSAGE_EXPIRED: 'SMQ_ERR_MESSAGE_EXPIRED',
  STORAGE: 'SMQ_ERR_STORAGE',
  STORAGE_SCHEMA: 'SMQ_ERR_STORAGE_SCHEMA',
  STORAGE_LOCKED: 'SMQ_ERR_STORAGE_LOCKED',
  STORAGE_IDENTITY: 'SMQ_ERR_STORAGE_IDENTITY',
  RPC_NOT_CONNECTED: 'SMQ_ERR_RPC_NOT_CONNECTED',
  RPC_PARTIAL_CALL: 'SMQ_ERR_RPC_PARTIAL_CALL',
  RPC_TIMEOUT: 'SMQ_ERR_RPC_TIMEOUT',
  RPC_REMOTE: 'SMQ_ERR_RPC_REMOTE',
  RPC_UNKNOWN_OBJECT: 'SMQ_ERR_RPC_UNKNOWN_OBJECT',
  RPC_UNKNOWN_METHOD: 'SMQ_ERR_RPC_UNKNOWN_METHOD',
  RPC_BAD_REQUEST: 'SMQ_ERR_RPC_BAD_REQUEST',
  RPC_BUSY: 'SMQ_ERR_RPC_BUSY',
  IDENTIFICATION_TIMEOUT: 'SMQ_ERR_IDENTIFICATION_TIMEOUT',
  NOT_SNAKEMQ_PEER: 'SMQ_ERR_NOT_SNAKEMQ_PEER',
  HANDLER: 'SMQ_ERR_HANDLER',
  UNAUTHORIZED: 'SMQ_ERR_UNAUTHORIZED',
  ABORTED: 'SMQ_ERR_ABORTED',
  INVALID_FILTER: 'SMQ_ERR_INVALID_FILTER',
  PUB_MESSAGE: 'SMQ_ERR_PUB_MESSAGE',
  PUBSUB_FRAME: 'SMQ_ERR_PUBSUB_FRAME',
  SUBSCRIPTION_REFUSED: 'SMQ_ERR_SUBSCRIPTION_REFUSED',
  CONFIG: 'SMQ_ERR_CONFIG',
  ANNOUNCEMENT: 'SMQ_ERR_ANNOUNCEMENT',
  NAMESERVER: 'SMQ_ERR_NAMESERVER',
  RELAY: 'SMQ_ERR_RELAY',
  DATAGRAM_TOO_LARGE: 'SMQ_ERR_DATAGRAM_TOO_LARGE',
  DATAGRAM_PERSISTENT: 'SMQ_ERR_DATAGRAM_PERSISTENT',
  INTERCEPTED: 'SMQ_ERR_INTERCEPTED',
  MESSAGE_DROPPED: 'SMQ_ERR_MESSAGE_DROPPED',
  MANAGEMENT_UNAUTHORIZED: 'SMQ_ERR_MANAGEMENT_UNAUTHORIZED',
} as const;

/** One of the {@link ErrorCode} values. */
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Base class of every snakemq-ts error. */
export class SnakeMQError extends Error {
  /** Stable machine-readable code, e.g. `SMQ_ERR_PROTOCOL`. */
  readonly code: ErrorCodeValue;

  constructor(code: ErrorCodeValue, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** An endpoint string or object could not be parsed (bad scheme, port, path…). */
export class InvalidEndpointError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.INVALID_ENDPOINT, message, options);
  }
}

/** An options object has an unknown key or a value of the wrong type or range. */
export class InvalidOptionsError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.INVALID_OPTIONS, message, options);
  }
}

/** An argument of an API call is invalid (wrong type, out of range). */
export class InvalidArgumentError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.INVALID_ARGUMENT, message, options);
  }
}

/** The object (link, packeter, messaging, storage, RPC) was closed. */
export class ClosedError extends SnakeMQError {
  constructor(message = 'closed', options?: { cause?: unknown }) {
    super(ErrorCode.CLOSED, message, options);
  }
}

/** A socket-level failure (refused, reset, unreachable…); `cause` is the Node error. */
export class ConnectionError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.CONNECTION, message, options);
  }
}

/** A TLS handshake or certificate verification failed; `cause` is the Node error. */
export class TlsError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.TLS, message, options);
  }
}

/**
 * An accepted connection was refused because the Link already holds
 * `maxConnections` accepted connections (TLS handshakes in progress included);
 * reported by `acceptFailed`. `limit` is the configured maximum.
 */
export class ConnectionLimitError extends SnakeMQError {
  /** The configured `maxConnections`. */
  readonly limit: number;
  constructor(limit: number, message = `connection refused: ${limit} accepted connections already open (maxConnections)`, options?: { cause?: unknown }) {
    super(ErrorCode.CONNECTION_LIMIT, message, options);
    this.limit = limit;
  }
}

/** No connection with that id exists (it was closed, or never existed). */
export class UnknownConnectionError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.UNKNOWN_CONNECTION, message, options);
  }
}

/** A packet is larger than `maxPacketSize` (announced by a peer, or passed to a send). */
export class PacketTooLargeError extends SnakeMQError {
  /** The announced or requested size in bytes. */
  readonly size: number;
  /** The configured limit in bytes. */
  readonly limit: number;
  constructor(size: number, limit: number, options?: { cause?: unknown }) {
    super(ErrorCode.PACKET_TOO_LARGE, `packet of ${size} bytes exceeds the limit of ${limit} bytes`, options);
    this.size = size;
    this.limit = limit;
  }
}

/**
 * A restricted connection (see `Packeter.restrict`) would take the bytes of
 * partial packets held for all restricted connections above the Packeter's
 * `restrictedBudget`; it was closed. `limit` is the budget in bytes.
 */
export class BufferLimitError extends SnakeMQError {
  /** The configured `restrictedBudget` in bytes. */
  readonly limit: number;
  constructor(
    limit: number,
    message = `partial packets of restricted connections would exceed ${limit} bytes (restrictedBudget)`,
    options?: { cause?: unknown },
  ) {
    super(ErrorCode.BUFFER_LIMIT, message, options);
    this.limit = limit;
  }
}

/** A peer sent a broken frame (empty packet, short message, bad version body…). */
export class ProtocolError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.PROTOCOL, message, options);
  }
}

/** The peer speaks another protocol version, or told us ours is incompatible. */
export class IncompatibleProtocolError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.INCOMPATIBLE_PROTOCOL, message, options);
  }
}

/** Another live connection already carries the identity this peer announced. */
export class DuplicateIdentityError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.DUPLICATE_IDENTITY, message, options);
  }
}

/** A peer sent a message before identifying itself. */
export class NotIdentifiedError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.NOT_IDENTIFIED, message, options);
  }
}

/** A peer did not answer a keepalive PING in time. */
export class KeepaliveTimeoutError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.KEEPALIVE_TIMEOUT, message, options);
  }
}

/** A per-identity queue is full and its overflow policy is `reject`. */
export class QueueFullError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.QUEUE_FULL, message, options);
  }
}

/** A message's TTL ran out before it could be delivered. */
export class MessageExpiredError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.MESSAGE_EXPIRED, message, options);
  }
}

/** Queue storage failed (I/O error, read-only file, full disk…); `cause` is the driver error. */
export class StorageError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.STORAGE, message, options);
  }
}

/** A storage file is not a snakemq-ts database, or has another schema version. */
export class StorageSchemaError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.STORAGE_SCHEMA, message, options);
  }
}

/** A storage file is already open, in another process or in this one; `cause` is the SQLite error. */
export class StorageLockedError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.STORAGE_LOCKED, message, options);
  }
}

/** A storage file belongs to another identity (recorded at its first open) than the one opening it. */
export class StorageIdentityError extends SnakeMQError {
  /** The identity recorded in the file. */
  readonly storedIdentity: string;
  /** The identity it was opened with. */
  readonly identity: string;
  constructor(message: string, storedIdentity: string, identity: string, options?: { cause?: unknown }) {
    super(ErrorCode.STORAGE_IDENTITY, message, options);
    this.storedIdentity = storedIdentity;
    this.identity = identity;
  }
}

/** An RPC call could not be sent: the peer never connected within the timeout. */
export class RpcNotConnectedError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.RPC_NOT_CONNECTED, message, options);
  }
}

/** An RPC request was sent, the peer went away, and the timeout ran out before a reply. */
export class RpcPartialCallError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.RPC_PARTIAL_CALL, message, options);
  }
}

/** An RPC call got no reply within its timeout while the peer stayed connected. */
export class RpcTimeoutError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.RPC_TIMEOUT, message, options);
  }
}

/** The remote method threw. `remoteName`, `remoteCode` and `remoteStack` describe it. */
export class RpcRemoteError extends SnakeMQError {
  /** Name of the remote exception class (e.g. `TypeError`, `ValueError`). */
  readonly remoteName: string;
  /** The remote error's `code`, when it had one. */
  readonly remoteCode: string | undefined;
  /** The remote stack trace / traceback as text, when the server transfers it. */
  readonly remoteStack: string | undefined;
  constructor(message: string, remote: { name: string; code?: string | undefined; stack?: string | undefined }, options?: { cause?: unknown }) {
    super(ErrorCode.RPC_REMOTE, message, options);
    this.remoteName = remote.name;
    this.remoteCode = remote.code;
    this.remoteStack = remote.stack;
  }
}

/** No object is registered under that name on the RPC server. */
export class RpcUnknownObjectError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.RPC_UNKNOWN_OBJECT, message, options);
  }
}

/** The object has no callable method of that name. */
export class RpcUnknownMethodError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.RPC_UNKNOWN_METHOD, message, options);
  }
}

/** An RPC request or reply is malformed (not MessagePack, wrong types, missing keys, too large). */
export class RpcBadRequestError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.RPC_BAD_REQUEST, message, options);
  }
}

/**
 * The RPC server refused the call because `maxPending` calls were already
 * waiting or running there: the method did not run, the call may be retried.
 */
export class RpcBusyError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.RPC_BUSY, message, options);
  }
}

/** A connection did not identify itself (PROTOCOL_VERSION and IDENTIFICATION) within `identifyTimeout`; it was closed. */
export class IdentificationTimeoutError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.IDENTIFICATION_TIMEOUT, message, options);
  }
}

/**
 * The other end of a connection is not a snakeMQ peer: it closed, or sent
 * something that is not snakeMQ framing, before identifying itself. `cause`
 * holds what was seen (e.g. a {@link PacketTooLargeError} for an HTTP reply).
 */
export class NotSnakeMQPeerError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.NOT_SNAKEMQ_PEER, message, options);
  }
}

/**
 * An application handler (a `message` listener, a receive hook, a listener of
 * another Messaging event) threw; reported on Messaging's `handlerError`
 * event with the thrown value as `cause`. The connection goes on.
 */
export class HandlerError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.HANDLER, message, options);
  }
}

/**
 * A peer's identity was refused by Messaging's `authorize` policy (it
 * returned anything but `true`, or threw: the thrown value is the `cause`);
 * the connection was closed before the identity was bound.
 */
export class UnauthorizedError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.UNAUTHORIZED, message, options);
  }
}

/**
 * An operation was given an `AbortSignal` that fired: a waiting send, an RPC call,
 * a `messages()` iterator. `cause` is the signal's `reason`. Nothing already sent
 * is taken back: an aborted RPC call may still have run on the remote side.
 */
export class AbortedError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.ABORTED, message, options);
  }
}

/**
 * A subscription filter was refused: not a string, longer than the maximum
 * length, a token filter with too many components, an empty component, or a
 * `>` that is not the last component (see `parseFilter` in `lib/pubsub`).
 */
export class InvalidFilterError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.INVALID_FILTER, message, options);
  }
}

/**
 * A PostTroll message could not be built, encoded or decoded: a missing or
 * blank field, data that is not JSON-serializable, a wrong magic word, too
 * few fields, a newer version, an unknown mime type, bad JSON, input over
 * the decoder's `maxBytes` (see `decodePostTroll` in `lib/pubsub`).
 */
export class PubMessageError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.PUB_MESSAGE, message, options);
  }
}

/**
 * A peer sent a malformed publish/subscribe frame (a subscription, a confirmation or a published
 * message): the frame is dropped and reported by a `badFrame` event; the connection and
 * everything else go on.
 */
export class PubSubFrameError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.PUBSUB_FRAME, message, options);
  }
}

/**
 * A publisher refused a subscription: too many filters, a filter too long or invalid, too many
 * durable subscriptions, or an identity it does not serve. `sub.ready` rejects with it.
 */
export class SubscriptionRefusedError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.SUBSCRIPTION_REFUSED, message, options);
  }
}

/**
 * A configuration value is malformed: an option, or an environment variable
 * (`SNAKEMQ_…`, named in the message). Raised at start, never ignored.
 */
export class ConfigError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.CONFIG, message, options);
  }
}

/**
 * An address announcement is malformed, too large for one datagram, or was
 * refused (not an allowed source, over the rate or the entry limit).
 */
export class AnnouncementError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.ANNOUNCEMENT, message, options);
  }
}

/** No nameserver answered a lookup or a registration (none connected, or none in time). */
export class NameserverError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.NAMESERVER, message, options);
  }
}

/**
 * An interceptor (`Messaging.intercept`) refused a message: its `error`
 * verdict gave something other than a SnakeMQError (that is the `cause`), or
 * it threw (what it threw is the `cause`), or it returned something that is
 * not a verdict. On send, `send()` throws it (or the Delivery rejects with it,
 * after an async interceptor); on receive, the `intercepted` event carries it.
 */
export class InterceptedError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.INTERCEPTED, message, options);
  }
}

/**
 * A send interceptor (`Messaging.intercept`) dropped the message: it was not
 * queued; or management dropped it from its queue (`dropQueue`). The
 * Delivery's promises reject with it and the `drop` event carries it.
 */
export class MessageDroppedError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.MESSAGE_DROPPED, message, options);
  }
}

/**
 * A message for a `udp://` peer would make a datagram larger than the
 * connector's `maxDatagramSize`: `send()` refused it (nothing was sent; a
 * datagram is never cut). `size` is the datagram it would have made.
 */
export class DatagramTooLargeError extends SnakeMQError {
  constructor(
    message: string,
    /** Bytes of the datagram refused. */
    readonly size: number,
    /** The limit in force (`maxDatagramSize`). */
    readonly limit: number,
    options?: { cause?: unknown },
  ) {
    super(ErrorCode.DATAGRAM_TOO_LARGE, message, options);
  }
}

/**
 * `send()` of a `persistent` message to a peer reached over `udp://` only:
 * datagrams are neither acknowledged nor stored, so the message could not
 * be kept until delivered. Send it over a stream endpoint, or without `persistent`.
 */
export class DatagramPersistentError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.DATAGRAM_PERSISTENT, message, options);
  }
}

/** Why a relayed connection ended (see {@link RelayError.reason}). */
export type RelayFailure = 'closed' | 'unreachable' | 'refused' | 'overflow' | 'hop-limit' | 'forged';

/**
 * A relayed connection (a peer reached through a relay, docs/relay.md)
 * failed: `forged` (the inner identity was not the one the relay named) or,
 * told by a relay, `refused`, `unreachable`, `overflow`, `hop-limit`.
 * Messaging re-sends what was in flight on the next connection.
 */
export class RelayError extends SnakeMQError {
  /** What went wrong. */
  readonly reason: RelayFailure;
  constructor(reason: RelayFailure, message: string, options?: { cause?: unknown }) {
    super(ErrorCode.RELAY, message, options);
    this.reason = reason;
  }
}

/**
 * A management call (lib/management) was refused: the calling identity is
 * not in the management `allow` list, or not in `actions.allow` for an
 * action (disconnect, drop a queue). The server throws it; the caller's
 * `ManagementClient` rejects with it (a bare RPC call sees an
 * RpcRemoteError with this `remoteCode`).
 */
export class ManagementUnauthorizedError extends SnakeMQError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.MANAGEMENT_UNAUTHORIZED, message, options);
  }
}
