/**
 * {@link RpcServer}: serves registered objects to remote RpcClients: bursts
 * and backlog, the job queue under `concurrency`, the result cache
 * (call-registry.ts), what may be called (methods.ts) and its options
 * (server-options.ts). Builds on a Messaging ({@link RpcTransport}) and the codec.
 * @module
 */
import { nextTick } from 'node:process';
import { EventEmitter } from 'eventemitter3';
import { ClosedError, ErrorCode, InvalidArgumentError } from '../errors.js';
import { Message } from '../messaging/message.js';
import { Deque } from '../util/deque.js';
import { log } from './log.js';
import { CallRegistry, type Slots } from './call-registry.js';
import { REQUEST_PREFIX, RpcCodec } from './codec.js';
import { describeThrown, findMethod } from './methods.js';
import { registerOptions, serverOptions, type RpcRegisterOptions, type RpcServerOptions } from './server-options.js';
import type { RpcCallInfo, RpcReply, RpcRequest, RpcRequestId, RpcServerEvents, RpcTransport } from './types.js';

export {
  DEFAULT_MAX_PENDING_CALLS,
  DEFAULT_RESULT_CACHE_AGE,
  DEFAULT_RESULT_CACHE_BYTES,
  DEFAULT_RESULT_CACHE_SIZE,
  type RpcRegisterOptions,
  type RpcServerOptions,
} from './server-options.js';

interface Registered {
  readonly target: object;
  readonly signals: ReadonlySet<string>;
  /** Methods found so far, by name (only real methods: a peer's unknown names are not kept). */
  readonly methods: Map<string, (...args: unknown[]) => unknown>;
}

interface Job {
  readonly ident: string;
  readonly command: 'call' | 'signal';
  readonly object: string;
  readonly method: string;
  readonly fn: (...args: unknown[]) => unknown;
  readonly target: object;
  readonly args: unknown[];
  /** Calls only: request id, and where the call is in the registry of calls. */
  readonly reqId: RpcRequestId | undefined;
  readonly slots: Slots | undefined;
  readonly key: number | string;
}

const TTL_0 = { ttl: 0 } as const;

/** The call as events show it (made when an event needs it, not per request). */
function callInfo(ident: string, call: { readonly command: 'call' | 'signal'; readonly object: string; readonly method: string }): RpcCallInfo {
  return { ident, command: call.command, object: call.object, method: call.method };
}

function infoOf(job: Job): RpcCallInfo {
  return callInfo(job.ident, job);
}

/** Requests started in one turn of the event loop before the rest of a burst waits for the next (see RpcServer.receive). */
const REQUESTS_PER_TURN = 24;

const nativeThen: unknown = Promise.prototype.then;

function isEmpty(object: object): boolean {
  for (const _ in object) return false;
  return true;
}

/**
 * Serves registered objects to remote {@link RpcClient}s over a messaging
 * instance (snakeMQ's `RpcServer`). It hooks data starting with `rpcreq`;
 * the same messaging can also host an `RpcClient`.
 *
 * Only methods are callable: function-valued properties of the registered
 * object and of its class chain, never `Object.prototype` members,
 * `constructor`, `__proto__`, accessors or data properties. Methods may be
 * sync or async and run concurrently (see `concurrency`). Arguments arrive
 * as decoded MessagePack data (plain objects, arrays, Buffers…); Python
 * keyword arguments, when a peer sends some, are passed as one extra trailing
 * object argument.
 *
 * A re-sent call (same request id, after a reconnect) never runs twice while
 * the first is running, and is answered from a result cache afterwards.
 *
 * ```ts
 * const server = new RpcServer(messaging);
 * server.register('calc', { add: (a: number, b: number) => a + b });
 * ```
 *
 * The server is attached to `messaging`, which it does not own: it closes
 * when the messaging closes, and its own {@link close} only detaches it.
 */
