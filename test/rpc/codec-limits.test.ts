/**
 * The encoder's limits agree with the decoder's (depth, maxPayload), it
 * stops a too-large message early, writes every byte view as its own bytes,
 * and its results never pin a much larger buffer.
 */
import { describe, expect, it } from 'vitest';
import { ErrorCode, InvalidArgumentError, RpcRemoteError } from '../../lib/errors.js';
import {
  MAX_DEPTH,
  RpcClient,
  RpcServer,
  decodeReply,
  decodeRequest,
  encodeReply,
  encodeRequest,
  tryDecodeReply,
  tryDecodeRequest,
} from '../../lib/rpc/index.js';
import { FakeNetwork } from './fake-messaging.js';

/** `levels` arrays nested in one another around `inner`. */
function nest(levels: number, inner: unknown = 1): unknown {
  let v: unknown = inner;
  for (let i = 0; i < levels; i++) v = [v];
  return v;
}

/** A class instance written through its toJSON (a plain object's toJSON is just a property, as with msgpackr). */
class Json {
  constructor(readonly make: () => unknown) {}
  toJSON(): unknown {
    return this.make();
  }
}

/** A map-in-array mix, `levels` containers deep. */
function nestMixed(levels: number): unknown {
  let v: unknown = 'leaf';
  for (let i = 0; i < levels; i++) v = i % 2 ? { k: v } : new Map([['m', v]]);
  return v;
}

const call = (args: unknown[]) => ({ command: 'call' as const, object: 'o', method: 'm', args, kwargs: {}, reqId: Buffer.alloc(16, 1) });

