/**
 * {@link RpcClient}: calls on remote {@link RpcServer}s, their re-sends,
 * timeouts (deadlines.ts) and aborts, proxies (proxy.ts) and what error
 * replies become (remote-error.ts). Builds on a Messaging ({@link RpcTransport})
 * and the codec.
 * @module
 */
import { isValidIdent } from '../messaging/frames.js';
import { Buffer } from 'node:buffer';
import { EventEmitter } from 'eventemitter3';
import {
  AbortedError,
  ClosedError,
  InvalidArgumentError,
  PacketTooLargeError,
  QueueFullError,
  RpcNotConnectedError,
  RpcPartialCallError,
  RpcTimeoutError,
  StorageError,
  type SnakeMQError,
} from '../errors.js';
// eslint-disable-next-line @typescript-eslint/no-unused-vars -- named in TSDoc {@link}s only
import type { RpcBusyError, RpcRemoteError, RpcUnknownMethodError, RpcUnknownObjectError } from '../errors.js';
import { DEFAULT_TTL, Message } from '../messaging/message.js';
import type { Delivery } from '../messaging/types.js';
import { is, validateOptions, type OptionCheck } from '../util/options.js';
import { Deadlines, MAX_TIMER } from './deadlines.js';
import { log } from './log.js';
import { remoteProxy } from './proxy.js';
import { remoteErrorFromReply } from './remote-error.js';
import { DEFAULT_MAX_PAYLOAD, REPLY_PREFIX, RpcCodec, newIdTemplate, ownReplyId, readCallId, readCallIdAt } from './codec.js';
import type { MethodName, RemoteProxy, RpcClientEvents, RpcTransport } from './types.js';

/** Default call timeout in milliseconds (30 s). */
export const DEFAULT_RPC_TIMEOUT = 30_000;

/** Options of {@link RpcClient}. */
export interface RpcClientOptions {
  /**
   * Default time a call may take, in ms, from the call until its reply,
   * including waiting for the peer to connect. `Infinity` = no limit.
   * @default 30000
   */
  timeout?: number;
  /** Largest request sent and reply accepted, in bytes (prefix included). @default 16 MiB */
  maxPayload?: number;
}

/** Options of one {@link RpcClient.call}. */
export interface RpcCallOptions {
  /** Overrides the client's `timeout` (ms, or `Infinity`). */
  timeout?: number;
  /**
   * Aborts the call: it rejects at once with {@link AbortedError} (`cause`:
   * the signal's reason) and a reply coming later is dropped. A call already
   * sent may still run on the server. An already aborted signal rejects the
   * call without sending it.
   * @default undefined (no signal)
   */
  signal?: AbortSignal;
}

/** Options of one {@link RpcClient.signal}. */
export interface RpcSignalOptions {
  /**
   * Seconds the signal may wait for a disconnected peer; `null` = no limit,
   * `0` = dropped unless the peer is connected now (snakeMQ's default).
   * @default null (the messaging default TTL)
   */
  ttl?: number | null;
}

/** Options of {@link RpcClient.proxy}. */
export interface RpcProxyOptions<T> {
  /** Timeout of the proxy's calls (ms, or `Infinity`); the client's by default. */
  timeout?: number;
  /** Methods sent as signals: fire-and-forget, no reply, see {@link RpcClient.signal}. */
  signals?: readonly MethodName<T>[];
  /** TTL in seconds of the proxy's signals. @default null (no limit) */
  signalTtl?: number | null;
  /**
   * Aborts every call made through the proxy, as {@link RpcCallOptions.signal}
   * does for one call; once it is aborted, the proxy's signals (see
   * `signals`) reject with {@link AbortedError} too, unsent. For one call or
   * one operation, make a proxy with the operation's signal (a proxy is
   * cheap), or use {@link RpcClient.call}.
   * @default undefined (no signal)
   */
  signal?: AbortSignal;
}

const timeoutCheck: OptionCheck = (v) =>
  v === Infinity || (typeof v === 'number' && v > 0 && v <= MAX_TIMER) ? undefined : `must be a number of ms in (0, ${MAX_TIMER}] or Infinity`;

