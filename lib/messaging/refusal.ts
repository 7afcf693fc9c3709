import { Buffer } from 'node:buffer';
import { ConnectionError, DuplicateIdentityError, ErrorCode, IdentificationTimeoutError, SnakeMQError, UnauthorizedError } from '../errors.js';

/**
 * Extension frame type 18, REFUSED: sent right before a peer closes a
 * connection it will not bind (duplicate identity, refused by `authorize`,
 * no identification in time), so that the other side can tell its
 * application why its connector keeps failing. Body: the error code (ASCII),
 * a NUL byte, the message (UTF-8). A snakeMQ 1.6 peer ignores it.
 */
export const FRAME_REFUSED = 18;

/** Longest REFUSED body sent or read; the rest of a longer one is ignored. */
const MAX_REFUSAL_BODY = 512;

/** Encodes a REFUSED frame for `error`. */
export function encodeRefused(error: SnakeMQError): Buffer {
  const text = Buffer.from(`${error.code}\0${error.message}`, 'utf8');
  const body = text.subarray(0, MAX_REFUSAL_BODY);
  const frame = Buffer.allocUnsafe(1 + body.length);
  frame[0] = FRAME_REFUSED;
  body.copy(frame, 1);
  return frame;
}

/**
 * The error a received REFUSED frame stands for, worded from this side:
 * `peer` refused the connection. Unknown codes become a ConnectionError.
 */
export function decodeRefused(payload: Buffer, peer: string): SnakeMQError {
  const body = payload.subarray(1, 1 + MAX_REFUSAL_BODY).toString('utf8');
  const nul = body.indexOf('\0');
  const code = nul >= 0 ? body.slice(0, nul) : '';
  // eslint-disable-next-line no-control-regex -- control characters from the peer are exactly what is replaced
  const reason = (nul >= 0 ? body.slice(nul + 1) : body).replace(/[\u0000-\u001f]/g, ' ');
  const message = `${peer} refused the connection: ${reason}`;
  switch (code) {
    case ErrorCode.DUPLICATE_IDENTITY:
      return new DuplicateIdentityError(message);
    case ErrorCode.UNAUTHORIZED:
      return new UnauthorizedError(message);
    case ErrorCode.IDENTIFICATION_TIMEOUT:
      return new IdentificationTimeoutError(message);
    default:
      return new ConnectionError(message);
  }
}
