/**
 * Interceptors (`Messaging.intercept`): functions that see each message sent
 * before it is queued and each message received before any handler (receive
 * hooks included, so RPC and publish/subscribe frames too), in order of
 * registration, and give a {@link Verdict}: forward (the message, or a
 * replacement), drop, return (a sent message is delivered here as if
 * received from its destination) or error. An interceptor may return a
 * Promise of its verdict: the message, and the later ones to the same
 * identity (sending) or from the same connection (receiving), wait for it.
 *
 * None registered costs one field check on each path: `enqueue` and
 * `deliver` test `sendIntercept`/`receiveIntercept` of the core and go on
 * as before (see docs/interceptors.md for the figures).
 * @module
 */
import { ClosedError, InterceptedError, InvalidArgumentError, MessageDroppedError, QueueFullError, SnakeMQError } from '../errors.js';
import type { ConnId } from '../link/types.js';
import { validateOptions } from '../util/options.js';
import type { MessagingCore } from './core.js';
import { deliver } from './dispatch.js';
import { Message, toBuffer } from './message.js';
import type { Delivery, DeliveryState } from './types.js';

/** The `connId` a returned message is delivered with (see {@link Verdict.return}): no connection carried it. */
export const LOOPBACK_CONN_ID = -1;

/**
 * At most this many received messages wait, per connection, behind an
 * interceptor's pending Promise before reading from that connection pauses
 * (it resumes once they are through).
 */
export const MAX_HELD_RECEIVED = 1024;

/** Forward the message, or `message` in its place (later interceptors and the wire or the handlers see that one). */
export interface ForwardVerdict {
  readonly verdict: 'forward';
  readonly message?: Message;
}
/** Drop the message: not queued (send), not delivered though acknowledged (receive). */
export interface DropVerdict {
  readonly verdict: 'drop';
  /** Said in the {@link MessageDroppedError} of a dropped send. */
  readonly reason?: string;
}
/** Send only: deliver the message here as if received from its destination, without sending it. */
export interface ReturnVerdict {
  readonly verdict: 'return';
}
/** Refuse the message: `send()` throws `error` (see {@link Verdict.error}); a received one is reported by the `intercepted` event. */
export interface ErrorVerdict {
  readonly verdict: 'error';
  readonly error: unknown;
}
/** What an interceptor decides. Build them with {@link Verdict}. */
export type Verdict = ForwardVerdict | DropVerdict | ReturnVerdict | ErrorVerdict;

/** What an interceptor may return: a verdict, a Message (forward it instead), or nothing (forward unchanged: the cheap common case). */
export type InterceptResult = Verdict | Message | undefined | void;

/** Sees each message `send()` is given, before it is queued. Bare data arrives as a Message made for it. */
export type SendInterceptor = (ident: string, message: Message) => InterceptResult | Promise<InterceptResult>;

/**
 * Sees each received message before any handler. `connId` is
 * {@link LOOPBACK_CONN_ID} for a message a send interceptor returned.
 */
export type ReceiveInterceptor = (connId: ConnId, ident: string, message: Message) => InterceptResult | Promise<InterceptResult>;

/** What `Messaging.intercept` registers: either function or both. */
export interface Interceptor {
  send?: SendInterceptor;
  receive?: ReceiveInterceptor;
}

const FORWARD: ForwardVerdict = Object.freeze({ verdict: 'forward' });
const DROP: DropVerdict = Object.freeze({ verdict: 'drop' });
const RETURN: ReturnVerdict = Object.freeze({ verdict: 'return' });

/**
 * The verdicts, after pyroute2's forward/return/error (policies are plain
 * functions returning one of these):
 *
 * ```ts
 * messaging.intercept({
 *   send: (ident, m) => (ident === 'test-double' ? Verdict.return() : undefined),
 *   receive: (_c, ident, m) => (m.data.length > 1e6 ? Verdict.error(new Error('too big')) : Verdict.forward()),
 * });
 * ```
 */