/** An AbortSignal, or anything that behaves like one (a polyfill's). */
const abortSignalCheck: OptionCheck = (v) =>
  v !== null &&
  typeof v === 'object' &&
  typeof (v as AbortSignal).aborted === 'boolean' &&
  typeof (v as AbortSignal).addEventListener === 'function' &&
  typeof (v as AbortSignal).removeEventListener === 'function'
    ? undefined
    : 'must be an AbortSignal';

const stringArray: OptionCheck = (v) => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? undefined : 'must be an array of strings');

/** Drop reasons that end a call; any other (expired, connection lost…) means "re-send on reconnect". */
function isTerminalDrop(reason: unknown): boolean {
  return (
    reason instanceof ClosedError ||
    reason instanceof QueueFullError ||
    reason instanceof StorageError ||
    reason instanceof PacketTooLargeError ||
    reason instanceof InvalidArgumentError
  );
}

interface PendingCall {
  /** Our number of the call; its request id is the client's id prefix + this. */
  readonly id: number;
  readonly ident: string;
  readonly object: string;
  readonly method: string;
  readonly data: Buffer;
  readonly timeout: number;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
  /** When the call times out (performance.now() ms); Infinity when it has no timeout or timed out. */
  deadline: number;
  /** Handed to messaging at least once while the peer was connected. */
  sent: boolean;
  /** The peer disconnected after the first send. */
  wentAway: boolean;
  /** Must be (re)sent on the peer's next connect. */
  needsSend: boolean;
  /** The current transmission; drops of older ones are stale. */
  message: Message | undefined;
  drops: number;
  /** The call's AbortSignal and our listener on it (undefined without a signal). */
  readonly signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/**
 * Calls methods of objects registered on remote {@link RpcServer}s
 * (snakeMQ's `RpcClient`). It hooks data starting with `rpcrep` and follows
 * the peers' `connect`/`disconnect` events; the same messaging can also host
 * an `RpcServer`.
 *
 * A call waits for the peer to connect (up to its timeout), sends the request
 * with TTL 0, and if the peer disconnects before replying, sends the same
 * request (same `req_id`) again when it reconnects; the server runs it once.
 * Outcomes: the result; {@link RpcRemoteError} (the method threw);
 * {@link RpcUnknownObjectError} / {@link RpcUnknownMethodError};
 * {@link RpcNotConnectedError} (never sent: the peer did not connect in time);
 * {@link RpcPartialCallError} (sent, the peer went away, no reply in time: it
 * may or may not have run); {@link RpcTimeoutError} (sent, peer stayed, no reply);
 * {@link RpcBusyError} (the server had `maxPending` calls: it did not run);
 * {@link AbortedError} (the call's `signal` aborted: at once, see
 * {@link RpcCallOptions.signal}); {@link ClosedError} (the client or its
 * messaging closed: at once);
 * {@link InvalidArgumentError} (arguments not encodable, too deep or too
 * large); a messaging drop reason such as `QueueFullError`.
 *
 * ```ts
 * const client = new RpcClient(messaging, { timeout: 5000 });
 * const calc = client.proxy<Calc>('server', 'calc');
 * const sum = await calc.add(1, 2); // number
 * ```
 *
 * The client is attached to `messaging`, which it does not own: it closes
 * when the messaging closes, and its own {@link close} only detaches it.
 */
export class RpcClient extends EventEmitter<RpcClientEvents> {
  /** Default call timeout in ms (see {@link RpcClientOptions.timeout}). */
  readonly timeout: number;
  private readonly messaging: RpcTransport;
  private readonly limits: { maxPayload: number };
  private readonly pending = new Map<number, PendingCall>();
  /**
   * Request ids of our calls: 8 random bytes drawn once per client, then the
   * call's number (uint64). Unique for this client without a random draw per
   * call; a restarted client (whose new calls a server must not answer from
   * its result cache) draws new random bytes.
   */
  private readonly idTemplate: Buffer = newIdTemplate();
  /** The client's encoder and decoder state (see RpcCodec). */
  private readonly codec = new RpcCodec();
  private nextId = 1;
  /** Encoded request heads by object and method name. */
  private readonly heads = new Map<string, Map<string, Buffer>>();
  private headCount = 0;
  private readonly deadlines = new Deadlines<PendingCall>(
    (p) => this.pending.get(p.id) === p,
    (p) => this.onTimeout(p),
  );
  private idleCheckQueued = false;
  private readonly idleCheck = (): void => {
    this.idleCheckQueued = false;
    if (this.pending.size === 0) this.deadlines.clear();
  };
  private closed = false;
  private closedPromise: Promise<void> | undefined;
  private readonly unhook: () => void;
  private readonly onConnect = (_connId: number, ident: string): void => {
    for (const p of this.callsOf(ident)) if (p.needsSend) this.transmit(p);
  };
  private readonly onDisconnect = (_connId: number, ident: string): void => {
    const calls = this.callsOf(ident);
    if (calls.length === 0) return;
    const stillUp = this.messaging.isConnected(ident);
    for (const p of calls) {
      if (!p.sent) continue;
      p.wentAway = true;
      p.needsSend = true;
      if (stillUp) this.transmit(p);
    }
  };

