/**
 * Receiving, last step: a message goes to the receive hook whose prefix or
 * RegExp matches it, or to the `message` listeners and the iterators of
 * `messages()` (whose fill level pauses reading). A throwing handler is
 * reported as `handlerError` and keeps nobody else from the message.
 * @module
 */
import { Buffer } from 'node:buffer';
import { ErrorCode, HandlerError, InvalidArgumentError } from '../errors.js';
import type { ConnId } from '../link/types.js';
import { createLogger } from '../util/log.js';
import type { MessagingCore } from './core.js';
import { interceptReceive } from './intercept.js';
import { Message } from './message.js';
import { MessageStream, type ReceivedMessage } from './stream.js';
import type { MessagingEvents } from './types.js';

const log = createLogger('snakemq:messaging');
/** A receive hook's handler. */
export type ReceiveHookHandler = (connId: ConnId, ident: string, message: Message) => void;

/** */
export interface Hook {
  readonly prefix: Buffer | null;
  readonly regexp: RegExp | null;
  readonly handler: ReceiveHookHandler;
}

/**
 * Hands a received message to its hook, or to `message` listeners and
 * iterators. A handler that throws is reported (`handlerError`) and the
 * others still get the message: the read goes on, the message counts as
 * received (it is acknowledged).
 */
export function deliver(s: MessagingCore, connId: ConnId, ident: string, message: Message): void {
  if (s.receiveIntercept !== null) return interceptReceive(s, connId, ident, message, handOut);
  handOut(s, connId, ident, message);
}

/** {@link deliver} after the receive interceptors (if any) forwarded the message. */
export function handOut(s: MessagingCore, connId: ConnId, ident: string, message: Message): void {
  const hooks = s.hooks;
  if (hooks.length > 0) {
    const data = message.data;
    for (let i = 0; i < hooks.length; i++) {
      const hook = hooks[i]!;
      if (hook.prefix !== null ? startsWith(data, hook.prefix) : hook.regexp!.test(data.toString('latin1'))) {
        try {
          hook.handler(connId, ident, message);
        } catch (error) {
          handlerFailed(s, 'a receive hook', error);
        }
        return;
      }
    }
  }
  // One plain listener (the common case) is called directly: eventemitter3's emit costs more than the call.
  const listener = s.messageListener;
  if (listener !== null) {
    try {
      (listener.fn as ReceiveHookHandler).call(listener.context, connId, ident, message);
    } catch (error) {
      handlerFailed(s, 'a message listener', error);
    }
    // Several listeners, or a `once` one: each gets called on its own.
  } else if (s.messageListened) emitEach(s, 'message', connId, ident, message);
  if (s.streams.size > 0) {
    let full = false;
    for (const stream of s.streams) if (stream.push({ connId, ident, message })) full = true;
    if (full) pauseForStreams(s, connId);
  }
}

/** Emits an event to each listener on its own: one that throws is reported and does not keep the message from the others. */
export function emitEach<E extends keyof MessagingEvents>(s: MessagingCore, event: E, ...args: Parameters<MessagingEvents[E]>): void {
  const registered = s.registered.get(event);
  if (registered === undefined) return;
  const listeners = registered.slice();
  for (const l of listeners) {
    if (l.once) s.emitter.removeListener(event, l.fn as never, l.context, true);
    try {
      (l.fn as (...a: unknown[]) => void).apply(l.context, args);
    } catch (error) {
      handlerFailed(s, `a '${event}' listener`, error);
    }
  }
}

/** Emits an event to the application, isolating it from a listener that throws. */
export function safeEmit<E extends keyof MessagingEvents>(s: MessagingCore, event: E, ...args: Parameters<MessagingEvents[E]>): void {
  if (s.emitter.listenerCount(event) === 0) return;
  emitEach(s, event, ...args);
}

export function handlerFailed(s: MessagingCore, what: string, thrown: unknown): void {
  const error = new HandlerError(`${what} threw: ${thrown instanceof Error ? thrown.message : String(thrown)}`, { cause: thrown });
  log(error.message);
  if (s.emitter.listenerCount('handlerError') > 0) {
    try {
      s.emitter.emit('handlerError', error);
      return;
    } catch {
      // A handlerError listener that throws too: fall through to the warning.
    }
  }
  if (!s.handlerWarned) {
    s.handlerWarned = true;
    process.emitWarning(`${error.message} (listen to 'handlerError' to handle these; further ones are not warned about)`, { code: ErrorCode.HANDLER });
  }
}

/** Pauses reading from a connection whose message took an iterator to its high-water mark. */
export function pauseForStreams(s: MessagingCore, connId: ConnId): void {
  const conn = s.conns.get(connId);
  if (conn === undefined || conn.streamPaused) return;
  conn.streamPaused = true;
  s.streamPaused.add(conn);
  s.packeter.pause(connId);
}

/** An iterator's level fell below the mark (or it ended): resume the paused connections once none is full. */
export function updateReadPause(s: MessagingCore): void {
  if (s.streamPaused.size === 0) return;
  const mark = s.options.streamHighWaterMark;
  for (const stream of s.streams) if (stream.buffered >= mark) return;
  for (const conn of s.streamPaused) {
    conn.streamPaused = false;
    if (!conn.closing && conn.stash === null) s.packeter.resume(conn.id);
  }
  s.streamPaused.clear();
}

/** The application (un)registered listeners of `event` (or of all events): the caches the per-message paths read are made again. */
export function listenersChanged(s: MessagingCore, event: string | symbol | undefined): void {
  const registered = s.registered;
  if (event === undefined || event === 'message') {
    const list = registered.get('message');
    s.messageListener = list !== undefined && list.length === 1 && !list[0]!.once ? list[0]! : null;
    s.messageListened = list !== undefined;
  }
  if (event === undefined || event === 'sent' || event === 'acknowledged') {
    s.deliveryListened = registered.get('sent') !== undefined || registered.get('acknowledged') !== undefined;
  }
}

/** Routes received messages matching `matcher` to `handler` (see `Messaging.addReceiveHook`); returns the remover. */
export function addHook(s: MessagingCore, matcher: string | Uint8Array | RegExp, handler: ReceiveHookHandler): () => void {
  if (typeof handler !== 'function') throw new InvalidArgumentError('hook handler must be a function');
  let hook: Hook;
  if (matcher instanceof RegExp) hook = { prefix: null, regexp: matcher, handler };
  else if (typeof matcher === 'string') hook = { prefix: Buffer.from(matcher, 'utf8'), regexp: null, handler };
  else if (matcher instanceof Uint8Array) hook = { prefix: Buffer.from(matcher), regexp: null, handler };
  else throw new InvalidArgumentError('hook matcher must be a string, bytes or a RegExp');
  s.hooks.push(hook);
  return () => {
    const i = s.hooks.indexOf(hook);
    if (i >= 0) s.hooks.splice(i, 1);
  };
}

/** A new iterator of received messages (see `Messaging.messages`). */
export function openStream(s: MessagingCore, signal: AbortSignal | undefined): AsyncIterableIterator<ReceivedMessage> {
  const stream = new MessageStream(
    s.options.streamHighWaterMark,
    () => updateReadPause(s),
    () => {
      s.streams.delete(stream);
      updateReadPause(s);
    },
    signal,
  );
  if (signal?.aborted) return stream;
  if (s.isClosed) stream.end();
  else s.streams.add(stream);
  return stream;
}

function startsWith(data: Buffer, prefix: Buffer): boolean {
  const n = prefix.length;
  if (data.length < n) return false;
  for (let i = 0; i < n; i++) if (data[i] !== prefix[i]) return false;
  return true;
}
