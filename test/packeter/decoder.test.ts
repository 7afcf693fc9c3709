import { describe, expect, it } from 'vitest';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { BIG_PIECE, PacketDecoder, encodePacket, wholePacketEnd } from '../../lib/packeter/decoder.js';
import { PacketTooLargeError } from '../../lib/errors.js';
import vectors from '../fixtures/snakemq-v1.json' with { type: 'json' };

const stream = Buffer.concat(vectors.vectors.map((v) => Buffer.from(v.packet, 'hex')));
const expected = vectors.vectors.map((v) => Buffer.from(v.packet, 'hex').subarray(4).toString('hex'));

function decodeAll(chunks: Buffer[], max = 1024): string[] {
  const out: string[] = [];
  const d = new PacketDecoder(max);
  for (const c of chunks) d.push(c, (b, s, e) => out.push(b.toString('hex', s, e)));
  expect(d.bufferedBytes).toBe(0);
  return out;
}

describe('PacketDecoder', () => {
  it('decodes the snakeMQ vector stream in one chunk', () => {
    expect(decodeAll([stream])).toEqual(expected);
  });

  it('decodes the stream split at every offset', () => {
    for (let i = 0; i <= stream.length; i++) {
      expect(decodeAll([stream.subarray(0, i), stream.subarray(i)]), `split at ${i}`).toEqual(expected);
    }
  });

  it('decodes the stream split at every pair of offsets', () => {
    for (let i = 0; i <= stream.length; i += 3) {
      for (let j = i; j <= stream.length; j++) {
        const chunks = [stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)];
        expect(decodeAll(chunks), `split at ${i},${j}`).toEqual(expected);
      }
    }
  });

  it('decodes the stream fed one byte at a time', () => {
    const chunks = [...stream].map((b) => Buffer.from([b]));
    expect(decodeAll(chunks)).toEqual(expected);
  });

  describe('packets split over chunks of every kind (small pieces copied, big ones kept)', () => {
    // Sizes around the accumulator's and the big-piece thresholds, and a stream-sized one.
    const sizes = [0, 1, 255, 256, 257, 3000, BIG_PIECE - 1, BIG_PIECE, BIG_PIECE + 1, 70_000, 5, 2 * BIG_PIECE + 3];
    const payloads = sizes.map((n, k) => {
      const b = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) b[i] = (i * 31 + k * 7) & 0xff;
      return b;
    });
    const big = Buffer.concat(payloads.map((b) => encodePacket(b)));
    const want = payloads.map((b) => b.toString('hex'));
    const decode = (chunks: Buffer[]) => decodeAll(chunks, 1 << 20);
    /** Packet boundaries, and the places BIG_PIECE and 256 bytes after them. */
    const marks = (() => {
      const out = new Set<number>();
      let off = 0;
      for (const n of sizes) {
        for (const at of [off, off + 4, off + 4 + 256, off + 4 + BIG_PIECE, off + 4 + n]) for (let d = -5; d <= 5; d++) out.add(at + d);
        off += 4 + n;
      }
      return [...out].filter((i) => i >= 0 && i <= big.length).sort((a, b) => a - b);
    })();

    it('split once at every packet boundary and threshold (±5) and every 211 bytes', () => {
      const cuts = new Set(marks);
      for (let i = 0; i <= big.length; i += 211) cuts.add(i);
      for (const i of cuts) expect(decode([big.subarray(0, i), big.subarray(i)]), `split at ${i}`).toEqual(want);
    });

    it('split twice, a big middle piece between small ones', () => {
      for (let k = 0; k < marks.length; k += 3) {
        const i = marks[k]!;
        for (const len of [1, 100, BIG_PIECE - 1, BIG_PIECE, 40_000]) {
          const j = Math.min(big.length, i + len);
          expect(decode([big.subarray(0, i), big.subarray(i, j), big.subarray(j)]), `split at ${i},${j}`).toEqual(want);
        }
      }
    });

    for (const pattern of [[1], [3], [7, 1], [4095], [BIG_PIECE - 1], [BIG_PIECE], [65536], [1, 20_000, 3, BIG_PIECE, 500]]) {
      it(`in chunks of ${pattern.join(', ')} bytes`, () => {
        const chunks: Buffer[] = [];
        for (let off = 0, k = 0; off < big.length; k++) {
          const n = pattern[k % pattern.length]!;
          chunks.push(big.subarray(off, off + n));
          off += n;
        }
        expect(decode(chunks)).toEqual(want);
      });
    }
  });

  it('1-byte chunks of 64 KiB packets keep memory close to the bytes received, with no object per chunk', () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const retained = () => {
      gc();
      gc();
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    const size = 64 * 1024;
    const decoders = 4;
    const perDecoder = 50_000; // 200,000 one-byte chunks in all
    const packet = encodePacket(Buffer.alloc(size, 0x5a));
    const got: number[] = [];
    const ds = Array.from({ length: decoders }, () => new PacketDecoder(1 << 20));
    const sink = (b: Buffer, s: number, e: number) => got.push(e - s, b[s]!, b[e - 1]!);
    const before = retained();
    for (let i = 0; i < perDecoder; i++) for (const d of ds) d.push(packet.subarray(i, i + 1), sink);
    const grown = retained() - before;
    if (process.env.SHOW_MEM) console.log(`retained growth: ${grown} bytes`);
    for (const d of ds) expect(d.bufferedBytes).toBe(perDecoder - 4); // the header is read, not held
    // Received: 200,000 bytes (an accumulator of at most twice that); a view kept per chunk costs about 100 bytes each (~20 MB).
    expect(grown).toBeLessThan(2 * 1024 * 1024);
    for (const d of ds) d.push(packet.subarray(perDecoder), sink);
    expect(got).toEqual(Array.from({ length: decoders }, () => [size, 0x5a, 0x5a]).flat());
    for (const d of ds) expect(d.bufferedBytes).toBe(0);
  });

  it('maxPacketSize can be changed between packets: it applies to the next header, split or not', () => {
    const d = new PacketDecoder(10);
    const out: string[] = [];
    const sink = (b: Buffer, s: number, e: number) => out.push(b.toString('utf8', s, e));
    const p20 = encodePacket(Buffer.from('x'.repeat(20)));
    expect(() => d.push(p20, sink)).toThrow(PacketTooLargeError);
    const e = new PacketDecoder(10);
    e.push(encodePacket(Buffer.from('small')), sink);
    e.maxPacketSize = 100;
    e.push(p20.subarray(0, 2), sink);
    e.push(p20.subarray(2), sink);
    e.maxPacketSize = 4;
    e.push(p20.subarray(0, 3), sink);
    expect(() => e.push(p20.subarray(3), sink)).toThrow(PacketTooLargeError);
    expect(out).toEqual(['small', 'x'.repeat(20)]);
  });

  it('stop() drops what is held of a partial packet', () => {
    const d = new PacketDecoder(1000);
    d.push(encodePacket(Buffer.alloc(500)).subarray(0, 300), () => undefined);
    expect(d.bufferedBytes).toBe(296);
    d.stop();
    expect(d.bufferedBytes).toBe(0);
  });

  it('returns a view without copying when a packet lies within one chunk', () => {
    const packet = encodePacket(Buffer.from('hello'));
    let payload: Buffer | undefined;
    new PacketDecoder(100).push(packet, (b, s, e) => (payload = b.subarray(s, e)));
    expect(payload!.buffer).toBe(packet.buffer);
    expect(payload!.toString()).toBe('hello');
  });

  it('accepts an empty payload (a broken frame is the messaging layer’s call)', () => {
    const out: Buffer[] = [];
    new PacketDecoder(100).push(Buffer.from('00000000', 'hex'), (b, s, e) => out.push(b.subarray(s, e)));
    expect(out).toHaveLength(1);
    expect(out[0]!.length).toBe(0);
  });

  it('rejects an oversize announced length before allocating it, and stays failed', () => {
    const d = new PacketDecoder(1024);
    const header = Buffer.from('ffffffff', 'hex');
    let error: unknown;
    try {
      d.push(header, () => undefined);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PacketTooLargeError);
    expect((error as PacketTooLargeError).code).toBe('SMQ_ERR_PACKET_TOO_LARGE');
    expect((error as PacketTooLargeError).size).toBe(0xffffffff);
    expect(d.bufferedBytes).toBe(0);
    const out: Buffer[] = [];
    d.push(encodePacket(Buffer.from('x')), (b, s, e) => out.push(b.subarray(s, e)));
    expect(out).toHaveLength(0);
  });

  it('rejects an oversize length whose header is split across chunks', () => {
    const d = new PacketDecoder(10);
    d.push(Buffer.from([0, 0]), () => undefined);
    expect(() => d.push(Buffer.from([0, 11]), () => undefined)).toThrow(PacketTooLargeError);
  });

  it('holds only the bytes received for a large announced packet', () => {
    const d = new PacketDecoder(64 * 1024 * 1024);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(50 * 1024 * 1024);
    d.push(Buffer.concat([header, Buffer.alloc(10)]), () => undefined);
    expect(d.bufferedBytes).toBe(10);
  });

  it('reassembles a large payload spread over many chunks', () => {
    const payload = Buffer.alloc(300_000);
    for (let i = 0; i < payload.length; i++) payload[i] = i % 251;
    const packet = encodePacket(payload);
    const out: Buffer[] = [];
    const d = new PacketDecoder(1 << 20);
    for (let off = 0; off < packet.length; off += 7919) d.push(packet.subarray(off, off + 7919), (b, s, e) => out.push(b.subarray(s, e)));
    expect(out).toHaveLength(1);
    expect(out[0]!.equals(payload)).toBe(true);
  });

  it('stop() discards the rest of the chunk', () => {
    const d = new PacketDecoder(100);
    const out: string[] = [];
    d.push(Buffer.concat([encodePacket(Buffer.from('a')), encodePacket(Buffer.from('b'))]), (b, s, e) => {
      out.push(b.toString('utf8', s, e));
      d.stop();
    });
    expect(out).toEqual(['a']);
  });

  describe('with a run handler', () => {
    /**
     * A run handler like Messaging's: takes whole packets of the chunk while
     * `take(index)` says so (index = position in the stream), records them, and
     * leaves the rest to the decoder.
     */
    function decodeWithRun(chunks: Buffer[], take: (index: number) => boolean, max = 1024): string[] {
      const out: string[] = [];
      const d = new PacketDecoder(max);
      const run = (chunk: Buffer, off: number, decoder: PacketDecoder): number => {
        const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        for (;;) {
          const end = wholePacketEnd(view, chunk.length, off, decoder.maxPacketSize);
          if (end < 0 || !take(out.length)) break;
          out.push(chunk.toString('hex', off + 4, end));
          off = end;
        }
        return off;
      };
      for (const c of chunks) d.push(c, (b, s, e) => out.push(b.toString('hex', s, e)), run);
      expect(d.bufferedBytes).toBe(0);
      return out;
    }
    const policies: [string, (i: number) => boolean][] = [
      ['takes every packet', () => true],
      ['takes none', () => false],
      ['takes every other packet', (i) => i % 2 === 0],
      ['takes every third', (i) => i % 3 === 1],
    ];

    for (const [name, take] of policies) {
      it(`${name}: the stream split at every offset decodes in order, each packet once`, () => {
        for (let i = 0; i <= stream.length; i++) {
          expect(decodeWithRun([stream.subarray(0, i), stream.subarray(i)], take), `split at ${i}`).toEqual(expected);
        }
      });
    }

    it('fed one byte at a time', () => {
      expect(
        decodeWithRun(
          [...stream].map((b) => Buffer.from([b])),
          () => true,
        ),
      ).toEqual(expected);
    });

    it('an oversize packet the run leaves alone still fails the decoder', () => {
      const big = Buffer.alloc(4);
      big.writeUInt32BE(5000, 0);
      const d = new PacketDecoder(100);
      const out: string[] = [];
      const chunk = Buffer.concat([encodePacket(Buffer.from('a')), big, Buffer.alloc(10)]);
      const run = (c: Buffer, off: number, decoder: PacketDecoder): number => {
        const end = wholePacketEnd(new DataView(c.buffer, c.byteOffset, c.byteLength), c.length, off, decoder.maxPacketSize);
        if (end < 0) return off;
        out.push(c.toString('utf8', off + 4, end));
        return end;
      };
      expect(() => d.push(chunk, () => out.push('sink'), run)).toThrow(PacketTooLargeError);
      expect(out).toEqual(['a']);
    });

    it('stop() inside the run ends the chunk', () => {
      const d = new PacketDecoder(100);
      const out: string[] = [];
      const chunk = Buffer.concat(['a', 'b', 'c'].map((x) => encodePacket(Buffer.from(x))));
      d.push(
        chunk,
        (b, s, e) => out.push(`sink:${b.toString('utf8', s, e)}`),
        (c, off) => {
          out.push(`run:${c.toString('utf8', off + 4, off + 5)}`);
          d.stop();
          return off + 5;
        },
      );
      expect(out).toEqual(['run:a']);
    });
  });

  describe('wholePacketEnd', () => {
    const at = (b: Buffer, off: number, max: number) => wholePacketEnd(new DataView(b.buffer, b.byteOffset, b.byteLength), b.length, off, max);
    const two = Buffer.concat([encodePacket(Buffer.from('abc')), encodePacket(Buffer.alloc(0))]);

    it('gives the end of each whole packet, including an empty one', () => {
      expect(at(two, 0, 100)).toBe(7);
      expect(at(two, 7, 100)).toBe(11);
    });

    it('is -1 for a header or payload cut off by the end of the chunk, at every cut', () => {
      for (let cut = 0; cut < 7; cut++) expect(at(two.subarray(0, cut), 0, 100), `cut at ${cut}`).toBe(-1);
      expect(at(two, 11, 100)).toBe(-1);
    });

    it('is -1 for a packet over the size limit, even when it is all there', () => {
      expect(at(two, 0, 2)).toBe(-1);
      expect(at(two, 0, 3)).toBe(7);
    });
  });
});