export class RpcServer extends EventEmitter<RpcServerEvents> {
  /** See {@link RpcServerOptions.transferExceptions}. */
  readonly transferExceptions: boolean;
  /** See {@link RpcServerOptions.concurrency}. */
  readonly concurrency: number;
  /** See {@link RpcServerOptions.resultCacheSize}. */
  readonly resultCacheSize: number;
  /** See {@link RpcServerOptions.resultCacheBytes}. */
  readonly resultCacheBytes: number;
  /** See {@link RpcServerOptions.resultCacheAge}. */
  readonly resultCacheAge: number;
  /** See {@link RpcServerOptions.maxPending}. */
  readonly maxPending: number;
  private readonly messaging: RpcTransport;
  private readonly limits: { maxPayload: number };
  /** The server's encoder and decoder state (see RpcCodec). */
  private readonly codec = new RpcCodec();
  private readonly objects = new Map<string, Registered>();
  /** Calls by caller and request id: running, or answered (with the reply kept for re-sent requests). */
  private readonly calls: CallRegistry;
  private readonly queue = new Deque<Job>();
  private runningCount = 0;
  private current: Job | null = null;
  private draining = false;
  /** Requests handled in the current burst (one turn of the event loop). */
  private burst = 0;
  /** Requests beyond a burst's share, handled in the next turns. */
  private readonly backlog = new Deque<{ readonly ident: string; readonly message: Message }>();
  private backlogScheduled = false;
  private readonly endBurst = (): void => {
    this.burst = 0;
  };
  private readonly runBacklog = (): void => {
    this.backlogScheduled = false;
    for (let n = 0; n < REQUESTS_PER_TURN && this.backlog.length > 0 && !this.closed; n++) {
      const { ident, message } = this.backlog.shift()!;
      this.onRequest(ident, message);
    }
    if (this.backlog.length > 0 && !this.closed) this.scheduleBacklog();
  };
  private closed = false;
  private closedPromise: Promise<void> | undefined;
  private readonly unhook: () => void;
  private readonly onMessagingClose = (): void => this.shutDown();

  /**
   * @throws {InvalidOptionsError} unknown option or invalid value.
   * @throws {ClosedError} `messaging` is closed.
   */
  constructor(messaging: RpcTransport, options?: RpcServerOptions) {
    super();
    const o = serverOptions(options);
    if (messaging.closed) throw new ClosedError('RpcServer: the messaging is closed');
    this.transferExceptions = o.transferExceptions;
    this.concurrency = o.concurrency;
    this.resultCacheSize = o.resultCacheSize;
    this.resultCacheBytes = o.resultCacheBytes;
    this.resultCacheAge = o.resultCacheAge;
    this.maxPending = o.maxPending;
    this.calls = new CallRegistry(o.resultCacheSize, o.resultCacheBytes, o.resultCacheAge);
    this.limits = { maxPayload: o.maxPayload };
    this.messaging = messaging;
    this.unhook = messaging.addReceiveHook(REQUEST_PREFIX, (_connId, ident, message) => this.receive(ident, message));
    messaging.on('close', this.onMessagingClose);
  }

  /** Invocations running now (async ones until they settle). */
  /**
   * The call whose method is running now, synchronously: who called
   * (`ident`, as the messaging identified it), which object and method.
   * `undefined` outside a method and after its first `await`; read it at the
   * start of a method that needs to know its caller.
   */
  get currentCall(): RpcCallInfo | undefined {
    return this.current === null ? undefined : infoOf(this.current);
  }

  get running(): number {
    return this.runningCount;
  }

  /** Invocations waiting for a `concurrency` slot. */
  get queued(): number {
    return this.queue.length;
  }

  /** Results kept in the result cache now. */
  get cachedResults(): number {
    return this.calls.kept;
  }

  /** Bytes of the results kept in the result cache now (at most {@link resultCacheBytes}). */
  get cachedResultBytes(): number {
    return this.calls.bytes;
  }

  /** Names of the registered objects. */
  get objectNames(): string[] {
    return [...this.objects.keys()];
  }

