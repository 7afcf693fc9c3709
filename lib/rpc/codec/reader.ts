/**
 * The strict MessagePack reader: one pass over the bytes, never msgpackr. It
 * accepts only standard MessagePack (nil, bool, int, float, str, bin, array,
 * map, and the timestamp extension -1), so msgpackr's extensions (records,
 * structured clone, Error, RegExp, Set, typed arrays, bundled strings…) are
 * refused like any other extension. It checks every length against the bytes
 * left before allocating anything (a huge announced count cannot make it
 * allocate), refuses nesting deeper than {@link MAX_DEPTH} and truncated
 * data. Maps become plain objects whose keys are data only: a `__proto__`
 * key is an own property (never the prototype setter), `constructor` an
 * ordinary one; str and integer (and float) keys are accepted, any other key
 * type is recorded in `keyError` (see there). Bins are copied, so decoded
 * values never alias the transport's buffers. Builds on node:buffer and
 * limits.ts; the envelope (envelope.ts) and our own layouts (layouts.ts)
 * drive it.
 * @module
 */
import { Buffer } from 'node:buffer';
import { RpcBadRequestError } from '../../errors.js';
import { MAX_DEPTH } from './limits.js';

/** @internal */
export const EMPTY_BUFFER = Buffer.alloc(0);

/** @internal The error of a refused message. */
export function bad(message: string, cause?: unknown): RpcBadRequestError {
  return new RpcBadRequestError(message, cause === undefined ? undefined : { cause });
}

type Utf8Slice = (this: Buffer, start: number, end: number) => string;
const utf8Slice: Utf8Slice =
  (Buffer.prototype as unknown as { utf8Slice?: Utf8Slice }).utf8Slice ??
  function (this: Buffer, start: number, stop: number): string {
    return this.toString('utf8', start, stop);
  };

/**
 * Recently decoded short ASCII strings (map keys, object and method names
 * come again and again), direct-mapped by a hash of their bytes. A hit is
 * checked byte for byte, so it only saves building the string (and gives
 * the same string object, whose hash V8 already knows, to Map lookups).
 */
const SHORT_STRING = 16;

/**
 * The state of one decode and the reader's string cache. Contract:
 * a decode sets `src`/`pos`/`end` (and clears `keyError`), sets `decoding`
 * while it runs and, when it ends, clears `decoding` and drops `src` (so no
 * transport buffer stays referenced). Decoding is synchronous and runs no
 * code of ours, but storing a map entry would run a setter someone defined
 * on `Object.prototype`; a decode started from there on the same reader goes
 * through {@link nested}, which saves and restores the outer decode's state.
 * One reader per owner (an RpcClient, an RpcServer, the module-level
 * functions of codec.ts): readers share nothing.
 */
export class MsgpackReader {
  src: Buffer = EMPTY_BUFFER;
  pos = 0;
  end = 0;
  /**
   * The first map key of an unsupported type met while reading the current
   * envelope value. Such a key does not stop the decode (the bytes must still
   * be checked to the end, and the request id read): the envelope reader
   * reports it for the field it was found in.
   */
  keyError: RpcBadRequestError | null = null;
  /** A decode is in progress (see the class doc). */
  decoding = false;
  private readonly stringCache: (string | undefined)[] = new Array<string | undefined>(1024).fill(undefined);

  /** Runs `decode` (which starts a decode of its own) from within a decode, keeping the outer one's state. */
  nested<T>(decode: () => T): T {
    const savedSrc = this.src;
    const savedPos = this.pos;
    const savedEnd = this.end;
    const savedKeyError = this.keyError;
    this.decoding = false;
    try {
      return decode();
    } finally {
      this.src = savedSrc;
      this.pos = savedPos;
      this.end = savedEnd;
      this.keyError = savedKeyError;
      this.decoding = true;
    }
  }

  /** Returns the key error met so far and clears it. */
  takeKeyError(): RpcBadRequestError | null {
    const e = this.keyError;
    this.keyError = null;
    return e;
  }

  /** Whether the bytes at `pos` are `expected`; moves past them when they are. */
  expectBytes(expected: Buffer): boolean {
    const n = expected.length;
    if (n > this.end - this.pos) return false;
    for (let i = 0; i < n; i++) if (this.src[this.pos + i] !== expected[i]) return false;
    this.pos += n;
    return true;
  }

