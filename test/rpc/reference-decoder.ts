/**
 * The original RPC decoder (a byte scanner refusing non-standard types, then
 * msgpackr decoding maps as Maps, then a conversion to plain objects with
 * safe keys), kept as a reference for the differential tests of the
 * single-pass decoder in lib/rpc/codec/reader.ts. Not fast, and not meant to be.
 */
import { Unpackr, type Options as MsgpackrOptions } from 'msgpackr';
import { RpcBadRequestError } from '../../lib/errors.js';
import { DEFAULT_MAX_PAYLOAD, MAX_DEPTH, MAX_REQ_ID_LENGTH, REPLY_PREFIX, REQUEST_PREFIX } from '../../lib/rpc/codec.js';
import type { DecodeReplyResult, DecodeRequestResult } from '../../lib/rpc/codec.js';
import type { RpcRequest, RpcRequestId } from '../../lib/rpc/types.js';

const PREFIX_LENGTH = 6;

const unpackr = new Unpackr({
  useRecords: false,
  mapsAsObjects: false,
  moreTypes: false,
  structuredClone: false,
  bundleStrings: false,
  sequential: false,
  copyBuffers: true,
  int64AsType: 'auto' as MsgpackrOptions['int64AsType'],
});

function bad(message: string, cause?: unknown): RpcBadRequestError {
  return new RpcBadRequestError(message, cause === undefined ? undefined : { cause });
}

function readUint(data: Uint8Array, pos: number, bytes: number, end: number): number {
  if (pos + bytes > end) throw bad('truncated MessagePack data');
  let n = 0;
  for (let i = 0; i < bytes; i++) n = n * 256 + data[pos + i]!;
  return n;
}

function scan(data: Uint8Array, start: number, end: number): void {
  let pos = start;
  let remaining = 1;
  const stack: number[] = [];
  for (;;) {
    if (remaining === 0) {
      if (stack.length === 0) break;
      remaining = stack.pop()!;
      continue;
    }
    remaining--;
    if (pos >= end) throw bad('truncated MessagePack data');
    const b = data[pos++]!;
    let skip = 0;
    let items = -1;
    if (b <= 0x7f || b >= 0xe0) continue;
    if (b <= 0x8f) items = (b & 0x0f) * 2;
    else if (b <= 0x9f) items = b & 0x0f;
    else if (b <= 0xbf) skip = b & 0x1f;
    else {
      switch (b) {
        case 0xc0:
        case 0xc2:
        case 0xc3:
          break;
        case 0xc4:
        case 0xd9:
        case 0xcc:
        case 0xd0:
          skip = b === 0xc4 || b === 0xd9 ? readUint(data, pos, 1, end) + 1 : 1;
          break;
        case 0xc5:
        case 0xda:
          skip = readUint(data, pos, 2, end) + 2;
          break;
        case 0xc6:
        case 0xdb:
          skip = readUint(data, pos, 4, end) + 4;
          break;
        case 0xcd:
        case 0xd1:
          skip = 2;
          break;
        case 0xca:
        case 0xce:
        case 0xd2:
          skip = 4;
          break;
        case 0xcb:
        case 0xcf:
        case 0xd3:
          skip = 8;
          break;
        case 0xd6:
        case 0xd7:
          if (readUint(data, pos, 1, end) !== 0xff) throw bad(`unsupported MessagePack extension type ${(data[pos]! << 24) >> 24}`);
          skip = 1 + (b === 0xd6 ? 4 : 8);
          break;
        case 0xc7: {
          const len = readUint(data, pos, 1, end);
          const type = readUint(data, pos + 1, 1, end);
          if (type !== 0xff || len !== 12) throw bad(`unsupported MessagePack extension type ${(type << 24) >> 24}`);
          skip = 2 + len;
          break;
        }
        case 0xd4:
        case 0xd5:
        case 0xd8:
        case 0xc8:
        case 0xc9: {
          const typePos = b === 0xc8 ? pos + 2 : b === 0xc9 ? pos + 4 : pos;
          throw bad(`unsupported MessagePack extension type ${typePos < end ? (data[typePos]! << 24) >> 24 : '?'}`);
        }
        case 0xdc:
          items = readUint(data, pos, 2, end);
          pos += 2;
          break;
        case 0xdd:
          items = readUint(data, pos, 4, end);
          pos += 4;
          break;
        case 0xde:
          items = readUint(data, pos, 2, end) * 2;
          pos += 2;
          break;
        case 0xdf:
          items = readUint(data, pos, 4, end) * 2;
          pos += 4;
          break;
        default:
          throw bad(`invalid MessagePack type byte 0x${b.toString(16)}`);
      }
    }
    if (skip > 0) {
      if (skip > end - pos) throw bad('truncated MessagePack data');
      pos += skip;
    } else if (items > 0) {
      if (items > end - pos) throw bad('truncated MessagePack data');
      if (stack.length + 1 > MAX_DEPTH) throw bad(`MessagePack nesting deeper than ${MAX_DEPTH}`);
      stack.push(remaining);
      remaining = items;
    }
  }
  if (pos !== end) throw bad(`${end - pos} trailing bytes after the MessagePack value`);
}

