/**
 * The fast MessagePack writer: one pass over a value, byte for byte what
 * msgpackr (plain MessagePack: no records, no structured clone, no bundled
 * strings) would write, except that it refuses what no decoder of ours would
 * accept (nesting deeper than {@link MAX_DEPTH}, a message beyond
 * `maxPayload`, Map keys that are not strings or numbers, invalid Dates) and
 * writes typed arrays as their bytes (see the encoder notes below). Builds
 * on node:buffer and limits.ts; the envelope (envelope.ts) and our own
 * layouts (layouts.ts) say what to write.
 * @module
 */
import { Buffer } from 'node:buffer';
import type { Options as MsgpackrOptions } from 'msgpackr';
import { InvalidArgumentError } from '../../errors.js';
import { MAX_DEPTH } from './limits.js';

/**
 * msgpackr options whose output our encoder reproduces byte for
 * byte (test/rpc/codec-diff.test.ts checks it): standard MessagePack only,
 * compact maps (fixmap/map16/map32 by size), nil for `undefined`. msgpackr
 * itself is not used to encode (see the encoder below).
 */
export const packrOptions: MsgpackrOptions = {
  useRecords: false,
  mapsAsObjects: true,
  moreTypes: false,
  structuredClone: false,
  bundleStrings: false,
  sequential: false,
  variableMapSize: true,
  encodeUndefinedAsNil: true,
};

/*
 * Our encoder: one pass over the value, straight after the prefix, writing
 * byte for byte what msgpackr writes with packrOptions for everything it
 * writes as standard MessagePack: nil, booleans, numbers, bigints of up to
 * 64 bits, strings, arrays, plain objects and class instances (their own
 * enumerable properties), Maps, Dates (timestamp extension -1), Sets (as
 * arrays), Errors (`[name, message, cause]`), RegExps (`[source, flags]`),
 * `toJSON` results, functions (nil), and byte views and ArrayBuffers (bin).
 *
 * It refuses, with InvalidArgumentError, whatever the decoder (ours, and so
 * every snakemq-ts peer) would refuse or msgpackr would write wrongly:
 * - arrays/maps nested deeper than MAX_DEPTH (which also stops a circular
 *   value), with the decoder's way of counting;
 * - a message beyond maxPayload: the write stops as soon as it is exceeded;
 * - Map keys other than strings, numbers and bigints, invalid Dates,
 *   symbols, bigints beyond 64 bits.
 * And it writes typed arrays other than Uint8Array, and DataViews, as a bin
 * of their bytes (their own view of their buffer): msgpackr writes a bin
 * header of their byte length followed by their element values truncated
 * to bytes, leaving the rest of the bin whatever its buffer held before
 * (bytes of earlier messages would leak).
 *
 * Small messages go into the writer's slab (each result a view of it, like
 * Node's own small Buffers); a message outgrowing what is left of the slab
 * moves to a buffer of its own, which grows (copying what was written, at
 * least doubling) up to maxPayload. A result in its own buffer never pins
 * a buffer more than 1/8 larger than itself: it is copied out otherwise.
 */
const SLAB_SIZE = 8192;
/** A new slab is started when less than this is left in the current one. */
const SLAB_MIN_FREE = 1024;
/** The first buffer of its own for a message outgrowing the slab. */
const OWN_MIN = 16 * 1024;
/** Extra room when a buffer grows for one large item (so that the bytes after it fit without growing again). */
const GROW_SLACK = 64;
/** `room()` asks for up to this many bytes more than what is written: a message may be written this far past maxPayload before it is measured. */
const ROOM_SLACK = 16;

/** Thrown (never escapes the codec) when the message grows beyond maxPayload. */
const TOO_LARGE = new Error('larger than maxPayload');
/** Thrown when arrays/maps nest deeper than MAX_DEPTH. */
const TOO_DEEP = new Error('nested too deep');

/** A value the encoder refuses (turned into InvalidArgumentError by encodeError). */
class Refused extends Error {}

const bufferToJSON = Buffer.prototype.toJSON;
const dateToJSON = Date.prototype.toJSON;
const TypedArray = Object.getPrototypeOf(Uint8Array) as abstract new () => ArrayBufferView;

/** What a message written inside another one (see {@link MsgpackWriter.begin}) saves of the outer one. */
export interface OuterMessage {
  readonly buf: Buffer;
  readonly base: number;
  readonly o: number;
  readonly limit: number;
  readonly jsonHops: number;
}

