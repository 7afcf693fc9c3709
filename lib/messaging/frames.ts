import { Buffer } from 'node:buffer';
import { NotIdentifiedError, ProtocolError } from '../errors.js';
import { copyUuid, viewOf, type Message } from './message.js';

/**
 * Frame types (reference §2, plus this project's extension frames 16 and 17,
 * see docs/protocol.md). A snakeMQ 1.6 peer ignores unknown frame types.
 */
export const FrameType = {
  PROTOCOL_VERSION: 0,
  INCOMPATIBLE_PROTOCOL: 1,
  IDENTIFICATION: 2,
  MESSAGE: 3,
  PING: 4,
  PONG: 5,
  /** Extension: the sender's feature bits (sent right after IDENTIFICATION). */
  EXTENSIONS: 16,
  /** Extension: acknowledges the next N MESSAGE frames received on this connection. */
  ACK: 17,
} as const;

/** The protocol version spoken (reference §2). */
export const PROTOCOL_VERSION = 1;
/** Identities are cut to this many characters (code points) on the wire. */
export const MAX_IDENT_LENGTH = 50;
/** MESSAGE body header: uuid (16) + TTL (4) + flags (4). */
export const MESSAGE_HEADER_SIZE = 24;
/** Wire TTL meaning "no limit". */
export const WIRE_TTL_INFINITE = 0xffffffff;
/**
 * Extension message flag, only between peers in acknowledged mode: the message
 * may have been received before (re-sent after a reconnect or a restart). The
 * receiver checks it against recent uuids and strips the bit.
 */
export const FLAG_RESENT = 0x80000000;
/** Extension feature bit: acknowledged delivery (ACK frames, re-send, de-duplication). */
export const FEATURE_ACK = 0x1;
/** Version of the extension frames' layout. */
export const EXTENSIONS_VERSION = 1;

/** A decoded frame. `body` views the packet (no copy). */
export type Frame =
  | { type: typeof FrameType.PROTOCOL_VERSION; version: number }
  | { type: typeof FrameType.INCOMPATIBLE_PROTOCOL }
  /** `ident`: cut to 50 characters ({@link truncateIdent}), invalid UTF-8 replaced by U+FFFD. */
  | { type: typeof FrameType.IDENTIFICATION; ident: string }
  | { type: typeof FrameType.MESSAGE; uuid: Buffer; ttl: number | null; flags: number; data: Buffer }
  | { type: typeof FrameType.PING }
  | { type: typeof FrameType.PONG }
  | { type: typeof FrameType.EXTENSIONS; version: number; features: number }
  | { type: typeof FrameType.ACK; count: number }
  | { type: 'unknown'; code: number };

const PING = Buffer.from([FrameType.PING]);
const PONG = Buffer.from([FrameType.PONG]);
const INCOMPATIBLE = Buffer.from([FrameType.INCOMPATIBLE_PROTOCOL]);

/**
 * Most bytes of UTF-8 that 50 code points take (4 each): an IDENTIFICATION
 * body is decoded up to this many bytes only, then cut to 50 characters.
 */
export const MAX_IDENT_BYTES = MAX_IDENT_LENGTH * 4;

/**
 * Whether `ident` can be a peer's identity as it arrives on the wire, so
 * that a destination of `send()` can ever match a peer: a string of at most
 * 50 characters (code points, {@link MAX_IDENT_LENGTH}) without lone
 * surrogates (UTF-8 cannot carry them: they would arrive as U+FFFD).
 * Longer identities are cut by {@link truncateIdent} when announced, so a
 * peer never has one.
 */
export function isValidIdent(ident: unknown): ident is string {
  if (typeof ident !== 'string') return false;
  // Up to 50 UTF-16 units are at most 50 code points; beyond, count them.
  if (ident.length > MAX_IDENT_LENGTH && truncateIdent(ident).length !== ident.length) return false;
  return !LONE_SURROGATE.test(ident);
}

/** With the `u` flag, `\p{Cs}` matches only surrogates that are not part of a pair. */
const LONE_SURROGATE = /\p{Cs}/u;

/** Cuts an identity to its first 50 characters (code points, as Python slices). */
export function truncateIdent(ident: string): string {
  if (ident.length <= MAX_IDENT_LENGTH) return ident;
  let out = '';
  let n = 0;
  for (const ch of ident) {
    if (n++ === MAX_IDENT_LENGTH) break;
    out += ch;
  }
  return out;
}

export function encodeProtocolVersion(version = PROTOCOL_VERSION): Buffer {
  const out = Buffer.allocUnsafe(5);
  out[0] = FrameType.PROTOCOL_VERSION;
  out.writeUInt32BE(version, 1);
  return out;
}

export function encodeIncompatibleProtocol(): Buffer {
  return INCOMPATIBLE;
}

export function encodeIdentification(ident: string): Buffer {
  const body = Buffer.from(truncateIdent(ident), 'utf8');
  const out = Buffer.allocUnsafe(1 + body.length);
  out[0] = FrameType.IDENTIFICATION;
  body.copy(out, 1);
  return out;
}

/** Wire TTL: whole seconds remaining (fractions truncated), or `0xFFFFFFFF` for no limit. */
export function wireTtl(ttl: number | null): number {
  if (ttl === null) return WIRE_TTL_INFINITE;
  return ttl <= 0 ? 0 : Math.min(Math.trunc(ttl), WIRE_TTL_INFINITE - 1);
}

