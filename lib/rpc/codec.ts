/**
 * Encoding and strict decoding of RPC requests (`rpcreq`) and replies
 * (`rpcrep`): a 6-byte ASCII prefix followed by one MessagePack map. This
 * module is the facade of lib/rpc/codec/: the writer (writer.ts, byte for
 * byte what msgpackr writes, refusing what no decoder of ours accepts), the
 * strict reader (reader.ts, never msgpackr), the envelope (envelope.ts), our
 * own fast layouts (layouts.ts) and request ids (request-id.ts).
 *
 * All state (the writer's slab and position, the reader's position and
 * string cache) lives in an {@link RpcCodec}: each RpcClient and RpcServer
 * owns one, and the functions exported here share one of this module's.
 * @module
 */
import type { Buffer } from 'node:buffer';
import type { RpcReply, RpcRequest } from './types.js';
import {
  type DecodeReplyResult,
  type DecodeRequestResult,
  tryDecodeReply as readReply,
  tryDecodeRequest as readRequest,
  writeReply,
  writeRequest,
} from './codec/envelope.js';
import { decodeOwnCall as readOwnCall, decodeOwnReply as readOwnReply, encodeCall as writeCall, encodeCallHead as writeCallHead } from './codec/layouts.js';
import { type CodecLimits, DEFAULT_MAX_PAYLOAD } from './codec/limits.js';
import { MsgpackReader } from './codec/reader.js';
import { MsgpackWriter } from './codec/writer.js';

export { DEFAULT_MAX_PAYLOAD, MAX_DEPTH, MAX_REQ_ID_LENGTH, type CodecLimits } from './codec/limits.js';
export { REQUEST_PREFIX, REPLY_PREFIX, type DecodeRequestResult, type DecodeReplyResult } from './codec/envelope.js';
export { packrOptions } from './codec/writer.js';
export { ownReplyId } from './codec/layouts.js';
export { newIdTemplate, readCallId, readCallIdAt, reqIdKey } from './codec/request-id.js';

/**
 * @internal One writer and one reader, and the operations on them. Not
 * shared between owners: an encode or decode started while another runs on
 * the same codec (from a getter or `toJSON` of the value being encoded, or
 * a setter on `Object.prototype` run while decoding) is handled, but two
 * owners sharing one codec would only make that the common case. Results
 * never alias the codec's state: encoded bytes may be views of the writer's
 * slab (never written again), decoded values are fresh.
 */
export class RpcCodec {
  private readonly writer = new MsgpackWriter();
  private readonly reader = new MsgpackReader();

  /** See {@link encodeRequest}. */
  encodeRequest(request: RpcRequest, maxPayload: number): Buffer {
    return this.writer.encode('RPC request', writeRequest, request, maxPayload);
  }

  /** See {@link encodeReply}. */
  encodeReply(reply: RpcReply, maxPayload: number): Buffer {
    return this.writer.encode('RPC reply', writeReply, reply, maxPayload);
  }

  /** The bytes of a call of `object.method` up to its args (see layouts.ts). */
  encodeCallHead(object: string, method: string): Buffer {
    return writeCallHead(this.writer, object, method);
  }

  /** A call of ours (see layouts.ts). @throws {InvalidArgumentError} `args` cannot be encoded, or too large. */
  encodeCall(head: Buffer, args: readonly unknown[], idTemplate: Buffer, id: number, maxPayload: number): Buffer {
    return writeCall(this.writer, head, args, idTemplate, id, maxPayload);
  }

  /** See {@link tryDecodeRequest}. */
  tryDecodeRequest(data: Uint8Array, maxPayload: number): DecodeRequestResult {
    return readRequest(this.reader, data, maxPayload);
  }

  /** See {@link tryDecodeReply}. */
  tryDecodeReply(data: Uint8Array, maxPayload: number): DecodeReplyResult {
    return readReply(this.reader, data, maxPayload);
  }

  /** The fast path for a call laid out as ours (see layouts.ts); `undefined` for anything else. */
  decodeOwnCall(data: Buffer, maxPayload: number): RpcRequest | undefined {
    return readOwnCall(this.reader, data, maxPayload);
  }

  /** The value of a successful reply to one of our calls laid out as our server writes it (see layouts.ts); `undefined` for anything else. */
  decodeOwnReply(data: Buffer, idTemplate: Buffer, maxPayload: number): unknown {
    return readOwnReply(this.reader, data, idTemplate, maxPayload);
  }
}

/** The codec of this module's functions. */
const shared = new RpcCodec();

/**
 * Encodes a request as `rpcreq` + MessagePack map with the keys `command`,
 * `object`, `method`, `args`, `kwargs` and (when given) `req_id`.
 * @throws {InvalidArgumentError} a value cannot be encoded (see {@link MAX_DEPTH}), or the message exceeds `maxPayload`.
 */
export function encodeRequest(request: RpcRequest, limits?: CodecLimits): Buffer {
  return shared.encodeRequest(request, limits?.maxPayload ?? DEFAULT_MAX_PAYLOAD);
}

/**
 * Encodes a reply as `rpcrep` + MessagePack map: `req_id`, `ok`, and either
 * `return`, or `exception` and `exception_format`.
 * @throws {InvalidArgumentError} a value cannot be encoded (see {@link MAX_DEPTH}), or the message exceeds `maxPayload`.
 */
export function encodeReply(reply: RpcReply, limits?: CodecLimits): Buffer {
  return shared.encodeReply(reply, limits?.maxPayload ?? DEFAULT_MAX_PAYLOAD);
}

/**
 * Like {@link decodeRequest} but never throws: on failure it also returns the
 * request id (and command) when those could be read, so the caller can answer.
 */
export function tryDecodeRequest(data: Uint8Array, limits?: CodecLimits): DecodeRequestResult {
  return shared.tryDecodeRequest(data, limits?.maxPayload ?? DEFAULT_MAX_PAYLOAD);
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

/** Like {@link decodeReply} but never throws. */
export function tryDecodeReply(data: Uint8Array, limits?: CodecLimits): DecodeReplyResult {
  return shared.tryDecodeReply(data, limits?.maxPayload ?? DEFAULT_MAX_PAYLOAD);
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

/** @internal {@link RpcCodec.encodeCallHead} on this module's codec. */
export function encodeCallHead(object: string, method: string): Buffer {
  return shared.encodeCallHead(object, method);
}

/** @internal {@link RpcCodec.encodeCall} on this module's codec. */
export function encodeCall(head: Buffer, args: readonly unknown[], idTemplate: Buffer, id: number, limits?: CodecLimits): Buffer {
  return shared.encodeCall(head, args, idTemplate, id, limits?.maxPayload ?? DEFAULT_MAX_PAYLOAD);
}

/** @internal {@link RpcCodec.decodeOwnCall} on this module's codec. */
export function decodeOwnCall(data: Buffer, maxPayload: number): RpcRequest | undefined {
  return shared.decodeOwnCall(data, maxPayload);
}

/** @internal {@link RpcCodec.decodeOwnReply} on this module's codec: the value, or `undefined`; the call's id is then {@link ownReplyId}. */
export function decodeOwnReply(data: Buffer, idTemplate: Buffer, maxPayload: number): unknown {
  return shared.decodeOwnReply(data, idTemplate, maxPayload);
}
