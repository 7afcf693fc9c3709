import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { PubMessageError, PubSubFrameError } from '../../lib/errors.js';
import {
  DataKind,
  decodeConfirm,
  decodePublished,
  decodeSubscribe,
  encodeConfirm,
  encodePublished,
  encodeSubscribe,
  hasPrefix,
  HeadCache,
  MAX_REASON_BYTES,
  PUBLISH_PREFIX,
  SUB_FLAG_DURABLE,
} from '../../lib/pubsub/frames.js';

const limits = { maxFilters: 16, maxFilterBytes: 64 };
const header = { subject: '/oper/polar/norrköping', type: 'file', sender: Buffer.from('user@host'), version: 'v1.2', timeMs: 1_700_000_000_123, micros: 456 };

describe('subscription frames', () => {
  it('round-trip, unicode filters, null TTL', () => {
    const f = encodeSubscribe(7, SUB_FLAG_DURABLE, null, ['/counter', '/a/*/b', 'åäö/>']);
    expect(decodeSubscribe(f, limits)).toEqual({ seq: 7, flags: SUB_FLAG_DURABLE, ttl: null, filters: ['/counter', '/a/*/b', 'åäö/>'] });
    expect(decodeSubscribe(encodeSubscribe(1, 0, 600, []), limits)).toEqual({ seq: 1, flags: 0, ttl: 600, filters: [] });
  });

  it('every truncation and every extra byte is a PubSubFrameError', () => {
    const f = encodeSubscribe(3, 0, 10, ['/x', '/yy']);
    for (let n = 0; n < f.length; n++) expect(() => decodeSubscribe(f.subarray(0, n), limits), `length ${n}`).toThrow(PubSubFrameError);
    expect(() => decodeSubscribe(Buffer.concat([f, Buffer.from([0])]), limits)).toThrow(/after its filters/);
  });

  it('limits are checked on the counts read, before allocating', () => {
    const many = encodeSubscribe(1, 0, null, []);
    many.writeUInt16BE(0xffff, 15);
    expect(() => decodeSubscribe(many, limits)).toThrow(/65535 filters: over the limit of 16/);
    const long = encodeSubscribe(1, 0, null, ['x'.repeat(65)]);
    expect(() => decodeSubscribe(long, limits)).toThrow(/65 bytes: over the limit of 64/);
  });

  it('refuses filters that are not UTF-8', () => {
    const f = encodeSubscribe(1, 0, null, ['ab']);
    f[f.length - 1] = 0xff;
    expect(() => decodeSubscribe(f, limits)).toThrow(/not valid UTF-8/);
  });
});

describe('confirmation frames', () => {
  it('round-trip; reason cut to the limit on a character boundary', () => {
    expect(decodeConfirm(encodeConfirm(9, true))).toEqual({ seq: 9, ok: true, reason: '' });
    const c = decodeConfirm(encodeConfirm(2, false, 'ö'.repeat(MAX_REASON_BYTES)));
    expect(c.ok).toBe(false);
    expect(Buffer.byteLength(c.reason)).toBeLessThanOrEqual(MAX_REASON_BYTES);
    expect(c.reason).toBe('ö'.repeat(MAX_REASON_BYTES / 2));
  });

  it('truncated, unknown status, long reason: PubSubFrameError', () => {
    const f = encodeConfirm(1, false, 'no');
    for (let n = 0; n < 11; n++) expect(() => decodeConfirm(f.subarray(0, n))).toThrow(PubSubFrameError);
    const bad = Buffer.from(f);
    bad[10] = 7;
    expect(() => decodeConfirm(bad)).toThrow(/unknown status 7/);
    const long = Buffer.concat([f.subarray(0, 11), Buffer.alloc(MAX_REASON_BYTES + 1, 0x61)]);
    expect(() => decodeConfirm(long)).toThrow(/over 1024 bytes/);
  });
});

