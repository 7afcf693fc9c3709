/**
 * The snakeMQ wire format written by hand (docs/protocol.md), for the
 * memory and soak benchmarks' raw clients and raw baseline server: packets
 * are a 4-byte big-endian length and a payload, a payload is a frame type
 * byte and a body. Nothing here uses the library, so the clients cost the
 * same whatever the library does, and can send bytes it would never send.
 * @module
 */
import { randomBytes } from 'node:crypto';

export const T_PROTOCOL_VERSION = 0;
export const T_IDENTIFICATION = 2;
export const T_MESSAGE = 3;
export const T_PING = 4;
export const T_PONG = 5;
export const T_EXTENSIONS = 16;
export const T_ACK = 17;

/** One packet: length, type, body. */
export function packet(type: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out.writeUInt32BE(body.length + 1, 0);
  out[4] = type;
  body.copy(out, 5);
  return out;
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

/**
 * What a snakemq-ts peer writes first on a connection: PROTOCOL_VERSION 1,
 * IDENTIFICATION, and with `ack` the EXTENSIONS announcement (ACK bit) and a
 * PING (a plain snakeMQ peer writes the first two only).
 */
export function handshake(ident: string, ack: boolean): Buffer {
  const parts = [packet(T_PROTOCOL_VERSION, u32(1)), packet(T_IDENTIFICATION, Buffer.from(ident, 'utf8'))];
  if (ack) parts.push(packet(T_EXTENSIONS, Buffer.from([1, 0, 0, 0, 1])), packet(T_PING));
  return Buffer.concat(parts);
}

/** A MESSAGE packet: random uuid, no TTL limit, `flags`, `data`. */
export function messagePacket(data: Buffer, flags = 0): Buffer {
  return packet(T_MESSAGE, Buffer.concat([randomBytes(16), u32(0xffffffff), u32(flags), data]));
}

export const PONG_PACKET = packet(T_PONG);
export const PING_PACKET = packet(T_PING);
export const ACK1_PACKET = packet(T_ACK, u32(1));

/**
 * Incremental frame parser, as the messaging benchmark's baseline has it
 * (bench/lib/raw-peer.ts): a frame inside one chunk is a view of it, a frame
 * split over chunks is joined once. `maxFrame` bounds what it will wait
 * for (a larger announced length calls `onTooLarge` and stops parsing).
 */
export class FrameReader {
  private readonly header = Buffer.alloc(4);
  private headerFilled = 0;
  private expected = -1;
  private parts: Buffer[] = [];
  private partsBytes = 0;
  private dead = false;

  constructor(
    private readonly onFrame: (frame: Buffer) => void,
    private readonly maxFrame = 64 * 1024 * 1024,
    private readonly onTooLarge: () => void = () => undefined,
  ) {}

  push(chunk: Buffer): void {
    const len = chunk.length;
    let off = 0;
    while (off < len && !this.dead) {
      if (this.expected >= 0) {
        const need = this.expected - this.partsBytes;
        if (len - off < need) {
          this.parts.push(off === 0 ? chunk : chunk.subarray(off));
          this.partsBytes += len - off;
          return;
        }
        this.parts.push(chunk.subarray(off, off + need));
        off += need;
        const frame = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.expected);
        this.parts = [];
        this.partsBytes = 0;
        this.expected = -1;
        this.onFrame(frame);
        continue;
      }
      let size: number;
      if (this.headerFilled === 0 && len - off >= 4) {
        size = chunk.readUInt32BE(off);
        off += 4;
      } else {
        while (this.headerFilled < 4 && off < len) this.header[this.headerFilled++] = chunk[off++]!;
        if (this.headerFilled < 4) return;
        this.headerFilled = 0;
        size = this.header.readUInt32BE(0);
      }
      if (size > this.maxFrame) {
        this.dead = true;
        this.onTooLarge();
        return;
      }
      if (len - off >= size) {
        this.onFrame(chunk.subarray(off, off + size));
        off += size;
      } else {
        this.expected = size;
        this.parts.push(chunk.subarray(off));
        this.partsBytes = len - off;
        return;
      }
    }
  }
}
