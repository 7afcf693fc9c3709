import { AbortedError, type SnakeMQError } from '../errors.js';
import { Deque } from '../util/deque.js';

interface Waiter<T> {
  resolve(result: IteratorResult<T>): void;
  reject(error: SnakeMQError): void;
}

/**
 * An async iterator over published messages with a bounded buffer: past
 * `max` unread, the oldest is dropped (live data: the newest matter) and
 * `onDrop` is told. `end()` finishes it (waiting `next()` calls get done),
 * `abort()` rejects a waiting or the next `next()`; `return()` (a `break`
 * out of `for await`) stops it and calls `onReturn`.
 */
export class PubStream<T> implements AsyncIterableIterator<T> {
  private readonly buffer = new Deque<T>();
  private readonly waiters = new Deque<Waiter<T>>();
  private ended = false;
  private failure: SnakeMQError | null = null;
  private readonly onAbort = (): void => this.abort(new AbortedError('messages() aborted', { cause: this.signal?.reason }));

  constructor(
    private readonly max: number,
    private readonly onDrop: () => void,
    private readonly onReturn: (s: PubStream<T>) => void,
    private readonly signal?: AbortSignal,
  ) {
    if (signal === undefined) return;
    if (signal.aborted) {
      this.ended = true;
      this.failure = new AbortedError('messages() aborted', { cause: signal.reason });
      return;
    }
    signal.addEventListener('abort', this.onAbort, { once: true });
  }

  get done(): boolean {
    return this.ended;
  }

  /** Messages buffered unread. */
  get length(): number {
    return this.buffer.length;
  }

  push(value: T): void {
    if (this.ended) return;
    const w = this.waiters.shift();
    if (w !== undefined) return w.resolve({ value, done: false });
    this.buffer.push(value);
    if (this.buffer.length > this.max) {
      this.buffer.shift();
      this.onDrop();
    }
  }

  next(): Promise<IteratorResult<T>> {
    const v = this.buffer.shift();
    if (v !== undefined) return Promise.resolve({ value: v, done: false });
    if (this.failure !== null) {
      const f = this.failure;
      this.failure = null;
      return Promise.reject(f);
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  return(): Promise<IteratorResult<T>> {
    this.finish();
    this.buffer.clear();
    this.release();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Ends the stream: buffered messages are still read, then done. */
  end(): void {
    this.finish();
  }

  /** Ends the stream with `error`: the waiting `next()` (or the next one) rejects. */
  abort(error: SnakeMQError): void {
    if (this.ended) return;
    const w = this.waiters.shift();
    this.finish();
    this.buffer.clear();
    if (w !== undefined) w.reject(error);
    else this.failure = error;
    this.release();
  }

  private released = false;

  private release(): void {
    if (this.released) return;
    this.released = true;
    this.onReturn(this);
  }

  private finish(): void {
    if (this.ended && this.waiters.length === 0) return;
    this.ended = true;
    this.signal?.removeEventListener('abort', this.onAbort);
    for (let w = this.waiters.shift(); w !== undefined; w = this.waiters.shift()) w.resolve({ value: undefined, done: true });
  }
}
