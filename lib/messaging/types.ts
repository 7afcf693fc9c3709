import type { ConnId } from '../link/types.js';
import type { HandlerError, SnakeMQError } from '../errors.js';
import type { Message } from './message.js';

/**
 * Events of {@link Messaging}. No `'error'` event: errors caused by a peer's
 * input arrive as `protocolError` (the connection is closed).
 */
export interface MessagingEvents {
  /** A peer identified itself on a connection. */
  connect: (connId: ConnId, ident: string) => void;
  /** An identified peer's connection ended. */
  disconnect: (connId: ConnId, ident: string) => void;
  /** A message arrived (not taken by a receive hook). */
  message: (connId: ConnId, ident: string, message: Message) => void;
  /**
   * A message's bytes were handed to the kernel for `ident`. Only for
   * messages written while someone listened (in acknowledged mode the others
   * are kept as frames only; see docs/protocol.md).
   */
  sent: (ident: string, message: Message) => void;
  /** The peer acknowledged a message (acknowledged-delivery extension). */
  acknowledged: (ident: string, message: Message) => void;
  /**
   * A message left its queue undelivered (TTL ran out, queue overflow, close).
   * For a message kept as its frame while in flight and dropped after a
   * reconnect, `message` is an equal Message (same uuid, data and flags), not
   * the object given to `send()`.
   */
  drop: (ident: string, message: Message, reason: SnakeMQError) => void;
  /**
   * A peer sent something broken, or broke a limit (a too-big packet before
   * identifying, no identification in time, a refused identity); the
   * connection was closed.
   */
  protocolError: (connId: ConnId, error: SnakeMQError) => void;
  /**
   * A connection ended without becoming a usable peer connection, and why:
   * `IdentificationTimeoutError`, `NotSnakeMQPeerError` (it closed or sent
   * something else than snakeMQ framing before identifying: a web server, a
   * plain TCP service), `TlsError` (it speaks TLS: use `tls://`),
   * `DuplicateIdentityError` / `UnauthorizedError` (refused, by this side or
   * — told by a REFUSED frame — by the peer), or what `protocolError` said.
   * Connectors keep retrying with backoff; this says why they keep failing.
   * Not emitted for connections closed by `close()`.
   */
  handshakeFailed: (connId: ConnId, endpoint: string, error: SnakeMQError) => void;
  /**
   * An application handler threw: a `message` listener, a receive hook or a
   * listener of another event. `error.cause` is what it threw. The
   * connection and the other handlers go on; without a listener for this
   * event the first one is reported with `process.emitWarning`.
   */
  handlerError: (error: HandlerError) => void;
  /**
   * A receive interceptor refused a received message (`Verdict.error`, a
   * throw — then an `InterceptedError` whose `cause` is what it threw — or
   * something that is not a verdict): it was not delivered (it counts as
   * received: it was acknowledged). `connId` is -1 (`LOOPBACK_CONN_ID`) for
   * a message a send interceptor returned. Without a listener the first one
   * is reported with `process.emitWarning`.
   */
  intercepted: (connId: ConnId, ident: string, message: Message, error: SnakeMQError) => void;
  /**
   * The queue of `ident` fell to its low-water mark (half of
   * `highWaterMark`/`highWaterMarkBytes`) after `writable(ident)` returned
   * false: it is writable again. Once per such time, only then.
   */
  drain: (ident: string) => void;
  /** `close()` was called: emitted once, before anything is closed (RPC rejects its pending calls on it). */
  close: () => void;
}

/** Where a sent message is on its way. */
export type DeliveryState = 'queued' | 'persisted' | 'written' | 'acknowledged' | 'dropped';

/**
 * Returned by `Messaging.send`: the stages a caller can wait for. Promises are
 * created lazily (cheap when unused) and always settle: they reject with the
 * drop reason (`MessageExpiredError`, `QueueFullError`, `StorageError`,
 * `ClosedError`) when the message leaves its queue undelivered.
 */
export interface Delivery {
  readonly ident: string;
  readonly message: Message;
  readonly state: DeliveryState;
  /** Settles once the message is as durable as it will be (committed to storage for persistent messages with durable storage; at once otherwise). */
  persisted(): Promise<void>;
  /**
   * Settles once the bytes were handed to the kernel. Asked only after a
   * message's connection ended, it may settle only when the message is
   * delivered on the next one.
   */
  written(): Promise<void>;
  /** Settles once the message left its queue delivered: acknowledged by a peer that supports acknowledgements, written for one that does not. */
  delivered(): Promise<void>;
}
