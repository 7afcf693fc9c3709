/**
 * Backpressure for senders, per identity, in the style of Node streams: a
 * queue (queued plus in flight, as `queueLength` counts) at or above the
 * high-water mark makes `writable()` false until it is down to the low-water
 * mark (half the high one), when `drain` is emitted and `drained()` promises
 * resolve. Costs the message paths nothing but a boolean check where a
 * queue's count falls: only a queue `writable()` reported full (`blocked`)
 * is looked at; no timer, no event while nobody waits.
 * @module
 */
import { ClosedError, type SnakeMQError } from '../errors.js';
import type { MessagingCore } from './core.js';
import { safeEmit } from './dispatch.js';
import type { PeerQueue } from './peer-queue.js';
import { abortedBy } from './stream.js';

/** One `drained()` waiting for a queue. */
export interface DrainWaiter {
  resolve(): void;
  reject(error: SnakeMQError): void;
  readonly signal: AbortSignal | undefined;
  readonly onAbort: (() => void) | null;
}

const RESOLVED: Promise<void> = Promise.resolve();

/** See `Messaging.writable`. */
export function writable(s: MessagingCore, ident: string): boolean {
  if (s.isClosed) return false;
  const queue = s.lastQueue !== null && s.lastQueue.ident === ident ? s.lastQueue : s.queues.get(ident);
  if (queue === undefined) return true;
  if (queue.blocked) return false;
  if (queue.count < s.options.highWaterMark && queue.bytes < s.options.highWaterMarkBytes) return true;
  queue.blocked = true;
  return false;
}

/**
 * A blocked queue's count or bytes fell: at the low-water mark it becomes
 * writable again, `drain` is emitted and its waiters resolve.
 */
export function checkDrain(s: MessagingCore, queue: PeerQueue): void {
  if (queue.count > s.options.highWaterMark >>> 1 || queue.bytes > Math.floor(s.options.highWaterMarkBytes / 2)) return;
  queue.blocked = false;
  const waiters = queue.drainWaiters;
  queue.drainWaiters = null;
  if (waiters !== null) for (const w of waiters) settle(w).resolve();
  if (!s.isClosed) safeEmit(s, 'drain', queue.ident);
}

/** See `Messaging.drained`. */
export function drained(s: MessagingCore, ident: string, signal: AbortSignal | undefined): Promise<void> {
  if (s.isClosed) return Promise.reject(new ClosedError('messaging is closed'));
  if (signal?.aborted) return Promise.reject(abortedBy(signal, `waiting for ${ident} to drain aborted`));
  if (writable(s, ident)) return RESOLVED;
  const queue = s.queues.get(ident)!;
  return new Promise<void>((resolve, reject) => {
    const onAbort =
      signal === undefined
        ? null
        : () => {
            const list = queue.drainWaiters;
            const i = list === null ? -1 : list.indexOf(waiter);
            if (i >= 0) list!.splice(i, 1);
            reject(abortedBy(signal, `waiting for ${ident} to drain aborted`));
          };
    const waiter: DrainWaiter = { resolve, reject, signal, onAbort };
    if (onAbort !== null) signal!.addEventListener('abort', onAbort, { once: true });
    (queue.drainWaiters ??= []).push(waiter);
  });
}

/** At close: every `drained()` still waiting rejects with `reason`. */
export function rejectDrainWaiters(queue: PeerQueue, reason: SnakeMQError): void {
  const waiters = queue.drainWaiters;
  queue.drainWaiters = null;
  queue.blocked = false;
  if (waiters !== null) for (const w of waiters) settle(w).reject(reason);
}

function settle(w: DrainWaiter): DrainWaiter {
  if (w.onAbort !== null) w.signal!.removeEventListener('abort', w.onAbort);
  return w;
}