  private readonly onMessagingClose = (): void => this.shutDown(new ClosedError('RpcClient: the messaging closed'));

  /**
   * @throws {InvalidOptionsError} unknown option or invalid value.
   * @throws {ClosedError} `messaging` is closed.
   */
  constructor(messaging: RpcTransport, options?: RpcClientOptions) {
    super();
    const o = validateOptions<Required<RpcClientOptions>>(
      'RpcClient',
      options,
      { timeout: timeoutCheck, maxPayload: is.integer(64) },
      { timeout: DEFAULT_RPC_TIMEOUT, maxPayload: DEFAULT_MAX_PAYLOAD },
    );
    if (messaging.closed) throw new ClosedError('RpcClient: the messaging is closed');
    this.timeout = o.timeout;
    this.limits = { maxPayload: o.maxPayload };
    this.messaging = messaging;
    this.unhook = messaging.addReceiveHook(REPLY_PREFIX, (_connId, ident, message) => this.onReply(ident, message));
    messaging.on('connect', this.onConnect);
    messaging.on('disconnect', this.onDisconnect);
    messaging.on('drop', this.onDrop);
    messaging.on('close', this.onMessagingClose);
  }

  /** Calls waiting for their reply. */
  get pendingCalls(): number {
    return this.pending.size;
  }

