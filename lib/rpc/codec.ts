/**
 * Encoding and strict decoding of RPC requests (`rpcreq`) and replies
 * (`rpcrep`): a 6-byte ASCII prefix followed by one MessagePack map.
 *
 * Encoding is our own single pass too, straight after the prefix, byte for
 * byte what msgpackr (plain MessagePack: no records, no structured clone, no
 * bundled strings) would write, except that it refuses what no decoder of
 * ours would accept (nesting deeper than {@link MAX_DEPTH}, a message beyond
 * `maxPayload`, Map keys that are not strings or numbers, invalid Dates) and
 * writes typed arrays as their bytes (see the encoder notes below).
 *
 * Decoding is our own single pass over the bytes, never msgpackr: it accepts
 * only standard MessagePack (nil, bool, int, float, str, bin, array, map, and
 * the timestamp extension -1), so msgpackr's extensions (records, structured
 * clone, Error, RegExp, Set, typed arrays, bundled strings…) are refused
 * like any other extension. It checks every length against the bytes left
 * before allocating anything (a huge announced count cannot make it allocate),
 * refuses nesting deeper than {@link MAX_DEPTH}, truncated data and trailing
 * bytes. Maps become plain objects whose keys are data only: a `__proto__`
 * key is an own property (never the prototype setter), `constructor` an
 * ordinary one; str and integer (and float) keys are accepted, any other key
 * type is an error. Bins are copied, so decoded values never alias the
 * transport's buffers.
 * @module
 */
import { Buffer } from 'node:buffer';
import type { Options as MsgpackrOptions } from 'msgpackr';
import { InvalidArgumentError, RpcBadRequestError } from '../errors.js';
import type { RpcReply, RpcRequest, RpcRequestId } from './types.js';

/** Data prefix of a request (`rpcreq`). */
export const REQUEST_PREFIX: Buffer = Buffer.from('rpcreq', 'ascii');
/** Data prefix of a reply (`rpcrep`). */
export const REPLY_PREFIX: Buffer = Buffer.from('rpcrep', 'ascii');

const PREFIX_LENGTH = 6;

/** Default largest RPC message (prefix included) encoded or accepted: 16 MiB. */
export const DEFAULT_MAX_PAYLOAD = 16 * 1024 * 1024;

/**
 * Deepest nesting of arrays/maps in a message, the same limit for encoding
 * and decoding: the envelope map counts as 1 and `args` as 2, so an argument
 * may nest 254 levels and a result or exception 255. Encoding a deeper (or
 * circular) value throws `InvalidArgumentError`; decoding one gives
 * `RpcBadRequestError`. Dates and bins do not count; a `toJSON` result
 * counts as what it returns.
 */
export const MAX_DEPTH = 256;

/** Longest request id accepted, in bytes. */
export const MAX_REQ_ID_LENGTH = 256;

/** Limits of {@link encodeRequest} and friends. */
export interface CodecLimits {
  /** Largest message in bytes, prefix included. @default 16 MiB */
  maxPayload?: number;
}

const EMPTY_BUFFER = Buffer.alloc(0);

// --- encoding --------------------------------------------------------------------------

/**
 * @internal msgpackr options whose output our encoder reproduces byte for
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
 * Small messages go into a shared slab (each result a view of it, like
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

let slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
let slabUsed = 0;
/** The buffer being written (the slab, or one of the message's own), where the message starts in it, and the write position. */
let w: Buffer = slab;
let base = 0;
let o = 0;
/** Most bytes the message being written may take (its maxPayload + ROOM_SLACK). */
let limit = 0;
/** `toJSON` results being written one inside another (bounded: a toJSON may return another object with a toJSON). */
let jsonHops = 0;

/** Thrown (never escapes this module) when the message grows beyond maxPayload. */
const TOO_LARGE = new Error('larger than maxPayload');
/** Thrown when arrays/maps nest deeper than MAX_DEPTH. */
const TOO_DEEP = new Error('nested too deep');

/** A value the encoder refuses (turned into InvalidArgumentError by encodeMessage). */
class Refused extends Error {}

const bufferToJSON = Buffer.prototype.toJSON;
const dateToJSON = Date.prototype.toJSON;
const TypedArray = Object.getPrototypeOf(Uint8Array) as abstract new () => ArrayBufferView;

function room(bytes: number): void {
  if (o + bytes > w.length) grow(bytes);
}

/** Moves the message to a larger buffer of its own. */
function grow(bytes: number): void {
  const used = o - base;
  const needed = used + bytes;
  if (needed > limit) throw TOO_LARGE;
  const next = Buffer.allocUnsafeSlow(Math.min(limit, Math.max(needed + GROW_SLACK, used * 2, OWN_MIN)));
  w.copy(next, 0, base, o);
  w = next;
  base = 0;
  o = used;
}

function writeBytes(bytes: Uint8Array): void {
  const n = bytes.length;
  room(n);
  if (n <= 32) {
    for (let i = 0; i < n; i++) w[o + i] = bytes[i]!;
  } else {
    w.set(bytes, o);
  }
  o += n;
}

function writeStrHeader(length: number): void {
  room(5);
  if (length < 0x20) w[o++] = 0xa0 | length;
  else if (length < 0x100) {
    w[o++] = 0xd9;
    w[o++] = length;
  } else if (length < 0x10000) {
    w[o++] = 0xda;
    w[o++] = length >> 8;
    w[o++] = length & 0xff;
  } else {
    w[o++] = 0xdb;
    w.writeUInt32BE(length, o);
    o += 4;
  }
}
function writeString(s: string): void {
  const n = s.length;
  if (n < 0x20) {
    // Short ASCII: fixstr, written in one pass.
    room(1 + n);
    let p = o + 1;
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      w[p++] = c;
    }
    if (i === n) {
      w[o] = 0xa0 | n;
      o = p;
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
    writeStrHeader(length);
    room(length);
    for (let i = 0; i < n; i++) {
      let c = s.charCodeAt(i);
      let c2: number;
      if (c < 0x80) w[o++] = c;
      else if (c < 0x800) {
        w[o++] = (c >> 6) | 0xc0;
        w[o++] = (c & 0x3f) | 0x80;
      } else if ((c & 0xfc00) === 0xd800 && ((c2 = s.charCodeAt(i + 1)) & 0xfc00) === 0xdc00) {
        c = 0x10000 + ((c & 0x03ff) << 10) + (c2 & 0x03ff);
        i++;
        w[o++] = (c >> 18) | 0xf0;
        w[o++] = ((c >> 12) & 0x3f) | 0x80;
        w[o++] = ((c >> 6) & 0x3f) | 0x80;
        w[o++] = (c & 0x3f) | 0x80;
      } else {
        w[o++] = (c >> 12) | 0xe0;
        w[o++] = ((c >> 6) & 0x3f) | 0x80;
        w[o++] = (c & 0x3f) | 0x80;
      }
    }
    return;
  }
  // Longer strings: msgpackr uses Buffer's UTF-8 writer (a lone surrogate becomes U+FFFD), so do we.
  if (n * 3 + 5 > w.length - o) {
    const length = Buffer.byteLength(s, 'utf8');
    writeStrHeader(length);
    room(length);
  } else writeStrHeader(Buffer.byteLength(s, 'utf8'));
  o += w.write(s, o, 'utf8');
}

