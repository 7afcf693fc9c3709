import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  CloseReason,
  Control,
  decodeControl,
  decodeRelayHead,
  encodeHello,
  encodePairControl,
  encodeQuery,
  encodeRelayHead,
  FRAME_RELAY,
  FRAME_RELAY_CONTROL,
  MAX_RELAY_HEAD,
} from '../../lib/relay/frames.js';

function relayFrame(hops: number, src: string, dst: string, inner: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(inner.length);
  return Buffer.concat([encodeRelayHead(hops, src, dst), len, inner]);
}

describe('relay frames', () => {
  it('RELAY: head round trip, with unicode identities', () => {
    const inner = Buffer.from([0, 0, 0, 0, 1]);
    const frame = relayFrame(3, 'alice', 'çarol-✓', inner);
    expect(frame[0]).toBe(FRAME_RELAY);
    const head = decodeRelayHead(frame, 0, frame.length)!;
    expect(head).toMatchObject({ hops: 3, src: 'alice', dst: 'çarol-✓' });
    expect(frame.subarray(head.at + 4)).toEqual(inner);
    // Also inside a bigger buffer.
    const buf = Buffer.concat([Buffer.from('xxxx'), frame, Buffer.from('yy')]);
    expect(decodeRelayHead(buf, 4, 4 + frame.length)).toMatchObject({ hops: 3, src: 'alice', at: head.at + 4 });
  });

  it('RELAY: every truncation, and a first inner packet longer than the frame, is refused (null), never thrown', () => {
    const frame = relayFrame(1, 'alice', 'carol', Buffer.from('inner packet'));
    for (let end = 0; end < frame.length; end++) expect(decodeRelayHead(frame, 0, end)).toBeNull();
    const tooLong = Buffer.concat([encodeRelayHead(1, 'a', 'b'), Buffer.from([0, 0, 0, 99]), Buffer.from('short')]);
    expect(decodeRelayHead(tooLong, 0, tooLong.length)).toBeNull();
    // More packets after the first are the destination's to check: the head is fine.
    const two = Buffer.concat([frame, Buffer.from([0, 0, 0, 1, 4])]);
    expect(decodeRelayHead(two, 0, two.length)).not.toBeNull();
    const noSrc = Buffer.from([FRAME_RELAY, 0, 0, 1, 0x62, 0, 0, 0, 1, 9]);
    expect(decodeRelayHead(noSrc, 0, noSrc.length)).toBeNull();
  });

  it('the longest head is MAX_RELAY_HEAD', () => {
    const id = '𝄞'.repeat(50);
    expect(encodeRelayHead(0, id, id).length + 4).toBe(MAX_RELAY_HEAD);
  });

  it('RELAY_CONTROL: each kind round trips', () => {
    const id = randomBytes(8);
    const cases = [
      [encodeHello(1), { kind: Control.HELLO, flags: 1 }],
      [encodeQuery(Control.QUERY, id, 2, 'carol'), { kind: Control.QUERY, id, count: 2, target: 'carol' }],
      [encodeQuery(Control.REPLY, id, 1, 'carol'), { kind: Control.REPLY, id, count: 1, target: 'carol' }],
      [
        encodePairControl(Control.CLOSE, CloseReason.OVERFLOW, 'alice', 'carol'),
        { kind: Control.CLOSE, value: CloseReason.OVERFLOW, src: 'alice', dst: 'carol' },
      ],
      [encodePairControl(Control.CREDIT, 0xfffffff0, 'alice', 'carol'), { kind: Control.CREDIT, value: 0xfffffff0, src: 'alice', dst: 'carol' }],
    ] as const;
    for (const [frame, want] of cases) {
      expect(frame[0]).toBe(FRAME_RELAY_CONTROL);
      expect(decodeControl(frame, 0, frame.length)).toEqual(want);
      for (let end = 0; end < frame.length; end++) expect(decodeControl(frame, 0, end)).toBeNull();
      expect(decodeControl(Buffer.concat([frame, Buffer.from([1])]), 0, frame.length + 1)).toBeNull();
    }
    expect(decodeControl(Buffer.from([FRAME_RELAY_CONTROL, 99, 0]), 0, 3)).toBeNull();
  });

  it('random bytes never throw', () => {
    for (let i = 0; i < 5000; i++) {
      const b = randomBytes(1 + (i % 64));
      b[0] = i % 2 === 0 ? FRAME_RELAY : FRAME_RELAY_CONTROL;
      if (i % 4 < 2) b[1] = 1 + (i % 5);
      expect(() => (b[0] === FRAME_RELAY ? decodeRelayHead(b, 0, b.length) : decodeControl(b, 0, b.length))).not.toThrow();
    }
  });
});
