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
 * Pieces of a partial packet at least this long are kept by reference (and
 * joined once at the end); shorter ones are copied into an accumulator. A
 * full TLS record (16 KiB) and a socket read of a stream (64 KiB) are kept;
 * a trickle of small writes costs no object per write.
 */
export const BIG_PIECE = 16 * 1024;
/** Smallest accumulator allocated for the small pieces of a partial packet. */
const MIN_ACCUMULATOR = 256;

/**
 * Receive side of the framing: a pure state machine turning a byte stream
 * into packet payloads (`[4-byte BE length][payload]`, reference §1).
 *
 * - A payload that lies within one chunk is passed as a range of that chunk (no copy).
 * - A payload split over chunks is stored as it arrives: pieces of at least
 *   {@link BIG_PIECE} bytes by reference, smaller ones copied into an
 *   accumulator that grows geometrically up to the announced length. Memory
 *   stays close to the bytes actually received (at most about twice, never
 *   the announced length), with no object per chunk, and the payload is
 *   joined once at the end (not at all when it was accumulated whole).
 * - An announced length above `maxPacketSize` throws {@link PacketTooLargeError}
 *   before anything of that size is allocated; the decoder then refuses further input.
 * - A partial header is kept in a number: an idle decoder holds no buffer.
 */
export class PacketDecoder {
  /**
   * Largest accepted payload in bytes. It may be changed at any time (the
   * Packeter lowers it for a restricted connection): it applies to every
   * header read from then on.
   */
  maxPacketSize: number;
  /** The bytes of a partial header, big-endian, as a number. */
  private headerValue = 0;
  private headerFilled = 0;
  private expected = -1;
  /** Bytes of the partial payload received. */
  private received = 0;
  /** Pieces kept by reference (and sealed accumulators), in order; null while there are none. */
  private parts: Buffer[] | null = null;
  /** Accumulator of the small pieces received since the last part (or null). */
  private acc: Buffer | null = null;
  private accUsed = 0;
  private failed = false;
  private isStopped = false;

  constructor(maxPacketSize: number) {
    this.maxPacketSize = maxPacketSize;
  }

  /** Bytes held for an incomplete packet (header included). */
  get bufferedBytes(): number {
    return this.headerFilled + this.received;
  }

  /**
   * Stops delivering packets, also those still in the chunk being pushed
   * (call it from `onPacket` when the connection is being closed), and drops
   * what is held of a partial packet.
   */
  stop(): void {
    this.isStopped = true;
    this.discard();
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
      const need = this.expected - this.received;
      if (len < need) {
        this.store(chunk, 0, len);
        return;
      }
      const payload = this.complete(chunk, need);
      off = need;
      onPacket(payload, 0, payload.length);
      if (this.isStopped) return;
    } else if (this.headerFilled > 0) {
      let value = this.headerValue;
      let filled = this.headerFilled;
      while (filled < HEADER_SIZE && off < len) {
        value = value * 256 + chunk[off++]!;
        filled++;
      }
      if (filled < HEADER_SIZE) {
        this.headerValue = value;
        this.headerFilled = filled;
        return;
      }
      this.headerValue = this.headerFilled = 0;
      off = this.startPacket(value, chunk, off, onPacket);
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
    let value = 0;
    while (off < len) {
      value = value * 256 + chunk[off++]!;
      this.headerFilled++;
    }
    this.headerValue = value;
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
    if (available > 0) this.store(chunk, off, chunk.length);
    return -1;
  }

  /** Keeps `chunk[start, end)` as the next bytes of the partial payload (never all of it). */
  private store(chunk: Buffer, start: number, end: number): void {
    const n = end - start;
    this.received += n;
    if (n >= BIG_PIECE) {
      this.seal();
      (this.parts ??= []).push(start === 0 && end === chunk.length ? chunk : chunk.subarray(start, end));
      return;
    }
    let acc = this.acc;
    const used = this.accUsed;
    if (acc === null || acc.length - used < n) {
      // Geometric growth, capped by what the packet can still need: copies stay linear in the bytes received.
      const room = this.expected - (this.received - n) + used;
      const size = Math.min(room, Math.max(MIN_ACCUMULATOR, 2 * (used + n), acc === null ? 0 : 2 * acc.length));
      // Its own memory, not a slice of Node's shared pool: a long-lived partial packet must not pin a pool slab.
      const grown = Buffer.allocUnsafeSlow(size);
      if (used > 0) acc!.copy(grown, 0, 0, used);
      this.acc = acc = grown;
    }
    chunk.copy(acc, used, start, end);
    this.accUsed = used + n;
  }

  /** Moves the accumulator (its used part) to the parts list. */
  private seal(): void {
    if (this.accUsed === 0) return;
    (this.parts ??= []).push(this.acc!.subarray(0, this.accUsed));
    this.acc = null;
    this.accUsed = 0;
  }

  /** The whole payload, given the first `need` bytes of `chunk` end it; resets the partial state. */
  private complete(chunk: Buffer, need: number): Buffer {
    const size = this.expected;
    let payload: Buffer;
    if (this.parts === null && (need < BIG_PIECE || this.accUsed === 0)) {
      if (this.accUsed === 0) payload = chunk.subarray(0, need);
      else {
        let acc = this.acc!;
        if (acc.length < size) {
          const whole = Buffer.allocUnsafeSlow(size);
          acc.copy(whole, 0, 0, this.accUsed);
          acc = whole;
        }
        chunk.copy(acc, this.accUsed, 0, need);
        payload = acc.length === size ? acc : acc.subarray(0, size);
      }
    } else {
      this.seal();
      const parts = this.parts!;
      if (need > 0) parts.push(chunk.subarray(0, need));
      payload = parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
    }
    this.discard();
    return payload;
  }

  /** Forgets the partial packet. */
  private discard(): void {
    this.expected = -1;
    this.received = 0;
    this.parts = null;
    this.acc = null;
    this.accUsed = 0;
    this.headerValue = this.headerFilled = 0;
  }
}

/** Encodes one packet: header and payload in a new buffer. */
export function encodePacket(payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER_SIZE + payload.byteLength);
  out.writeUInt32BE(payload.byteLength, 0);
  out.set(payload, HEADER_SIZE);
  return out;
}