function writeNumber(v: number): void {
  room(9);
  if (v >>> 0 === v) {
    if (v < 0x80) w[o++] = v;
    else if (v < 0x100) {
      w[o++] = 0xcc;
      w[o++] = v;
    } else if (v < 0x10000) {
      w[o++] = 0xcd;
      w[o++] = v >> 8;
      w[o++] = v & 0xff;
    } else {
      w[o++] = 0xce;
      w.writeUInt32BE(v, o);
      o += 4;
    }
  } else if (v >> 0 === v) {
    if (v >= -0x20) w[o++] = 0x100 + v;
    else if (v >= -0x80) {
      w[o++] = 0xd0;
      w[o++] = v + 0x100;
    } else if (v >= -0x8000) {
      w[o++] = 0xd1;
      w.writeInt16BE(v, o);
      o += 2;
    } else {
      w[o++] = 0xd2;
      w.writeInt32BE(v, o);
      o += 4;
    }
  } else {
    w[o++] = 0xcb;
    w.writeDoubleBE(v, o);
    o += 8;
  }
}

function writeBigInt(v: bigint): void {
  room(9);
  if (v < 0x8000000000000000 && v >= -0x8000000000000000) {
    w[o++] = 0xd3;
    w.writeBigInt64BE(v, o);
  } else if (v < 0x10000000000000000 && v > 0) {
    w[o++] = 0xcf;
    w.writeBigUInt64BE(v, o);
  } else {
    throw new Refused('a bigint beyond 64 bits');
  }
  o += 8;
}

/** The bytes of a byte view (any typed array, a DataView) as bin: the bytes it views, whatever its element type. */
function writeBin(v: ArrayBufferView): void {
  const n = v.byteLength;
  room(5 + n);
  if (n < 0x100) {
    w[o++] = 0xc4;
    w[o++] = n;
  } else if (n < 0x10000) {
    w[o++] = 0xc5;
    w[o++] = n >> 8;
    w[o++] = n & 0xff;
  } else {
    w[o++] = 0xc6;
    w.writeUInt32BE(n, o);
    o += 4;
  }
  writeBytes(v instanceof Uint8Array ? v : new Uint8Array(v.buffer, v.byteOffset, n));
}

/** A Date as msgpackr writes it: timestamp 32, 64 or 96. An invalid date (msgpackr's fixext 1, which no decoder of ours accepts) is refused. */
function writeDate(d: Date): void {
  room(15);
  const seconds = d.getTime() / 1000;
  if (Number.isNaN(seconds)) throw new Refused('an invalid Date');
  if (d.getMilliseconds() === 0 && seconds >= 0 && seconds < 0x100000000) {
    w[o++] = 0xd6;
    w[o++] = 0xff;
    w.writeUInt32BE(seconds, o);
    o += 4;
  } else if (seconds > 0 && seconds < 0x100000000) {
    w[o++] = 0xd7;
    w[o++] = 0xff;
    w.writeUInt32BE(d.getMilliseconds() * 4000000, o);
    w.writeUInt32BE(seconds >>> 0, o + 4);
    o += 8;
  } else {
    w[o++] = 0xc7;
    w[o++] = 12;
    w[o++] = 0xff;
    w.writeUInt32BE(d.getMilliseconds() * 1000000, o);
    w.writeBigInt64BE(BigInt(Math.floor(seconds)), o + 4);
    o += 12;
  }
}

function writeContainerHeader(length: number, fix: number, b16: number): void {
  room(5);
  if (length < 0x10) w[o++] = fix | length;
  else if (length < 0x10000) {
    w[o++] = b16;
    w[o++] = length >> 8;
    w[o++] = length & 0xff;
  } else {
    w[o++] = b16 + 1;
    w.writeUInt32BE(length, o);
    o += 4;
  }
}

/** An array (or array-like msgpackr writes as one) at nesting level `depth`. */
function writeArray(a: readonly unknown[], depth: number): void {
  if (depth > MAX_DEPTH) throw TOO_DEEP;
  const n = a.length;
  writeContainerHeader(n, 0x90, 0xdc);
  for (let i = 0; i < n; i++) writeValue(a[i], depth + 1);
}

/** An object's own enumerable string-keyed properties as a map at nesting level `depth`. */
function writeObject(v: object, depth: number): void {
  if (depth > MAX_DEPTH) throw TOO_DEEP;
  const keys = Object.keys(v);
  const n = keys.length;
  writeContainerHeader(n, 0x80, 0xde);
  for (let i = 0; i < n; i++) {
    const key = keys[i]!;
    writeString(key);
    writeValue((v as Record<string, unknown>)[key], depth + 1);
  }
}

function writeMap(m: Map<unknown, unknown>, depth: number): void {
  if (depth > MAX_DEPTH) throw TOO_DEEP;
  writeContainerHeader(m.size, 0x80, 0xde);
  for (const [key, value] of m) {
    // The decoder takes only str and number keys (a bigint is an int64 key).
    const t = typeof key;
    if (t !== 'string' && t !== 'number' && t !== 'bigint') throw new Refused(`a Map key of type ${key === null ? 'null' : t}`);
    writeValue(key, depth + 1);
    writeValue(value, depth + 1);
  }
}

