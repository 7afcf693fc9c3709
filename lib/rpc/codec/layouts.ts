/**
 * Our own fast layouts: a call as our RpcClient writes it (a request head
 * cached per object and method, then the args, empty kwargs and a 16-byte
 * request id last, so that its last 16 bytes identify the call), and the
 * fast paths that read a call laid out so (in RpcServer) and a successful
 * reply laid out as our server writes it (in RpcClient). Every layout here
 * is also valid for the full envelope decoder, which is what any other
 * layout goes to. Builds on writer.ts, reader.ts and envelope.ts.
 * @module
 */
import { Buffer } from 'node:buffer';
import type { RpcRequest } from '../types.js';
import { CALL, E_ARGS, E_COMMAND, E_KWARGS, E_METHOD, E_OBJECT, E_OK, E_REQ_ID, E_RETURN, REPLY_PREFIX, REQUEST_PREFIX } from './envelope.js';
import { EMPTY_BUFFER, type MsgpackReader } from './reader.js';
import { encodeError, type MsgpackWriter } from './writer.js';

// --- writing a call ------------------------------------------------------------------------

function writeCallHead(out: MsgpackWriter, names: { readonly object: string; readonly method: string }): void {
  out.writeBytes(REQUEST_PREFIX);
  out.room(1);
  out.buf[out.o++] = 0x86;
  out.writeBytes(E_COMMAND);
  out.writeBytes(CALL);
  out.writeBytes(E_OBJECT);
  out.writeString(names.object);
  out.writeBytes(E_METHOD);
  out.writeString(names.method);
  out.writeBytes(E_ARGS);
}

/**
 * @internal The bytes of a call request up to its `args` value: prefix, map
 * header, `command` `call`, `object`, `method`, and the `args` key. The same
 * for every call of `object.method`; see {@link encodeCall}.
 */
export function encodeCallHead(out: MsgpackWriter, object: string, method: string): Buffer {
  // Kept for long by clients: a copy, not a view of the slab.
  return Buffer.from(out.encode('RPC request', writeCallHead, { object, method }, Infinity));
}

/** After the args of a call: `kwargs` {}, `req_id` and the header of its 16-byte bin. */
const CALL_TAIL = Buffer.concat([E_KWARGS, Buffer.from([0x80]), E_REQ_ID, Buffer.from([0xc4, 16])]);

/**
 * @internal Encodes a call of ours: `head` from {@link encodeCallHead}, then
 * `args`, `kwargs` {}, and a `req_id` of the first 8 bytes of `idTemplate`
 * (16 bytes) followed by `id` as a big-endian uint64 (ids stay far below
 * 2^53). The request id ends the data, so its last 16 bytes identify the
 * call (see readCallIdAt in request-id.ts). The bytes are those of the
 * envelope's writeRequest for the same call.
 * @throws {InvalidArgumentError} `args` cannot be encoded (see MAX_DEPTH), or the message exceeds `maxPayload`.
 */
export function encodeCall(out: MsgpackWriter, head: Buffer, args: readonly unknown[], idTemplate: Buffer, id: number, maxPayload: number): Buffer {
  const outer = out.begin(maxPayload);
  try {
    try {
      out.writeBytes(head);
      out.writeValue(args, 2);
      out.room(CALL_TAIL.length + 16);
      // No growth from here on: the buffer and position stay in locals.
      const buf = out.buf;
      let o = out.o;
      for (let i = 0; i < CALL_TAIL.length; i++) buf[o++] = CALL_TAIL[i]!;
      for (let i = 0; i < 8; i++) buf[o++] = idTemplate[i]!;
      const hi = Math.floor(id / 0x100000000);
      const lo = id >>> 0;
      buf[o++] = hi >>> 24;
      buf[o++] = (hi >>> 16) & 0xff;
      buf[o++] = (hi >>> 8) & 0xff;
      buf[o++] = hi & 0xff;
      buf[o++] = lo >>> 24;
      buf[o++] = (lo >>> 16) & 0xff;
      buf[o++] = (lo >>> 8) & 0xff;
      buf[o++] = lo & 0xff;
      out.o = o;
    } catch (error) {
      throw encodeError('RPC request', error, maxPayload);
    }
    return out.finish('RPC request', maxPayload);
  } finally {
    out.restore(outer);
  }
}

// --- reading a call ------------------------------------------------------------------------

