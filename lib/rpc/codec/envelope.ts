/**
 * The RPC envelope: requests (`rpcreq`) and replies (`rpcrep`) are a 6-byte
 * ASCII prefix followed by one MessagePack map with snakeMQ's keys. Writing
 * goes through a {@link MsgpackWriter} (writer.ts), reading through a
 * {@link MsgpackReader} (reader.ts), which is checked strictly: size and
 * prefix, the map, every key's type, no trailing bytes; extra keys are
 * skipped. Builds on writer.ts, reader.ts and request-id.ts.
 * @module
 */
import { Buffer } from 'node:buffer';
import { RpcBadRequestError } from '../../errors.js';
import type { RpcReply, RpcRequest, RpcRequestId } from '../types.js';
import { EMPTY_BUFFER, bad, type MsgpackReader } from './reader.js';
import { checkReqId } from './request-id.js';
import type { MsgpackWriter } from './writer.js';

/** Data prefix of a request (`rpcreq`). */
export const REQUEST_PREFIX: Buffer = Buffer.from('rpcreq', 'ascii');
/** Data prefix of a reply (`rpcrep`). */
export const REPLY_PREFIX: Buffer = Buffer.from('rpcrep', 'ascii');

/** @internal */
export const PREFIX_LENGTH = 6;

// --- writing -----------------------------------------------------------------------------

const fixstr = (name: string): Buffer => Buffer.concat([Buffer.from([0xa0 | name.length]), Buffer.from(name, 'ascii')]);
export const E_COMMAND = fixstr('command');
export const E_OBJECT = fixstr('object');
export const E_METHOD = fixstr('method');
export const E_ARGS = fixstr('args');
export const E_KWARGS = fixstr('kwargs');
export const E_REQ_ID = fixstr('req_id');
export const E_OK = fixstr('ok');
export const E_RETURN = fixstr('return');
export const E_EXCEPTION = fixstr('exception');
export const E_EXCEPTION_FORMAT = fixstr('exception_format');
export const CALL = fixstr('call');

export function writeRequest(out: MsgpackWriter, r: RpcRequest): void {
  out.writeBytes(REQUEST_PREFIX);
  out.room(1);
  out.buf[out.o++] = r.reqId === undefined ? 0x85 : 0x86;
  out.writeBytes(E_COMMAND);
  out.writeString(r.command);
  out.writeBytes(E_OBJECT);
  out.writeString(r.object);
  out.writeBytes(E_METHOD);
  out.writeString(r.method);
  out.writeBytes(E_ARGS);
  out.writeValue(r.args, 2);
  out.writeBytes(E_KWARGS);
  out.writeValue(r.kwargs, 2);
  if (r.reqId !== undefined) {
    out.writeBytes(E_REQ_ID);
    out.writeValue(r.reqId, 2);
  }
}

export function writeReply(out: MsgpackWriter, r: RpcReply): void {
  out.writeBytes(REPLY_PREFIX);
  out.room(1);
  out.buf[out.o++] = r.ok ? 0x83 : 0x84;
  out.writeBytes(E_REQ_ID);
  out.writeValue(r.reqId, 2);
  out.writeBytes(E_OK);
  out.room(1);
  if (r.ok) {
    out.buf[out.o++] = 0xc3;
    out.writeBytes(E_RETURN);
    out.writeValue(r.value, 2);
  } else {
    out.buf[out.o++] = 0xc2;
    out.writeBytes(E_EXCEPTION);
    out.writeValue(r.exception, 2);
    out.writeBytes(E_EXCEPTION_FORMAT);
    out.writeValue(r.exceptionFormat, 2);
  }
}

// --- reading -----------------------------------------------------------------------------

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
const KEY_NAMES: readonly Buffer[] = ['', 'command', 'object', 'method', 'args', 'kwargs', 'req_id', 'ok', 'return', 'exception', 'exception_format'].map(
  (name) => Buffer.from(name, 'ascii'),
);