export const Verdict = Object.freeze({
  /** Forward unchanged (same as returning `undefined`), or `message` in its place. */
  forward(message?: Message): ForwardVerdict {
    return message === undefined ? FORWARD : { verdict: 'forward', message };
  },
  /** Drop the message (`reason` goes into the send's {@link MessageDroppedError}). */
  drop(reason?: string): DropVerdict {
    return reason === undefined ? DROP : { verdict: 'drop', reason };
  },
  /** Send only: deliver it here as if received from its destination (connId {@link LOOPBACK_CONN_ID}), through the receive interceptors. */
  return(): ReturnVerdict {
    return RETURN;
  },
  /** Refuse it with `error`: a SnakeMQError as is, anything else as the `cause` of an {@link InterceptedError} (a string as its message). */
  error(error: unknown): ErrorVerdict {
    return { verdict: 'error', error };
  },
});

/** (Not API: reached only through MessagingCore.) The interceptors of one Messaging and the messages waiting for async ones. */
export class Interception {
  /** Replaced, never changed, when one is added or removed: a pass goes on over the list it started with. */
  send: readonly SendInterceptor[] = [];
  receive: readonly ReceiveInterceptor[] = [];
  /** Per identity: sent messages waiting behind a pending verdict, the first one being decided. */
  readonly sendHeld = new Map<string, SendPass[]>();
  /** Per connection: received messages waiting likewise. */
  readonly receiveHeld = new Map<ConnId, ReceivePass[]>();
  /** Connections paused because too many messages wait (see {@link MAX_HELD_RECEIVED}). */
  readonly paused = new Set<ConnId>();
  /** The message being forwarded into `enqueue`, which must not be intercepted again. */
  passing: Message | null = null;
  warned = false;
}

/** The interceptor functions, with how far a message has got through them. */
interface Pass {
  message: Message;
  index: number;
}

interface SendPass extends Pass {
  readonly ident: string;
  readonly list: readonly SendInterceptor[];
  delivery: HeldDelivery | null;
}

interface ReceivePass extends Pass {
  readonly connId: ConnId;
  readonly ident: string;
  readonly list: readonly ReceiveInterceptor[];
}

/** The decision reached for a message: forward (with `message`), drop, return, or error. */
type Outcome = { kind: 'forward' } | { kind: 'drop'; reason: string | undefined } | { kind: 'return' } | { kind: 'error'; error: SnakeMQError };

const PROCEED = { kind: 'forward' } as const;

/** Registers `interceptor` on `s`; returns its idempotent remover. */
export function addInterceptor(s: MessagingCore, interceptor: Interceptor): () => void {
  const o = validateOptions<{ send: SendInterceptor | undefined; receive: ReceiveInterceptor | undefined }>(
    'Messaging.intercept',
    interceptor,
    { send: fnCheck, receive: fnCheck },
    { send: undefined, receive: undefined },
  );
  if (o.send === undefined && o.receive === undefined) throw new InvalidArgumentError('Messaging.intercept: give a send or a receive function (or both)');
  if (s.isClosed) throw new ClosedError('messaging is closed');
  const ic = (s.interception ??= new Interception());
  const { send, receive } = o;
  if (send !== undefined) ic.send = [...ic.send, send];
  if (receive !== undefined) ic.receive = [...ic.receive, receive];
  refresh(s);
  return () => {
    if (send !== undefined) ic.send = without(ic.send, send);
    if (receive !== undefined) ic.receive = without(ic.receive, receive);
    refresh(s);
  };
}

function fnCheck(v: unknown): string | undefined {
  return v === undefined || typeof v === 'function' ? undefined : 'must be a function';
}

function without<T>(list: readonly T[], fn: T): readonly T[] {
  const i = list.indexOf(fn);
  return i < 0 ? list : [...list.slice(0, i), ...list.slice(i + 1)];
}

/** The fields the hot paths test: set while there is an interceptor or a message waiting for one. */
function refresh(s: MessagingCore): void {
  const ic = s.interception;
  s.sendIntercept = ic !== null && (ic.send.length > 0 || ic.sendHeld.size > 0) ? ic : null;
  s.receiveIntercept = ic !== null && (ic.receive.length > 0 || ic.receiveHeld.size > 0) ? ic : null;
}

// --- sending ---------------------------------------------------------------------

/**
 * `send()` with interceptors: runs them over the message (bare data becomes
 * a Message first) and applies the verdict. Messages to an identity that has
 * one waiting for an async verdict wait behind it, in order.
 * @param check throws what `send()` throws for a bad destination.
 * @param forward queues a message (the normal `enqueue`).
 */