  /**
   * Makes `target`'s methods callable as `name`. A method is looked up at its
   * first call and kept: replacing a method of a registered object later
   * takes effect once the object is registered again.
   * @throws {InvalidArgumentError} empty name, name already registered, or `target` not an object/function.
   * @throws {InvalidOptionsError} unknown option or invalid value.
   */
  register(name: string, target: object, options?: RpcRegisterOptions): void {
    if (typeof name !== 'string' || name.length === 0) throw new InvalidArgumentError('RpcServer.register: name must be a non-empty string');
    if (target === null || (typeof target !== 'object' && typeof target !== 'function')) {
      throw new InvalidArgumentError('RpcServer.register: target must be an object');
    }
    if (this.objects.has(name)) throw new InvalidArgumentError(`RpcServer.register: '${name}' is already registered (unregister it first)`);
    const o = registerOptions(options);
    this.objects.set(name, { target, signals: new Set(o.signals), methods: new Map() });
  }

  /** Removes a registered object; calls already running finish. Returns whether it was registered. */
  unregister(name: string): boolean {
    return this.objects.delete(name);
  }

  /**
   * Stops serving: unhooks from messaging, answers queued calls with a
   * `ClosedError` exception, drops the replies of calls still running, and
   * forgets the result cache.
   *
   * Who closes what: a layer owns the layer it is built on (its `close()`
   * closes it); RPC objects are attached to a Messaging they do not own:
   * they close when it closes, and their own `close()` only detaches them
   * (the messaging stays open). Idempotent: every call returns the same
   * promise, resolved once the server is detached.
   */
  close(): Promise<void> {
    this.shutDown();
    return (this.closedPromise ??= Promise.resolve());
  }

  /** `await using server = new RpcServer(messaging)`: {@link close} at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  private shutDown(): void {
    if (this.closed) return;
    this.closed = true;
    this.unhook();
    this.messaging.off('close', this.onMessagingClose);
    for (const job of this.queue.drain()) {
      if (job.reqId !== undefined) {
        this.replyError(job.ident, job.reqId, 'ClosedError', 'RPC server closed', ErrorCode.CLOSED);
      }
    }
    for (const { ident, message } of this.backlog.drain()) {
      const decoded = this.codec.tryDecodeRequest(message.data, this.limits.maxPayload);
      if (decoded.ok && decoded.request.command === 'call') {
        this.replyError(ident, decoded.request.reqId!, 'ClosedError', 'RPC server closed', ErrorCode.CLOSED);
      }
    }
    this.calls.clear();
  }

  /**
   * A request arrived. Up to REQUESTS_PER_TURN of those arriving together
   * (e.g. in one chunk read from a socket) run at once; the others wait for
   * the next turns of the event loop, in order. So the replies to the first
   * ones leave (and the caller can go on) while the rest are worked on,
   * instead of all of them waiting for the last, and I/O and timers get a
   * turn during a long burst.
   */
  private receive(ident: string, message: Message): void {
    if (this.closed) return;
    if (this.backlog.length === 0 && this.burst < REQUESTS_PER_TURN) {
      if (this.burst++ === 0) nextTick(this.endBurst);
      this.onRequest(ident, message);
      return;
    }
    // At maxPending: answered (refused, or from the cache) now rather than queued.
    if (this.pendingCount() >= this.maxPending) {
      this.onRequest(ident, message);
      return;
    }
    this.backlog.push({ ident, message });
    if (!this.backlogScheduled) this.scheduleBacklog();
  }

  /** Calls and signals running, waiting for a slot, or not yet looked at (see maxPending). */
  private pendingCount(): number {
    return this.runningCount + this.queue.length + this.backlog.length;
  }

  private scheduleBacklog(): void {
    this.backlogScheduled = true;
    setImmediate(this.runBacklog);
  }

  /** A request decoded in full; a bad one is answered (when it has a request id) and reported, and gives undefined. */
  private decodeRequest(ident: string, message: Message): RpcRequest | undefined {
    const decoded = this.codec.tryDecodeRequest(message.data, this.limits.maxPayload);
    if (decoded.ok) return decoded.request;
    log(`bad request from ${ident}: ${decoded.error.message}`);
    if (decoded.reqId !== undefined && decoded.command !== 'signal') {
      this.replyError(ident, decoded.reqId, 'RpcBadRequestError', decoded.error.message, ErrorCode.RPC_BAD_REQUEST);
    }
    this.safeEmit('requestError', decoded.error, ident);
    return undefined;
  }