describe('rpc codec: the encoder refuses what the decoder refuses', () => {
  it('nesting: a result nests up to MAX_DEPTH - 1 levels (the envelope map is 1), an argument up to MAX_DEPTH - 2', () => {
    // The envelope map is level 1 and `return` is read at level 2.
    const deepest = nest(MAX_DEPTH - 1);
    expect(decodeReply(encodeReply({ reqId: 'r', ok: true, value: deepest }))).toEqual({ reqId: 'r', ok: true, value: deepest });
    expect(() => encodeReply({ reqId: 'r', ok: true, value: nest(MAX_DEPTH) })).toThrow(InvalidArgumentError);
    expect(() => encodeReply({ reqId: 'r', ok: true, value: nest(MAX_DEPTH) })).toThrow(/deeper than 256/);
    // The args array is level 2, so each argument starts at level 3.
    const arg = nestMixed(MAX_DEPTH - 2);
    expect(decodeRequest(encodeRequest(call([arg]))).args).toEqual([
      JSON.parse(JSON.stringify(arg, (_k, v: unknown) => (v instanceof Map ? Object.fromEntries(v) : v))),
    ]);
    expect(() => encodeRequest(call([nestMixed(MAX_DEPTH - 1)]))).toThrow(InvalidArgumentError);
    // Exceptions count like results.
    expect(() => encodeReply({ reqId: 'r', ok: false, exception: nest(MAX_DEPTH), exceptionFormat: '' })).toThrow(InvalidArgumentError);
  });

  it('nesting through values msgpackr used to encode (Sets, Errors, class instances, toJSON) is limited too', () => {
    class Box {
      constructor(readonly inner: unknown) {}
    }
    let v: unknown = 1;
    for (let i = 0; i < MAX_DEPTH + 10; i++) v = i % 3 === 0 ? new Set([v]) : i % 3 === 1 ? new Box(v) : new Json(((x) => () => [x])(v));
    expect(() => encodeReply({ reqId: 'r', ok: true, value: v })).toThrow(InvalidArgumentError);
    const e = new Error('outer', { cause: nest(MAX_DEPTH) });
    expect(() => encodeReply({ reqId: 'r', ok: true, value: e })).toThrow(InvalidArgumentError);
    // A toJSON returning an object with a toJSON, for ever.
    const endless = (): Json => new Json(endless);
    expect(() => encodeReply({ reqId: 'r', ok: true, value: endless() })).toThrow(InvalidArgumentError);
    // One that returns itself is written as an object, as msgpackr does.
    const self: Json = new Json(() => self);
    expect(decodeReply(encodeReply({ reqId: 'r', ok: true, value: self }))).toEqual({ reqId: 'r', ok: true, value: { make: null } });
  });

  it('a circular value is refused as too deep, whatever its path', () => {
    const a: unknown[] = [];
    a.push(new Set([{ a }]));
    expect(() => encodeReply({ reqId: 'r', ok: true, value: a })).toThrow(/deeper than 256 levels \(or is circular\)/);
    // The shared state is fine afterwards.
    expect(decodeReply(encodeReply({ reqId: 'r', ok: true, value: [1, 'x'] }))).toEqual({ reqId: 'r', ok: true, value: [1, 'x'] });
  });

  it('Map keys the decoder refuses, invalid Dates, symbols and bigints beyond 64 bits are refused', () => {
    for (const value of [new Map<unknown, unknown>([[null, 1]]), new Map([[[1], 1]]), new Map([[true, 1]]), new Date(NaN), Symbol('s'), 2n ** 64n]) {
      expect(() => encodeReply({ reqId: 'r', ok: true, value })).toThrow(InvalidArgumentError);
    }
    // Keys the decoder takes: strings, numbers, bigints (as their decimal text).
    const ok = decodeReply(
      encodeReply({
        reqId: 'r',
        ok: true,
        value: new Map<unknown, unknown>([
          ['a', 1],
          [2, 2],
          [1.5, 3],
          [2n ** 60n, 4],
        ]),
      }),
    );
    expect(ok).toEqual({ reqId: 'r', ok: true, value: { a: 1, 2: 2, '1.5': 3, [String(2n ** 60n)]: 4 } });
  });

  it('over RPC: a too deep argument rejects the call unsent; a too deep result is a remote error, never a reply the client refuses', async () => {
    const net = new FakeNetwork('alice', 'bob');
    const server = new RpcServer(net.b);
    const client = new RpcClient(net.a, { timeout: 5000 });
    const replyErrors: unknown[] = [];
    client.on('replyError', (e) => replyErrors.push(e));
    try {
      server.register('deep', { make: (n: number) => nest(n), take: (v: unknown) => typeof v });
      net.connect();
      await expect(client.call('bob', 'deep', 'make', [MAX_DEPTH - 1])).resolves.toEqual(nest(MAX_DEPTH - 1));
      const err = (await client.call('bob', 'deep', 'make', [300]).catch((e: unknown) => e)) as RpcRemoteError;
      expect(err).toBeInstanceOf(RpcRemoteError);
      expect(err.remoteName).toBe('InvalidArgumentError');
      expect(err.remoteCode).toBe(ErrorCode.INVALID_ARGUMENT);
      expect(err.message).toMatch(/deeper than 256/);
      expect(replyErrors).toHaveLength(0);
      const sent = net.trace.length;
      await expect(client.call('bob', 'deep', 'take', [nest(300)])).rejects.toThrow(InvalidArgumentError);
      expect(net.trace.length).toBe(sent);
      await expect(client.call('bob', 'deep', 'take', [nest(MAX_DEPTH - 3)])).resolves.toBe('object');
    } finally {
      void client.close();
      void server.close();
    }
  });
});

describe('rpc codec: maxPayload stops the encoding', () => {
  it('one pass that stops as soon as the message exceeds maxPayload', () => {
    let reads = 0;
    const chunk = 'x'.repeat(4096);
    // 1,000 items of 4 KiB (4 MiB in all), each read through a getter: the reads count the passes.
    const items = Array.from({ length: 1000 }, () => ({
      get s(): string {
        reads++;
        return chunk;
      },
    }));
    expect(() => encodeReply({ reqId: 'r', ok: true, value: items }, { maxPayload: 64 * 1024 })).toThrow(InvalidArgumentError);
    // Stopped at about 16 items: not a whole pass (1,000 reads), let alone several.
    expect(reads).toBeLessThanOrEqual(17);
    expect(() => encodeReply({ reqId: 'r', ok: true, value: items }, { maxPayload: 64 * 1024 })).toThrow(/larger than maxPayload \(65536 bytes\)/);
    reads = 0;
    expect(() => encodeRequest(call([items]), { maxPayload: 1024 * 1024 })).toThrow(InvalidArgumentError);
    expect(reads).toBeLessThanOrEqual(257);
  });

  it('a message of exactly maxPayload bytes is encoded, one byte more is refused', () => {
    const size = encodeReply({ reqId: 'r', ok: true, value: 'x'.repeat(20_000) }).length;
    expect(encodeReply({ reqId: 'r', ok: true, value: 'x'.repeat(20_000) }, { maxPayload: size }).length).toBe(size);
    expect(() => encodeReply({ reqId: 'r', ok: true, value: 'x'.repeat(20_001) }, { maxPayload: size })).toThrow(/exceeds maxPayload|larger than maxPayload/);
    // Small messages (in the shared slab) too.
    const small = encodeReply({ reqId: 'r', ok: true, value: 7 }).length;
    expect(encodeReply({ reqId: 'r', ok: true, value: 7 }, { maxPayload: small }).length).toBe(small);
    expect(() => encodeReply({ reqId: 'r', ok: true, value: 700 }, { maxPayload: small })).toThrow(InvalidArgumentError);
  });
});