  truncated(): never {
    throw bad('truncated MessagePack data');
  }

  tooDeep(): never {
    throw bad(`MessagePack nesting deeper than ${MAX_DEPTH}`);
  }

  unsupportedExt(typePos: number): never {
    throw bad(`unsupported MessagePack extension type ${typePos < this.end ? (this.src[typePos]! << 24) >> 24 : '?'}`);
  }

  /** A big-endian unsigned length of `bytes` (1, 2 or 4) bytes. */
  readLength(bytes: number): number {
    if (bytes > this.end - this.pos) this.truncated();
    const p = this.pos;
    this.pos += bytes;
    if (bytes === 1) return this.src[p]!;
    if (bytes === 2) return (this.src[p]! << 8) | this.src[p + 1]!;
    return this.src[p]! * 0x1000000 + ((this.src[p + 1]! << 16) | (this.src[p + 2]! << 8) | this.src[p + 3]!);
  }

  need(bytes: number): number {
    if (bytes > this.end - this.pos) this.truncated();
    const p = this.pos;
    this.pos += bytes;
    return p;
  }

  readString(length: number): string {
    if (length > this.end - this.pos) this.truncated();
    const start = this.pos;
    const stop = (this.pos += length);
    if (length > SHORT_STRING) return utf8Slice.call(this.src, start, stop);
    let h = length;
    for (let i = start; i < stop; i++) {
      const c = this.src[i]!;
      if (c >= 0x80) return utf8Slice.call(this.src, start, stop);
      h = (Math.imul(h, 31) + c) | 0;
    }
    const slot = (h ^ (h >>> 10)) & 1023;
    const cached = this.stringCache[slot];
    if (cached !== undefined && cached.length === length) {
      let i = 0;
      while (i < length && cached.charCodeAt(i) === this.src[start + i]) i++;
      if (i === length) return cached;
    }
    const s = String.fromCharCode.apply(null, this.src.subarray(start, stop) as unknown as number[]);
    this.stringCache[slot] = s;
    return s;
  }

  readBin(length: number): Buffer {
    if (length > this.end - this.pos) this.truncated();
    const out = Buffer.allocUnsafe(length);
    if (length <= 32) {
      // Cheaper than a native copy for request ids and other small bins.
      for (let i = 0; i < length; i++) out[i] = this.src[this.pos + i]!;
    } else {
      this.src.copy(out, 0, this.pos, this.pos + length);
    }
    this.pos += length;
    return out;
  }

  /** int64/uint64 as a number when within ±2^53 (like msgpackr's `int64AsType: 'auto'`), else a bigint. */
  readInt64(signed: boolean): number | bigint {
    const p = this.need(8);
    const lo = this.src.readUInt32BE(p + 4);
    if (signed) {
      const hi = this.src.readInt32BE(p);
      if ((hi >= -0x200000 && hi < 0x200000) || (hi === 0x200000 && lo === 0)) return hi * 0x100000000 + lo;
      return this.src.readBigInt64BE(p);
    }
    const hi = this.src.readUInt32BE(p);
    if (hi < 0x200000 || (hi === 0x200000 && lo === 0)) return hi * 0x100000000 + lo;
    return this.src.readBigUInt64BE(p);
  }

  /** The timestamp extension (type -1) as a Date; `p` is where its data starts. */
  readTimestamp(p: number, length: number): Date {
    if (length === 4) return new Date(this.src.readUInt32BE(p) * 1000);
    if (length === 8) {
      const hi = this.src.readUInt32BE(p);
      const lo = this.src.readUInt32BE(p + 4);
      const nanos = hi >>> 2;
      const seconds = (hi & 0x3) * 0x100000000 + lo;
      return new Date(seconds * 1000 + nanos / 1e6);
    }
    const nanos = this.src.readUInt32BE(p);
    const seconds = this.src.readInt32BE(p + 4) * 0x100000000 + this.src.readUInt32BE(p + 8);
    return new Date(seconds * 1000 + nanos / 1e6);
  }

  readArray(length: number, depth: number): unknown[] {
    if (depth > MAX_DEPTH) this.tooDeep();
    // Every element takes at least one byte: a huge announced count fails before any allocation.
    if (length > this.end - this.pos) this.truncated();
    const out = new Array<unknown>(length);
    for (let i = 0; i < length; i++) out[i] = this.readValue(depth + 1);
    return out;
  }