function setKey(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') {
    Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    target[key] = value;
  }
}

function toPlain(value: unknown): unknown {
  if (value === null || typeof value !== 'object') {
    if (value === undefined) throw bad('unsupported MessagePack value');
    return value;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = toPlain(value[i]);
    return value;
  }
  if (value instanceof Map) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of value) {
      if (typeof k === 'string') setKey(out, k, toPlain(v));
      else if (typeof k === 'number' || typeof k === 'bigint') setKey(out, String(k), toPlain(v));
      else throw bad(`map key of type ${k === null ? 'nil' : Buffer.isBuffer(k) ? 'bin' : typeof k} is not supported`);
    }
    return out;
  }
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof Date) return value;
  throw bad('unsupported MessagePack value');
}

function decodeEnvelope(what: string, data: Uint8Array, prefix: Buffer, maxPayload: number): Map<unknown, unknown> {
  if (data.byteLength > maxPayload) throw bad(`${what} of ${data.byteLength} bytes exceeds maxPayload (${maxPayload} bytes)`);
  if (data.byteLength < PREFIX_LENGTH || !prefix.equals(data.subarray(0, PREFIX_LENGTH))) {
    throw bad(`${what} does not start with '${prefix.toString('ascii')}'`);
  }
  if (data.byteLength === PREFIX_LENGTH) throw bad(`${what} has no body`);
  const first = data[PREFIX_LENGTH]!;
  if (!((first >= 0x80 && first <= 0x8f) || first === 0xde || first === 0xdf)) throw bad(`${what} body is not a MessagePack map`);
  scan(data, PREFIX_LENGTH, data.byteLength);
  let decoded: unknown;
  try {
    decoded = unpackr.unpack(data.subarray(PREFIX_LENGTH));
  } catch (error) {
    throw bad(`${what} is not valid MessagePack`, error);
  }
  if (!(decoded instanceof Map)) throw bad(`${what} body is not a MessagePack map`);
  return decoded;
}

function readReqId(map: Map<unknown, unknown>, required: boolean): RpcRequestId | undefined {
  if (!map.has('req_id')) {
    if (required) throw bad("missing key 'req_id'");
    return undefined;
  }
  const id = map.get('req_id');
  if (Buffer.isBuffer(id) || id instanceof Uint8Array) {
    if (id.byteLength === 0 || id.byteLength > MAX_REQ_ID_LENGTH) throw bad(`'req_id' must be 1 to ${MAX_REQ_ID_LENGTH} bytes`);
    return Buffer.isBuffer(id) ? id : Buffer.from(id.buffer, id.byteOffset, id.byteLength);
  }
  if (typeof id === 'string') {
    if (id.length === 0 || Buffer.byteLength(id) > MAX_REQ_ID_LENGTH) throw bad(`'req_id' must be 1 to ${MAX_REQ_ID_LENGTH} bytes`);
    return id;
  }
  if (id === null && !required) return undefined;
  throw bad("'req_id' must be bin (or str)");
}

