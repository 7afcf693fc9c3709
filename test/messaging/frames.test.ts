import { describe, expect, it } from 'vitest';
import {
  FrameType,
  decodeFrame,
  encodeIdentification,
  encodeIncompatibleProtocol,
  encodeMessage,
  encodePing,
  encodePong,
  encodeProtocolVersion,
  isValidIdent,
  truncateIdent,
} from '../../lib/messaging/frames.js';
import { encodePacket } from '../../lib/packeter/decoder.js';
import { Message } from '../../lib/messaging/message.js';
import { ProtocolError } from '../../lib/errors.js';
import vectors from '../fixtures/snakemq-v1.json' with { type: 'json' };

type Vector = (typeof vectors.vectors)[number] & { ident?: string; uuid?: string; ttl?: number | null; flags?: number; data?: string };
const byName = new Map<string, Vector>(vectors.vectors.map((v) => [v.name, v as Vector]));
const packet = (name: string) => Buffer.from(byName.get(name)!.packet, 'hex');
const payload = (name: string) => packet(name).subarray(4);

describe('snakeMQ 1.6 vectors', () => {
  it('covers every vector in the fixture', () => {
    expect([...byName.keys()].sort()).toEqual(
      [
        'protocol_version',
        'incompatible_protocol',
        'identification_bob',
        'identification_truncated_to_50',
        'identification_utf8',
        'message_ttl600_persistent',
        'message_infinite_ttl',
        'message_fractional_ttl_truncated',
        'ping',
        'pong',
      ].sort(),
    );
  });

  it('encodes control frames byte-exact', () => {
    expect(encodePacket(encodeProtocolVersion())).toEqual(packet('protocol_version'));
    expect(encodePacket(encodeIncompatibleProtocol())).toEqual(packet('incompatible_protocol'));
    expect(encodePacket(encodePing())).toEqual(packet('ping'));
    expect(encodePacket(encodePong())).toEqual(packet('pong'));
  });

  it('decodes control frames', () => {
    expect(decodeFrame(payload('protocol_version'))).toEqual({ type: FrameType.PROTOCOL_VERSION, version: 1 });
    expect(decodeFrame(payload('incompatible_protocol'))).toEqual({ type: FrameType.INCOMPATIBLE_PROTOCOL });
    expect(decodeFrame(payload('ping'))).toEqual({ type: FrameType.PING });
    expect(decodeFrame(payload('pong'))).toEqual({ type: FrameType.PONG });
  });

  for (const name of ['identification_bob', 'identification_truncated_to_50', 'identification_utf8']) {
    it(`encodes and decodes ${name}`, () => {
      const v = byName.get(name)!;
      expect(encodePacket(encodeIdentification(v.ident!)).toString('hex')).toBe(v.packet);
      const frame = decodeFrame(payload(name));
      expect(frame).toEqual({ type: FrameType.IDENTIFICATION, ident: truncateIdent(v.ident!) });
    });
  }

  for (const name of ['message_ttl600_persistent', 'message_infinite_ttl', 'message_fractional_ttl_truncated']) {
    it(`encodes and decodes ${name}`, () => {
      const v = byName.get(name)!;
      const m = new Message(Buffer.from(v.data!, 'hex'), { uuid: Buffer.from(v.uuid!, 'hex'), ttl: v.ttl ?? null, flags: v.flags! });
      expect(encodePacket(encodeMessage(m)).toString('hex')).toBe(v.packet);
      const frame = decodeFrame(payload(name));
      expect(frame.type).toBe(FrameType.MESSAGE);
      if (frame.type !== FrameType.MESSAGE) return;
      expect(frame.uuid.toString('hex')).toBe(v.uuid);
      expect(frame.ttl).toBe(v.ttl === null ? null : Math.trunc(v.ttl!));
      expect(frame.flags).toBe(v.flags);
      expect(frame.data.toString('hex')).toBe(v.data);
    });
  }
});

