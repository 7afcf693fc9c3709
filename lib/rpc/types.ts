import type { Delivery } from '../messaging/types.js';
import type { Message } from '../messaging/message.js';
import type { RpcBadRequestError, SnakeMQError } from '../errors.js';

/**
 * What RPC needs from the messaging layer. `Messaging` satisfies it; tests use
 * an in-memory fake.
 */
export interface RpcTransport {
  /** This peer's own identity. */
  readonly identity: string;
  /** Whether `close()` was called: an RpcServer or RpcClient refuses to start on a closed transport. */
  readonly closed: boolean;
  /**
   * Queues `message` for `ident`. A message with TTL 0 is dropped at once when
   * `ident` is not connected: its {@link Delivery} promises reject and `drop`
   * is emitted (possibly before `send` returns); `send` does not throw for that.
   */
  send(ident: string, message: Message): Delivery;
  /** Whether an identified connection with `ident` is up now. */
  isConnected(ident: string): boolean;
  /** Asks for a connection to `ident` (relays are asked for a route; see `Messaging.reach`). Optional for transports that cannot. */
  reach?(ident: string): void;
  /**
   * Routes every message whose data starts with `matcher` to `handler`
   * (instead of the general `message` event). Returns the unsubscribe function.
   */
  addReceiveHook(matcher: string | Uint8Array | RegExp, handler: (connId: number, ident: string, message: Message) => void): () => void;
  /** `close()` was called: RPC objects on it close at once (pending calls reject with `ClosedError`). */
  on(event: 'close', fn: () => void): unknown;
  on(event: 'connect', fn: (connId: number, ident: string) => void): unknown;
  on(event: 'disconnect', fn: (connId: number, ident: string) => void): unknown;
  /** A message left its queue undelivered (as {@link Delivery} promises reject: the same reasons). */
  on(event: 'drop', fn: (ident: string, message: Message, reason: SnakeMQError) => void): unknown;
  off(event: 'close', fn: () => void): unknown;
  off(event: 'connect', fn: (connId: number, ident: string) => void): unknown;
  off(event: 'disconnect', fn: (connId: number, ident: string) => void): unknown;
  off(event: 'drop', fn: (ident: string, message: Message, reason: SnakeMQError) => void): unknown;
}

/** Request id as it travels: 16 bytes from us (a per-client random prefix and a counter); any bin or string from other peers. */
export type RpcRequestId = Buffer | string;

/** A decoded (or to-be-encoded) `rpcreq` message. */
export interface RpcRequest {
  /** `call` expects a reply; `signal` does not. */
  readonly command: 'call' | 'signal';
  /** Name the target object was registered under. */
  readonly object: string;
  readonly method: string;
  readonly args: readonly unknown[];
  /** Keyword arguments (Python peers); we always send `{}`. */
  readonly kwargs: Readonly<Record<string, unknown>>;
  /** Present on calls (required), optional on signals. */
  readonly reqId?: RpcRequestId | undefined;
}

/** A decoded (or to-be-encoded) `rpcrep` message. */
export type RpcReply =
  | { readonly reqId: RpcRequestId; readonly ok: true; readonly value: unknown }
  | {
      readonly reqId: RpcRequestId;
      readonly ok: false;
      /** Our peers send `{ name, message, code? }`; anything is accepted on receipt. */
      readonly exception: unknown;
      /** Remote stack trace / traceback as text (`exception_format`); `''` when not transferred. */
      readonly exceptionFormat: string;
    };

/** Which call a server event is about. */
export interface RpcCallInfo {
  /** Identity of the calling peer. */
  readonly ident: string;
  readonly command: 'call' | 'signal';
  readonly object: string;
  readonly method: string;
}

/** Events of {@link RpcServer}. No `'error'` event: nothing here can crash the process. */
export interface RpcServerEvents {
  /**
   * A peer sent a malformed request. The server answered with an error reply
   * when the request id could be read, and keeps serving.
   */
  requestError: (error: RpcBadRequestError, ident: string) => void;
  /**
   * A registered method threw or rejected (also when the exception was
   * transferred to the caller); the only place a failing signal shows up.
   */
  methodError: (error: unknown, call: RpcCallInfo) => void;
  /** A regular call hit a method registered as a signal, or a signal hit a regular method. It still runs. */
  warning: (message: string, call: RpcCallInfo) => void;
}

/** Events of {@link RpcClient}. */
export interface RpcClientEvents {
  /**
   * A peer sent a malformed reply. When its request id matched a pending
   * call, that call rejects with the same error.
   */
  replyError: (error: RpcBadRequestError, ident: string) => void;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the widest function type, for conditional types over methods
type AnyFunction = (...args: any[]) => any;

/** Names of the string-keyed methods of `T` (`then` excluded: a proxy is never thenable). */
export type MethodName<T> = {
  [K in keyof T]-?: K extends string ? (K extends 'then' ? never : NonNullable<T[K]> extends AnyFunction ? K : never) : never;
}[keyof T];

/**
 * A typed remote handle for an object of type `T` on another peer.
 * `proxy.m(...args)` has `T['m']`'s parameters and returns
 * `Promise<Awaited<ReturnType<T['m']>>>`. Methods named in `S` (signals)
 * return `Promise<void>`. Non-method members of `T` are absent.
 */
export type RemoteProxy<T, S extends MethodName<T> = never> = {
  readonly [K in MethodName<T>]: NonNullable<T[K]> extends (...args: infer A) => infer R
    ? K extends S
      ? (...args: A) => Promise<void>
      : (...args: A) => Promise<Awaited<R>>
    : never;
};