/** Encodes a MESSAGE frame carrying the TTL remaining now. */
export function encodeMessage(message: Message, ttl: number | null = message.ttl): Buffer {
  const data = message.data;
  const out = Buffer.allocUnsafe(1 + MESSAGE_HEADER_SIZE + data.length);
  writeMessageHead(out, message, ttl);
  data.copy(out, 25);
  return out;
}

/**
 * Writes a whole MESSAGE frame (head and data) carrying `ttl` and extra flag
 * bits at `offset` of `out` (`view`: a DataView over all of `out`). The send
 * path's innermost step, written out in one function.
 */
export function writeMessageFrame(
  out: Buffer,
  view: DataView,
  offset: number,
  data: Buffer,
  flags: number,
  uuidView: DataView,
  uuidOffset: number,
  ttl: number | null,
  extraFlags: number,
): void {
  writeHead(out, view, offset, flags, uuidView, uuidOffset, ttl, extraFlags);
  out.set(data, offset + 25);
}

/** Writes a MESSAGE frame's first 25 bytes (type, uuid, TTL, flags) into `out`. */
export function writeMessageHead(out: Buffer, message: Message, ttl: number | null, extraFlags = 0): void {
  writeHead(out, viewOf(out), 0, message.flags, message.uuidSource, message.uuidOffset, ttl, extraFlags);
}

/** {@link writeMessageHead} from a message's parts. */
export function writeMessageHeadOf(out: Buffer, flags: number, uuidView: DataView, uuidOffset: number, ttl: number | null, extraFlags: number): void {
  writeHead(out, viewOf(out), 0, flags, uuidView, uuidOffset, ttl, extraFlags);
}

function writeHead(
  out: Buffer,
  view: DataView,
  offset: number,
  flags: number,
  uuidView: DataView,
  uuidOffset: number,
  ttl: number | null,
  extraFlags: number,
): void {
  out[offset] = FrameType.MESSAGE;
  copyUuid(view, offset + 1, uuidView, uuidOffset);
  view.setUint32(offset + 17, ttl === null ? WIRE_TTL_INFINITE : wireTtl(ttl));
  view.setUint32(offset + 21, (flags | extraFlags) >>> 0);
}

export function encodePing(): Buffer {
  return PING;
}

export function encodePong(): Buffer {
  return PONG;
}

export function encodeExtensions(features: number): Buffer {
  const out = Buffer.allocUnsafe(6);
  out[0] = FrameType.EXTENSIONS;
  out[1] = EXTENSIONS_VERSION;
  out.writeUInt32BE(features >>> 0, 2);
  return out;
}

export function encodeAck(count: number): Buffer {
  const out = Buffer.allocUnsafe(5);
  out[0] = FrameType.ACK;
  out.writeUInt32BE(count, 1);
  return out;
}

/**
 * Decodes one packet payload into a frame.
 * @throws {@link ProtocolError} for an empty payload or a body of the wrong size.
 */
export function decodeFrame(payload: Buffer): Frame {
  if (payload.length === 0) throw new ProtocolError('empty frame');
  const type = payload[0]!;
  switch (type) {
    case FrameType.PROTOCOL_VERSION:
      if (payload.length !== 5) throw new ProtocolError(`PROTOCOL_VERSION body of ${payload.length - 1} bytes, expected 4`);
      return { type, version: payload.readUInt32BE(1) };
    case FrameType.INCOMPATIBLE_PROTOCOL:
      return { type };
    case FrameType.IDENTIFICATION:
      // 50 code points end within the first 200 bytes (a replacement character covers at most 3): decode no more than that.
      return { type, ident: truncateIdent(payload.toString('utf8', 1, Math.min(payload.length, 1 + MAX_IDENT_BYTES))) };
    case FrameType.MESSAGE: {
      if (payload.length < 1 + MESSAGE_HEADER_SIZE) {
        throw new ProtocolError(`MESSAGE body of ${payload.length - 1} bytes, expected at least ${MESSAGE_HEADER_SIZE}`);
      }
      const ttl = payload.readUInt32BE(17);
      return {
        type,
        uuid: payload.subarray(1, 17),
        ttl: ttl === WIRE_TTL_INFINITE ? null : ttl,
        flags: payload.readUInt32BE(21),
        data: payload.subarray(25),
      };
    }
    case FrameType.PING:
      return { type };
    case FrameType.PONG:
      return { type };
    case FrameType.EXTENSIONS:
      if (payload.length < 6) throw new ProtocolError(`EXTENSIONS body of ${payload.length - 1} bytes, expected at least 5`);
      return { type, version: payload[1]!, features: payload.readUInt32BE(2) };
    case FrameType.ACK:
      if (payload.length !== 5) throw new ProtocolError(`ACK body of ${payload.length - 1} bytes, expected 4`);
      return { type, count: payload.readUInt32BE(1) };
    default:
      return { type: 'unknown', code: type };
  }
}

/** The error for a MESSAGE frame that arrives before IDENTIFICATION (reference §3.4). */
export function messageBeforeIdentification(): NotIdentifiedError {
  return new NotIdentifiedError('MESSAGE received before IDENTIFICATION');
}
