import { AbortedError, type SnakeMQError } from '../errors.js';
import type { ConnId } from '../link/types.js';
import { Deque } from '../util/deque.js';
import type { Message } from './message.js';

/** One received message as yielded by `Messaging.messages()`. */
export interface ReceivedMessage {
  readonly connId: ConnId;
  readonly ident: string;
  readonly message: Message;
}

interface Waiter {
  resolve(result: IteratorResult<ReceivedMessage>): void;
  reject(error: SnakeMQError): void;
}

const DONE: IteratorResult<ReceivedMessage> = { value: undefined, done: true };

/**
 * Async iterator over received messages with a buffer whose fill level the
 * owner watches, exactly: {@link push} tells when the buffer is at or above
 * the high-water mark (the owner pauses the connection that delivered the
 * message), `onLevel` is called once when it falls back below it (the owner
 * may resume). Concurrent `next()` calls wait in a FIFO and are settled in
 * order; `end()` and `return()` settle every waiting one with done,
 * {@link abort} rejects them.
 *
 */
export class MessageStream implements AsyncIterableIterator<ReceivedMessage> {
  private buffer = new Deque<ReceivedMessage>();
  private readonly waiters = new Deque<Waiter>();
  private ended = false;
  /** Why the stream was aborted, until a `next()` has been rejected with it. */
  private failure: SnakeMQError | null = null;
  /** Whether the level reached the mark since it was last below it (onLevel is owed when it falls below). */
  private full = false;
  private signal: AbortSignal | null = null;
  private readonly onAbort = (): void => this.abort(abortedBy(this.signal!, 'messages() aborted'));

  /**
   * @param highWaterMark messages buffered unread at which {@link push} returns true (at least 1).
   * @param onLevel called once each time the level falls back below the mark after reaching it.
   * @param onReturn called once when the consumer stops early (`return()`, `break` out of `for await`, an aborted signal).
   * @param signal aborting it {@link abort}s the stream with an {@link AbortedError} (`cause`: its reason).
   */
  constructor(
    readonly highWaterMark: number,
    private readonly onLevel: () => void,
    private readonly onReturn: () => void,
    signal?: AbortSignal,
  ) {
    if (signal === undefined) return;
    if (signal.aborted) {
      // Never registered with the owner: nothing to release.
      this.ended = true;
      this.failure = abortedBy(signal, 'messages() aborted');
      return;
    }
    this.signal = signal;
    signal.addEventListener('abort', this.onAbort, { once: true });
  }

  /** Messages buffered, not yet taken by `next()`. */
  get buffered(): number {
    return this.buffer.length;
  }

  /** Whether the buffer is at or above the high-water mark. */
  get isFull(): boolean {
    return this.buffer.length >= this.highWaterMark;
  }

  /**
   * Hands a received message to the first waiting `next()`, or buffers it.
   * Returns true when the buffer is now at or above the high-water mark
   * (every push while it is: the owner pauses each connection that delivers
   * to a full stream). An ended stream drops it and returns false.
   */
  push(item: ReceivedMessage): boolean {
    if (this.ended) return false;
    if (this.waiters.length > 0) {
      this.waiters.shift()!.resolve({ value: item, done: false });
      return false;
    }
    this.buffer.push(item);
    if (this.buffer.length < this.highWaterMark) return false;
    this.full = true;
    return true;
  }

  /** No more messages: waiting `next()` calls settle with done; buffered messages can still be read. */
  end(): void {
    this.ended = true;
    this.unlisten();
    let w;
    while ((w = this.waiters.shift()) !== undefined) w.resolve(DONE);
  }

  /**
   * Ends the stream with `error` (its signal was aborted): buffered messages
   * are discarded, waiting `next()` calls reject with it (or else the next
   * one does), `onReturn` is called (once), as for `return()`.
   */
  abort(error: SnakeMQError): void {
    if (this.ended) return;
    this.discard();
    this.ended = true;
    this.unlisten();
    if (this.waiters.length === 0) this.failure = error;
    let w;
    while ((w = this.waiters.shift()) !== undefined) w.reject(error);
    this.onReturn();
  }

  next(): Promise<IteratorResult<ReceivedMessage>> {
    if (this.buffer.length > 0) {
      const value = this.buffer.shift()!;
      if (this.full && this.buffer.length < this.highWaterMark) {
        this.full = false;
        this.onLevel();
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.ended) {
      const failure = this.failure;
      if (failure === null) return Promise.resolve(DONE);
      this.failure = null;
      return Promise.reject(failure);
    }
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
    });
  }

  /** Stops the iteration: buffered messages are discarded, waiting `next()` calls settle with done, `onReturn` is called (once). */
  return(): Promise<IteratorResult<ReceivedMessage>> {
    const first = !this.ended;
    this.discard();
    this.failure = null;
    this.end();
    if (first) this.onReturn();
    return Promise.resolve(DONE);
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<ReceivedMessage> {
    return this;
  }

  private discard(): void {
    this.buffer = new Deque<ReceivedMessage>();
    this.full = false;
  }

  private unlisten(): void {
    if (this.signal === null) return;
    this.signal.removeEventListener('abort', this.onAbort);
    this.signal = null;
  }
}

/** The error an aborted `signal` rejects with: an {@link AbortedError} whose `cause` is the signal's reason. @internal */
export function abortedBy(signal: AbortSignal, what: string): AbortedError {
  return new AbortedError(what, { cause: signal.reason });
}
