/**
 * What an error reply becomes for the caller: {@link remoteErrorFromReply}
 * reads whatever a peer sent as an exception (ours, Python's) into a
 * readable error. Builds on errors.ts only.
 * @module
 */
import { Buffer } from 'node:buffer';
import { ErrorCode, RpcBadRequestError, RpcBusyError, RpcRemoteError, RpcUnknownMethodError, RpcUnknownObjectError, type SnakeMQError } from '../errors.js';

function display(value: unknown): string {
  try {
    // The replacer sees Buffers after their toJSON ran, so look at the holder's original value.
    const text = JSON.stringify(value, function (this: Record<string, unknown>, k: string, v: unknown) {
      const original = this[k];
      return typeof v === 'bigint' ? v.toString() : Buffer.isBuffer(original) ? `<bin ${original.toString('hex')}>` : v;
    });
    if (text === undefined) return String(value);
    return text.length > 1000 ? `${text.slice(0, 1000)}…` : text;
  } catch {
    return String(value);
  }
}

const firstString = (...values: unknown[]): string | undefined => values.find((v): v is string => typeof v === 'string');

/**
 * Turns an error reply into the error the caller sees. Our servers send
 * `{ name, message, code? }`; other peers (Python) may send a string, a list
 * or another map — anything still gives a readable {@link RpcRemoteError}.
 * The server's own refusals (no traceback) map to
 * {@link RpcUnknownObjectError}, {@link RpcUnknownMethodError},
 * {@link RpcBadRequestError} and {@link RpcBusyError}.
 */
export function remoteErrorFromReply(exception: unknown, exceptionFormat: string): SnakeMQError {
  let name = 'Error';
  let message: string;
  let code: string | undefined;
  if (typeof exception === 'string') {
    message = exception;
  } else if (Array.isArray(exception)) {
    if (exception.length >= 2 && exception.every((x) => typeof x === 'string') && /^[A-Za-z_][\w.]*$/.test(exception[0])) {
      name = exception[0];
      message = exception.slice(1).join(', ');
    } else {
      message = display(exception);
    }
  } else if (exception !== null && typeof exception === 'object' && !Buffer.isBuffer(exception) && !(exception instanceof Date)) {
    const e = exception as Record<string, unknown>;
    name = firstString(e.name, e.type) ?? 'Error';
    message = firstString(e.message, e.msg) ?? display(e.args !== undefined ? e.args : exception);
    code = typeof e.code === 'string' ? e.code : typeof e.code === 'number' ? String(e.code) : undefined;
  } else {
    message = exception === null || exception === undefined ? 'remote call failed' : display(exception);
  }
  if (exceptionFormat === '') {
    if (name === 'RpcUnknownObjectError' && code === ErrorCode.RPC_UNKNOWN_OBJECT) return new RpcUnknownObjectError(message);
    if (name === 'RpcUnknownMethodError' && code === ErrorCode.RPC_UNKNOWN_METHOD) return new RpcUnknownMethodError(message);
    if (name === 'RpcBadRequestError' && code === ErrorCode.RPC_BAD_REQUEST) return new RpcBadRequestError(`the peer refused the request: ${message}`);
    if (name === 'RpcBusyError' && code === ErrorCode.RPC_BUSY) return new RpcBusyError(message);
  }
  return new RpcRemoteError(message === '' ? name : message, {
    name,
    code,
    stack: exceptionFormat === '' ? undefined : exceptionFormat,
  });
}