describe('rpc codec: byte views', () => {
  /** The bytes a view covers (its own window of its buffer). */
  const bytesOf = (v: ArrayBufferView): Buffer => Buffer.from(v.buffer, v.byteOffset, v.byteLength);

  const views = (): ArrayBufferView[] => {
    // Buffers full of 0xee first: stale bytes would show up.
    const backing = new ArrayBuffer(64);
    new Uint8Array(backing).fill(0xee);
    const f64 = new Float64Array(backing, 8, 2);
    f64.set([1.5, -2.25]);
    const i16 = new Int16Array([1, -2, 0x1234, -0x8000]);
    const dv = new DataView(backing, 3, 5);
    dv.setUint8(0, 1);
    dv.setInt16(1, -300);
    return [
      new Float64Array([Math.PI, -0]),
      f64,
      i16,
      i16.subarray(1, 3),
      dv,
      new Float32Array([0.5, 3]),
      new BigInt64Array([-1n, 2n ** 62n]),
      new Uint16Array([0x102, 0x304]).subarray(1),
      new Uint8ClampedArray([0, 255, 300]),
      Buffer.from('abcdef').subarray(2, 4),
      new Uint8Array(backing, 60, 4),
    ];
  };

  it('typed arrays of every kind, DataViews and views with a byteOffset are a bin of exactly their bytes', () => {
    const vs = views();
    const got = decodeReply(encodeReply({ reqId: 'r', ok: true, value: vs }));
    expect(got.ok && got.value).toEqual(vs.map(bytesOf));
  });

  it('also where msgpackr used to write them (inside Sets, class instances, Errors, toJSON results, Map values)', () => {
    class Holder {
      constructor(readonly v: ArrayBufferView) {}
    }
    for (const v of views()) {
      const value = [new Set([v]), new Holder(v), new Json(() => [v]), new Map([['k', v]])];
      const got = decodeReply(encodeReply({ reqId: 'r', ok: true, value }));
      const b = bytesOf(v);
      expect(got.ok && got.value).toEqual([[b], { v: b }, [b], { k: b }]);
    }
  });

  it('large typed arrays (beyond the slab) too, in requests', () => {
    const f = new Float64Array(10_000).map((_, i) => i / 3);
    const view = new Int32Array(f.buffer, 8 * 100, 5000);
    const req = decodeRequest(encodeRequest(call([f, view, new Set([view])])));
    expect(req.args).toEqual([bytesOf(f), bytesOf(view), [bytesOf(view)]]);
  });
});

describe('rpc codec: results never pin a much larger buffer', () => {
  it('a message outgrowing the slab is in a buffer at most 1/8 larger than itself', () => {
    for (const n of [9_000, 10_000, 20_000, 33_000, 100_000, 300_000, 1_100_000]) {
      // Many small items (the buffer grows by doubling), and one big item.
      for (const value of [Array.from({ length: n / 10 }, () => 'abcdefgh'), Buffer.alloc(n, 1)]) {
        const out = encodeReply({ reqId: 'r', ok: true, value });
        expect(out.buffer.byteLength).toBeLessThanOrEqual(Math.max(8192, out.length + (out.length >>> 3)));
        expect(tryDecodeReply(out).ok).toBe(true);
        const req = encodeRequest(call([value]));
        expect(req.buffer.byteLength).toBeLessThanOrEqual(Math.max(8192, req.length + (req.length >>> 3)));
        expect(tryDecodeRequest(req).ok).toBe(true);
      }
    }
  });
});
