/**
 * Request ids. Ours (made by an RpcClient, see layouts.ts) are 16 bytes: 8
 * random bytes drawn once per client (its id template), then the call's
 * number as a big-endian uint64; a server keys calls by them (reqIdKey).
 * Other peers' ids are any bin or str of 1 to {@link MAX_REQ_ID_LENGTH}
 * bytes. Builds on limits.ts and reader.ts (for its error).
 * @module
 */
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import type { RpcRequestId } from '../types.js';
import { MAX_REQ_ID_LENGTH } from './limits.js';
import { bad } from './reader.js';

/**
 * A new id template: 8 random bytes, then 8 zero bytes. Unique for
 * the client without a random draw per call; a restarted client (whose new
 * calls a server must not answer from its result cache) draws new random bytes.
 */
export function newIdTemplate(): Buffer {
  return Buffer.concat([randomBytes(8), Buffer.alloc(8)]);
}

/** The `id` of a request id made by encodeCall with `idTemplate`, or -1 when it is not one of those. */
export function readCallId(reqId: RpcRequestId, idTemplate: Buffer): number {
  if (typeof reqId === 'string' || reqId.length !== 16) return -1;
  return readCallIdAt(reqId, 0, idTemplate);
}

/** Like {@link readCallId}, for the 16 bytes at `offset` of `data`. */
export function readCallIdAt(data: Buffer, offset: number, idTemplate: Buffer): number {
  for (let i = 0; i < 8; i++) if (data[offset + i] !== idTemplate[i]) return -1;
  return data.readUInt32BE(offset + 8) * 0x100000000 + data.readUInt32BE(offset + 12);
}

/** @internal A decoded `req_id` checked: bin or str of 1 to MAX_REQ_ID_LENGTH bytes (nil or absent when not `required`). */
export function checkReqId(id: unknown, present: boolean, required: boolean): RpcRequestId | undefined {
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

/** A request id as a Map key (bin and str ids never collide). */
export function reqIdKey(id: RpcRequestId): string {
  if (typeof id === 'string') return `s${id}`;
  const n = id.length;
  if (n === 16) {
    return String.fromCharCode(
      0x62, // 'b'
      (id[0]! << 8) | id[1]!,
      (id[2]! << 8) | id[3]!,
      (id[4]! << 8) | id[5]!,
      (id[6]! << 8) | id[7]!,
      (id[8]! << 8) | id[9]!,
      (id[10]! << 8) | id[11]!,
      (id[12]! << 8) | id[13]!,
      (id[14]! << 8) | id[15]!,
    );
  }
  if (n & 1) return `x${id.toString('hex')}`;
  // Two bytes per UTF-16 code unit: half as long as hex, and no native call.
  let s = 'b';
  for (let i = 0; i < n; i += 2) s += String.fromCharCode((id[i]! << 8) | id[i + 1]!);
  return s;
}
