import type { ConnId } from '../link/types.js';
import type { Message } from './message.js';

/** One received message as yielded by `Messaging.messages()`. */
export interface ReceivedMessage {
  readonly connId: ConnId;
  readonly ident: string;
  readonly message: Message;
}

/**
 * Async iterator over received messages with a buffer whose fill level the
 * owner watches (to pause reading from peers). @internal
 */
export class MessageStream implements AsyncIterableIterator<ReceivedMessage> {
  private readonly buffer: ReceivedMessage[] = [];
  private head = 0;
  private waiter: ((result: IteratorResult<ReceivedMessage>) => void) | null = null;
  private ended = false;

  constructor(
    private readonly onLevel: () => void,
    private readonly onReturn: () => void,
  ) {}

  get buffered(): number {
    return this.buffer.length - this.head;
  }

  push(item: ReceivedMessage): void {
    if (this.ended) return;
    if (this.waiter !== null) {
      const w = this.waiter;
      this.waiter = null;
      w({ value: item, done: false });
      return;
    }
    this.buffer.push(item);
    if ((this.buffer.length - this.head) % 1024 === 0) this.onLevel();
  }

  end(): void {
    this.ended = true;
    if (this.waiter !== null) {
      const w = this.waiter;
      this.waiter = null;
      w({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<ReceivedMessage>> {
    if (this.head < this.buffer.length) {
      const value = this.buffer[this.head]!;
      (this.buffer as (ReceivedMessage | undefined)[])[this.head] = undefined;
      this.head++;
      if (this.head === this.buffer.length) {
        this.buffer.length = 0;
        this.head = 0;
        this.onLevel();
      } else if (this.head >= 4096 && this.head * 2 >= this.buffer.length) {
        this.buffer.splice(0, this.head);
        this.head = 0;
        this.onLevel();
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  return(): Promise<IteratorResult<ReceivedMessage>> {
    this.buffer.length = 0;
    this.head = 0;
    this.end();
    this.onReturn();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<ReceivedMessage> {
    return this;
  }
}