  readMap(length: number, depth: number): Record<string, unknown> {
    if (depth > MAX_DEPTH) this.tooDeep();
    if (length * 2 > this.end - this.pos) this.truncated();
    const out: Record<string, unknown> = {};
    for (let i = 0; i < length; i++) {
      const key = this.readKey(depth + 1);
      const value = this.readValue(depth + 1);
      if (key === undefined) continue;
      if (key === '__proto__') {
        Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
      } else {
        out[key] = value;
      }
    }
    return out;
  }

  /** A map key as a property name: str as is, numbers as their decimal text; undefined (and `keyError` set) for other types. */
  readKey(depth: number): string | undefined {
    if (this.pos >= this.end) this.truncated();
    const b = this.src[this.pos]!;
    if (b >= 0xa0 && b <= 0xbf) {
      this.pos++;
      return this.readString(b & 0x1f);
    }
    const key = this.readValue(depth);
    if (typeof key === 'string') return key;
    if (typeof key === 'number' || typeof key === 'bigint') return String(key);
    this.keyError ??= bad(`map key of type ${key === null ? 'nil' : Buffer.isBuffer(key) ? 'bin' : typeof key} is not supported`);
    return undefined;
  }

  /** One complete value; `depth` is its nesting level were it an array or a map. */
  readValue(depth: number): unknown {
    if (this.pos >= this.end) this.truncated();
    const b = this.src[this.pos++]!;
    if (b < 0x80) return b;
    if (b < 0x90) return this.readMap(b & 0x0f, depth);
    if (b < 0xa0) return this.readArray(b & 0x0f, depth);
    if (b < 0xc0) return this.readString(b & 0x1f);
    if (b >= 0xe0) return b - 0x100;
    switch (b) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        return this.readBin(this.readLength(1));
      case 0xc5:
        return this.readBin(this.readLength(2));
      case 0xc6:
        return this.readBin(this.readLength(4));
      case 0xc7: {
        // ext 8: only the 12-byte timestamp
        const p = this.need(2);
        if (this.src[p] !== 12 || this.src[p + 1] !== 0xff) this.unsupportedExt(p + 1);
        return this.readTimestamp(this.need(12), 12);
      }
      case 0xc8: // ext 16
        return this.unsupportedExt(this.pos + 2);
      case 0xc9: // ext 32
        return this.unsupportedExt(this.pos + 4);
      case 0xca:
        return this.src.readFloatBE(this.need(4));
      case 0xcb:
        return this.src.readDoubleBE(this.need(8));
      case 0xcc:
        return this.src[this.need(1)]!;
      case 0xcd:
        return this.readLength(2);
      case 0xce:
        return this.readLength(4);
      case 0xcf:
        return this.readInt64(false);
      case 0xd0:
        return (this.src[this.need(1)]! << 24) >> 24;
      case 0xd1:
        return this.src.readInt16BE(this.need(2));
      case 0xd2:
        return this.src.readInt32BE(this.need(4));
      case 0xd3:
        return this.readInt64(true);
      case 0xd6: // fixext 4
      case 0xd7: {
        // fixext 8
        const length = b === 0xd6 ? 4 : 8;
        const p = this.need(1);
        if (this.src[p] !== 0xff) this.unsupportedExt(p);
        return this.readTimestamp(this.need(length), length);
      }
      case 0xd4: // fixext 1
      case 0xd5: // fixext 2
      case 0xd8: // fixext 16
        return this.unsupportedExt(this.pos);
      case 0xd9:
        return this.readString(this.readLength(1));
      case 0xda:
        return this.readString(this.readLength(2));
      case 0xdb:
        return this.readString(this.readLength(4));
      case 0xdc:
        return this.readArray(this.readLength(2), depth);
      case 0xdd:
        return this.readArray(this.readLength(4), depth);
      case 0xde:
        return this.readMap(this.readLength(2), depth);
      case 0xdf:
        return this.readMap(this.readLength(4), depth);
      default: // 0xc1 is never used
        throw bad(`invalid MessagePack type byte 0x${b.toString(16)}`);
    }
  }

  /** Reads and discards a value (an envelope key or value we do not use); its key types do not matter. */
  skipValue(): void {
    const saved = this.keyError;
    this.readValue(2);
    this.keyError = saved;
  }
}