export function interceptSend(
  s: MessagingCore,
  ident: string,
  data: Message | Uint8Array | string,
  check: (s: MessagingCore, ident: string) => void,
  forward: (s: MessagingCore, ident: string, message: Message) => Delivery,
): Delivery {
  // As in enqueue: the identity of the last queue used was checked when it was made.
  const last = s.lastQueue;
  if (last === null || last.ident !== ident) check(s, ident);
  const ic = s.sendIntercept!;
  const message = data instanceof Message ? data : new Message(toBuffer(data));
  const list = ic.send;
  if (ic.sendHeld.size > 0) {
    const held = ic.sendHeld.get(ident);
    if (held !== undefined) {
      if (held.length >= s.options.maxQueueMessages) {
        throw new QueueFullError(
          `${held.length} messages for ${ident} wait for an interceptor's verdict (limit maxQueueMessages ${s.options.maxQueueMessages})`,
        );
      }
      const delivery = new HeldDelivery(ident, message);
      held.push({ ident, message, list, index: 0, delivery });
      return delivery;
    }
  }
  // The common case, interceptors that return nothing, makes no pass object.
  for (let i = 0; i < list.length; i++) {
    let result: InterceptResult | Promise<InterceptResult>;
    try {
      result = list[i]!(ident, message);
    } catch (thrown) {
      throw threw('a send interceptor', thrown);
    }
    if (result === undefined) continue;
    const pass: SendPass = { ident, message, list, index: i + 1, delivery: null };
    if (isThenable(result)) {
      holdSend(s, ic, pass, result, forward);
      return pass.delivery!;
    }
    let outcome: Outcome | null = apply(pass, result, 'send');
    if (outcome === PROCEED) outcome = runSend(s, ic, pass, forward);
    if (outcome === null) return pass.delivery!;
    return settleSend(s, pass, outcome, forward);
  }
  return forwardSend(s, message, forward, ident);
}

/** Runs the interceptors from `pass.index`: the outcome, or null when one went async (the pass is then held). */
function runSend(s: MessagingCore, ic: Interception, pass: SendPass, forward: SendForward): Outcome | null {
  const list = pass.list;
  while (pass.index < list.length) {
    const fn = list[pass.index++]!;
    let result: InterceptResult | Promise<InterceptResult>;
    try {
      result = fn(pass.ident, pass.message);
    } catch (thrown) {
      return { kind: 'error', error: threw('a send interceptor', thrown) };
    }
    if (result === undefined) continue;
    if (isThenable(result)) {
      holdSend(s, ic, pass, result, forward);
      return null;
    }
    const outcome = apply(pass, result, 'send');
    if (outcome !== PROCEED) return outcome;
  }
  return PROCEED;
}

type SendForward = (s: MessagingCore, ident: string, message: Message) => Delivery;

/** A verdict to `pass` (a replacement is kept there); PROCEED to go on to the next interceptor. */
function apply(pass: Pass, result: InterceptResult, side: 'send' | 'receive'): Outcome {
  if (result === undefined) return PROCEED;
  if (result instanceof Message) {
    pass.message = result;
    return PROCEED;
  }
  switch ((result as Verdict | null)?.verdict) {
    case 'forward': {
      const replacement = (result as ForwardVerdict).message;
      if (replacement === undefined) return PROCEED;
      if (!(replacement instanceof Message))
        return { kind: 'error', error: new InterceptedError(`a ${side} interceptor forwarded something that is not a Message`) };
      pass.message = replacement;
      return PROCEED;
    }
    case 'drop':
      return { kind: 'drop', reason: (result as DropVerdict).reason };
    case 'return':
      if (side === 'send') return { kind: 'return' };
      return { kind: 'error', error: new InterceptedError("a receive interceptor returned 'return', a send-only verdict") };
    case 'error':
      return { kind: 'error', error: asError((result as ErrorVerdict).error) };
    default:
      return { kind: 'error', error: new InterceptedError(`a ${side} interceptor returned ${describe(result)}, not a verdict`) };
  }
}