  /**
   * Calls `object.method(...args)` on peer `ident` and resolves with its
   * result (decoded MessagePack: plain objects, arrays, Buffers, numbers or
   * bigints…). Never throws; every failure rejects (see the class doc).
   */
  call<R = unknown>(ident: string, object: string, method: string, args: readonly unknown[] = [], options?: RpcCallOptions): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      checkTarget('RpcClient.call', this.messaging.identity, ident, object, method, args);
      if (options === undefined) {
        this.start(ident, object, method, this.headFor(object, method), args, this.timeout, undefined, resolve as (value: unknown) => void, reject);
        return;
      }
      const o = validateOptions<{ timeout: number; signal: AbortSignal | undefined }>(
        'RpcClient.call',
        options,
        { timeout: timeoutCheck, signal: abortSignalCheck },
        { timeout: this.timeout, signal: undefined },
      );
      this.start(ident, object, method, this.headFor(object, method), args, o.timeout, o.signal, resolve as (value: unknown) => void, reject);
    });
  }

  /** The encoded start of object.method's requests (see encodeCallHead), cached for the first HEAD_CACHE_SIZE pairs. */
  private headFor(object: string, method: string): Buffer {
    let byMethod = this.heads.get(object);
    let head = byMethod?.get(method);
    if (head !== undefined) return head;
    head = this.codec.encodeCallHead(object, method);
    if (this.headCount < HEAD_CACHE_SIZE) {
      if (byMethod === undefined) this.heads.set(object, (byMethod = new Map()));
      byMethod.set(method, head);
      this.headCount++;
    }
    return head;
  }

  /** Registers and (when the peer is up) sends a call; throws synchronously on closed client or unencodable arguments. */
  private start(
    ident: string,
    object: string,
    method: string,
    head: Buffer,
    args: readonly unknown[],
    timeout: number,
    signal: AbortSignal | undefined,
    resolve: (value: unknown) => void,
    reject: (error: unknown) => void,
  ): void {
    if (this.closed) throw new ClosedError('RpcClient is closed');
    if (signal?.aborted) throw new AbortedError(`${object}.${method} on ${ident} was not sent: its signal is aborted`, { cause: signal.reason });
    const id = this.nextId++;
    const data = this.codec.encodeCall(head, args, this.idTemplate, id, this.limits.maxPayload);
    const p: PendingCall = {
      id,
      ident,
      object,
      method,
      data,
      timeout,
      resolve,
      reject,
      deadline: Infinity,
      sent: false,
      wentAway: false,
      needsSend: true,
      message: undefined,
      drops: 0,
      signal,
      onAbort: undefined,
    };
    this.pending.set(id, p);
    if (signal !== undefined) {
      p.onAbort = () => this.onAbort(p);
      signal.addEventListener('abort', p.onAbort, { once: true });
    }
    if (timeout !== Infinity) this.deadlines.add(p);
    if (this.messaging.isConnected(ident)) this.transmit(p);
    else this.messaging.reach?.(ident);
  }

  /** Pending calls to `ident` (a copy: transmitting may settle some). */
  private callsOf(ident: string): PendingCall[] {
    const out: PendingCall[] = [];
    for (const p of this.pending.values()) if (p.ident === ident) out.push(p);
    return out;
  }

  /**
   * Sends `object.method(...args)` to `ident` as a signal: no reply, no
   * result, no re-send. Returns the messaging {@link Delivery} (await e.g.
   * `delivery.written()` to learn it left; it rejects if the message is
   * dropped, e.g. TTL 0 while the peer is away).
   * @throws {ClosedError} the client is closed.
   * @throws {InvalidArgumentError} bad target or arguments not encodable / too large.
   */
  signal(ident: string, object: string, method: string, args: readonly unknown[] = [], options?: RpcSignalOptions): Delivery {
    if (this.closed) throw new ClosedError('RpcClient is closed');
    checkTarget('RpcClient.signal', this.messaging.identity, ident, object, method, args);
    const o = validateOptions<Required<RpcSignalOptions>>('RpcClient.signal', options, { ttl: is.nullableNumber(0) }, { ttl: DEFAULT_TTL });
    const data = this.codec.encodeRequest({ command: 'signal', object, method, args, kwargs: {} }, this.limits.maxPayload);
    return this.messaging.send(ident, new Message(data, { ttl: o.ttl }));
  }

  /**
   * A typed handle for the object registered as `objectName` on `ident`:
   * `proxy.method(...args)` is {@link call} and returns a Promise of the
   * method's (awaited) return type. Methods listed in `signals` are sent with
   * {@link signal} and return a `Promise<void>` that resolves once the signal
   * is queued (name them in `S` too, or declare them returning `void`, so
   * their type says so). The proxy is not thenable (`await proxy` makes no
   * call), and `then`, `toJSON`, `inspect`, symbols and `Object.prototype`
   * names are never remote.
   *
   * ```ts
   * interface Calc { add(a: number, b: number): number; log(s: string): void }
   * const calc = client.proxy<Calc>('server', 'calc', { signals: ['log'] });
   * await calc.add(1, 2); // Promise<number>
   * void calc.log('hi');  // signal
   * ```
   * @throws {InvalidOptionsError} unknown option or invalid value.
   */
  proxy<T extends object, S extends MethodName<T> = never>(ident: string, objectName: string, options?: RpcProxyOptions<T>): RemoteProxy<T, S> {
    checkTarget('RpcClient.proxy', this.messaging.identity, ident, objectName, 'proxy', []);
    const o = validateOptions<{ timeout: number; signals: readonly string[]; signalTtl: number | null; signal: AbortSignal | undefined }>(
      'RpcClient.proxy',
      options,
      { timeout: timeoutCheck, signals: stringArray, signalTtl: is.nullableNumber(0), signal: abortSignalCheck },
      { timeout: this.timeout, signals: [], signalTtl: DEFAULT_TTL, signal: undefined },
    );
    const abortSignal = o.signal;
    const signals = new Set(o.signals);
    const signalOptions = { ttl: o.signalTtl };
    return remoteProxy<T, S>(`[RemoteProxy ${ident}/${objectName}]`, (method) =>
      signals.has(method)
        ? (...args: unknown[]) => {
            try {
              if (abortSignal?.aborted) {
                throw new AbortedError(`signal ${objectName}.${method} to ${ident} was not sent: the proxy's signal is aborted`, { cause: abortSignal.reason });
              }
              this.signal(ident, objectName, method, args, signalOptions);
              return Promise.resolve();
            } catch (error) {
              return Promise.reject(error);
            }
          }
        : this.callFunction(ident, objectName, method, o.timeout, abortSignal),
    );
  }

  /** A proxy's function for calls of object.method. */
  private callFunction(
    ident: string,
    object: string,
    method: string,
    timeout: number,
    signal: AbortSignal | undefined,
  ): (...args: unknown[]) => Promise<unknown> {
    let head: Buffer | undefined;
    return (...args: unknown[]) =>
      new Promise((resolve, reject) =>
        this.start(ident, object, method, (head ??= this.codec.encodeCallHead(object, method)), args, timeout, signal, resolve, reject),
      );
  }

  /**
   * Rejects every pending call with {@link ClosedError}, clears their timers,
   * and detaches from messaging. Later calls reject with `ClosedError`.
   *
   * Who closes what: a layer owns the layer it is built on (its `close()`
   * closes it); RPC objects are attached to a Messaging they do not own:
   * they close when it closes, and their own `close()` only detaches them
   * (the messaging stays open). Idempotent: every call returns the same
   * promise, resolved once every pending call has settled.
   */
  close(): Promise<void> {
    this.shutDown(new ClosedError('RpcClient closed'));
    return (this.closedPromise ??= Promise.resolve());
  }

  /** `await using client = new RpcClient(messaging)`: {@link close} at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  private shutDown(reason: ClosedError): void {
    if (this.closed) return;
    this.closed = true;
    this.unhook();
    this.messaging.off('connect', this.onConnect);
    this.messaging.off('disconnect', this.onDisconnect);
    this.messaging.off('drop', this.onDrop);
    this.messaging.off('close', this.onMessagingClose);
    for (const p of [...this.pending.values()]) this.settle(p, false, reason);
  }

  private transmit(p: PendingCall): void {
    if (this.pending.get(p.id) !== p) return;
    p.needsSend = false;
    p.sent = true;
    // Set before sending: a message dropped at once is reported (event `drop`) from within send().
    const message = (p.message = new Message(p.data, TTL_0));
    try {
      this.messaging.send(p.ident, message);
    } catch (error) {
      if (p.message === message) this.settle(p, false, error);
    }
  }

  /**
   * Messaging dropped a message (any message: ours are told apart by their
   * request id, which ends the data). Watching the `drop` event costs
   * nothing per call, unlike waiting on each delivery.
   */
  private readonly onDrop = (_ident: string, message: Message, reason: unknown): void => {
    const data = message.data;
    if (data.length < PREFIX_LENGTH + 16 || data[3] !== 0x72 /* rpc'r'eq */ || data[5] !== 0x71) return;
    const p = this.pending.get(readCallIdAt(data, data.length - 16, this.idTemplate));
    if (p !== undefined && p.message === message) this.onDropped(p, reason);
  };

  private onDropped(p: PendingCall, reason: unknown): void {
    if (isTerminalDrop(reason)) {
      this.settle(p, false, reason);
      return;
    }
    log(`request ${p.object}.${p.method} to ${p.ident} dropped (${(reason as Error)?.message}); re-sending on reconnect`);
    p.needsSend = true;
    // A drop while the peer looks connected means we missed its reconnect; retry a few times, not forever.
    if (this.messaging.isConnected(p.ident) && ++p.drops <= 3) this.transmit(p);
  }

  private onReply(ident: string, message: Message): void {
    // Most replies are successful ones to our own calls, from a snakemq-ts server: read those straight.
    const value = this.codec.decodeOwnReply(message.data, this.idTemplate, this.limits.maxPayload);
    if (value !== undefined) {
      const p = this.pending.get(ownReplyId(message.data));
      if (p === undefined || p.ident !== ident) log(`dropping a reply from ${ident} nobody waits for`);
      else this.settle(p, true, value);
      return;
    }
    const decoded = this.codec.tryDecodeReply(message.data, this.limits.maxPayload);
    if (!decoded.ok) {
      log(`bad reply from ${ident}: ${decoded.error.message}`);
      const p = decoded.reqId === undefined ? undefined : this.pending.get(readCallId(decoded.reqId, this.idTemplate));
      if (p !== undefined && p.ident === ident) this.settle(p, false, decoded.error);
      try {
        this.emit('replyError', decoded.error, ident);
      } catch (error) {
        // A throwing listener must not unwind into messaging's receive path.
        queueMicrotask(() => {
          throw error;
        });
      }
      return;
    }
    const reply = decoded.reply;
    const p = this.pending.get(readCallId(reply.reqId, this.idTemplate));
    if (p === undefined || p.ident !== ident) {
      log(`dropping a reply from ${ident} nobody waits for`);
      return;
    }
    if (reply.ok) this.settle(p, true, reply.value);
    else this.settle(p, false, remoteErrorFromReply(reply.exception, reply.exceptionFormat));
  }

  private onTimeout(p: PendingCall): void {
    const what = `${p.object}.${p.method} on ${p.ident}`;
    let error: SnakeMQError;
    if (!p.sent) error = new RpcNotConnectedError(`${p.ident} did not connect within ${p.timeout} ms; ${what} was not sent`);
    else if (p.wentAway) {
      error = new RpcPartialCallError(`${p.ident} disconnected after ${what} was sent and no reply came within ${p.timeout} ms; it may or may not have run`);
    } else error = new RpcTimeoutError(`no reply to ${what} within ${p.timeout} ms`);
    this.settle(p, false, error);
  }

  /** The call's signal aborted: it ends now; a reply coming later finds no call (like one after a timeout). */
  private onAbort(p: PendingCall): void {
    const what = `${p.object}.${p.method} on ${p.ident}`;
    const message = p.sent ? `${what} was aborted after it was sent; it may or may not have run` : `${what} was aborted before it was sent`;
    this.settle(p, false, new AbortedError(message, { cause: p.signal!.reason }));
  }

  private settle(p: PendingCall, ok: boolean, value: unknown): void {
    if (this.pending.get(p.id) !== p) return;
    this.pending.delete(p.id);
    if (p.timeout !== Infinity) this.deadlines.settled(p);
    p.message = undefined;
    if (p.onAbort !== undefined) {
      p.signal!.removeEventListener('abort', p.onAbort);
      p.onAbort = undefined;
    }
    if (ok) p.resolve(value);
    else p.reject(value);
    if (this.pending.size === 0 && !this.idleCheckQueued) {
      // Stop the timer once nothing is pending, but not in between a reply and the next call of a
      // caller making one call after another: its continuation (queued by resolve above) runs first.
      // Re-arming a timer per call costs.
      this.idleCheckQueued = true;
      void RESOLVED.then(this.idleCheck);
    }
  }
}