function readEnvelopeKey(r: MsgpackReader): number {
  if (r.pos >= r.end) r.truncated();
  const b = r.src[r.pos]!;
  let length: number;
  if (b >= 0xa0 && b <= 0xbf) {
    r.pos++;
    length = b & 0x1f;
  } else if (b === 0xd9 || b === 0xda || b === 0xdb) {
    r.pos++;
    length = r.readLength(b === 0xd9 ? 1 : b === 0xda ? 2 : 4);
  } else {
    r.skipValue();
    return K_OTHER;
  }
  if (length > r.end - r.pos) r.truncated();
  const start = r.pos;
  r.pos += length;
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
      switch (r.src[start]) {
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
          code = r.src[start + 2] === 0x71 /* q */ ? K_REQ_ID : K_RETURN;
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
  for (let i = 0; i < length; i++) if (r.src[start + i] !== name[i]) return K_OTHER;
  return code;
}

/** Checks size and prefix, starts the decode and returns the envelope map's entry count. */
function openEnvelope(r: MsgpackReader, what: string, data: Uint8Array, prefix: Buffer, maxPayload: number): number {
  if (!(data instanceof Uint8Array)) throw bad(`${what} must be bytes`);
  const length = data.byteLength;
  if (length > maxPayload) throw bad(`${what} of ${length} bytes exceeds maxPayload (${maxPayload} bytes)`);
  if (length < PREFIX_LENGTH) throw bad(`${what} does not start with '${prefix.toString('ascii')}'`);
  for (let i = 0; i < PREFIX_LENGTH; i++) {
    if (data[i] !== prefix[i]) throw bad(`${what} does not start with '${prefix.toString('ascii')}'`);
  }
  if (length === PREFIX_LENGTH) throw bad(`${what} has no body`);
  r.src = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  r.pos = PREFIX_LENGTH;
  r.end = length;
  r.keyError = null;
  const first = r.src[r.pos++]!;
  let count: number;
  if (first >= 0x80 && first <= 0x8f) count = first & 0x0f;
  else if (first === 0xde) count = r.readLength(2);
  else if (first === 0xdf) count = r.readLength(4);
  else throw bad(`${what} body is not a MessagePack map`);
  if (count * 2 > r.end - r.pos) r.truncated();
  return count;
}

function closeEnvelope(r: MsgpackReader): void {
  if (r.pos !== r.end) throw bad(`${r.end - r.pos} trailing bytes after the MessagePack value`);
}

function isMapByte(b: number): boolean {
  return (b >= 0x80 && b <= 0x8f) || b === 0xde || b === 0xdf;
}

function checkString(present: boolean, value: unknown, key: string): string {
  if (!present) throw bad(`missing key '${key}'`);
  if (typeof value !== 'string') throw bad(`'${key}' must be a string`);
  return value;
}

export type DecodeRequestResult =
  | { readonly ok: true; readonly request: RpcRequest }
  | { readonly ok: false; readonly error: RpcBadRequestError; readonly reqId?: RpcRequestId | undefined; readonly command?: string | undefined };

/**
 * Like {@link decodeRequest} but never throws: on failure it also returns the
 * request id (and command) when those could be read, so the caller can answer.
 */
export function tryDecodeRequest(r: MsgpackReader, data: Uint8Array, maxPayload: number): DecodeRequestResult {
  if (r.decoding) return r.nested(() => tryDecodeRequest(r, data, maxPayload));
  r.decoding = true;
  try {
    return decodeRequestInner(r, data, maxPayload);
  } catch (error) {
    return { ok: false, error: asBadRequest(error) };
  } finally {
    r.decoding = false;
    r.src = EMPTY_BUFFER;
  }
}

function decodeRequestInner(r: MsgpackReader, data: Uint8Array, maxPayload: number): DecodeRequestResult {
  const count = openEnvelope(r, 'RPC request', data, REQUEST_PREFIX, maxPayload);
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
    const key = readEnvelopeKey(r);
    seen |= 1 << key;
    switch (key) {
      case K_COMMAND:
        rawCommand = r.readValue(2);
        break;
      case K_OBJECT:
        object = r.readValue(2);
        break;
      case K_METHOD:
        method = r.readValue(2);
        break;
      case K_ARGS:
        args = r.readValue(2);
        argsKeyError = r.takeKeyError();
        break;
      case K_KWARGS:
        if (r.pos >= r.end) r.truncated();
        kwargsIsMap = isMapByte(r.src[r.pos]!);
        kwargs = r.readValue(2);
        kwargsKeyError = r.takeKeyError();
        break;
      case K_REQ_ID:
        rawReqId = r.readValue(2);
        break;
      default:
        r.skipValue();
    }
    r.keyError = null;
  }
  closeEnvelope(r);
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

/** Outcome of {@link tryDecodeReply}: the reply, or the error and the request id when it could be read. */
export type DecodeReplyResult =
  { readonly ok: true; readonly reply: RpcReply } | { readonly ok: false; readonly error: RpcBadRequestError; readonly reqId?: RpcRequestId | undefined };

/** Like {@link decodeReply} but never throws. */
export function tryDecodeReply(r: MsgpackReader, data: Uint8Array, maxPayload: number): DecodeReplyResult {
  if (r.decoding) return r.nested(() => tryDecodeReply(r, data, maxPayload));
  r.decoding = true;
  try {
    return decodeReplyInner(r, data, maxPayload);
  } catch (error) {
    return { ok: false, error: asBadRequest(error) };
  } finally {
    r.decoding = false;
    r.src = EMPTY_BUFFER;
  }
}

function decodeReplyInner(r: MsgpackReader, data: Uint8Array, maxPayload: number): DecodeReplyResult {
  const count = openEnvelope(r, 'RPC reply', data, REPLY_PREFIX, maxPayload);
  let seen = 0;
  let rawReqId: unknown;
  let ok: unknown;
  let value: unknown;
  let exception: unknown;
  let format: unknown;
  let valueKeyError: RpcBadRequestError | null = null;
  let exceptionKeyError: RpcBadRequestError | null = null;
  for (let i = 0; i < count; i++) {
    const key = readEnvelopeKey(r);
    seen |= 1 << key;
    switch (key) {
      case K_REQ_ID:
        rawReqId = r.readValue(2);
        break;
      case K_OK:
        ok = r.readValue(2);
        break;
      case K_RETURN:
        value = r.readValue(2);
        valueKeyError = r.takeKeyError();
        break;
      case K_EXCEPTION:
        exception = r.readValue(2);
        exceptionKeyError = r.takeKeyError();
        break;
      case K_EXCEPTION_FORMAT:
        format = r.readValue(2);
        break;
      default:
        r.skipValue();
    }
    r.keyError = null;
  }
  closeEnvelope(r);
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
