import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { CallRegistry } from '../../lib/rpc/call-registry.js';

/** A snakemq-ts client's request id: 8-byte prefix, then a 64-bit counter. */
function ourId(prefix: Buffer, n: number): Buffer {
  const id = Buffer.alloc(16);
  prefix.copy(id, 0, 0, 8);
  id.writeUInt32BE(Math.floor(n / 2 ** 32), 8);
  id.writeUInt32BE(n >>> 0, 12);
  return id;
}

/** Runs a call to completion: registered as running, then its reply kept. */
function answer(reg: CallRegistry, ident: string, id: Buffer | string, reply: string): void {
  reg.locate(ident, id);
  const { slots, key } = reg;
  expect(slots.map.get(key)).toBeUndefined();
  slots.map.set(key, null);
  reg.keep(slots, key, Buffer.from(reply));
}

function lookup(reg: CallRegistry, ident: string, id: Buffer | string): string | null | undefined {
  reg.locate(ident, id);
  const v = reg.slots.map.get(reg.key);
  return v == null ? v : v.toString();
}

describe('CallRegistry', () => {
  it('finds every kept reply again by caller and request id, for counter ids, random ids and string ids alike', () => {
    const reg = new CallRegistry(1000);
    const prefix = randomBytes(8);
    const random = Array.from({ length: 50 }, () => randomBytes(16));
    for (let i = 0; i < 50; i++) {
      answer(reg, 'alice', ourId(prefix, i), `a${i}`);
      answer(reg, 'bob', random[i]!, `b${i}`);
      answer(reg, 'carol', `s${i}`, `c${i}`);
      // A second client of alice's identity (restarted: another prefix) and a huge counter.
      answer(reg, 'alice', ourId(randomBytes(8), 2 ** 60 + i), `x${i}`);
    }
    for (let i = 0; i < 50; i++) {
      expect(lookup(reg, 'alice', ourId(prefix, i))).toBe(`a${i}`);
      expect(lookup(reg, 'bob', random[i]!)).toBe(`b${i}`);
      expect(lookup(reg, 'carol', `s${i}`)).toBe(`c${i}`);
      // The same id from another caller is another call.
      expect(lookup(reg, 'bob', ourId(prefix, i))).toBeUndefined();
    }
    expect(reg.size).toBe(200);
  });

  it('a running call is found as running', () => {
    const reg = new CallRegistry(10);
    const id = ourId(randomBytes(8), 7);
    reg.locate('alice', id);
    reg.slots.map.set(reg.key, null);
    expect(lookup(reg, 'alice', Buffer.from(id))).toBeNull();
  });

  it('keeps the last `capacity` replies, evicting the oldest; callers without calls are dropped', () => {
    const reg = new CallRegistry(3);
    const prefix = randomBytes(8);
    for (let i = 0; i < 10; i++) answer(reg, i < 5 ? 'alice' : 'bob', ourId(prefix, i), `r${i}`);
    expect(reg.size).toBe(3);
    expect(reg.callerCount).toBe(1);
    expect(lookup(reg, 'bob', ourId(prefix, 6))).toBeUndefined();
    for (const i of [7, 8, 9]) expect(lookup(reg, 'bob', ourId(prefix, i))).toBe(`r${i}`);
  });

  it('capacity 0 keeps nothing once calls end', () => {
    const reg = new CallRegistry(0);
    answer(reg, 'alice', ourId(randomBytes(8), 1), 'r');
    expect(reg.size).toBe(0);
    expect(reg.callerCount).toBe(0);
  });

  it('a caller adopts a new prefix only once it has no calls: an id never moves while its call is known', () => {
    const reg = new CallRegistry(100);
    const first = randomBytes(8);
    const second = randomBytes(8);
    answer(reg, 'alice', ourId(first, 1), 'one');
    // Kept under the other keying while `first` is adopted; found there again.
    answer(reg, 'alice', ourId(second, 1), 'two');
    expect(lookup(reg, 'alice', ourId(second, 1))).toBe('two');
    expect(lookup(reg, 'alice', ourId(first, 1))).toBe('one');
    reg.locate('alice', ourId(first, 1));
    reg.forget(reg.slots, reg.key);
    // `second`'s call is still known: alice's record (and its prefix) stays.
    expect(lookup(reg, 'alice', ourId(second, 1))).toBe('two');
    expect(reg.callerCount).toBe(1);
  });
});
