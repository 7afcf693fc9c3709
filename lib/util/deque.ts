/** A FIFO ring buffer with O(1) push and shift (power-of-two capacity), the one FIFO of the project. */
export class Deque<T> {
  // Empty until the first push: many queues never hold anything.
  private buf: (T | undefined)[] = [];
  private head = 0;
  private size = 0;

  get length(): number {
    return this.size;
  }

  push(item: T): void {
    if (this.size === this.buf.length) this.resize(this.buf.length === 0 ? 16 : this.buf.length * 2);
    this.buf[(this.head + this.size) & (this.buf.length - 1)] = item;
    this.size++;
  }

  peek(): T | undefined {
    return this.size === 0 ? undefined : this.buf[this.head];
  }

  at(index: number): T | undefined {
    return index < this.size ? this.buf[(this.head + index) & (this.buf.length - 1)] : undefined;
  }

  shift(): T | undefined {
    if (this.size === 0) return undefined;
    const item = this.buf[this.head];
    this.buf[this.head] = undefined;
    this.head = (this.head + 1) & (this.buf.length - 1);
    this.size--;
    return item;
  }

  /** Removes and returns everything, in order. */
  drain(): T[] {
    const out = this.toArray();
    this.buf = [];
    this.head = 0;
    this.size = 0;
    return out;
  }

  /** Removes everything (and lets go of the buffer). */
  clear(): void {
    this.buf = [];
    this.head = 0;
    this.size = 0;
  }

  /** Puts items in front, keeping their order. */
  unshiftAll(front: T[]): void {
    if (front.length === 0) return;
    this.replace(front.concat(this.toArray()));
  }

  /** Keeps the items for which `keep` returns true. */
  filter(keep: (item: T) => boolean): void {
    this.replace(this.toArray().filter(keep));
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = 0; i < this.size; i++) yield this.buf[(this.head + i) & (this.buf.length - 1)]!;
  }

  private toArray(): T[] {
    const out = new Array<T>(this.size);
    for (let i = 0; i < this.size; i++) out[i] = this.buf[(this.head + i) & (this.buf.length - 1)]!;
    return out;
  }

  private replace(items: T[]): void {
    if (items.length === 0) {
      this.buf = [];
      this.head = 0;
      this.size = 0;
      return;
    }
    let cap = 16;
    while (cap < items.length) cap *= 2;
    const buf = new Array<T | undefined>(cap);
    for (let i = 0; i < items.length; i++) buf[i] = items[i];
    this.buf = buf;
    this.head = 0;
    this.size = items.length;
  }

  private resize(cap: number): void {
    const buf = new Array<T | undefined>(cap);
    for (let i = 0; i < this.size; i++) buf[i] = this.buf[(this.head + i) & (this.buf.length - 1)];
    this.buf = buf;
    this.head = 0;
  }
}