/** Applies the outcome of a pass decided within `send()`: the Delivery, or a throw. */
function settleSend(s: MessagingCore, pass: SendPass, outcome: Outcome, forward: SendForward): Delivery {
  const { ident, message } = pass;
  switch (outcome.kind) {
    case 'forward':
      return forwardSend(s, message, forward, ident);
    case 'drop': {
      const reason = dropReason(ident, message, outcome.reason);
      s.emitter.emit('drop', ident, message, reason);
      return new SettledDelivery(ident, message, reason);
    }
    case 'return':
      loopback(s, ident, message);
      return new SettledDelivery(ident, message, null);
    case 'error':
      throw outcome.error;
  }
}

/** Applies the outcome of a pass decided after an async verdict: its HeldDelivery follows. */
function settleHeld(s: MessagingCore, pass: SendPass, outcome: Outcome, forward: SendForward): void {
  const delivery = pass.delivery!;
  const { ident, message } = pass;
  let failure: SnakeMQError;
  switch (outcome.kind) {
    case 'forward':
      try {
        delivery.settle(forwardSend(s, message, forward, ident));
        return;
      } catch (error) {
        failure = error instanceof SnakeMQError ? error : new InterceptedError(String(error), { cause: error });
      }
      break;
    case 'return':
      loopback(s, ident, message);
      delivery.settle(new SettledDelivery(ident, message, null));
      return;
    case 'drop':
      failure = dropReason(ident, message, outcome.reason);
      break;
    case 'error':
      failure = outcome.error;
  }
  delivery.settle(new SettledDelivery(ident, message, failure));
  if (!s.isClosed) s.emitter.emit('drop', ident, message, failure);
}

function forwardSend(s: MessagingCore, message: Message, forward: SendForward, ident: string): Delivery {
  const ic = s.interception!;
  const outer = ic.passing;
  ic.passing = message;
  try {
    return forward(s, ident, message);
  } finally {
    ic.passing = outer;
  }
}

function dropReason(ident: string, message: Message, reason: string | undefined): MessageDroppedError {
  return new MessageDroppedError(`message ${message.id} for ${ident} dropped by a send interceptor${reason !== undefined ? `: ${reason}` : ''}`);
}

/** `pass` waits for `pending`; so do the later messages to its identity. */
function holdSend(s: MessagingCore, ic: Interception, pass: SendPass, pending: PromiseLike<InterceptResult>, forward: SendForward): void {
  pass.delivery ??= new HeldDelivery(pass.ident, pass.message);
  if (!ic.sendHeld.has(pass.ident)) {
    ic.sendHeld.set(pass.ident, [pass]);
    refresh(s);
  }
  pending.then(
    (result) => resumeSend(s, ic, pass, apply(pass, result, 'send'), forward),
    (thrown: unknown) => resumeSend(s, ic, pass, { kind: 'error', error: threw('a send interceptor', thrown) }, forward),
  );
}

function resumeSend(s: MessagingCore, ic: Interception, pass: SendPass, outcome: Outcome, forward: SendForward): void {
  const held = ic.sendHeld.get(pass.ident);
  if (held === undefined || held[0] !== pass) return; // let go of at close
  if (outcome === PROCEED) {
    const next = runSend(s, ic, pass, forward);
    if (next === null) return;
    outcome = next;
  }
  held.shift();
  settleHeld(s, pass, outcome, forward);
  // The ones that waited behind it, in order, until one waits again.
  while (held.length > 0) {
    const head = held[0]!;
    const next = runSend(s, ic, head, forward);
    if (next === null) return;
    held.shift();
    settleHeld(s, head, next, forward);
  }
  ic.sendHeld.delete(pass.ident);
  refresh(s);
}

/** Delivers a returned message here, as if received from `ident`, on a microtask (no re-entry into the caller of `send`, no unbounded recursion). */
function loopback(s: MessagingCore, ident: string, message: Message): void {
  queueMicrotask(() => {
    if (!s.isClosed) deliver(s, LOOPBACK_CONN_ID, ident, message);
  });
}

// --- receiving -------------------------------------------------------------------

/**
 * `deliver` with interceptors: the message goes on to `handOut` (the
 * hooks, listeners, iterators) unless a verdict keeps it. Messages of a
 * connection that has one waiting for an async verdict wait behind it.
 */