describe('published frames', () => {
  it('round-trip each data kind; data is a view of the frame (no copy)', () => {
    const bytes = Buffer.from([0, 1, 2, 255]);
    const cases: [DataKind, Uint8Array | string, Buffer][] = [
      [DataKind.None, Buffer.alloc(0), Buffer.alloc(0)],
      [DataKind.Text, 'hej på dig', Buffer.from('hej på dig')],
      [DataKind.Bytes, bytes, bytes],
      [DataKind.BinaryString, '\u00ff\u0000a', Buffer.from([255, 0, 0x61])],
      [DataKind.Json, '{"a": 1}', Buffer.from('{"a": 1}')],
    ];
    for (const [kind, data, expected] of cases) {
      const frame = encodePublished(header, kind, data);
      expect(hasPrefix(frame, PUBLISH_PREFIX)).toBe(true);
      const d = decodePublished(frame);
      expect({ ...d, data: Buffer.from(d.data) }).toEqual({ ...header, sender: 'user@host', kind, data: expected });
      expect(d.data.buffer).toBe(frame.buffer);
    }
    expect(decodePublished(encodePublished({ ...header, version: undefined }, DataKind.None, '')).version).toBeUndefined();
  });

  it('with a HeadCache, a repeated head is not decoded again; another head is; truncation is still caught', () => {
    const cache = new HeadCache();
    const one = encodePublished(header, DataKind.Text, 'a');
    const first = decodePublished(one, cache);
    const again = decodePublished(encodePublished({ ...header, timeMs: 5 }, DataKind.Bytes, Buffer.from([1])), cache);
    expect(again.subject).toBe(first.subject);
    expect([again.kind, again.timeMs, Buffer.from(again.data)]).toEqual([DataKind.Bytes, 5, Buffer.from([1])]);
    expect(Object.is(cache.head!.subject, again.subject)).toBe(true);
    const other = decodePublished(encodePublished({ ...header, subject: '/other' }, DataKind.None, ''), cache);
    expect(other.subject).toBe('/other');
    expect(decodePublished(one, cache).subject).toBe(header.subject);
    for (let n = 0; n < 40; n++) expect(() => decodePublished(one.subarray(0, n), cache), `length ${n}`).toThrow(PubSubFrameError);
  });

  it('every truncation of the header is a PubSubFrameError', () => {
    const frame = encodePublished(header, DataKind.None, '');
    for (let n = 0; n < frame.length; n++) expect(() => decodePublished(frame.subarray(0, n)), `length ${n}`).toThrow(PubSubFrameError);
    expect(() => decodePublished(Buffer.concat([frame, Buffer.from('x')]))).toThrow(/without data has bytes/);
  });

  it('unknown kind, bad time, invalid UTF-8: PubSubFrameError', () => {
    const frame = encodePublished(header, DataKind.Text, 'x');
    const kind = Buffer.from(frame);
    kind[6] = 9;
    expect(() => decodePublished(kind)).toThrow(/unknown data kind 9/);
    const time = Buffer.from(frame);
    time.writeDoubleBE(NaN, frame.length - 1 - 10);
    expect(() => decodePublished(time)).toThrow(/invalid time/);
    const micros = Buffer.from(frame);
    micros.writeUInt16BE(1000, frame.length - 1 - 2);
    expect(() => decodePublished(micros)).toThrow(/invalid time/);
    const utf = Buffer.from(frame);
    utf[10] = 0xff;
    expect(() => decodePublished(utf)).toThrow(/subject is not valid UTF-8/);
  });

  it('fields too long for the frame are refused when encoding', () => {
    expect(() => encodePublished({ ...header, subject: '/' + 'x'.repeat(0xffff) }, DataKind.None, '')).toThrow(PubMessageError);
    expect(() => encodePublished({ ...header, type: 't'.repeat(256) }, DataKind.None, '')).toThrow(/Invalid type/);
    expect(() => encodePublished({ ...header, sender: Buffer.alloc(256, 0x61) }, DataKind.None, '')).toThrow(/Invalid sender/);
  });

  it('random bytes never throw anything but PubSubFrameError', () => {
    const frame = encodePublished(header, DataKind.Json, '[1]');
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
    for (let i = 0; i < 2000; i++) {
      const f = Buffer.from(frame);
      for (let k = 0; k < 3; k++) f[6 + (rnd() % (f.length - 6))] = rnd();
      try {
        decodePublished(f);
      } catch (e) {
        expect(e).toBeInstanceOf(PubSubFrameError);
      }
    }
  });
});