function readString(map: Map<unknown, unknown>, key: string): string {
  if (!map.has(key)) throw bad(`missing key '${key}'`);
  const v = map.get(key);
  if (typeof v !== 'string') throw bad(`'${key}' must be a string`);
  return v;
}

function asBadRequest(error: unknown): RpcBadRequestError {
  return error instanceof RpcBadRequestError ? error : bad('malformed RPC message', error);
}

export function referenceDecodeRequest(data: Uint8Array, maxPayload = DEFAULT_MAX_PAYLOAD): DecodeRequestResult {
  let map: Map<unknown, unknown>;
  try {
    map = decodeEnvelope('RPC request', data, REQUEST_PREFIX, maxPayload);
  } catch (error) {
    return { ok: false, error: asBadRequest(error) };
  }
  const rawCommand = map.get('command');
  const command = typeof rawCommand === 'string' ? rawCommand : undefined;
  let reqId: RpcRequestId | undefined;
  try {
    reqId = readReqId(map, false);
  } catch (error) {
    return { ok: false, error: asBadRequest(error), command };
  }
  try {
    if (command !== 'call' && command !== 'signal') {
      throw bad(map.has('command') ? "'command' must be 'call' or 'signal'" : "missing key 'command'");
    }
    if (command === 'call' && reqId === undefined) throw bad("missing key 'req_id'");
    const object = readString(map, 'object');
    const method = readString(map, 'method');
    if (!map.has('args')) throw bad("missing key 'args'");
    const args = map.get('args');
    if (!Array.isArray(args)) throw bad("'args' must be an array");
    if (!map.has('kwargs')) throw bad("missing key 'kwargs'");
    const kwargs = map.get('kwargs');
    if (!(kwargs instanceof Map)) throw bad("'kwargs' must be a map");
    const request: RpcRequest = {
      command,
      object,
      method,
      args: toPlain(args) as unknown[],
      kwargs: toPlain(kwargs) as Record<string, unknown>,
      reqId,
    };
    return { ok: true, request };
  } catch (error) {
    return { ok: false, error: asBadRequest(error), reqId, command };
  }
}

export function referenceDecodeReply(data: Uint8Array, maxPayload = DEFAULT_MAX_PAYLOAD): DecodeReplyResult {
  let map: Map<unknown, unknown>;
  try {
    map = decodeEnvelope('RPC reply', data, REPLY_PREFIX, maxPayload);
  } catch (error) {
    return { ok: false, error: asBadRequest(error) };
  }
  let reqId: RpcRequestId;
  try {
    reqId = readReqId(map, true)!;
  } catch (error) {
    return { ok: false, error: asBadRequest(error) };
  }
  try {
    if (!map.has('ok')) throw bad("missing key 'ok'");
    const ok = map.get('ok');
    if (typeof ok !== 'boolean') throw bad("'ok' must be a boolean");
    if (ok) {
      if (!map.has('return')) throw bad("missing key 'return'");
      return { ok: true, reply: { reqId, ok: true, value: toPlain(map.get('return')) } };
    }
    if (!map.has('exception')) throw bad("missing key 'exception'");
    const format = map.get('exception_format');
    if (format !== undefined && format !== null && typeof format !== 'string') throw bad("'exception_format' must be a string");
    const exception = toPlain(map.get('exception'));
    return { ok: true, reply: { reqId, ok: false, exception, exceptionFormat: (format as string | null | undefined) ?? '' } };
  } catch (error) {
    return { ok: false, error: asBadRequest(error), reqId };
  }
}