/** A call as snakemq-ts clients write it (encodeCall), up to the object name: prefix, map of 6, `command` `call`, `object`. */
const OWN_CALL_HEAD = Buffer.concat([REQUEST_PREFIX, Buffer.from([0x86]), E_COMMAND, CALL, E_OBJECT]);
/** Shared by calls read on the fast path, whose kwargs are empty (never handed to user code). */
const NO_KWARGS: Record<string, unknown> = Object.freeze({}) as Record<string, unknown>;

/**
 * @internal The fast path for a call laid out exactly as snakemq-ts clients
 * write one (string object and method, an args array, empty kwargs, a
 * 16-byte request id, in that order): the request, decoded as strictly as by
 * the full decoder, with a shared frozen empty `kwargs`. `undefined` for
 * anything else (another layout, broken bytes): decode that with the full
 * decoder (tryDecodeRequest). Never throws.
 */
export function decodeOwnCall(r: MsgpackReader, data: Buffer, maxPayload: number): RpcRequest | undefined {
  const n = data.length;
  if (n > maxPayload || n < OWN_CALL_HEAD.length + CALL_TAIL.length + 16 || r.decoding) return undefined;
  r.decoding = true;
  try {
    r.src = data;
    r.pos = 0;
    r.end = n;
    r.keyError = null;
    if (!r.expectBytes(OWN_CALL_HEAD)) return undefined;
    const object = r.readValue(2);
    if (typeof object !== 'string' || !r.expectBytes(E_METHOD)) return undefined;
    const method = r.readValue(2);
    if (typeof method !== 'string' || !r.expectBytes(E_ARGS)) return undefined;
    const args = r.readValue(2);
    if (!Array.isArray(args) || r.keyError !== null || r.end - r.pos !== CALL_TAIL.length + 16 || !r.expectBytes(CALL_TAIL)) return undefined;
    const reqId = r.readBin(16);
    return { command: 'call', object, method, args, kwargs: NO_KWARGS, reqId };
  } catch {
    return undefined;
  } finally {
    r.decoding = false;
    r.src = EMPTY_BUFFER;
    r.keyError = null;
  }
}

// --- reading a reply ---------------------------------------------------------------------

/** A successful reply as our server writes it, up to the request id's 16 bytes: prefix, map of 3, `req_id`, bin8 header. */
const OWN_REPLY_HEAD = Buffer.concat([REPLY_PREFIX, Buffer.from([0x83]), E_REQ_ID, Buffer.from([0xc4, 16])]);
/** ... and after the request id, up to the value: `ok` true, `return`. */
const OWN_REPLY_MID = Buffer.concat([E_OK, Buffer.from([0xc3]), E_RETURN]);
const OWN_REPLY_VALUE_AT = OWN_REPLY_HEAD.length + 16 + OWN_REPLY_MID.length;

/**
 * @internal The fast path for the reply to one of our own calls (made by
 * {@link encodeCall} with `idTemplate`) laid out exactly as our server
 * writes a successful one: returns the value, decoded as strictly as by
 * the full decoder; the call's id is then {@link ownReplyId}. Returns
 * `undefined` (which no decoded value is: nil is `null`) for anything else
 * (another layout, another client's id, a broken value): decode that with
 * the full decoder. Never throws.
 */
export function decodeOwnReply(r: MsgpackReader, data: Buffer, idTemplate: Buffer, maxPayload: number): unknown {
  const n = data.length;
  if (n <= OWN_REPLY_VALUE_AT || n > maxPayload || r.decoding) return undefined;
  for (let i = 0; i < 16; i++) if (data[i] !== OWN_REPLY_HEAD[i]) return undefined;
  for (let i = 0; i < 8; i++) if (data[16 + i] !== idTemplate[i]) return undefined;
  for (let i = 0; i < OWN_REPLY_MID.length; i++) if (data[32 + i] !== OWN_REPLY_MID[i]) return undefined;
  if (data.readUInt32BE(24) >= 0x200000) return undefined; // not an exact number: not one of our ids
  r.decoding = true;
  try {
    r.src = data;
    r.pos = OWN_REPLY_VALUE_AT;
    r.end = n;
    r.keyError = null;
    const value = r.readValue(2);
    if (r.pos !== r.end || r.keyError !== null) return undefined;
    return value;
  } catch {
    return undefined;
  } finally {
    r.decoding = false;
    r.src = EMPTY_BUFFER;
    r.keyError = null;
  }
}

/** The id of the call whose reply {@link decodeOwnReply} accepted. */
export function ownReplyId(data: Buffer): number {
  return data.readUInt32BE(24) * 0x100000000 + data.readUInt32BE(28);
}