  private onRequest(ident: string, message: Message): void {
    if (this.closed) return;
    // Calls from snakemq-ts clients are read on a fast path; anything else is fully decoded.
    let req = this.codec.decodeOwnCall(message.data, this.limits.maxPayload);
    if (req === undefined) req = this.decodeRequest(ident, message);
    if (req === undefined) return;
    let slots: Slots | undefined;
    let key: number | string = 0;
    if (req.command === 'call') {
      const calls = this.calls;
      calls.locate(ident, req.reqId!);
      slots = calls.slots;
      key = calls.key;
      const known = slots.map.get(key);
      if (known != null) {
        log(`re-sent call ${req.object}.${req.method} from ${ident}: answering from cache`);
        this.send(ident, known);
        return;
      }
      if (known === null) {
        log(`re-sent call ${req.object}.${req.method} from ${ident}: still running, will answer once`);
        return;
      }
    }
    const registered = this.objects.get(req.object);
    if (registered === undefined) {
      const text = `no object registered as '${req.object}'`;
      if (req.command === 'call') this.replyError(ident, req.reqId!, 'RpcUnknownObjectError', text, ErrorCode.RPC_UNKNOWN_OBJECT);
      else this.warn(`signal ignored: ${text}`, callInfo(ident, req));
      return;
    }
    let fn = registered.methods.get(req.method);
    if (fn === undefined) {
      fn = findMethod(registered.target, req.method);
      if (fn !== undefined) registered.methods.set(req.method, fn);
    }
    if (fn === undefined) {
      const text = `'${req.object}' has no method '${req.method}'`;
      if (req.command === 'call') this.replyError(ident, req.reqId!, 'RpcUnknownMethodError', text, ErrorCode.RPC_UNKNOWN_METHOD);
      else this.warn(`signal ignored: ${text}`, callInfo(ident, req));
      return;
    }
    if (this.pendingCount() >= this.maxPending) {
      const text = `server busy: ${this.maxPending} calls waiting or running (maxPending); '${req.object}.${req.method}' did not run`;
      if (req.command === 'call') this.replyError(ident, req.reqId!, 'RpcBusyError', text, ErrorCode.RPC_BUSY);
      else this.warn(`signal dropped: ${text}`, callInfo(ident, req));
      return;
    }
    const isSignalMethod = registered.signals.has(req.method);
    if (req.command === 'call' && isSignalMethod) {
      this.warn(`'${req.object}.${req.method}' is registered as a signal but was called (it runs and replies)`, callInfo(ident, req));
    } else if (req.command === 'signal' && !isSignalMethod) {
      this.warn(`'${req.object}.${req.method}' is not registered as a signal but was signalled (it runs, no reply)`, callInfo(ident, req));
    }
    // The decoded arguments are ours to hand over (a fresh array).
    const args = req.args as unknown[];
    if (!isEmpty(req.kwargs)) args.push(req.kwargs);
    const job: Job = {
      ident,
      command: req.command,
      object: req.object,
      method: req.method,
      fn,
      target: registered.target,
      args,
      reqId: slots === undefined ? undefined : req.reqId,
      slots,
      key,
    };
    if (slots !== undefined) slots.map.set(key, null);
    if (this.runningCount < this.concurrency) this.run(job);
    else this.queue.push(job);
  }

  /**
   * Runs a method. A synchronous result is answered at once; a thenable
   * (async method) when it settles.
   */
  private run(job: Job): void {
    this.runningCount++;
    let value: unknown;
    this.current = job;
    try {
      value = Reflect.apply(job.fn, job.target, job.args);
    } catch (error) {
      this.finish(job, false, error);
      return;
    } finally {
      this.current = null;
    }
    if (value === null || (typeof value !== 'object' && typeof value !== 'function')) {
      this.finish(job, true, value);
      return;
    }
    let then: unknown;
    try {
      then = (value as { then?: unknown }).then;
    } catch (error) {
      this.finish(job, false, error);
      return;
    }
    if (typeof then !== 'function') {
      this.finish(job, true, value);
      return;
    }
    const ok = (result: unknown): void => this.finish(job, true, result);
    const fail = (error: unknown): void => this.finish(job, false, error);
    if (then === nativeThen && value instanceof Promise)
      (nativeThen as (this: Promise<unknown>, a: typeof ok, b: typeof fail) => unknown).call(value, ok, fail);
    // Another thenable: adopt it like `await` would (it may call back more than once, or resolve to a thenable).
    else Promise.resolve(value).then(ok, fail);
  }