export function interceptReceive(
  s: MessagingCore,
  connId: ConnId,
  ident: string,
  message: Message,
  handOut: (s: MessagingCore, connId: ConnId, ident: string, message: Message) => void,
): void {
  const ic = s.receiveIntercept!;
  const list = ic.receive;
  if (ic.receiveHeld.size > 0) {
    const held = ic.receiveHeld.get(connId);
    if (held !== undefined) {
      held.push({ connId, ident, message, list, index: 0 });
      if (held.length >= MAX_HELD_RECEIVED && connId !== LOOPBACK_CONN_ID && !ic.paused.has(connId) && s.conns.has(connId)) {
        ic.paused.add(connId);
        s.packeter.pause(connId);
      }
      return;
    }
  }
  // As on send: no pass object while the interceptors return nothing.
  for (let i = 0; i < list.length; i++) {
    let result: InterceptResult | Promise<InterceptResult>;
    try {
      result = list[i]!(connId, ident, message);
    } catch (thrown) {
      return report(s, { connId, ident, message, list, index: i + 1 }, threw('a receive interceptor', thrown));
    }
    if (result === undefined) continue;
    return interceptReceiveFrom(s, ic, { connId, ident, message, list, index: i + 1 }, result, handOut);
  }
  handOut(s, connId, ident, message);
}

/** The rest of {@link interceptReceive} once an interceptor returned something: `result` is its answer. */
function interceptReceiveFrom(
  s: MessagingCore,
  ic: Interception,
  pass: ReceivePass,
  result: InterceptResult | Promise<InterceptResult>,
  handOut: HandOut,
): void {
  if (isThenable(result)) return holdReceive(s, ic, pass, result, handOut);
  let outcome: Outcome | null = apply(pass, result, 'receive');
  if (outcome === PROCEED) outcome = runReceive(s, ic, pass, handOut);
  if (outcome !== null) settleReceive(s, pass, outcome, handOut);
}

type HandOut = (s: MessagingCore, connId: ConnId, ident: string, message: Message) => void;

function runReceive(s: MessagingCore, ic: Interception, pass: ReceivePass, handOut: HandOut): Outcome | null {
  const list = pass.list;
  while (pass.index < list.length) {
    const fn = list[pass.index++]!;
    let result: InterceptResult | Promise<InterceptResult>;
    try {
      result = fn(pass.connId, pass.ident, pass.message);
    } catch (thrown) {
      return { kind: 'error', error: threw('a receive interceptor', thrown) };
    }
    if (result === undefined) continue;
    if (isThenable(result)) {
      holdReceive(s, ic, pass, result, handOut);
      return null;
    }
    const outcome = apply(pass, result, 'receive');
    if (outcome !== PROCEED) return outcome;
  }
  return PROCEED;
}

function settleReceive(s: MessagingCore, pass: ReceivePass, outcome: Outcome, handOut: HandOut): void {
  if (outcome.kind === 'forward') handOut(s, pass.connId, pass.ident, pass.message);
  else if (outcome.kind === 'error') report(s, pass, outcome.error);
}

/** A received message refused by a receive interceptor: the `intercepted` event, or one warning when nobody listens. */
function report(s: MessagingCore, pass: ReceivePass, error: SnakeMQError): void {
  const emitter = s.emitter;
  if (emitter.listenerCount('intercepted') > 0) {
    try {
      emitter.emit('intercepted', pass.connId, pass.ident, pass.message, error);
      return;
    } catch {
      // A listener that throws: fall through to the warning.
    }
  }
  const ic = s.interception!;
  if (!ic.warned) {
    ic.warned = true;
    process.emitWarning(
      `message from ${pass.ident} refused by a receive interceptor: ${error.message} (listen to 'intercepted' to handle these; further ones are not warned about)`,
      {
        code: error.code,
      },
    );
  }
}

function holdReceive(s: MessagingCore, ic: Interception, pass: ReceivePass, pending: PromiseLike<InterceptResult>, handOut: HandOut): void {
  if (!ic.receiveHeld.has(pass.connId)) {
    ic.receiveHeld.set(pass.connId, [pass]);
    refresh(s);
  }
  pending.then(
    (result) => resumeReceive(s, ic, pass, apply(pass, result, 'receive'), handOut),
    (thrown: unknown) => resumeReceive(s, ic, pass, { kind: 'error', error: threw('a receive interceptor', thrown) }, handOut),
  );
}