/** One value; `depth` is its nesting level were it an array or a map (the decoder's count). */
function writeValue(v: unknown, depth: number): void {
  switch (typeof v) {
    case 'number':
      return writeNumber(v);
    case 'string':
      return writeString(v);
    case 'boolean':
      room(1);
      w[o++] = v ? 0xc3 : 0xc2;
      return;
    case 'undefined':
      room(1);
      w[o++] = 0xc0;
      return;
    case 'bigint':
      return writeBigInt(v);
    case 'object': {
      if (v === null) {
        room(1);
        w[o++] = 0xc0;
        return;
      }
      const c = (v as { constructor?: unknown }).constructor;
      if (c === Array) return writeArray(v as unknown[], depth);
      if (c === Object) return writeObject(v, depth);
      if (c === Map) return writeMap(v as Map<unknown, unknown>, depth);
      return writeOther(v, c, depth);
    }
    case 'function':
      return writeOther(v, Function, depth);
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
function writeOther(v: object, c: unknown, depth: number): void {
  const toJSON = (v as { toJSON?: unknown }).toJSON;
  const ownJSON = toJSON !== undefined && toJSON !== dateToJSON && toJSON !== bufferToJSON;
  if (c === Buffer || c === Uint8Array) {
    if (!ownJSON) return writeBin(v as Uint8Array);
  } else if (v instanceof Date) {
    if (c === Date || !ownJSON) return writeDate(v);
  } else if (v instanceof Set) {
    if (c === Set || !ownJSON) return writeArray(Array.from(v), depth);
  } else if (v instanceof Error) {
    if (c === Error || !ownJSON) return writeArray([v.name, v.message, v.cause], depth);
  } else if (v instanceof RegExp) {
    if (c === RegExp || !ownJSON) return writeArray([v.source, v.flags], depth);
  } else if (v instanceof ArrayBuffer) {
    if (c === ArrayBuffer || !ownJSON) return writeBin(new Uint8Array(v));
  } else if (v instanceof TypedArray || v instanceof DataView) {
    if (c === DataView || !ownJSON) return writeBin(v as ArrayBufferView);
  }
  if (Array.isArray(v)) return writeArray(v, depth);
  if (toJSON) {
    const json: unknown = (toJSON as () => unknown).call(v);
    if (json !== v) {
      if (++jsonHops > MAX_DEPTH) throw TOO_DEEP;
      writeValue(json, depth);
      jsonHops--;
      return;
    }
  }
  if (typeof v === 'function') {
    room(1);
    w[o++] = 0xc0;
    return;
  }
  writeObject(v, depth);
}

// Envelope keys as MessagePack fixstr, ready to copy.
const fixstr = (name: string): Buffer => Buffer.concat([Buffer.from([0xa0 | name.length]), Buffer.from(name, 'ascii')]);
const E_COMMAND = fixstr('command');
const E_OBJECT = fixstr('object');
const E_METHOD = fixstr('method');
const E_ARGS = fixstr('args');
const E_KWARGS = fixstr('kwargs');
const E_REQ_ID = fixstr('req_id');
const E_OK = fixstr('ok');
const E_RETURN = fixstr('return');
const E_EXCEPTION = fixstr('exception');
const E_EXCEPTION_FORMAT = fixstr('exception_format');
const CALL = fixstr('call');

function writeRequest(r: RpcRequest): void {
  writeBytes(REQUEST_PREFIX);
  room(1);
  w[o++] = r.reqId === undefined ? 0x85 : 0x86;
  writeBytes(E_COMMAND);
  writeString(r.command);
  writeBytes(E_OBJECT);
  writeString(r.object);
  writeBytes(E_METHOD);
  writeString(r.method);
  writeBytes(E_ARGS);
  writeValue(r.args, 2);
  writeBytes(E_KWARGS);
  writeValue(r.kwargs, 2);
  if (r.reqId !== undefined) {
    writeBytes(E_REQ_ID);
    writeValue(r.reqId, 2);
  }
}

function writeReply(r: RpcReply): void {
  writeBytes(REPLY_PREFIX);
  room(1);
  w[o++] = r.ok ? 0x83 : 0x84;
  writeBytes(E_REQ_ID);
  writeValue(r.reqId, 2);
  writeBytes(E_OK);
  room(1);
  if (r.ok) {
    w[o++] = 0xc3;
    writeBytes(E_RETURN);
    writeValue(r.value, 2);
  } else {
    w[o++] = 0xc2;
    writeBytes(E_EXCEPTION);
    writeValue(r.exception, 2);
    writeBytes(E_EXCEPTION_FORMAT);
    writeValue(r.exceptionFormat, 2);
  }
}


/** Turns what stopped a write into the error the caller gets. */
function encodeError(what: string, error: unknown, maxPayload: number): InvalidArgumentError {
  if (error === TOO_LARGE) return new InvalidArgumentError(`${what} is larger than maxPayload (${maxPayload} bytes)`);
  if (error === TOO_DEEP) {
    return new InvalidArgumentError(`${what} nests arrays/maps deeper than ${MAX_DEPTH} levels (or is circular), which no peer would decode`);
  }
  if (error instanceof Refused) return new InvalidArgumentError(`${what} cannot be encoded as MessagePack: ${error.message}`);
  // A getter or toJSON that threw.
  return new InvalidArgumentError(`${what} cannot be encoded: reading it threw`, { cause: error });
}

/** A message is being written (a getter or toJSON it runs may encode another one: see encodeMessage). */
let encoding = false;

/**
 * Writes one message with `write` and returns its bytes (see the encoder
 * notes above). A message encoded while another is being written (by a
 * getter or toJSON of the outer one's value) gets a buffer of its own and
 * leaves the outer one's state as it was.
 * @throws {InvalidArgumentError} refused value, too deep, or larger than `maxPayload`.
 */
function encodeMessage<T>(what: string, write: (message: T) => void, message: T, maxPayload: number): Buffer {
  const nested = encoding;
  const outer = nested ? { w, base, o, limit, jsonHops } : undefined;
  if (nested) {
    w = Buffer.allocUnsafeSlow(SLAB_MIN_FREE);
    base = o = 0;
  } else {
    encoding = true;
    if (SLAB_SIZE - slabUsed < SLAB_MIN_FREE) {
      slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
      slabUsed = 0;
    }
    w = slab;
    base = o = slabUsed;
  }
  limit = maxPayload + ROOM_SLACK;
  jsonHops = 0;
  try {
    try {
      write(message);
    } catch (error) {
      throw encodeError(what, error, maxPayload);
    }
    const size = o - base;
    if (size > maxPayload) throw new InvalidArgumentError(`${what} of ${size} bytes exceeds maxPayload (${maxPayload} bytes)`);
    if (w === slab) {
      slabUsed = (o + 7) & ~7; // the next message starts word-aligned
      return slab.subarray(base, o);
    }
    if (w.length - size <= size >>> 3) return w.subarray(0, size);
    const out = Buffer.allocUnsafeSlow(size);
    w.copy(out, 0, 0, size);
    return out;
  } finally {
    if (outer !== undefined) {
      ({ w, base, o, limit, jsonHops } = outer);
    } else {
      encoding = false;
      w = slab; // not the message's own buffer: that one is the caller's now, or garbage
    }
  }
}

/**
 * Encodes a request as `rpcreq` + MessagePack map with the keys `command`,
 * `object`, `method`, `args`, `kwargs` and (when given) `req_id`.
 * @throws {InvalidArgumentError} a value cannot be encoded (see {@link MAX_DEPTH}), or the message exceeds `maxPayload`.
 */
export function encodeRequest(request: RpcRequest, limits?: CodecLimits): Buffer {
  return encodeMessage('RPC request', writeRequest, request, limits?.maxPayload ?? DEFAULT_MAX_PAYLOAD);
}

function writeCallHead(names: { readonly object: string; readonly method: string }): void {
  writeBytes(REQUEST_PREFIX);
  room(1);
  w[o++] = 0x86;
  writeBytes(E_COMMAND);
  writeBytes(CALL);
  writeBytes(E_OBJECT);
  writeString(names.object);
  writeBytes(E_METHOD);
  writeString(names.method);
  writeBytes(E_ARGS);
}

/**
 * @internal The bytes of a call request up to its `args` value: prefix, map
 * header, `command` `call`, `object`, `method`, and the `args` key. The same
 * for every call of `object.method`; see {@link encodeCall}.
 */
export function encodeCallHead(object: string, method: string): Buffer {
  // Kept for long by clients: a copy, not a view of the slab.
  return Buffer.from(encodeMessage('RPC request', writeCallHead, { object, method }, Infinity));
}

/** After the args of a call: `kwargs` {}, `req_id` and the header of its 16-byte bin. */
const CALL_TAIL = Buffer.concat([E_KWARGS, Buffer.from([0x80]), E_REQ_ID, Buffer.from([0xc4, 16])]);

// The call being written by writeCall.
let callHead: Buffer = EMPTY_BUFFER;
let callIdTemplate: Buffer = EMPTY_BUFFER;
let callId = 0;

function writeCall(args: readonly unknown[]): void {
  const head = callHead;
  const template = callIdTemplate;
  const id = callId;
  writeBytes(head);
  writeValue(args, 2);
  room(CALL_TAIL.length + 16);
  for (let i = 0; i < CALL_TAIL.length; i++) w[o++] = CALL_TAIL[i]!;
  for (let i = 0; i < 8; i++) w[o++] = template[i]!;
  writeId(id);
}

/** `id` as a big-endian uint64 (ids stay far below 2^53). */
function writeId(id: number): void {
  const hi = Math.floor(id / 0x100000000);
  const lo = id >>> 0;
  w[o++] = hi >>> 24;
  w[o++] = (hi >>> 16) & 0xff;
  w[o++] = (hi >>> 8) & 0xff;
  w[o++] = hi & 0xff;
  w[o++] = lo >>> 24;
  w[o++] = (lo >>> 16) & 0xff;
  w[o++] = (lo >>> 8) & 0xff;
  w[o++] = lo & 0xff;
}

/**
 * @internal Encodes a call of ours: `head` from {@link encodeCallHead}, then
 * `args`, `kwargs` {}, and a `req_id` of the first 8 bytes of `idTemplate`
 * (16 bytes) followed by `id` as a big-endian uint64. The request id ends
 * the data, so its last 16 bytes identify the call; see {@link readCallIdAt}.
 * The bytes are those of {@link encodeRequest} for the same call.
 * @throws {InvalidArgumentError} `args` cannot be encoded (see {@link MAX_DEPTH}), or the message exceeds `maxPayload`.
 */
export function encodeCall(head: Buffer, args: readonly unknown[], idTemplate: Buffer, id: number, limits?: CodecLimits): Buffer {
  // writeCall reads these before it writes args, whose getters may encode another call.
  callHead = head;
  callIdTemplate = idTemplate;
  callId = id;
  const out = encodeMessage('RPC request', writeCall, args, limits?.maxPayload ?? DEFAULT_MAX_PAYLOAD);
  callHead = callIdTemplate = EMPTY_BUFFER;
  return out;
}

/** @internal The `id` of a request id made by {@link encodeCall} with `idTemplate`, or -1 when it is not one of those. */
export function readCallId(reqId: RpcRequestId, idTemplate: Buffer): number {
  if (typeof reqId === 'string' || reqId.length !== 16) return -1;
  return readCallIdAt(reqId, 0, idTemplate);
}

/** @internal Like {@link readCallId}, for the 16 bytes at `offset` of `data`. */
export function readCallIdAt(data: Buffer, offset: number, idTemplate: Buffer): number {
  for (let i = 0; i < 8; i++) if (data[offset + i] !== idTemplate[i]) return -1;
  return data.readUInt32BE(offset + 8) * 0x100000000 + data.readUInt32BE(offset + 12);
}

/**
 * Encodes a reply as `rpcrep` + MessagePack map: `req_id`, `ok`, and either
 * `return`, or `exception` and `exception_format`.
 * @throws {InvalidArgumentError} a value cannot be encoded (see {@link MAX_DEPTH}), or the message exceeds `maxPayload`.
 */
export function encodeReply(reply: RpcReply, limits?: CodecLimits): Buffer {
  return encodeMessage('RPC reply', writeReply, reply, limits?.maxPayload ?? DEFAULT_MAX_PAYLOAD);
}

// --- decoding ----------------------------------------------------------------------------

function bad(message: string, cause?: unknown): RpcBadRequestError {
  return new RpcBadRequestError(message, cause === undefined ? undefined : { cause });
}


// State of the decode in progress (decoding is synchronous and calls no user code).
let src: Buffer = EMPTY_BUFFER;
let pos = 0;
let end = 0;
/**
 * The first map key of an unsupported type met while reading the current
 * envelope value. Such a key does not stop the decode (the bytes must still
 * be checked to the end, and the request id read): the envelope reader
 * reports it for the field it was found in.
 */
let keyError: RpcBadRequestError | null = null;

type Utf8Slice = (this: Buffer, start: number, end: number) => string;
const utf8Slice: Utf8Slice =
  (Buffer.prototype as unknown as { utf8Slice?: Utf8Slice }).utf8Slice ??
  function (this: Buffer, start: number, stop: number): string {
    return this.toString('utf8', start, stop);
  };

/**
 * A decode is in progress. Decoding runs no code of ours that could decode
 * again, but storing a map entry would run a setter someone defined on
 * `Object.prototype`: such a nested decode saves and restores the state.
 */
let decoding = false;

function decodeNested<T>(decode: () => T): T {
  const savedSrc = src;
  const savedPos = pos;
  const savedEnd = end;
  const savedKeyError = keyError;
  decoding = false;
  try {
    return decode();
  } finally {
    src = savedSrc;
    pos = savedPos;
    end = savedEnd;
    keyError = savedKeyError;
    decoding = true;
  }
}

function truncated(): never {
  throw bad('truncated MessagePack data');
}

function tooDeep(): never {
  throw bad(`MessagePack nesting deeper than ${MAX_DEPTH}`);
}

function unsupportedExt(typePos: number): never {
  throw bad(`unsupported MessagePack extension type ${typePos < end ? (src[typePos]! << 24) >> 24 : '?'}`);
}

/** A big-endian unsigned length of `bytes` (1, 2 or 4) bytes. */
function readLength(bytes: number): number {
  if (bytes > end - pos) truncated();
  const p = pos;
  pos += bytes;
  if (bytes === 1) return src[p]!;
  if (bytes === 2) return (src[p]! << 8) | src[p + 1]!;
  return src[p]! * 0x1000000 + ((src[p + 1]! << 16) | (src[p + 2]! << 8) | src[p + 3]!);
}

function need(bytes: number): number {
  if (bytes > end - pos) truncated();
  const p = pos;
  pos += bytes;
  return p;
}

/**
 * Recently decoded short ASCII strings (map keys, object and method names
 * come again and again), direct-mapped by a hash of their bytes. A hit is
 * checked byte for byte, so it only saves building the string (and gives
 * the same string object, whose hash V8 already knows, to Map lookups).
 */
const SHORT_STRING = 16;
const stringCache: (string | undefined)[] = new Array<string | undefined>(1024).fill(undefined);

function readString(length: number): string {
  if (length > end - pos) truncated();
  const start = pos;
  const stop = (pos += length);
  if (length > SHORT_STRING) return utf8Slice.call(src, start, stop);
  let h = length;
  for (let i = start; i < stop; i++) {
    const c = src[i]!;
    if (c >= 0x80) return utf8Slice.call(src, start, stop);
    h = (Math.imul(h, 31) + c) | 0;
  }
  const slot = (h ^ (h >>> 10)) & 1023;
  const cached = stringCache[slot];
  if (cached !== undefined && cached.length === length) {
    let i = 0;
    while (i < length && cached.charCodeAt(i) === src[start + i]) i++;
    if (i === length) return cached;
  }
  const s = String.fromCharCode.apply(null, src.subarray(start, stop) as unknown as number[]);
  stringCache[slot] = s;
  return s;
}

function readBin(length: number): Buffer {
  if (length > end - pos) truncated();
  const out = Buffer.allocUnsafe(length);
  if (length <= 32) {
    // Cheaper than a native copy for request ids and other small bins.
    for (let i = 0; i < length; i++) out[i] = src[pos + i]!;
  } else {
    src.copy(out, 0, pos, pos + length);
  }
  pos += length;
  return out;
}

/** int64/uint64 as a number when within ±2^53 (like msgpackr's `int64AsType: 'auto'`), else a bigint. */
function readInt64(signed: boolean): number | bigint {
  const p = need(8);
  const lo = src.readUInt32BE(p + 4);
  if (signed) {
    const hi = src.readInt32BE(p);
    if ((hi >= -0x200000 && hi < 0x200000) || (hi === 0x200000 && lo === 0)) return hi * 0x100000000 + lo;
    return src.readBigInt64BE(p);
  }
  const hi = src.readUInt32BE(p);
  if (hi < 0x200000 || (hi === 0x200000 && lo === 0)) return hi * 0x100000000 + lo;
  return src.readBigUInt64BE(p);
}

/** The timestamp extension (type -1) as a Date; `p` is where its data starts. */
function readTimestamp(p: number, length: number): Date {
  if (length === 4) return new Date(src.readUInt32BE(p) * 1000);
  if (length === 8) {
    const hi = src.readUInt32BE(p);
    const lo = src.readUInt32BE(p + 4);
    const nanos = hi >>> 2;
    const seconds = (hi & 0x3) * 0x100000000 + lo;
    return new Date(seconds * 1000 + nanos / 1e6);
  }
  const nanos = src.readUInt32BE(p);
  const seconds = src.readInt32BE(p + 4) * 0x100000000 + src.readUInt32BE(p + 8);
  return new Date(seconds * 1000 + nanos / 1e6);
}

function readArray(length: number, depth: number): unknown[] {
  if (depth > MAX_DEPTH) tooDeep();
  // Every element takes at least one byte: a huge announced count fails before any allocation.
  if (length > end - pos) truncated();
  const out = new Array<unknown>(length);
  for (let i = 0; i < length; i++) out[i] = readValue(depth + 1);
  return out;
}

function readMap(length: number, depth: number): Record<string, unknown> {
  if (depth > MAX_DEPTH) tooDeep();
  if (length * 2 > end - pos) truncated();
  const out: Record<string, unknown> = {};
  for (let i = 0; i < length; i++) {
    const key = readKey(depth + 1);
    const value = readValue(depth + 1);
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
function readKey(depth: number): string | undefined {
  if (pos >= end) truncated();
  const b = src[pos]!;
  if (b >= 0xa0 && b <= 0xbf) {
    pos++;
    return readString(b & 0x1f);
  }
  const key = readValue(depth);
  if (typeof key === 'string') return key;
  if (typeof key === 'number' || typeof key === 'bigint') return String(key);
  keyError ??= bad(`map key of type ${key === null ? 'nil' : Buffer.isBuffer(key) ? 'bin' : typeof key} is not supported`);
  return undefined;
}

/** One complete value; `depth` is its nesting level were it an array or a map. */
function readValue(depth: number): unknown {
  if (pos >= end) truncated();
  const b = src[pos++]!;
  if (b < 0x80) return b;
  if (b < 0x90) return readMap(b & 0x0f, depth);
  if (b < 0xa0) return readArray(b & 0x0f, depth);
  if (b < 0xc0) return readString(b & 0x1f);
  if (b >= 0xe0) return b - 0x100;
  switch (b) {
    case 0xc0:
      return null;
    case 0xc2:
      return false;
    case 0xc3:
      return true;
    case 0xc4:
      return readBin(readLength(1));
    case 0xc5:
      return readBin(readLength(2));
    case 0xc6:
      return readBin(readLength(4));
    case 0xc7: {
      // ext 8: only the 12-byte timestamp
      const p = need(2);
      if (src[p] !== 12 || src[p + 1] !== 0xff) unsupportedExt(p + 1);
      return readTimestamp(need(12), 12);
    }
    case 0xc8: // ext 16
      return unsupportedExt(pos + 2);
    case 0xc9: // ext 32
      return unsupportedExt(pos + 4);
    case 0xca:
      return src.readFloatBE(need(4));
    case 0xcb:
      return src.readDoubleBE(need(8));
    case 0xcc:
      return src[need(1)]!;
    case 0xcd:
      return readLength(2);
    case 0xce:
      return readLength(4);
    case 0xcf:
      return readInt64(false);
    case 0xd0:
      return (src[need(1)]! << 24) >> 24;
    case 0xd1:
      return src.readInt16BE(need(2));
    case 0xd2:
      return src.readInt32BE(need(4));
    case 0xd3:
      return readInt64(true);
    case 0xd6: // fixext 4
    case 0xd7: {
      // fixext 8
      const length = b === 0xd6 ? 4 : 8;
      const p = need(1);
      if (src[p] !== 0xff) unsupportedExt(p);
      return readTimestamp(need(length), length);
    }
    case 0xd4: // fixext 1
    case 0xd5: // fixext 2
    case 0xd8: // fixext 16
      return unsupportedExt(pos);
    case 0xd9:
      return readString(readLength(1));
    case 0xda:
      return readString(readLength(2));
    case 0xdb:
      return readString(readLength(4));
    case 0xdc:
      return readArray(readLength(2), depth);
    case 0xdd:
      return readArray(readLength(4), depth);
    case 0xde:
      return readMap(readLength(2), depth);
    case 0xdf:
      return readMap(readLength(4), depth);
    default: // 0xc1 is never used
      throw bad(`invalid MessagePack type byte 0x${b.toString(16)}`);
  }
}

/** Reads and discards a value (an envelope key or value we do not use); its key types do not matter. */
function skipValue(): void {
  const saved = keyError;
  readValue(2);
  keyError = saved;
}

// Envelope keys, matched on their bytes.
const K_OTHER = 0;
const K_COMMAND = 1;
const K_OBJECT = 2;
const K_METHOD = 3;
const K_ARGS = 4;
const K_KWARGS = 5;
const K_REQ_ID = 6;
const K_OK = 7;
const K_RETURN = 8;
const K_EXCEPTION = 9;
const K_EXCEPTION_FORMAT = 10;
/** Envelope key names by code. */
const KEY_NAMES: readonly Buffer[] = [
  '',
  'command',
  'object',
  'method',
  'args',
  'kwargs',
  'req_id',
  'ok',
  'return',
  'exception',
  'exception_format',
].map((name) => Buffer.from(name, 'ascii'));

/** Reads an envelope key; returns which known key it is (K_OTHER for any other key, of any type). */
function readEnvelopeKey(): number {
  if (pos >= end) truncated();
  const b = src[pos]!;
  let length: number;
  if (b >= 0xa0 && b <= 0xbf) {
    pos++;
    length = b & 0x1f;
  } else if (b === 0xd9 || b === 0xda || b === 0xdb) {
    pos++;
    length = readLength(b === 0xd9 ? 1 : b === 0xda ? 2 : 4);
  } else {
    skipValue();
    return K_OTHER;
  }
  if (length > end - pos) truncated();
  const start = pos;
  pos += length;
  // The one candidate by length and a letter or two, then all its bytes.
  let code: number;
  switch (length) {
    case 2:
      code = K_OK;
      break;
    case 4:
      code = K_ARGS;
      break;
    case 6:
      switch (src[start]) {
        case 0x6f: // o
          code = K_OBJECT;
          break;
        case 0x6d: // m
          code = K_METHOD;
          break;
        case 0x6b: // k
          code = K_KWARGS;
          break;
        case 0x72: // r
          code = src[start + 2] === 0x71 /* q */ ? K_REQ_ID : K_RETURN;
          break;
        default:
          return K_OTHER;
      }
      break;
    case 7:
      code = K_COMMAND;
      break;
    case 9:
      code = K_EXCEPTION;
      break;
    case 16:
      code = K_EXCEPTION_FORMAT;
      break;
    default:
      return K_OTHER;
  }
  const name = KEY_NAMES[code]!;
  for (let i = 0; i < length; i++) if (src[start + i] !== name[i]) return K_OTHER;
  return code;
}

/** Checks size and prefix, starts the decode and returns the envelope map's entry count. */
function openEnvelope(what: string, data: Uint8Array, prefix: Buffer, maxPayload: number): number {
  if (!(data instanceof Uint8Array)) throw bad(`${what} must be bytes`);
  const length = data.byteLength;
  if (length > maxPayload) throw bad(`${what} of ${length} bytes exceeds maxPayload (${maxPayload} bytes)`);
  if (length < PREFIX_LENGTH) throw bad(`${what} does not start with '${prefix.toString('ascii')}'`);
  for (let i = 0; i < PREFIX_LENGTH; i++) {
    if (data[i] !== prefix[i]) throw bad(`${what} does not start with '${prefix.toString('ascii')}'`);
  }
  if (length === PREFIX_LENGTH) throw bad(`${what} has no body`);
  src = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  pos = PREFIX_LENGTH;
  end = length;
  keyError = null;
  const first = src[pos++]!;
  let count: number;
  if (first >= 0x80 && first <= 0x8f) count = first & 0x0f;
  else if (first === 0xde) count = readLength(2);
  else if (first === 0xdf) count = readLength(4);
  else throw bad(`${what} body is not a MessagePack map`);
  if (count * 2 > end - pos) truncated();
  return count;
}

function closeEnvelope(): void {
  if (pos !== end) throw bad(`${end - pos} trailing bytes after the MessagePack value`);
}

function takeKeyError(): RpcBadRequestError | null {
  const e = keyError;
  keyError = null;
  return e;
}

function isMapByte(b: number): boolean {
  return (b >= 0x80 && b <= 0x8f) || b === 0xde || b === 0xdf;
}

function checkReqId(id: unknown, present: boolean, required: boolean): RpcRequestId | undefined {
  if (!present) {
    if (required) throw bad("missing key 'req_id'");
    return undefined;
  }
  if (Buffer.isBuffer(id)) {
    if (id.length === 0 || id.length > MAX_REQ_ID_LENGTH) throw bad(`'req_id' must be 1 to ${MAX_REQ_ID_LENGTH} bytes`);
    return id;
  }
  if (typeof id === 'string') {
    if (id.length === 0 || Buffer.byteLength(id) > MAX_REQ_ID_LENGTH) throw bad(`'req_id' must be 1 to ${MAX_REQ_ID_LENGTH} bytes`);
    return id;
  }
  if (id === null && !required) return undefined;
  throw bad("'req_id' must be bin (or str)");
}

function checkString(present: boolean, value: unknown, key: string): string {
  if (!present) throw bad(`missing key '${key}'`);
  if (typeof value !== 'string') throw bad(`'${key}' must be a string`);
  return value;
}

/** Outcome of {@link tryDecodeRequest}: the request, or the error and whatever request id could be read. */
export type DecodeRequestResult =
  | { readonly ok: true; readonly request: RpcRequest }
  | { readonly ok: false; readonly error: RpcBadRequestError; readonly reqId?: RpcRequestId | undefined; readonly command?: string | undefined };

/**
 * Like {@link decodeRequest} but never throws: on failure it also returns the
 * request id (and command) when those could be read, so the caller can answer.
 */
export function tryDecodeRequest(data: Uint8Array, limits?: CodecLimits): DecodeRequestResult {
  if (decoding) return decodeNested(() => tryDecodeRequest(data, limits));
  decoding = true;
  try {
    return decodeRequestInner(data, limits?.maxPayload ?? DEFAULT_MAX_PAYLOAD);
  } catch (error) {
    return { ok: false, error: asBadRequest(error) };
  } finally {
    decoding = false;
    src = EMPTY_BUFFER;
  }
}

/** A call as snakemq-ts clients write it (encodeCall), up to the object name: prefix, map of 6, `command` `call`, `object`. */
const OWN_CALL_HEAD = Buffer.concat([REQUEST_PREFIX, Buffer.from([0x86]), E_COMMAND, CALL, E_OBJECT]);
/** Shared by calls read on the fast path, whose kwargs are empty (never handed to user code). */
const NO_KWARGS: Record<string, unknown> = Object.freeze({}) as Record<string, unknown>;

/** Whether the bytes at `pos` are `expected`; moves past them when they are. */
function expectBytes(expected: Buffer): boolean {
  const n = expected.length;
  if (n > end - pos) return false;
  for (let i = 0; i < n; i++) if (src[pos + i] !== expected[i]) return false;
  pos += n;
  return true;
}

/**
 * @internal The fast path for a call laid out exactly as snakemq-ts clients
 * write one (string object and method, an args array, empty kwargs, a
 * 16-byte request id, in that order): the request, decoded as strictly as by
 * {@link tryDecodeRequest}, with a shared frozen empty `kwargs`. `undefined`
 * for anything else (another layout, broken bytes): decode that with
 * {@link tryDecodeRequest}. Never throws.
 */
export function decodeOwnCall(data: Buffer, maxPayload: number): RpcRequest | undefined {
  const n = data.length;
  if (n > maxPayload || n < OWN_CALL_HEAD.length + CALL_TAIL.length + 16 || decoding) return undefined;
  decoding = true;
  try {
    src = data;
    pos = 0;
    end = n;
    keyError = null;
    if (!expectBytes(OWN_CALL_HEAD)) return undefined;
    const object = readValue(2);
    if (typeof object !== 'string' || !expectBytes(E_METHOD)) return undefined;
    const method = readValue(2);
    if (typeof method !== 'string' || !expectBytes(E_ARGS)) return undefined;
    const args = readValue(2);
    if (!Array.isArray(args) || keyError !== null || end - pos !== CALL_TAIL.length + 16 || !expectBytes(CALL_TAIL)) return undefined;
    const reqId = readBin(16);
    return { command: 'call', object, method, args, kwargs: NO_KWARGS, reqId };
  } catch {
    return undefined;
  } finally {
    decoding = false;
    src = EMPTY_BUFFER;
    keyError = null;
  }
}

function decodeRequestInner(data: Uint8Array, maxPayload: number): DecodeRequestResult {
  const count = openEnvelope('RPC request', data, REQUEST_PREFIX, maxPayload);
  let seen = 0;
  let rawCommand: unknown;
  let object: unknown;
  let method: unknown;
  let args: unknown;
  let kwargs: unknown;
  let rawReqId: unknown;
  let kwargsIsMap = false;
  let argsKeyError: RpcBadRequestError | null = null;
  let kwargsKeyError: RpcBadRequestError | null = null;
  for (let i = 0; i < count; i++) {
    const key = readEnvelopeKey();
    seen |= 1 << key;
    switch (key) {
      case K_COMMAND:
        rawCommand = readValue(2);
        break;
      case K_OBJECT:
        object = readValue(2);
        break;
      case K_METHOD:
        method = readValue(2);
        break;
      case K_ARGS:
        args = readValue(2);
        argsKeyError = takeKeyError();
        break;
      case K_KWARGS:
        if (pos >= end) truncated();
        kwargsIsMap = isMapByte(src[pos]!);
        kwargs = readValue(2);
        kwargsKeyError = takeKeyError();
        break;
      case K_REQ_ID:
        rawReqId = readValue(2);
        break;
      default:
        skipValue();
    }
    keyError = null;
  }
  closeEnvelope();
  const command = typeof rawCommand === 'string' ? rawCommand : undefined;
  let reqId: RpcRequestId | undefined;
  try {
    reqId = checkReqId(rawReqId, (seen & (1 << K_REQ_ID)) !== 0, false);
  } catch (error) {
    return { ok: false, error: asBadRequest(error), command };
  }
  try {
    if (command !== 'call' && command !== 'signal') {
      throw bad(seen & (1 << K_COMMAND) ? "'command' must be 'call' or 'signal'" : "missing key 'command'");
    }
    if (command === 'call' && reqId === undefined) throw bad("missing key 'req_id'");
    const objectName = checkString((seen & (1 << K_OBJECT)) !== 0, object, 'object');
    const methodName = checkString((seen & (1 << K_METHOD)) !== 0, method, 'method');
    if (!(seen & (1 << K_ARGS))) throw bad("missing key 'args'");
    if (!Array.isArray(args)) throw bad("'args' must be an array");
    if (!(seen & (1 << K_KWARGS))) throw bad("missing key 'kwargs'");
    if (!kwargsIsMap) throw bad("'kwargs' must be a map");
    if (argsKeyError !== null) throw argsKeyError;
    if (kwargsKeyError !== null) throw kwargsKeyError;
    const request: RpcRequest = {
      command,
      object: objectName,
      method: methodName,
      args,
      kwargs: kwargs as Record<string, unknown>,
      reqId,
    };
    return { ok: true, request };
  } catch (error) {
    return { ok: false, error: asBadRequest(error), reqId, command };
  }
}

function asBadRequest(error: unknown): RpcBadRequestError {
  return error instanceof RpcBadRequestError ? error : bad('malformed RPC message', error);
}

/**
 * Decodes and validates `rpcreq` data (prefix included). Extra keys are ignored.
 * @throws {RpcBadRequestError} not a request, not MessagePack, unsupported types, wrong or missing keys, too large.
 */
export function decodeRequest(data: Uint8Array, limits?: CodecLimits): RpcRequest {
  const result = tryDecodeRequest(data, limits);
  if (!result.ok) throw result.error;
  return result.request;
}

/** Outcome of {@link tryDecodeReply}: the reply, or the error and the request id when it could be read. */
export type DecodeReplyResult =
  | { readonly ok: true; readonly reply: RpcReply }
  | { readonly ok: false; readonly error: RpcBadRequestError; readonly reqId?: RpcRequestId | undefined };

/** Like {@link decodeReply} but never throws. */
export function tryDecodeReply(data: Uint8Array, limits?: CodecLimits): DecodeReplyResult {
  if (decoding) return decodeNested(() => tryDecodeReply(data, limits));
  decoding = true;
  try {
    return decodeReplyInner(data, limits?.maxPayload ?? DEFAULT_MAX_PAYLOAD);
  } catch (error) {
    return { ok: false, error: asBadRequest(error) };
  } finally {
    decoding = false;
    src = EMPTY_BUFFER;
  }
}

function decodeReplyInner(data: Uint8Array, maxPayload: number): DecodeReplyResult {
  const count = openEnvelope('RPC reply', data, REPLY_PREFIX, maxPayload);
  let seen = 0;
  let rawReqId: unknown;
  let ok: unknown;
  let value: unknown;
  let exception: unknown;
  let format: unknown;
  let valueKeyError: RpcBadRequestError | null = null;
  let exceptionKeyError: RpcBadRequestError | null = null;
  for (let i = 0; i < count; i++) {
    const key = readEnvelopeKey();
    seen |= 1 << key;
    switch (key) {
      case K_REQ_ID:
        rawReqId = readValue(2);
        break;
      case K_OK:
        ok = readValue(2);
        break;
      case K_RETURN:
        value = readValue(2);
        valueKeyError = takeKeyError();
        break;
      case K_EXCEPTION:
        exception = readValue(2);
        exceptionKeyError = takeKeyError();
        break;
      case K_EXCEPTION_FORMAT:
        format = readValue(2);
        break;
      default:
        skipValue();
    }
    keyError = null;
  }
  closeEnvelope();
  let reqId: RpcRequestId;
  try {
    reqId = checkReqId(rawReqId, (seen & (1 << K_REQ_ID)) !== 0, true)!;
  } catch (error) {
    return { ok: false, error: asBadRequest(error) };
  }
  try {
    if (!(seen & (1 << K_OK))) throw bad("missing key 'ok'");
    if (typeof ok !== 'boolean') throw bad("'ok' must be a boolean");
    if (ok) {
      if (!(seen & (1 << K_RETURN))) throw bad("missing key 'return'");
      if (valueKeyError !== null) throw valueKeyError;
      return { ok: true, reply: { reqId, ok: true, value } };
    }
    if (!(seen & (1 << K_EXCEPTION))) throw bad("missing key 'exception'");
    if (format !== undefined && format !== null && typeof format !== 'string') {
      throw bad("'exception_format' must be a string");
    }
    if (exceptionKeyError !== null) throw exceptionKeyError;
    return { ok: true, reply: { reqId, ok: false, exception, exceptionFormat: (format as string | null | undefined) ?? '' } };
  } catch (error) {
    return { ok: false, error: asBadRequest(error), reqId };
  }
}

/** A successful reply as our server writes it, up to the request id's 16 bytes: prefix, map of 3, `req_id`, bin8 header. */
const OWN_REPLY_HEAD = Buffer.concat([REPLY_PREFIX, Buffer.from([0x83]), E_REQ_ID, Buffer.from([0xc4, 16])]);
/** ... and after the request id, up to the value: `ok` true, `return`. */
const OWN_REPLY_MID = Buffer.concat([E_OK, Buffer.from([0xc3]), E_RETURN]);
const OWN_REPLY_VALUE_AT = OWN_REPLY_HEAD.length + 16 + OWN_REPLY_MID.length;

let ownReplyValue: unknown;

/**
 * @internal The fast path for the reply to one of our own calls (made by
 * {@link encodeCall} with `idTemplate`) laid out exactly as our server
 * writes a successful one: returns the call's id and leaves the value for
 * {@link takeOwnReplyValue}, decoded as strictly as by {@link decodeReply}.
 * Returns -1 for anything else (another layout, another client's id, a
 * broken value): decode that with {@link tryDecodeReply}. Never throws.
 */
export function decodeOwnReply(data: Buffer, idTemplate: Buffer, maxPayload: number): number {
  const n = data.length;
  if (n <= OWN_REPLY_VALUE_AT || n > maxPayload || decoding) return -1;
  for (let i = 0; i < 16; i++) if (data[i] !== OWN_REPLY_HEAD[i]) return -1;
  for (let i = 0; i < 8; i++) if (data[16 + i] !== idTemplate[i]) return -1;
  for (let i = 0; i < OWN_REPLY_MID.length; i++) if (data[32 + i] !== OWN_REPLY_MID[i]) return -1;
  const hi = data.readUInt32BE(24);
  if (hi >= 0x200000) return -1; // not an exact number: not one of our ids
  const id = hi * 0x100000000 + data.readUInt32BE(28);
  decoding = true;
  try {
    src = data;
    pos = OWN_REPLY_VALUE_AT;
    end = n;
    keyError = null;
    const value = readValue(2);
    if (pos !== end || keyError !== null) return -1;
    ownReplyValue = value;
    return id;
  } catch {
    return -1;
  } finally {
    decoding = false;
    src = EMPTY_BUFFER;
    keyError = null;
  }
}

/** @internal The value {@link decodeOwnReply} decoded last (handed over once). */
export function takeOwnReplyValue(): unknown {
  const value = ownReplyValue;
  ownReplyValue = undefined;
  return value;
}

/**
 * Decodes and validates `rpcrep` data (prefix included). `exception_format`
 * may be absent or nil (read as `''`); extra keys are ignored.
 * @throws {RpcBadRequestError} not a reply, not MessagePack, unsupported types, wrong or missing keys, too large.
 */
export function decodeReply(data: Uint8Array, limits?: CodecLimits): RpcReply {
  const result = tryDecodeReply(data, limits);
  if (!result.ok) throw result.error;
  return result.reply;
}

/** A request id as a Map key (bin and str ids never collide). */
export function reqIdKey(id: RpcRequestId): string {
  if (typeof id === 'string') return `s${id}`;
  const n = id.length;
  if (n === 16) {
    return String.fromCharCode(
      0x62, // 'b'
      (id[0]! << 8) | id[1]!, (id[2]! << 8) | id[3]!, (id[4]! << 8) | id[5]!, (id[6]! << 8) | id[7]!,
      (id[8]! << 8) | id[9]!, (id[10]! << 8) | id[11]!, (id[12]! << 8) | id[13]!, (id[14]! << 8) | id[15]!,
    );
  }
  if (n & 1) return `x${id.toString('hex')}`;
  // Two bytes per UTF-16 code unit: half as long as hex, and no native call.
  let s = 'b';
  for (let i = 0; i < n; i += 2) s += String.fromCharCode((id[i]! << 8) | id[i + 1]!);
  return s;
}
