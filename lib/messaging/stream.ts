import type { ConnId } from '../link/types.js';
import type { Message } from './message.js';

/** One received message as yielded by `Messaging.messages()`. */
export interface ReceivedMessage {
  readonly connId: ConnId;
  readonly ident: string;
  readonly message: Message;
}

type Waiter = (result: IteratorResult<ReceivedMessage>) => void;

const DONE: IteratorResult<ReceivedMessage> = { value: undefined, done: true };

/**
 * Async iterator over received messages with a buffer whose fill level the
 * owner watches, exactly: {@link push} tells when the buffer is at or above
 * the high-water mark (the owner pauses the connection that delivered the
 * message), `onLevel` is called once when it falls back below it (the owner
 * may resume). Concurrent `next()` calls wait in a FIFO and are settled in
 * order; `end()` and `return()` settle every waiting one with done.
 * @internal
 */
export class MessageStream implements AsyncIterableIterator<ReceivedMessage> {
  private buffer: (ReceivedMessage | undefined)[] = [];
  private head = 0;
  private waiters: (Waiter | undefined)[] = [];
  private waitHead = 0;
  private ended = false;
  /** Whether the level reached the mark since it was last below it (onLevel is owed when it falls below). */
  private full = false;

  /**
   * @param highWaterMark messages buffered unread at which {@link push} returns true (at least 1).
   * @param onLevel called once each time the level falls back below the mark after reaching it.
   * @param onReturn called once when the consumer stops early (`return()`, `break` out of `for await`).
   */
  constructor(
    readonly highWaterMark: number,
    private readonly onLevel: () => void,
    private readonly onReturn: () => void,
  ) {}

  /** Messages buffered, not yet taken by `next()`. */
  get buffered(): number {
    return this.buffer.length - this.head;
  }

  /** Whether the buffer is at or above the high-water mark. */
  get isFull(): boolean {
    return this.buffer.length - this.head >= this.highWaterMark;
  }

  /**
   * Hands a received message to the first waiting `next()`, or buffers it.
   * Returns true when the buffer is now at or above the high-water mark
   * (every push while it is: the owner pauses each connection that delivers
   * to a full stream). An ended stream drops it and returns false.
   */
  push(item: ReceivedMessage): boolean {
    if (this.ended) return false;
    if (this.waitHead < this.waiters.length) {
      this.takeWaiter()({ value: item, done: false });
      return false;
    }
    this.buffer.push(item);
    if (this.buffer.length - this.head < this.highWaterMark) return false;
    this.full = true;
    return true;
  }

  /** No more messages: waiting `next()` calls settle with done; buffered messages can still be read. */
  end(): void {
    this.ended = true;
    while (this.waitHead < this.waiters.length) this.takeWaiter()(DONE);
  }

  next(): Promise<IteratorResult<ReceivedMessage>> {
    if (this.head < this.buffer.length) {
      const value = this.buffer[this.head]!;
      this.buffer[this.head] = undefined;
      this.head++;
      if (this.head === this.buffer.length) {
        this.buffer.length = 0;
        this.head = 0;
      } else if (this.head >= 4096 && this.head * 2 >= this.buffer.length) {
        this.buffer.splice(0, this.head);
        this.head = 0;
      }
      if (this.full && this.buffer.length - this.head < this.highWaterMark) {
        this.full = false;
        this.onLevel();
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.ended) return Promise.resolve(DONE);
    return new Promise((resolve) => {
      this.waiters.push(resolve);
    });
  }

  /** Stops the iteration: buffered messages are discarded, waiting `next()` calls settle with done, `onReturn` is called (once). */
  return(): Promise<IteratorResult<ReceivedMessage>> {
    const first = !this.ended;
    this.buffer = [];
    this.head = 0;
    this.full = false;
    this.end();
    if (first) this.onReturn();
    return Promise.resolve(DONE);
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<ReceivedMessage> {
    return this;
  }

  private takeWaiter(): Waiter {
    const w = this.waiters[this.waitHead]!;
    this.waiters[this.waitHead++] = undefined;
    if (this.waitHead === this.waiters.length) {
      this.waiters = [];
      this.waitHead = 0;
    }
    return w;
  }
}
