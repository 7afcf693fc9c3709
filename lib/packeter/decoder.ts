import { Buffer } from 'node:buffer';
import { PacketTooLargeError } from '../errors.js';

/** Receives one packet payload as the range `[start, end)` of `buf` (no copy, no view made). */
export type PacketSink = (buf: Buffer, start: number, end: number) => void;

/**
 * Optionally takes over a run of whole packets: called with a chunk and the
 * offset of a packet header in it (the decoder holds nothing partial), handles
 * any number of consecutive packets that lie wholly in the chunk and returns
 * the offset after the last one it handled (`off` itself when none). The
 * decoder handles the packet found there as usual, then offers the rest again.
 * The handler must stop as soon as `decoder.stopped` turns true, and find
 * its packets with {@link wholePacketEnd} (which leaves packets over
 * `decoder.maxPacketSize` to the decoder, to fail).
 */
export type PacketRun = (chunk: Buffer, off: number, decoder: PacketDecoder) => number;

/** Length of the packet header: a 4-byte unsigned big-endian payload length. */
export const HEADER_SIZE = 4;

/**
 * For a {@link PacketRun}: where the payload of the packet whose header
 * starts at `off` ends, when that packet lies wholly within the first `len`
 * bytes of `view` and is at most `maxPacketSize` long; otherwise -1 (the
 * payload starts at `off + HEADER_SIZE`).
 */
export function wholePacketEnd(view: DataView, len: number, off: number, maxPacketSize: number): number {
  if (len - off < HEADER_SIZE) return -1;
  const size = view.getUint32(off);
  const end = off + HEADER_SIZE + size;
  return size <= maxPacketSize && end <= len ? end : -1;
}

/**
 * Receive side of the framing: a pure state machine turning a byte stream
 * into packet payloads (`[4-byte BE length][payload]`, reference §1).
 *
 * - A payload that lies within one chunk is passed as a range of that chunk (no copy).
 * - A payload split over chunks is collected as a list and joined once (linear, never
 *   quadratic), and memory grows only with the bytes actually received, never with
 *   the announced length.
 * - An announced length above `maxPacketSize` throws {@link PacketTooLargeError}
 *   before anything of that size is allocated; the decoder then refuses further input.
 */
export class PacketDecoder {
  /** Largest accepted payload in bytes. */
  readonly maxPacketSize: number;
  private readonly header = Buffer.alloc(HEADER_SIZE);
  private headerFilled = 0;
  private expected = -1;
  private parts: Buffer[] = [];
  private partsBytes = 0;
  private failed = false;
  private isStopped = false;

  constructor(maxPacketSize: number) {
    this.maxPacketSize = maxPacketSize;
  }

  /** Bytes held for an incomplete packet (header included). */
  get bufferedBytes(): number {
    return this.headerFilled + this.partsBytes;
  }

  /**
   * Stops delivering packets, also those still in the chunk being pushed
   * (call it from `onPacket` when the connection is being closed).
   */
  stop(): void {
    this.isStopped = true;
  }

  /** Whether {@link stop} was called. */
  get stopped(): boolean {
    return this.isStopped;
  }

  /**
   * Feeds one chunk; `onPacket` is called for every complete payload, in order
   * (and `run`, when given, is offered the whole packets first; see {@link PacketRun}).
   */
  push(chunk: Buffer, onPacket: PacketSink, run: PacketRun | null = null): void {
    if (this.failed || this.isStopped) return;
    const len = chunk.length;
    let off = 0;

    if (this.expected >= 0) {
      const need = this.expected - this.partsBytes;
      if (len < need) {
        this.parts.push(chunk);
        this.partsBytes += len;
        return;
      }
      this.parts.push(need === len ? chunk : chunk.subarray(0, need));
      const payload = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.expected);
      this.parts = [];
      this.partsBytes = 0;
      this.expected = -1;
      off = need;
      onPacket(payload, 0, payload.length);
      if (this.isStopped) return;
    } else if (this.headerFilled > 0) {
      while (this.headerFilled < HEADER_SIZE && off < len) this.header[this.headerFilled++] = chunk[off++]!;
      if (this.headerFilled < HEADER_SIZE) return;
      this.headerFilled = 0;
      off = this.startPacket(this.header.readUInt32BE(0), chunk, off, onPacket);
      if (off < 0 || this.isStopped) return;
    }

    while (len - off >= HEADER_SIZE) {
      if (run !== null) {
        off = run(chunk, off, this);
        if (this.isStopped || len - off < HEADER_SIZE) break;
      }
      off = this.startPacket(chunk.readUInt32BE(off), chunk, off + HEADER_SIZE, onPacket);
      if (off < 0 || this.isStopped) return;
    }
    if (this.isStopped) return;
    while (off < len) this.header[this.headerFilled++] = chunk[off++]!;
  }

  /** Handles a packet whose header was read; returns the new offset, or -1 when the chunk is used up. */
  private startPacket(size: number, chunk: Buffer, off: number, onPacket: PacketSink): number {
    if (size > this.maxPacketSize) {
      this.failed = true;
      throw new PacketTooLargeError(size, this.maxPacketSize);
    }
    const available = chunk.length - off;
    if (available >= size) {
      onPacket(chunk, off, off + size);
      return off + size;
    }
    this.expected = size;
    if (available > 0) {
      this.parts.push(chunk.subarray(off));
      this.partsBytes = available;
    }
    return -1;
  }
}

/** Encodes one packet: header and payload in a new buffer. */
export function encodePacket(payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER_SIZE + payload.byteLength);
  out.writeUInt32BE(payload.byteLength, 0);
  out.set(payload, HEADER_SIZE);
  return out;
}
