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

/**
 * Calls by caller and request id, so that a re-sent request is answered
 * again instead of run again: a call is `null` while it runs, then its reply
 * bytes while kept; the last `capacity` replies are kept (oldest evicted
 * first). `locate` sets `map` and `key`, the place of one call, without
 * allocating. @internal
 */
export class CallRegistry {
  /** Where the call last located is (set by {@link locate}). */
  slots: Slots = new Slots(new Caller(''));
  /** Its key in `slots.map`. */
  key: Key = 0;

  private readonly callers = new Map<string, Caller>();
  private last: Caller | null = null;
  // The eviction ring: the slots and key of each kept reply, oldest at `next`.
  private ringSlots: Slots[] = [];
  private ringKeys: Key[] = [];
  private next = 0;

  constructor(private readonly capacity: number) {}

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

  /** Keeps `data` as the reply of the call at (`slots`, `key`), evicting the oldest kept reply when full. */
  keep(slots: Slots, key: Key, data: Buffer): void {
    if (this.capacity === 0) {
      this.forget(slots, key);
      return;
    }
    slots.map.set(key, data);
    if (this.ringSlots.length < this.capacity) {
      this.ringSlots.push(slots);
      this.ringKeys.push(key);
      return;
    }
    const i = this.next;
    this.forget(this.ringSlots[i]!, this.ringKeys[i]!);
    this.ringSlots[i] = slots;
    this.ringKeys[i] = key;
    this.next = (i + 1) % this.capacity;
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

  /** Forgets everything. */
  clear(): void {
    this.callers.clear();
    this.last = null;
    this.ringSlots = [];
    this.ringKeys = [];
    this.next = 0;
  }
}