  /** A method ended: answer, free its slot, start queued jobs. */
  private finish(job: Job, ok: boolean, valueOrError: unknown): void {
    try {
      this.complete(job, ok, valueOrError);
    } catch (error) {
      log(`internal error running ${job.object}.${job.method}: ${String(error)}`);
    }
    this.runningCount--;
    this.drain();
  }

  /** Starts queued jobs while there are free slots; iterative, so a queue of synchronous methods does not recurse. */
  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    try {
      while (!this.closed && this.runningCount < this.concurrency && this.queue.length > 0) this.run(this.queue.shift()!);
    } finally {
      this.draining = false;
    }
  }

  private complete(job: Job, ok: boolean, valueOrError: unknown): void {
    let reply: RpcReply | undefined;
    if (!ok) {
      this.safeEmit('methodError', valueOrError, infoOf(job));
      if (job.reqId !== undefined) {
        if (this.transferExceptions) {
          const d = describeThrown(valueOrError);
          const exception: Record<string, string> = { name: d.name, message: d.message };
          if (d.code !== undefined) exception.code = d.code;
          reply = { reqId: job.reqId, ok: false, exception, exceptionFormat: d.stack };
        } else {
          reply = { reqId: job.reqId, ok: false, exception: { name: 'Error', message: 'remote method failed' }, exceptionFormat: '' };
        }
      }
    } else if (job.reqId !== undefined) {
      reply = { reqId: job.reqId, ok: true, value: valueOrError };
    }
    if (reply === undefined || job.slots === undefined || this.closed) return;
    const data = this.encodeResult(reply, job);
    if (data === undefined) this.calls.forget(job.slots, job.key);
    else this.calls.keep(job.slots, job.key, data);
    if (data !== undefined) this.send(job.ident, data);
  }

  /** The reply bytes; a result that cannot be encoded becomes an error reply. */
  private encodeResult(reply: RpcReply, job: Job): Buffer | undefined {
    try {
      return this.codec.encodeReply(reply, this.limits.maxPayload);
    } catch (error) {
      this.safeEmit('methodError', error, infoOf(job));
      try {
        return this.codec.encodeReply(
          {
            reqId: reply.reqId,
            ok: false,
            exception: {
              name: 'InvalidArgumentError',
              message: `the result of '${job.object}.${job.method}' cannot be sent: ${(error as Error).message}`,
              code: ErrorCode.INVALID_ARGUMENT,
            },
            exceptionFormat: '',
          },
          this.limits.maxPayload,
        );
      } catch {
        log(`cannot send any reply for ${job.object}.${job.method} to ${job.ident} within maxPayload`);
        return undefined;
      }
    }
  }

  private replyError(ident: string, reqId: RpcRequestId, name: string, message: string, code: string): void {
    let data: Buffer;
    try {
      data = this.codec.encodeReply({ reqId, ok: false, exception: { name, message, code }, exceptionFormat: '' }, this.limits.maxPayload);
    } catch {
      return; // only an absurd maxPayload gets here
    }
    this.send(ident, data);
  }

  private send(ident: string, data: Buffer): void {
    try {
      // TTL 0: a caller that went away re-sends its request and is answered from the cache.
      this.messaging.send(ident, new Message(data, TTL_0));
    } catch (error) {
      log(`cannot send reply to ${ident}: ${(error as Error).message}`);
    }
  }

  private warn(message: string, info: RpcCallInfo): void {
    log(`warning (${info.ident}): ${message}`);
    this.safeEmit('warning', message, info);
  }

  /** A throwing listener must not corrupt our bookkeeping: rethrow it on its own tick instead. */
  private safeEmit<E extends keyof RpcServerEvents>(event: E, ...args: Parameters<RpcServerEvents[E]>): void {
    try {
      (this.emit as (event: E, ...args: unknown[]) => boolean)(event, ...args);
    } catch (error) {
      queueMicrotask(() => {
        throw error;
      });
    }
  }
}