/** Messages of calls: dropped at once unless the peer is connected (re-sent on reconnect by us). */
const TTL_0 = { ttl: 0 } as const;

const RESOLVED: Promise<void> = Promise.resolve();

/** Most object/method pairs whose encoded request head a client keeps. */
const HEAD_CACHE_SIZE = 1024;

const PREFIX_LENGTH = REPLY_PREFIX.length;

function checkTarget(what: string, self: string, ident: unknown, object: unknown, method: unknown, args: unknown): void {
  if (typeof ident !== 'string' || ident.length === 0) throw new InvalidArgumentError(`${what}: ident must be a non-empty string`);
  // A call waits for its peer to connect: one no peer can ever be would wait out its whole timeout.
  if (!isValidIdent(ident))
    throw new InvalidArgumentError(
      `${what}: '${(ident as string).slice(0, 60)}' is longer than 50 characters (or holds a lone surrogate): no peer can have it`,
    );
  if (ident === self) throw new InvalidArgumentError(`${what}: '${ident}' is this peer's own identity`);
  if (typeof object !== 'string' || object.length === 0) throw new InvalidArgumentError(`${what}: object name must be a non-empty string`);
  if (typeof method !== 'string' || method.length === 0) throw new InvalidArgumentError(`${what}: method name must be a non-empty string`);
  if (!Array.isArray(args)) throw new InvalidArgumentError(`${what}: args must be an array`);
}
