import { Deque } from '../util/deque.js';
import { reqIdKey } from './codec.js';
import type { RpcRequestId } from './types.js';

/** A call's state: `null` while it runs, then its reply bytes while kept. */
type Slot = Buffer | null;
type Key = number | string;

/**
 * One caller's calls. snakemq-ts clients make 16-byte request ids of a random
 * 8-byte prefix (fixed per client) and a counter: the first such prefix seen
 * is adopted, and calls with it are keyed by their counter (a number: cheap
 * to hash). Every other id is keyed by its bytes as a string. The prefix is
 * adopted once per record and the record lives until it holds no call, so a
 * given id always maps to the same place while its call is known.
 */
class Caller {
  prefixHi = 0;
  prefixLo = 0;
  hasPrefix = false;
  readonly counted = new Slots(this);
  readonly other = new Slots(this);

  constructor(readonly ident: string) {}
}

/** Calls of one caller keyed one way. @internal */
export class Slots {
  readonly map = new Map<Key, Slot>();

  constructor(readonly caller: Caller) {}
}

function u32(b: Buffer, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

/** Most ms a Node timer waits. */
const MAX_TIMER = 0x7fffffff;
/** Ticks of the age sweep per `maxAge`: a reply is forgotten between maxAge and maxAge × 9/8 after it was kept. */
const AGE_TICKS = 8;
/** Buffers up to this size may be shared by small replies (the codec's slab, Node's pool): a view of one is kept as is. */
const SHARED_BUFFER = 8192;

/**
 * Calls by caller and request id, so that a re-sent request is answered
 * again instead of run again: a call is `null` while it runs, then its reply
 * bytes while kept. Kept replies are forgotten oldest first: beyond
 * `capacity` replies, beyond `maxBytes` bytes of replies (a reply larger
 * than that is not kept), and `maxAge` ms after they were kept (one timer
 * for the whole registry, running only while replies are kept: an interval
 * of maxAge / 8, so a reply goes between maxAge and maxAge × 9/8). A reply
 * viewing a much larger buffer is copied, so that it does not keep that
 * buffer alive. `locate` sets `map` and `key`, the place of one call,
 * without allocating. @internal
 */
export class CallRegistry {
  /** Where the call last located is (set by {@link locate}). */
  slots: Slots = new Slots(new Caller(''));
  /** Its key in `slots.map`. */
  key: Key = 0;
  /** Bytes of the replies kept. */
  bytes = 0;

  private readonly callers = new Map<string, Caller>();
  private last: Caller | null = null;
  // The kept replies, oldest first, in four parallel FIFOs (no object per reply): their place, size and the sweep tick they were kept in.
  private readonly ringSlots = new Deque<Slots>();
  private readonly ringKeys = new Deque<Key>();
  private readonly ringBytes = new Deque<number>();
  private readonly ringTicks = new Deque<number>();
  private tick = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly period: number;
  private readonly ticksPerAge: number;
  private readonly sweep = (): void => {
    const kept = ++this.tick - this.ticksPerAge - 1;
    while (this.ringTicks.length > 0 && this.ringTicks.peek()! <= kept) this.evictOldest();
    if (this.ringSlots.length === 0) this.stopTimer();
  };

  constructor(
    private readonly capacity: number,
    private readonly maxBytes = Infinity,
    maxAge = Infinity,
  ) {
    this.period = maxAge === Infinity ? Infinity : Math.max(1, Math.min(MAX_TIMER, Math.ceil(maxAge / AGE_TICKS)));
    this.ticksPerAge = maxAge === Infinity ? Infinity : Math.ceil(maxAge / this.period);
  }

  /** Sets {@link slots} and {@link key} to the place of `ident`'s call `reqId`. */
  locate(ident: string, reqId: RpcRequestId): void {
    let caller = this.last;
    if (caller === null || caller.ident !== ident) {
      caller = this.callers.get(ident) ?? null;
      if (caller === null) this.callers.set(ident, (caller = new Caller(ident)));
      this.last = caller;
    }
    if (typeof reqId !== 'string' && reqId.length === 16) {
      const hi = u32(reqId, 0);
      const lo = u32(reqId, 4);
      const countHi = u32(reqId, 8);
      // Counters below 2^53 are exact numbers.
      if (countHi < 0x200000) {
        if (!caller.hasPrefix) {
          caller.hasPrefix = true;
          caller.prefixHi = hi;
          caller.prefixLo = lo;
        }
        if (caller.prefixHi === hi && caller.prefixLo === lo) {
          this.slots = caller.counted;
          this.key = countHi * 0x100000000 + u32(reqId, 12);
          return;
        }
      }
    }
    this.slots = caller.other;
    this.key = reqIdKey(reqId);
  }

  /**
   * Keeps `data` as the reply of the call at (`slots`, `key`), forgetting
   * the oldest kept replies as needed; a reply beyond the byte budget is
   * not kept (the call is forgotten).
   */
  keep(slots: Slots, key: Key, data: Buffer): void {
    const size = data.length;
    if (this.capacity === 0 || size > this.maxBytes) {
      this.forget(slots, key);
      return;
    }
    const pinned = data.buffer.byteLength;
    if (pinned > SHARED_BUFFER && pinned - size > size >>> 3) data = Buffer.from(data);
    while (this.ringSlots.length >= this.capacity || this.bytes + size > this.maxBytes) this.evictOldest();
    slots.map.set(key, data);
    this.ringSlots.push(slots);
    this.ringKeys.push(key);
    this.ringBytes.push(size);
    this.ringTicks.push(this.tick);
    this.bytes += size;
    if (this.timer === undefined && this.period !== Infinity) {
      this.timer = setInterval(this.sweep, this.period);
      this.timer.unref();
    }
  }

  /** Number of replies kept. */
  get kept(): number {
    return this.ringSlots.length;
  }

  private evictOldest(): void {
    const slots = this.ringSlots.shift()!;
    this.ringTicks.shift();
    this.bytes -= this.ringBytes.shift()!;
    this.forget(slots, this.ringKeys.shift()!);
  }

  private stopTimer(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Forgets the call at (`slots`, `key`). */
  forget(slots: Slots, key: Key): void {
    slots.map.delete(key);
    if (slots.map.size > 0) return;
    // A caller without calls is dropped: its next calls may adopt another prefix.
    const caller = slots.caller;
    if (caller.counted.map.size > 0 || caller.other.map.size > 0 || this.callers.get(caller.ident) !== caller) return;
    this.callers.delete(caller.ident);
    if (this.last === caller) this.last = null;
  }

  /** Number of calls known (running, or answered and kept). */
  get size(): number {
    let n = 0;
    for (const c of this.callers.values()) n += c.counted.map.size + c.other.map.size;
    return n;
  }

  /** Number of callers with known calls. */
  get callerCount(): number {
    return this.callers.size;
  }

  /** Forgets everything and stops the timer. */
  clear(): void {
    this.callers.clear();
    this.last = null;
    this.ringSlots.clear();
    this.ringKeys.clear();
    this.ringBytes.clear();
    this.ringTicks.clear();
    this.bytes = 0;
    this.stopTimer();
  }
}
