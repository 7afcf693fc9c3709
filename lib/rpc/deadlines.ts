/**
 * The deadlines of an RpcClient's pending calls, on one Node timer. Builds
 * on util/deque.ts.
 * @module
 */
import { performance } from 'node:perf_hooks';
import { Deque } from '../util/deque.js';

/** Most ms a Node timer waits. @internal */
export const MAX_TIMER = 0x7fffffff;

const RESOLVED: Promise<void> = Promise.resolve();

/** @internal What has a deadline: its timeout (ms) and, while in the lists, when it expires (performance.now() ms; Infinity once out). */
export interface Timed {
  readonly timeout: number;
  deadline: number;
}

/** Calls of one timeout, in the order of their deadlines (settled ones are skipped lazily). */
class DeadlineList<T extends Timed> {
  readonly items = new Deque<T>();
  /** Settled calls still in `items`. */
  settled = 0;
}

/**
 * @internal The deadlines of a client's pending calls, on one Node timer armed for
 * the earliest. Calls with the same timeout expire in the order they were
 * made, so each distinct timeout has a FIFO list; a settled call stays in
 * it until it reaches the front (or the list is compacted). The (monotonic)
 * clock is read once per burst of calls: like Node's timers, which take their
 * start time from the event loop's cached time.
 */
export class Deadlines<T extends Timed> {
  private readonly lists = new Map<number, DeadlineList<T>>();
  private timer: NodeJS.Timeout | undefined;
  private armedFor = Infinity;
  private now = -1;
  private readonly forgetNow = (): void => {
    this.now = -1;
  };
  private readonly fire = (): void => {
    const firedFor = this.armedFor;
    this.timer = undefined;
    this.armedFor = Infinity;
    // With fake timers the clock may not have moved: the timer firing is what counts.
    const now = Math.max(performance.now(), firedFor);
    const expired: T[] = [];
    for (const [timeout, list] of this.lists) {
      for (;;) {
        const p = list.items.peek();
        if (p === undefined) {
          this.lists.delete(timeout);
          break;
        }
        if (!this.isPending(p)) {
          list.items.shift();
          list.settled--;
          continue;
        }
        if (p.deadline > now) break;
        list.items.shift();
        p.deadline = Infinity; // out of the lists
        expired.push(p);
      }
    }
    this.rearm();
    for (const p of expired) this.expire(p);
  };

  constructor(
    private readonly isPending: (p: T) => boolean,
    private readonly expire: (p: T) => void,
  ) {}

  add(p: T): void {
    if (this.now < 0) {
      this.now = performance.now();
      void RESOLVED.then(this.forgetNow); // not queueMicrotask: it makes an async resource per call
    }
    p.deadline = this.now + p.timeout;
    let list = this.lists.get(p.timeout);
    if (list === undefined) this.lists.set(p.timeout, (list = new DeadlineList<T>()));
    list.items.push(p);
    if (p.deadline < this.armedFor) this.arm(p.deadline);
  }

  /** A call in a list settled (there are pending calls left). */
  settled(p: T): void {
    const list = p.deadline === Infinity ? undefined : this.lists.get(p.timeout);
    if (list === undefined) return;
    list.settled++;
    const items = list.items;
    while (items.length > 0 && !this.isPending(items.peek()!)) {
      items.shift();
      list.settled--;
    }
    if (list.settled > 1024 && list.settled * 2 > items.length) {
      // Replies out of order behind a slow call: drop the settled ones now.
      items.filter(this.isPending);
      list.settled = 0;
    }
  }

  /** No call is pending (any more): forget everything, stop the timer. */
  clear(): void {
    this.lists.clear();
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.armedFor = Infinity;
  }

  private arm(deadline: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.armedFor = deadline;
    const now = this.now >= 0 ? this.now : performance.now();
    this.timer = setTimeout(this.fire, Math.min(MAX_TIMER, Math.max(1, deadline - now)));
  }

  private rearm(): void {
    let earliest = Infinity;
    for (const list of this.lists.values()) {
      const p = list.items.peek();
      if (p !== undefined && p.deadline < earliest) earliest = p.deadline;
    }
    if (earliest < Infinity) this.arm(earliest);
  }
}