/** @internal Turns what stopped a write into the error the caller gets. */
export function encodeError(what: string, error: unknown, maxPayload: number): InvalidArgumentError {
  if (error === TOO_LARGE) return new InvalidArgumentError(`${what} is larger than maxPayload (${maxPayload} bytes)`);
  if (error === TOO_DEEP) {
    return new InvalidArgumentError(`${what} nests arrays/maps deeper than ${MAX_DEPTH} levels (or is circular), which no peer would decode`);
  }
  if (error instanceof Refused) return new InvalidArgumentError(`${what} cannot be encoded as MessagePack: ${error.message}`);
  // A getter or toJSON that threw.
  return new InvalidArgumentError(`${what} cannot be encoded: reading it threw`, { cause: error });
}

/**
 * The state of the messages being written: the slab, the buffer
 * being written (`buf`: the slab, or one of the message's own), where the
 * message starts in it (`base`) and the write position (`o`). Contract: a
 * message is written between {@link begin} and {@link finish} (then
 * {@link restore} with what `begin` returned, in a `finally`), see
 * {@link encode}; the `write…` methods append at `o`, after `room(n)` for
 * raw writes to `buf`. A message written while another is (a getter or
 * `toJSON` of the outer one's value encodes one with the same writer) gets a
 * buffer of its own and leaves the outer one's state as it was. One writer
 * per owner (an RpcClient, an RpcServer, the module-level functions of
 * codec.ts): writers share nothing.
 */
export class MsgpackWriter {
  private slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
  private slabUsed = 0;
  buf: Buffer = this.slab;
  base = 0;
  o = 0;
  /** Most bytes the message being written may take (its maxPayload + ROOM_SLACK). */
  private limit = 0;
  /** `toJSON` results being written one inside another (bounded: a toJSON may return another object with a toJSON). */
  private jsonHops = 0;
  /** A message is being written. */
  private encoding = false;

  /**
   * Writes one message with `write` and returns its bytes (see the encoder
   * notes above).
   * @throws {InvalidArgumentError} refused value, too deep, or larger than `maxPayload`.
   */
  encode<T>(what: string, write: (out: MsgpackWriter, message: T) => void, message: T, maxPayload: number): Buffer {
    const outer = this.begin(maxPayload);
    try {
      try {
        write(this, message);
      } catch (error) {
        throw encodeError(what, error, maxPayload);
      }
      return this.finish(what, maxPayload);
    } finally {
      this.restore(outer);
    }
  }

  /** Starts a message; returns the outer message's state when one is being written. */
  begin(maxPayload: number): OuterMessage | undefined {
    const nested = this.encoding;
    const outer = nested ? { buf: this.buf, base: this.base, o: this.o, limit: this.limit, jsonHops: this.jsonHops } : undefined;
    if (nested) {
      this.buf = Buffer.allocUnsafeSlow(SLAB_MIN_FREE);
      this.base = this.o = 0;
    } else {
      this.encoding = true;
      if (SLAB_SIZE - this.slabUsed < SLAB_MIN_FREE) {
        this.slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
        this.slabUsed = 0;
      }
      this.buf = this.slab;
      this.base = this.o = this.slabUsed;
    }
    this.limit = maxPayload + ROOM_SLACK;
    this.jsonHops = 0;
    return outer;
  }

  /** The bytes of the message written since {@link begin}. */
  finish(what: string, maxPayload: number): Buffer {
    const size = this.o - this.base;
    if (size > maxPayload) throw new InvalidArgumentError(`${what} of ${size} bytes exceeds maxPayload (${maxPayload} bytes)`);
    if (this.buf === this.slab) {
      this.slabUsed = (this.o + 7) & ~7; // the next message starts word-aligned
      return this.slab.subarray(this.base, this.o);
    }
    if (this.buf.length - size <= size >>> 3) return this.buf.subarray(0, size);
    const out = Buffer.allocUnsafeSlow(size);
    this.buf.copy(out, 0, 0, size);
    return out;
  }

  /** Ends a message (written or failed): back to the outer message, or to no message. */
  restore(outer: OuterMessage | undefined): void {
    if (outer !== undefined) {
      ({ buf: this.buf, base: this.base, o: this.o, limit: this.limit, jsonHops: this.jsonHops } = outer);
    } else {
      this.encoding = false;
      this.buf = this.slab; // not the message's own buffer: that one is the caller's now, or garbage
    }
  }

