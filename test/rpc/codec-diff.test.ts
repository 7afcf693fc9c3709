/**
 * Differential tests. The single-pass decoder in lib/rpc/codec/reader.ts against the
 * original decoder (test/rpc/reference-decoder.ts: byte scanner + msgpackr +
 * conversion) on random well-formed messages and on random corruptions of
 * them: both must accept and refuse the same inputs, with the same values,
 * errors, request ids and commands. The fast encoder against msgpackr: the
 * same bytes for the same values. Seeded: a failure is reproducible.
 */
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../lib/errors.js';
import { decodeReply, encodeReply, encodeRequest, tryDecodeReply, tryDecodeRequest } from '../../lib/rpc/index.js';
import { referenceDecodeReply, referenceDecodeRequest } from './reference-decoder.js';
import { decodeOwnCall, decodeOwnReply, encodeCall, encodeCallHead, ownReplyId, packrOptions } from '../../lib/rpc/codec.js';

/** mulberry32 */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const raw = new Packr({ useRecords: false, variableMapSize: true, encodeUndefinedAsNil: true });
const raw32 = new Packr({ useRecords: false, variableMapSize: true, useFloat32: 1 });

class Gen {
  constructor(readonly r: () => number) {}
  int(n: number): number {
    return Math.floor(this.r() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  string(): string {
    const len = this.pick([0, 1, 3, 7, 12, 15, 16, 17, 31, 32, 40, 200, 300]);
    const alphabet = this.r() < 0.7 ? 'abcXYZ_019' : 'aé€😀\u0000ž';
    let s = '';
    while (s.length < len) s += alphabet[this.int(alphabet.length)];
    return s;
  }
  number(): number | bigint {
    return this.pick<() => number | bigint>([
      () => this.int(128),
      () => -this.int(33),
      () => this.int(256),
      () => this.int(65536) - 32768,
      () => this.int(2 ** 32),
      () => -this.int(2 ** 31),
      () => 2 ** 53,
      () => -(2 ** 53),
      () => 2 ** 53 - 1,
      () => 2n ** 53n + 1n,
      () => -(2n ** 53n) - 1n,
      () => 2n ** 64n - 1n,
      () => -(2n ** 63n),
      () => 2n ** 63n - 1n,
      () => this.r() * 1e6 - 5e5,
      () => this.pick([0.5, -0, Infinity, -Infinity, NaN, 1e300]),
    ])();
  }
  key(): unknown {
    const k = this.r();
    if (k < 0.6) return this.pick(['a', 'b', 'constructor', '__proto__', 'toString', 'hasOwnProperty', this.string()]);
    if (k < 0.8) return this.int(1000) - 10;
    if (k < 0.85) return 2n ** 64n - 1n;
    if (k < 0.9) return 1.5;
    if (k < 0.93) return null;
    if (k < 0.96) return true;
    return Buffer.from('k');
  }
  value(depth: number): unknown {
    const k = this.r();
    if (depth > 4 || k < 0.45) {
      return this.pick<() => unknown>([
        () => null,
        () => this.r() < 0.5,
        () => this.number(),
        () => this.string(),
        () => Buffer.from(this.string()),
        () => new Date(this.int(2 ** 40) - 2 ** 39),
        () => new Date(this.int(2 ** 31) * 1000),
        () => new Date(2 ** 36 * 1000 + 123),
      ])();
    }
    // Containers of 16+ entries (array16/map16 when encoded) only near the top: keeps messages small.
    const sizes = depth <= 2 ? [0, 1, 2, 5, 16, 17] : [0, 1, 2, 3];
    if (k < 0.75) return Array.from({ length: this.pick(sizes) }, () => this.value(depth + 1));
    const m = new Map<unknown, unknown>();
    const n = this.pick(sizes);
    for (let i = 0; i < n; i++) m.set(this.key(), this.value(depth + 1));
    return m;
  }
  request(): Buffer {
    const entries: [unknown, unknown][] = [];
    const maybe = (key: string, good: () => unknown): void => {
      const k = this.r();
      if (k < 0.9) entries.push([key, good()]);
      else if (k < 0.96) entries.push([key, this.value(3)]);
    };
    maybe('command', () => this.pick(['call', 'signal', 'call', 'exec']));
    maybe('object', () => this.string());
    maybe('method', () => this.string());
    maybe('args', () => Array.from({ length: this.int(4) }, () => this.value(1)));
    maybe('kwargs', () => (this.r() < 0.7 ? new Map() : (this.value(4) as unknown)));
    maybe('req_id', () => this.pick<unknown>([Buffer.alloc(16, 7), 'id-1', Buffer.alloc(0), Buffer.alloc(257), null, 5]));
    if (this.r() < 0.2) entries.push([this.key(), this.value(1)]);
    for (let i = entries.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [entries[i], entries[j]] = [entries[j]!, entries[i]!];
    }
    const packer = this.r() < 0.2 ? raw32 : raw;
    return Buffer.concat([Buffer.from('rpcreq'), packer.pack(new Map(entries))]);
  }
  reply(): Buffer {
    const entries: [unknown, unknown][] = [];
    const maybe = (key: string, good: () => unknown): void => {
      const k = this.r();
      if (k < 0.9) entries.push([key, good()]);
      else if (k < 0.95) entries.push([key, this.value(3)]);
    };
    maybe('req_id', () => this.pick<unknown>([Buffer.alloc(16, 7), 'id-1', Buffer.alloc(0)]));
    const ok = this.r() < 0.6;
    maybe('ok', () => ok);
    if (ok) maybe('return', () => this.value(1));
    else {
      maybe('exception', () => this.value(2));
      maybe('exception_format', () => this.pick<unknown>(['', 'trace', null, 3]));
    }
    if (this.r() < 0.2) entries.push([this.key(), this.value(1)]);
    return Buffer.concat([Buffer.from('rpcrep'), raw.pack(new Map(entries))]);
  }
  mutate(data: Buffer): Buffer {
    const out = Buffer.from(data);
    switch (this.int(4)) {
      case 0:
        return out.subarray(0, 6 + this.int(out.length - 6));
      case 1:
        for (let i = 0; i <= this.int(3); i++) out[6 + this.int(out.length - 6)] = this.int(256);
        return out;
      case 2: {
        const at = 6 + this.int(out.length - 6);
        return Buffer.concat([out.subarray(0, at), Buffer.from([this.int(256)]), out.subarray(at)]);
      }
      default:
        // A likely type byte anywhere: ext types, 0xc1, containers with big counts.
        out[6 + this.int(out.length - 6)] = this.pick([0xc1, 0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xdc, 0xdd, 0xde, 0xdf, 0xdb]);
        return out;
    }
  }
}

/** Comparable form of a decode result (strings compared by their code units). */
function summary(result: { ok: boolean; error?: Error; reqId?: unknown; command?: unknown; request?: unknown; reply?: unknown }): unknown {
  if (result.ok) return { ok: true, value: result.request ?? result.reply };
  return { ok: false, message: result.error!.message, reqId: result.reqId, command: result.command };
}

/**
 * Deep equality that also checks prototypes and own property names (so
 * `__proto__` keys are compared). With `lenientDates` Dates may differ:
 * msgpackr reads a 96-bit timestamp's nanoseconds as signed and only 48 bits
 * of its seconds, we read them as the spec says (corrupted timestamps then
 * decode to different, equally meaningless, dates).
 */
function sameShape(a: unknown, b: unknown, lenientDates = false): boolean {
  if (typeof a !== typeof b) return false;
  if (a === null || typeof a !== 'object') return Object.is(a, b) || (typeof a === 'number' && Number.isNaN(a) && Number.isNaN(b));
  if (b === null) return false;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  if (Buffer.isBuffer(a)) return a.equals(b as Buffer);
  if (a instanceof Date) return Object.is(a.getTime(), (b as Date).getTime()) || lenientDates;
  const ka = Object.getOwnPropertyNames(a);
  const kb = Object.getOwnPropertyNames(b);
  if (ka.length !== kb.length || ka.some((k, i) => k !== kb[i])) return false;
  return ka.every((k) => sameShape(Object.getOwnPropertyDescriptor(a, k)!.value, Object.getOwnPropertyDescriptor(b, k)!.value, lenientDates));
}

/** ext 8, length 12, type -1: a 96-bit timestamp. */
const TIMESTAMP_96 = Buffer.from([0xc7, 0x0c, 0xff]);

function compare(data: Buffer, kind: 'request' | 'reply'): void {
  const ours = kind === 'request' ? tryDecodeRequest(data) : tryDecodeReply(data);
  const ref = kind === 'request' ? referenceDecodeRequest(data) : referenceDecodeReply(data);
  const a = summary(ours);
  const b = summary(ref);
  if (!sameShape(a, b, data.includes(TIMESTAMP_96))) {
    // toEqual gives a readable diff; sameShape is the stricter check.
    expect({ data: data.toString('hex'), result: a }).toEqual({ data: data.toString('hex'), result: b });
    expect.fail(`decoders differ on ${data.toString('hex')}`);
  }
}

describe('rpc codec: single-pass decoder = reference decoder', () => {
  it('well-formed random requests and replies', () => {
    const g = new Gen(rng(1));
    for (let i = 0; i < 2000; i++) {
      compare(g.request(), 'request');
      compare(g.reply(), 'reply');
    }
  });

  it('corrupted random requests and replies', () => {
    const g = new Gen(rng(2));
    let compared = 0;
    for (let i = 0; i < 6000; i++) {
      const kind = i & 1 ? 'reply' : 'request';
      const data = g.mutate(kind === 'request' ? g.request() : g.reply());
      compare(data, kind);
      compared++;
    }
    expect(compared).toBeGreaterThan(1000);
  });

  it('the fast paths for our own calls and replies agree with the full decoders, or step aside', () => {
    const g = new Gen(rng(4));
    const template = Buffer.from('c1c2c3c4c5c6c7c80000000000000000', 'hex');
    const head = encodeCallHead('obj', 'meth');
    let fastCalls = 0;
    let fastReplies = 0;
    for (let i = 0; i < 4000; i++) {
      const args = Array.from({ length: g.int(4) }, () => g.value(1));
      let call: Buffer;
      let reply: Buffer;
      try {
        call = Buffer.from(encodeCall(head, args, template, i));
        const id = Buffer.from(template);
        id.writeUInt32BE(i, 12);
        reply = Buffer.from(encodeReply({ reqId: id, ok: true, value: args }));
      } catch {
        continue; // a value our encoders refuse
      }
      if (i & 1) {
        call = g.mutate(call);
        reply = g.mutate(reply);
      }
      const full = tryDecodeRequest(call);
      const fast = decodeOwnCall(call, 1 << 24);
      if (fast !== undefined) {
        fastCalls++;
        expect(full.ok).toBe(true);
        expect(sameShape({ ...fast, kwargs: {} }, full.ok ? full.request : null, true)).toBe(true);
      }
      const fullReply = tryDecodeReply(reply);
      const value = decodeOwnReply(reply, template, 1 << 24);
      const fastId = value === undefined ? -1 : ownReplyId(reply);
      if (fastId >= 0) {
        fastReplies++;
        expect(fullReply.ok && fullReply.reply.ok).toBe(true);
        const fullId = fullReply.ok ? (fullReply.reply.reqId as Buffer) : Buffer.alloc(16);
        expect(fullId.subarray(0, 8).equals(template.subarray(0, 8))).toBe(true);
        expect(fastId).toBe(fullId.readUInt32BE(8) * 2 ** 32 + fullId.readUInt32BE(12));
        expect(sameShape(value, fullReply.ok && fullReply.reply.ok ? fullReply.reply.value : null, true)).toBe(true);
      }
    }
    expect(fastCalls).toBeGreaterThan(1000);
    expect(fastReplies).toBeGreaterThan(1000);
  });

  it('what our encoders produce', () => {
    const g = new Gen(rng(3));
    for (let i = 0; i < 1000; i++) {
      const args = Array.from({ length: g.int(4) }, () => g.value(1));
      const plainArgs = JSON.parse(
        JSON.stringify(args, (_k, v) =>
          typeof v === 'bigint' ? Number(v) : v instanceof Map ? Object.fromEntries([...v].map(([k, x]) => [String(k), x])) : v,
        ),
      ) as unknown[];
      const req = encodeRequest({ command: 'call', object: 'o', method: 'm', args: plainArgs, kwargs: {}, reqId: Buffer.alloc(16, i) });
      compare(req, 'request');
      compare(encodeReply({ reqId: Buffer.alloc(16, i), ok: true, value: plainArgs }), 'reply');
    }
  });
});

/** msgpackr with the codec's options: what the fast encoder must reproduce byte for byte. */
const reference = new Packr(packrOptions);

class ValueGen extends Gen {
  text(big = false): string {
    const len = this.pick(big ? [0, 1, 5, 31, 32, 33, 63, 64, 65, 200, 255, 256, 300, 70000] : [0, 1, 5, 31, 32, 33, 63, 64, 65, 255, 256]);
    const alphabet = this.pick(['abc', 'aé€', 'x😀y', 'a\ud800b\udc00c', 'ž\u0000']);
    let s = '';
    while (s.length < len) s += alphabet[this.int(alphabet.length)];
    return s;
  }
  /** Large strings, bins and containers only near the top, so that messages stay reasonably small. */
  plain(depth: number): unknown {
    const k = this.r();
    const top = depth <= 1;
    if (depth > 3 || k < 0.5) {
      return this.pick<() => unknown>([
        () => null,
        () => undefined,
        () => this.r() < 0.5,
        () => this.number(),
        () =>
          this.pick([
            0x7f,
            0x80,
            0xff,
            0x100,
            0xffff,
            0x10000,
            2 ** 32 - 1,
            2 ** 32,
            -0x20,
            -0x21,
            -0x80,
            -0x81,
            -0x8000,
            -0x8001,
            -(2 ** 31),
            -(2 ** 31) - 1,
            0.1,
          ]),
        () => this.pick([2n ** 63n, -(2n ** 63n) - 1n, 2n ** 64n, 0n]),
        () => this.text(top),
        () => Buffer.alloc(this.pick(top ? [0, 3, 255, 256, 9000, 70000] : [0, 3, 255, 256]), 1),
        () => new Uint8Array([1, 2, 3]),
        () => new Date(1_700_000_000_000 + this.int(1000)),
        () => new Map([['a', 1]]),
        () => new Set([1]),
        () => new Date(this.pick([0, 1000, -1500, 1_700_000_000_000, 2 ** 32 * 1000 + 5, 2 ** 34 * 1000, NaN])),
        () =>
          new Map<unknown, unknown>([
            [1, 'a'],
            ['b', [1]],
            [null, new Map()],
          ]),
        () => [
          new Set([1]),
          new Error('e'),
          /x/g,
          new (class K {
            a = 1;
          })(),
        ],
        () => Object.create(null) as unknown,
      ])();
    }
    const sizes = top ? [0, 1, 15, 16, 17] : [0, 1, 2];
    if (k < 0.75) return Array.from({ length: this.pick(sizes) }, () => this.plain(depth + 1));
    const o: Record<string, unknown> = {};
    for (let i = 0, n = this.pick(sizes); i < n; i++) o[this.pick(['a', 'b', '1', '__proto_', 'k' + i, this.text().slice(0, 40)])] = this.plain(depth + 1);
    return o;
  }
}

describe('rpc codec: encoder = msgpackr', () => {
  const prefixed = (prefix: string, envelope: object): string => Buffer.concat([Buffer.from(prefix), reference.pack(envelope)]).toString('hex');
  /**
   * Our encoding equals msgpackr's, or both refuse the value, or ours refuses
   * (InvalidArgumentError) what msgpackr writes and our decoder refuses
   * (Map keys that are not strings or numbers, invalid Dates).
   */
  const same = (ours: () => Buffer, prefix: string, envelope: object): void => {
    let expected: string;
    try {
      expected = prefixed(prefix, envelope);
    } catch {
      expect(ours).toThrow(InvalidArgumentError);
      return;
    }
    let got: string;
    try {
      got = ours().toString('hex');
    } catch (error) {
      expect(error).toBeInstanceOf(InvalidArgumentError);
      const theirs = Buffer.from(expected, 'hex');
      expect((prefix === 'rpcreq' ? tryDecodeRequest(theirs) : tryDecodeReply(theirs)).ok).toBe(false);
      return;
    }
    if (got !== expected) {
      let i = 0;
      while (got[i] === expected[i]) i++;
      const at = (i >> 1) << 1;
      expect.fail(`bytes differ at ${at / 2}: got …${got.slice(Math.max(0, at - 40), at + 40)}…, msgpackr …${expected.slice(Math.max(0, at - 40), at + 40)}…`);
    }
  };

  it('requests and replies, byte for byte (fast path and fallback alike)', () => {
    const g = new ValueGen(rng(4));
    for (let i = 0; i < 2000; i++) {
      const args = Array.from({ length: g.int(4) }, () => g.plain(1));
      const kwargs = g.r() < 0.8 ? {} : { k: g.plain(2) };
      const reqId = g.pick<Buffer | string | undefined>([Buffer.alloc(16, i & 0xff), 'id', undefined]);
      const req = { command: 'call' as const, object: g.text().slice(0, 20), method: 'm', args, kwargs, reqId };
      const envelope: Record<string, unknown> = { command: 'call', object: req.object, method: 'm', args, kwargs };
      if (reqId !== undefined) envelope.req_id = reqId;
      same(() => encodeRequest(req), 'rpcreq', envelope);
      const value = g.plain(1);
      same(() => encodeReply({ reqId: 'r', ok: true, value }), 'rpcrep', { req_id: 'r', ok: true, return: value });
      const exception = g.plain(2);
      same(() => encodeReply({ reqId: 'r', ok: false, exception, exceptionFormat: 'tb' }), 'rpcrep', {
        req_id: 'r',
        ok: false,
        exception,
        exception_format: 'tb',
      });
    }
  });

  it('earlier results stay intact while later messages are encoded', () => {
    const kept = Array.from({ length: 3000 }, (_, i) => ({ i, data: encodeReply({ reqId: 'r', ok: true, value: ['x'.repeat(i % 50), i] }) }));
    for (const { i, data } of kept) expect(decodeReply(data).ok && (decodeReply(data) as { value: unknown }).value).toEqual(['x'.repeat(i % 50), i]);
  });

  it('typed arrays are a bin of their bytes (msgpackr would write element values and stale bytes)', () => {
    const f = new Float64Array([1.5, -2]);
    const r = decodeReply(encodeReply({ reqId: 'r', ok: true, value: [f, new Uint16Array([0x102, 0x304]).subarray(1), f.buffer] }));
    expect(r.ok && r.value).toEqual([Buffer.from(f.buffer), Buffer.from(new Uint16Array([0x304]).buffer), Buffer.from(f.buffer)]);
  });

  it('large messages (beyond the shared slab) too', () => {
    const big = { s: 'ž'.repeat(50_000), b: Buffer.alloc(100_000, 7), a: Array.from({ length: 5000 }, (_, i) => i * 1000) };
    same(() => encodeReply({ reqId: 'r', ok: true, value: big }), 'rpcrep', { req_id: 'r', ok: true, return: big });
    expect(encodeReply({ reqId: 'r', ok: true, value: 1 }).toString('hex')).toBe(prefixed('rpcrep', { req_id: 'r', ok: true, return: 1 }));
  });

  it('a getter that encodes another message meanwhile', () => {
    let inner = '';
    const value = {
      a: 1,
      get b() {
        inner = encodeReply({ reqId: 'in', ok: true, value: [1, 'x'] }).toString('hex');
        return 'b';
      },
      c: [2, 3],
    };
    const outer = encodeReply({ reqId: 'out', ok: true, value });
    expect(inner).toBe(prefixed('rpcrep', { req_id: 'in', ok: true, return: [1, 'x'] }));
    expect(decodeReply(outer)).toEqual({ reqId: 'out', ok: true, value: { a: 1, b: 'b', c: [2, 3] } });
  });

  it('a setter on Object.prototype that decodes another message meanwhile', () => {
    const innerData = encodeReply({ reqId: 'in', ok: true, value: { k: [1, 2] } });
    let inner: unknown;
    Object.defineProperty(Object.prototype, 'zz', {
      set(_v: unknown) {
        inner = decodeReply(innerData);
      },
      configurable: true,
    });
    try {
      const outer = decodeReply(encodeReply({ reqId: 'out', ok: true, value: [{ a: 1, zz: 2, b: 'x' }, 'after'] }));
      expect(inner).toEqual({ reqId: 'in', ok: true, value: { k: [1, 2] } });
      expect(outer).toEqual({ reqId: 'out', ok: true, value: [{ a: 1, b: 'x' }, 'after'] });
    } finally {
      delete (Object.prototype as Record<string, unknown>).zz;
    }
  });

  it('a circular value still gives InvalidArgumentError', () => {
    const a: unknown[] = [];
    a.push(a);
    expect(() => encodeReply({ reqId: 'r', ok: true, value: a })).toThrow(InvalidArgumentError);
    expect(encodeReply({ reqId: 'r', ok: true, value: 1 }).toString('hex')).toBe(prefixed('rpcrep', { req_id: 'r', ok: true, return: 1 }));
  });
});