function resumeReceive(s: MessagingCore, ic: Interception, pass: ReceivePass, outcome: Outcome, handOut: HandOut): void {
  const connId = pass.connId;
  const held = ic.receiveHeld.get(connId);
  if (held === undefined || held[0] !== pass || s.isClosed) return;
  if (outcome === PROCEED) {
    const next = runReceive(s, ic, pass, handOut);
    if (next === null) return;
    outcome = next;
  }
  held.shift();
  settleReceive(s, pass, outcome, handOut);
  while (held.length > 0) {
    const head = held[0]!;
    const next = runReceive(s, ic, head, handOut);
    if (next === null) return;
    held.shift();
    settleReceive(s, head, next, handOut);
  }
  ic.receiveHeld.delete(connId);
  if (ic.paused.delete(connId)) {
    const conn = s.conns.get(connId);
    if (conn !== undefined && !conn.closing && !conn.streamPaused && conn.stash === null) s.packeter.resume(connId);
  }
  refresh(s);
}

/** At close: held sends reject with `reason` (no `drop` events: close drops everything anyway), held receptions are let go. */
export function releaseHeld(s: MessagingCore, reason: ClosedError): void {
  const ic = s.interception;
  if (ic === null) return;
  for (const held of ic.sendHeld.values()) for (const pass of held) pass.delivery?.settle(new SettledDelivery(pass.ident, pass.message, reason));
  ic.sendHeld.clear();
  ic.receiveHeld.clear();
  ic.paused.clear();
  refresh(s);
}

// --- helpers ---------------------------------------------------------------------

function isThenable(v: unknown): v is PromiseLike<InterceptResult> {
  return typeof (v as PromiseLike<unknown> | null)?.then === 'function';
}

function asError(error: unknown): SnakeMQError {
  if (error instanceof SnakeMQError) return error;
  if (typeof error === 'string') return new InterceptedError(error);
  return new InterceptedError(`refused by an interceptor: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
}

function threw(what: string, thrown: unknown): InterceptedError {
  return new InterceptedError(`${what} threw: ${thrown instanceof Error ? thrown.message : String(thrown)}`, { cause: thrown });
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'object')
    return `an object${(v as { verdict?: unknown }).verdict !== undefined ? ` with verdict '${String((v as { verdict?: unknown }).verdict)}'` : ''}`;
  return typeof v;
}

/** A Delivery decided by an interceptor at once: dropped or refused (`error`), or returned (delivered here). */
class SettledDelivery implements Delivery {
  constructor(
    readonly ident: string,
    readonly message: Message,
    private readonly error: SnakeMQError | null,
  ) {}

  get state(): DeliveryState {
    return this.error !== null ? 'dropped' : 'acknowledged';
  }

  persisted(): Promise<void> {
    return this.error !== null ? Promise.reject(this.error) : Promise.resolve();
  }

  written(): Promise<void> {
    return this.persisted();
  }

  delivered(): Promise<void> {
    return this.persisted();
  }
}

/** The Delivery of a message waiting for an async verdict: 'queued' until then, then the one the verdict led to. */
class HeldDelivery implements Delivery {
  private inner: Delivery | null = null;
  private decided: Promise<Delivery> | null = null;
  private resolveDecided: ((d: Delivery) => void) | null = null;

  constructor(
    readonly ident: string,
    private readonly original: Message,
  ) {}

  /** The message given to `send()` until decided, then the one forwarded (a replacement, if any). */
  get message(): Message {
    return this.inner?.message ?? this.original;
  }

  get state(): DeliveryState {
    return this.inner?.state ?? 'queued';
  }

  /** @internal */
  settle(inner: Delivery): void {
    this.inner = inner;
    this.resolveDecided?.(inner);
  }

  private after(): Promise<Delivery> {
    if (this.inner !== null) return Promise.resolve(this.inner);
    return (this.decided ??= new Promise<Delivery>((resolve) => (this.resolveDecided = resolve)));
  }

  persisted(): Promise<void> {
    return this.inner !== null ? this.inner.persisted() : this.after().then((d) => d.persisted());
  }

  written(): Promise<void> {
    return this.inner !== null ? this.inner.written() : this.after().then((d) => d.written());
  }

  delivered(): Promise<void> {
    return this.inner !== null ? this.inner.delivered() : this.after().then((d) => d.delivered());
  }
}