  room(bytes: number): void {
    if (this.o + bytes > this.buf.length) this.grow(bytes);
  }

  /** Moves the message to a larger buffer of its own. */
  grow(bytes: number): void {
    const used = this.o - this.base;
    const needed = used + bytes;
    if (needed > this.limit) throw TOO_LARGE;
    const next = Buffer.allocUnsafeSlow(Math.min(this.limit, Math.max(needed + GROW_SLACK, used * 2, OWN_MIN)));
    this.buf.copy(next, 0, this.base, this.o);
    this.buf = next;
    this.base = 0;
    this.o = used;
  }

  writeBytes(bytes: Uint8Array): void {
    const n = bytes.length;
    this.room(n);
    if (n <= 32) {
      for (let i = 0; i < n; i++) this.buf[this.o + i] = bytes[i]!;
    } else {
      this.buf.set(bytes, this.o);
    }
    this.o += n;
  }

  writeStrHeader(length: number): void {
    this.room(5);
    if (length < 0x20) this.buf[this.o++] = 0xa0 | length;
    else if (length < 0x100) {
      this.buf[this.o++] = 0xd9;
      this.buf[this.o++] = length;
    } else if (length < 0x10000) {
      this.buf[this.o++] = 0xda;
      this.buf[this.o++] = length >> 8;
      this.buf[this.o++] = length & 0xff;
    } else {
      this.buf[this.o++] = 0xdb;
      this.buf.writeUInt32BE(length, this.o);
      this.o += 4;
    }
  }
  writeString(s: string): void {
    const n = s.length;
    if (n < 0x20) {
      // Short ASCII: fixstr, written in one pass.
      this.room(1 + n);
      let p = this.o + 1;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        this.buf[p++] = c;
      }
      if (i === n) {
        this.buf[this.o] = 0xa0 | n;
        this.o = p;
        return;
      }
    }
    if (n < 0x40) {
      // msgpackr encodes strings this short in JS (a lone surrogate as 3 bytes): the same here.
      let length = 0;
      for (let i = 0; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c < 0x80) length += 1;
        else if (c < 0x800) length += 2;
        else if ((c & 0xfc00) === 0xd800 && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
          length += 4;
          i++;
        } else length += 3;
      }
      this.writeStrHeader(length);
      this.room(length);
      for (let i = 0; i < n; i++) {
        let c = s.charCodeAt(i);
        let c2: number;
        if (c < 0x80) this.buf[this.o++] = c;
        else if (c < 0x800) {
          this.buf[this.o++] = (c >> 6) | 0xc0;
          this.buf[this.o++] = (c & 0x3f) | 0x80;
        } else if ((c & 0xfc00) === 0xd800 && ((c2 = s.charCodeAt(i + 1)) & 0xfc00) === 0xdc00) {
          c = 0x10000 + ((c & 0x03ff) << 10) + (c2 & 0x03ff);
          i++;
          this.buf[this.o++] = (c >> 18) | 0xf0;
          this.buf[this.o++] = ((c >> 12) & 0x3f) | 0x80;
          this.buf[this.o++] = ((c >> 6) & 0x3f) | 0x80;
          this.buf[this.o++] = (c & 0x3f) | 0x80;
        } else {
          this.buf[this.o++] = (c >> 12) | 0xe0;
          this.buf[this.o++] = ((c >> 6) & 0x3f) | 0x80;
          this.buf[this.o++] = (c & 0x3f) | 0x80;
        }
      }
      return;
    }
    // Longer strings: msgpackr uses Buffer's UTF-8 writer (a lone surrogate becomes U+FFFD), so do we.
    if (n * 3 + 5 > this.buf.length - this.o) {
      const length = Buffer.byteLength(s, 'utf8');
      this.writeStrHeader(length);
      this.room(length);
    } else this.writeStrHeader(Buffer.byteLength(s, 'utf8'));
    this.o += this.buf.write(s, this.o, 'utf8');
  }

  writeNumber(v: number): void {
    this.room(9);
    if (v >>> 0 === v) {
      if (v < 0x80) this.buf[this.o++] = v;
      else if (v < 0x100) {
        this.buf[this.o++] = 0xcc;
        this.buf[this.o++] = v;
      } else if (v < 0x10000) {
        this.buf[this.o++] = 0xcd;
        this.buf[this.o++] = v >> 8;
        this.buf[this.o++] = v & 0xff;
      } else {
        this.buf[this.o++] = 0xce;
        this.buf.writeUInt32BE(v, this.o);
        this.o += 4;
      }
    } else if (v >> 0 === v) {
      if (v >= -0x20) this.buf[this.o++] = 0x100 + v;
      else if (v >= -0x80) {
        this.buf[this.o++] = 0xd0;
        this.buf[this.o++] = v + 0x100;
      } else if (v >= -0x8000) {
        this.buf[this.o++] = 0xd1;
        this.buf.writeInt16BE(v, this.o);
        this.o += 2;
      } else {
        this.buf[this.o++] = 0xd2;
        this.buf.writeInt32BE(v, this.o);
        this.o += 4;
      }
    } else {
      this.buf[this.o++] = 0xcb;
      this.buf.writeDoubleBE(v, this.o);
      this.o += 8;
    }
  }

  writeBigInt(v: bigint): void {
    this.room(9);
    if (v < 0x8000000000000000 && v >= -0x8000000000000000) {
      this.buf[this.o++] = 0xd3;
      this.buf.writeBigInt64BE(v, this.o);
    } else if (v < 0x10000000000000000 && v > 0) {
      this.buf[this.o++] = 0xcf;
      this.buf.writeBigUInt64BE(v, this.o);
    } else {
      throw new Refused('a bigint beyond 64 bits');
    }
    this.o += 8;
  }

  /** The bytes of a byte view (any typed array, a DataView) as bin: the bytes it views, whatever its element type. */
  writeBin(v: ArrayBufferView): void {
    const n = v.byteLength;
    this.room(5 + n);
    if (n < 0x100) {
      this.buf[this.o++] = 0xc4;
      this.buf[this.o++] = n;
    } else if (n < 0x10000) {
      this.buf[this.o++] = 0xc5;
      this.buf[this.o++] = n >> 8;
      this.buf[this.o++] = n & 0xff;
    } else {
      this.buf[this.o++] = 0xc6;
      this.buf.writeUInt32BE(n, this.o);
      this.o += 4;
    }
    this.writeBytes(v instanceof Uint8Array ? v : new Uint8Array(v.buffer, v.byteOffset, n));
  }

  /** A Date as msgpackr writes it: timestamp 32, 64 or 96. An invalid date (msgpackr's fixext 1, which no decoder of ours accepts) is refused. */
  writeDate(d: Date): void {
    this.room(15);
    const seconds = d.getTime() / 1000;
    if (Number.isNaN(seconds)) throw new Refused('an invalid Date');
    if (d.getMilliseconds() === 0 && seconds >= 0 && seconds < 0x100000000) {
      this.buf[this.o++] = 0xd6;
      this.buf[this.o++] = 0xff;
      this.buf.writeUInt32BE(seconds, this.o);
      this.o += 4;
    } else if (seconds > 0 && seconds < 0x100000000) {
      this.buf[this.o++] = 0xd7;
      this.buf[this.o++] = 0xff;
      this.buf.writeUInt32BE(d.getMilliseconds() * 4000000, this.o);
      this.buf.writeUInt32BE(seconds >>> 0, this.o + 4);
      this.o += 8;
    } else {
      this.buf[this.o++] = 0xc7;
      this.buf[this.o++] = 12;
      this.buf[this.o++] = 0xff;
      this.buf.writeUInt32BE(d.getMilliseconds() * 1000000, this.o);
      this.buf.writeBigInt64BE(BigInt(Math.floor(seconds)), this.o + 4);
      this.o += 12;
    }
  }

  writeContainerHeader(length: number, fix: number, b16: number): void {
    this.room(5);
    if (length < 0x10) this.buf[this.o++] = fix | length;
    else if (length < 0x10000) {
      this.buf[this.o++] = b16;
      this.buf[this.o++] = length >> 8;
      this.buf[this.o++] = length & 0xff;
    } else {
      this.buf[this.o++] = b16 + 1;
      this.buf.writeUInt32BE(length, this.o);
      this.o += 4;
    }
  }

  /** An array (or array-like msgpackr writes as one) at nesting level `depth`. */
  writeArray(a: readonly unknown[], depth: number): void {
    if (depth > MAX_DEPTH) throw TOO_DEEP;
    const n = a.length;
    this.writeContainerHeader(n, 0x90, 0xdc);
    for (let i = 0; i < n; i++) this.writeValue(a[i], depth + 1);
  }

  /** An object's own enumerable string-keyed properties as a map at nesting level `depth`. */
  writeObject(v: object, depth: number): void {
    if (depth > MAX_DEPTH) throw TOO_DEEP;
    const keys = Object.keys(v);
    const n = keys.length;
    this.writeContainerHeader(n, 0x80, 0xde);
    for (let i = 0; i < n; i++) {
      const key = keys[i]!;
      this.writeString(key);
      this.writeValue((v as Record<string, unknown>)[key], depth + 1);
    }
  }

  writeMap(m: Map<unknown, unknown>, depth: number): void {
    if (depth > MAX_DEPTH) throw TOO_DEEP;
    this.writeContainerHeader(m.size, 0x80, 0xde);
    for (const [key, value] of m) {
      // The decoder takes only str and number keys (a bigint is an int64 key).
      const t = typeof key;
      if (t !== 'string' && t !== 'number' && t !== 'bigint') throw new Refused(`a Map key of type ${key === null ? 'null' : t}`);
      this.writeValue(key, depth + 1);
      this.writeValue(value, depth + 1);
    }
  }

  /** One value; `depth` is its nesting level were it an array or a map (the decoder's count). */
  writeValue(v: unknown, depth: number): void {
    switch (typeof v) {
      case 'number':
        return this.writeNumber(v);
      case 'string':
        return this.writeString(v);
      case 'boolean':
        this.room(1);
        this.buf[this.o++] = v ? 0xc3 : 0xc2;
        return;
      case 'undefined':
        this.room(1);
        this.buf[this.o++] = 0xc0;
        return;
      case 'bigint':
        return this.writeBigInt(v);
      case 'object': {
        if (v === null) {
          this.room(1);
          this.buf[this.o++] = 0xc0;
          return;
        }
        const c = (v as { constructor?: unknown }).constructor;
        if (c === Array) return this.writeArray(v as unknown[], depth);
        if (c === Object) return this.writeObject(v, depth);
        if (c === Map) return this.writeMap(v as Map<unknown, unknown>, depth);
        return this.writeOther(v, c, depth);
      }
      case 'function':
        return this.writeOther(v, Function, depth);
      default:
        throw new Refused(`a ${typeof v}`);
    }
  }

  /**
   * Any other object, as msgpackr writes it: its extension classes in its
   * order (Date, Set, Error, RegExp, ArrayBuffer, typed arrays, DataView; for
   * an instance of a subclass of those, a `toJSON` of its own wins), then
   * arrays (subclasses), `toJSON`, functions (nil), and the own enumerable
   * properties of anything else.
   */
  writeOther(v: object, c: unknown, depth: number): void {
    const toJSON = (v as { toJSON?: unknown }).toJSON;
    const ownJSON = toJSON !== undefined && toJSON !== dateToJSON && toJSON !== bufferToJSON;
    if (c === Buffer || c === Uint8Array) {
      if (!ownJSON) return this.writeBin(v as Uint8Array);
    } else if (v instanceof Date) {
      if (c === Date || !ownJSON) return this.writeDate(v);
    } else if (v instanceof Set) {
      if (c === Set || !ownJSON) return this.writeArray(Array.from(v), depth);
    } else if (v instanceof Error) {
      if (c === Error || !ownJSON) return this.writeArray([v.name, v.message, v.cause], depth);
    } else if (v instanceof RegExp) {
      if (c === RegExp || !ownJSON) return this.writeArray([v.source, v.flags], depth);
    } else if (v instanceof ArrayBuffer) {
      if (c === ArrayBuffer || !ownJSON) return this.writeBin(new Uint8Array(v));
    } else if (v instanceof TypedArray || v instanceof DataView) {
      if (c === DataView || !ownJSON) return this.writeBin(v as ArrayBufferView);
    }
    if (Array.isArray(v)) return this.writeArray(v, depth);
    if (toJSON) {
      const json: unknown = (toJSON as () => unknown).call(v);
      if (json !== v) {
        if (++this.jsonHops > MAX_DEPTH) throw TOO_DEEP;
        this.writeValue(json, depth);
        this.jsonHops--;
        return;
      }
    }
    if (typeof v === 'function') {
      this.room(1);
      this.buf[this.o++] = 0xc0;
      return;
    }
    this.writeObject(v, depth);
  }
}