describe('frame validation', () => {
  it('truncates identities to 50 code points, not UTF-16 units', () => {
    const emoji = '😀'.repeat(60);
    expect([...truncateIdent(emoji)]).toHaveLength(50);
    expect(truncateIdent('x'.repeat(60))).toBe('x'.repeat(50));
  });

  it('decodes IDENTIFICATION cut to 50 characters, whatever the packet size', () => {
    const big = Buffer.concat([Buffer.from([FrameType.IDENTIFICATION]), Buffer.alloc(1024 * 1024, 'x')]);
    expect(decodeFrame(big)).toEqual({ type: FrameType.IDENTIFICATION, ident: 'x'.repeat(50) });
    const emoji = Buffer.concat([Buffer.from([FrameType.IDENTIFICATION]), Buffer.from('😀'.repeat(1000))]);
    expect(decodeFrame(emoji)).toEqual({ type: FrameType.IDENTIFICATION, ident: '😀'.repeat(50) });
  });

  it('decoding the first 200 bytes gives the 50 characters a whole decode would (mixed widths, invalid bytes, cut sequences)', () => {
    const pieces = [
      Buffer.from('a'),
      Buffer.from('é'),
      Buffer.from('€'),
      Buffer.from('😀'),
      Buffer.from([0xff]),
      Buffer.from([0xf0, 0x9f]),
      Buffer.from([0xe2, 0x82]),
      Buffer.from([0x80]),
    ];
    let seed = 12345;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % n;
    for (let round = 0; round < 2000; round++) {
      const parts: Buffer[] = [Buffer.from([FrameType.IDENTIFICATION])];
      const n = 1 + rand(120);
      for (let i = 0; i < n; i++) parts.push(pieces[rand(pieces.length)]!);
      const payload = Buffer.concat(parts);
      const frame = decodeFrame(payload);
      expect(frame, payload.toString('hex')).toEqual({ type: FrameType.IDENTIFICATION, ident: truncateIdent(payload.toString('utf8', 1)) });
    }
  });

  it('isValidIdent: strings of at most 50 code points without lone surrogates', () => {
    expect(isValidIdent('bob')).toBe(true);
    expect(isValidIdent('')).toBe(true);
    expect(isValidIdent('x'.repeat(50))).toBe(true);
    expect(isValidIdent('x'.repeat(51))).toBe(false);
    expect(isValidIdent('😀'.repeat(50))).toBe(true); // 100 UTF-16 units, 50 code points
    expect(isValidIdent('😀'.repeat(51))).toBe(false);
    expect(isValidIdent('bob\uD800')).toBe(false);
    expect(isValidIdent('\uDC00bob')).toBe(false);
    expect(isValidIdent(42)).toBe(false);
    expect(isValidIdent(null)).toBe(false);
    // What a peer announces is always valid once cut.
    expect(isValidIdent(truncateIdent('é'.repeat(80)))).toBe(true);
  });

  it('replaces invalid UTF-8 in identities', () => {
    const frame = decodeFrame(Buffer.from([2, 0x62, 0xff, 0x62]));
    expect(frame).toEqual({ type: FrameType.IDENTIFICATION, ident: 'b\ufffdb' });
  });

  it.each([
    ['empty frame', ''],
    ['short message', '03' + '00'.repeat(23)],
    ['short version', '00000001'],
    ['long version', '000000000100'],
  ])('rejects %s with a ProtocolError', (_name, hex) => {
    expect(() => decodeFrame(Buffer.from(hex, 'hex'))).toThrow(ProtocolError);
  });

  it('accepts a message with exactly 24 header bytes and no data', () => {
    const frame = decodeFrame(Buffer.from('03' + '00'.repeat(24), 'hex'));
    expect(frame.type).toBe(FrameType.MESSAGE);
  });

  it('reports unknown frame types without failing', () => {
    expect(decodeFrame(Buffer.from([99, 1, 2]))).toEqual({ type: 'unknown', code: 99 });
  });
});

describe('Message uuids', () => {
  it('are random UUID v4s (version and variant bits), all distinct, across several refills of the random pool', () => {
    const seen = new Set<string>();
    // 12,000: three refills of the 64 KiB pool (4,096 uuids each).
    for (let i = 0; i < 12_000; i++) {
      const uuid = new Message('x').uuid;
      expect(uuid[6]! >> 4, `message ${i}`).toBe(4);
      expect(uuid[8]! >> 6, `message ${i}`).toBe(2);
      seen.add(uuid.toString('hex'));
    }
    expect(seen.size).toBe(12_000);
  });

  it('a given uuid is kept as given', () => {
    const uuid = Buffer.alloc(16, 0xab);
    expect(new Message('x', { uuid }).uuid.equals(uuid)).toBe(true);
  });
});
