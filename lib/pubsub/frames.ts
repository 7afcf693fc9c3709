/**
 * The publish/subscribe frames. Each is the data of one snakeMQ message,
 * starting with a 6-byte ASCII prefix (as RPC's `rpcreq`/`rpcrep`), so they
 * share the connection, the queues and the acknowledgements of everything
 * else; a receive hook on the prefix takes them (docs/protocol.md,
 * "Publish/subscribe"). Integers are big-endian, strings UTF-8.
 *
 *     smqpsS  u32 seq | u8 flags | u32 ttl | u16 count | count × (u16 len | filter)
 *     smqpsC  u32 seq | u8 status | reason
 *     smqpsP  u8 kind | u16 len | subject | u8 len | type | u8 len | sender
 *             | u8 len | version | f64 time (ms since epoch) | u16 micros | data
 *
 * Decoders check every length against the bytes present and the limits
 * before they allocate, and throw {@link PubSubFrameError}.
 * @module
 */
import { Buffer } from 'node:buffer';
import { PubSubFrameError, PubMessageError } from '../errors.js';

/** Prefix of a subscription frame (subscriber → publisher): the whole set of filters, replacing the previous one. */
export const SUBSCRIBE_PREFIX = 'smqpsS';
/** Prefix of a confirmation frame (publisher → subscriber): the subscription numbered `seq` is in force, or refused. */
export const CONFIRM_PREFIX = 'smqpsC';
/** Prefix of a published message (publisher → subscriber). */
export const PUBLISH_PREFIX = 'smqpsP';
const PREFIX_LENGTH = 6;

/** Subscription flag: keep matching messages while the subscriber is away. */
export const SUB_FLAG_DURABLE = 0x1;
/** Subscription flag: the subscriber asks that overflow rejects new messages rather than dropping the oldest. */
export const SUB_FLAG_REJECT = 0x2;
/** TTL value meaning "the publisher's maximum" in a subscription frame. */
export const SUB_TTL_DEFAULT = 0xffffffff;

/** Confirmation status: in force. */
export const CONFIRM_OK = 0;
/** Confirmation status: refused (the reason follows). */
export const CONFIRM_REFUSED = 1;
/** Longest refusal reason sent or read, in bytes. */
export const MAX_REASON_BYTES = 1024;

/** How the data of a published frame is to be read. */
export const DataKind = {
  None: 0,
  /** UTF-8 text (`text/ascii`). */
  Text: 1,
  /** Raw bytes (`binary/octet-stream`, a `Uint8Array`). */
  Bytes: 2,
  /** A binary string: ISO-8859-1, one byte per character (`binary/octet-stream` given as a string). */
  BinaryString: 3,
  /** JSON text as PostTroll writes it (`application/json`). */
  Json: 4,
} as const;
/** One of {@link DataKind}'s values. */
export type DataKind = (typeof DataKind)[keyof typeof DataKind];
const MAX_KIND = 4;

/** A decoded subscription frame. */
export interface SubscribeFrame {
  readonly seq: number;
  readonly flags: number;
  /** Seconds to hold messages for a durable subscriber that is away; `null`: the publisher's maximum. */
  readonly ttl: number | null;
  readonly filters: readonly string[];
}

/** A decoded confirmation frame. */
export interface ConfirmFrame {
  readonly seq: number;
  readonly ok: boolean;
  readonly reason: string;
}

/** A decoded published frame; `data` is a view of the received bytes. */
export interface PublishedFrame {
  readonly kind: DataKind;
  readonly subject: string;
  readonly type: string;
  readonly sender: string;
  readonly version: string | undefined;
  readonly timeMs: number;
  readonly micros: number;
  readonly data: Buffer;
}

/** Limits a decoder applies before allocating. */
export interface FrameLimits {
  /** Most filters in one subscription. */
  readonly maxFilters: number;
  /** Longest filter in UTF-8 bytes. */
  readonly maxFilterBytes: number;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function text(buf: Buffer, start: number, end: number, what: string): string {
  // Buffer's own UTF-8 decoding is the fast path; it replaces bad sequences with U+FFFD, so only
  // a string holding one is decoded again strictly (a real U+FFFD passes, invalid UTF-8 does not).
  const s = buf.toString('utf8', start, end);
  if (s.indexOf('\uFFFD') < 0) return s;
  try {
    return UTF8.decode(buf.subarray(start, end));
  } catch (err) {
    throw new PubSubFrameError(`${what} is not valid UTF-8`, { cause: err });
  }
}

/** Whether `s` is a non-empty word without Python's whitespace (PostTroll's rule for subject, type, sender and version). */
export function isWord(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c === 0x85 || c === 0xa0) return false;
    if (c >= 0x1680 && (c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000))
      return false;
  }
  return true;
}

/** Whether `data` starts with `prefix` (an ASCII string of 6 characters). */
export function hasPrefix(data: Uint8Array, prefix: string): boolean {
  if (data.length < PREFIX_LENGTH) return false;
  for (let i = 0; i < PREFIX_LENGTH; i++) if (data[i] !== prefix.charCodeAt(i)) return false;
  return true;
}

/** Encodes a subscription frame. Filters are not checked here (the Subscriber checks them when given). */
export function encodeSubscribe(seq: number, flags: number, ttl: number | null, filters: readonly string[]): Buffer {
  const encoded = filters.map((f) => Buffer.from(f, 'utf8'));
  let size = PREFIX_LENGTH + 11;
  for (const f of encoded) size += 2 + f.length;
  const buf = Buffer.allocUnsafe(size);
  buf.write(SUBSCRIBE_PREFIX, 0, 'latin1');
  buf.writeUInt32BE(seq >>> 0, 6);
  buf.writeUInt8(flags, 10);
  buf.writeUInt32BE(ttl === null ? SUB_TTL_DEFAULT : Math.min(Math.trunc(ttl), SUB_TTL_DEFAULT - 1), 11);
  buf.writeUInt16BE(encoded.length, 15);
  let off = 17;
  for (const f of encoded) {
    buf.writeUInt16BE(f.length, off);
    f.copy(buf, off + 2);
    off += 2 + f.length;
  }
  return buf;
}

/**
 * Decodes a subscription frame (prefix included).
 * @throws PubSubFrameError when it is truncated, has bytes left over, is not UTF-8, or breaks `limits`
 *   (checked on the counts and lengths read, before anything is allocated for them).
 */
export function decodeSubscribe(data: Buffer, limits: FrameLimits): SubscribeFrame {
  if (data.length < PREFIX_LENGTH + 11) throw new PubSubFrameError(`subscription frame truncated: ${data.length} bytes`);
  const seq = data.readUInt32BE(6);
  const flags = data.readUInt8(10);
  const rawTtl = data.readUInt32BE(11);
  const count = data.readUInt16BE(15);
  if (count > limits.maxFilters) throw new PubSubFrameError(`subscription of ${count} filters: over the limit of ${limits.maxFilters}`);
  const filters: string[] = [];
  let off = 17;
  for (let i = 0; i < count; i++) {
    if (off + 2 > data.length) throw new PubSubFrameError(`subscription frame truncated in filter ${i}`);
    const len = data.readUInt16BE(off);
    if (len > limits.maxFilterBytes) throw new PubSubFrameError(`filter ${i} of ${len} bytes: over the limit of ${limits.maxFilterBytes}`);
    if (off + 2 + len > data.length) throw new PubSubFrameError(`subscription frame truncated in filter ${i}`);
    filters.push(text(data, off + 2, off + 2 + len, `filter ${i}`));
    off += 2 + len;
  }
  if (off !== data.length) throw new PubSubFrameError(`subscription frame has ${data.length - off} bytes after its filters`);
  return { seq, flags, ttl: rawTtl === SUB_TTL_DEFAULT ? null : rawTtl, filters };
}

/** Encodes a confirmation frame; the reason is cut to {@link MAX_REASON_BYTES}. */
export function encodeConfirm(seq: number, ok: boolean, reason = ''): Buffer {
  let r = Buffer.from(reason, 'utf8');
  if (r.length > MAX_REASON_BYTES)
    r = Buffer.from(
      r
        .subarray(0, MAX_REASON_BYTES)
        .toString('utf8')
        .replace(/\uFFFD$/, ''),
      'utf8',
    );
  const buf = Buffer.allocUnsafe(PREFIX_LENGTH + 5 + r.length);
  buf.write(CONFIRM_PREFIX, 0, 'latin1');
  buf.writeUInt32BE(seq >>> 0, 6);
  buf.writeUInt8(ok ? CONFIRM_OK : CONFIRM_REFUSED, 10);
  r.copy(buf, 11);
  return buf;
}

/** Decodes a confirmation frame. @throws PubSubFrameError when truncated, of unknown status, or with a reason too long or not UTF-8. */
export function decodeConfirm(data: Buffer): ConfirmFrame {
  if (data.length < PREFIX_LENGTH + 5) throw new PubSubFrameError(`confirmation frame truncated: ${data.length} bytes`);
  const status = data.readUInt8(10);
  if (status !== CONFIRM_OK && status !== CONFIRM_REFUSED) throw new PubSubFrameError(`confirmation of unknown status ${status}`);
  if (data.length - 11 > MAX_REASON_BYTES) throw new PubSubFrameError(`confirmation reason over ${MAX_REASON_BYTES} bytes`);
  return { seq: data.readUInt32BE(6), ok: status === CONFIRM_OK, reason: text(data, 11, data.length, 'confirmation reason') };
}

/** The header fields of a published message, checked by the caller (words without whitespace). */
export interface PublishHeader {
  readonly subject: string;
  readonly type: string;
  /** Its UTF-8 bytes, computed once by a publisher. */
  readonly sender: Buffer;
  readonly version: string | undefined;
  readonly timeMs: number;
  readonly micros: number;
}

/** Longest subject in a published frame, in UTF-8 bytes. */
export const MAX_SUBJECT_BYTES = 0xffff;
/** Longest type, sender or version in a published frame, in UTF-8 bytes. */
export const MAX_WORD_BYTES = 0xff;

/**
 * The bytes of a published frame from its prefix to its version (the kind
 * byte left 0): what stays the same from one message to the next on a
 * subject, so a publisher encodes it once per subject and type.
 * @throws PubMessageError when the subject, type, sender or version is too long for the frame.
 */
export function encodePublishedHead(subject: string, type: string, sender: Buffer, version: string | undefined): Buffer {
  const subjectLen = Buffer.byteLength(subject, 'utf8');
  const typeLen = Buffer.byteLength(type, 'utf8');
  const versionLen = version === undefined ? 0 : Buffer.byteLength(version, 'utf8');
  if (subjectLen > MAX_SUBJECT_BYTES) throw new PubMessageError(`Invalid subject: ${subjectLen} bytes, over ${MAX_SUBJECT_BYTES}`);
  if (typeLen > MAX_WORD_BYTES) throw new PubMessageError(`Invalid type: ${typeLen} bytes, over ${MAX_WORD_BYTES}`);
  if (versionLen > MAX_WORD_BYTES) throw new PubMessageError(`Invalid version: ${versionLen} bytes, over ${MAX_WORD_BYTES}`);
  if (sender.length > MAX_WORD_BYTES) throw new PubMessageError(`Invalid sender: ${sender.length} bytes, over ${MAX_WORD_BYTES}`);
  const head = Buffer.allocUnsafe(PREFIX_LENGTH + 1 + 2 + subjectLen + 1 + typeLen + 1 + sender.length + 1 + versionLen);
  head.write(PUBLISH_PREFIX, 0, 'latin1');
  head[6] = 0;
  let off = 7;
  head.writeUInt16BE(subjectLen, off);
  off += 2 + head.write(subject, off + 2, 'utf8');
  head[off] = typeLen;
  off += 1 + head.write(type, off + 1, 'utf8');
  head[off] = sender.length;
  off += 1 + sender.copy(head, off + 1);
  head[off] = versionLen;
  if (versionLen) head.write(version!, off + 1, 'utf8');
  return head;
}

/** A published frame from a head ({@link encodePublishedHead}), the time and the data: one buffer that every subscriber's message shares. */
export function encodePublishedWith(head: Buffer, kind: DataKind, timeMs: number, micros: number, data: Uint8Array | string): Buffer {
  const encoding = kind === DataKind.BinaryString ? 'latin1' : 'utf8';
  const dataLen = typeof data === 'string' ? Buffer.byteLength(data, encoding) : data.byteLength;
  const off = head.length;
  const buf = Buffer.allocUnsafe(off + 10 + dataLen);
  head.copy(buf, 0);
  buf[6] = kind;
  buf.writeDoubleBE(timeMs, off);
  buf.writeUInt16BE(micros, off + 8);
  if (typeof data === 'string') buf.write(data, off + 10, encoding);
  else buf.set(data, off + 10);
  return buf;
}

/**
 * Encodes a published frame: one buffer, written once, that every
 * subscriber's message shares.
 * @throws PubMessageError when the subject, type, sender or version is too long for the frame.
 */
export function encodePublished(h: PublishHeader, kind: DataKind, data: Uint8Array | string): Buffer {
  return encodePublishedWith(encodePublishedHead(h.subject, h.type, h.sender, h.version), kind, h.timeMs, h.micros, data);
}

/**
 * Decodes a published frame's header; the data stays a view of `data`.
 * @throws PubSubFrameError when truncated, of unknown kind, with a bad time or text that is not UTF-8.
 */
export function decodePublished(data: Buffer, cache?: HeadCache): PublishedFrame {
  const n = data.length;
  if (n < PREFIX_LENGTH + 3) throw new PubSubFrameError(`published frame truncated: ${n} bytes`);
  const kind = data[6]! as DataKind;
  if (kind > MAX_KIND) throw new PubSubFrameError(`published frame of unknown data kind ${kind}`);
  // The lengths first: they say where the head (subject to version) ends, and whether it is all there.
  const subjectLen = data.readUInt16BE(7);
  const typeAt = 9 + subjectLen;
  if (typeAt + 1 > n) throw new PubSubFrameError('published frame truncated in its subject');
  const typeLen = data[typeAt]!;
  const senderAt = typeAt + 1 + typeLen;
  if (senderAt + 1 > n) throw new PubSubFrameError('published frame truncated in its type');
  const senderLen = data[senderAt]!;
  const versionAt = senderAt + 1 + senderLen;
  if (versionAt + 1 > n) throw new PubSubFrameError('published frame truncated in its sender');
  const versionLen = data[versionAt]!;
  const off = versionAt + 1 + versionLen;
  if (off + 10 > n) throw new PubSubFrameError('published frame truncated in its version or time');
  let head: DecodedHead;
  if (cache !== undefined && cache.bytes !== null && sameBytes(cache.bytes, data, 7, off)) {
    head = cache.head!;
  } else {
    head = {
      subject: text(data, 9, typeAt, 'subject'),
      type: text(data, typeAt + 1, senderAt, 'type'),
      sender: text(data, senderAt + 1, versionAt, 'sender'),
      version: versionLen === 0 ? undefined : text(data, versionAt + 1, off, 'version'),
    };
    if (cache !== undefined && off - 7 <= MAX_CACHED_HEAD) {
      cache.bytes = Buffer.from(data.subarray(7, off));
      cache.head = head;
    }
  }
  const timeMs = data.readDoubleBE(off);
  const micros = data.readUInt16BE(off + 8);
  if (!Number.isFinite(timeMs) || Math.abs(timeMs) > 8.64e15 || micros > 999) throw new PubSubFrameError('published frame with an invalid time');
  if (kind === DataKind.None && off + 10 !== n) throw new PubSubFrameError('published frame without data has bytes after its header');
  return { kind, subject: head.subject, type: head.type, sender: head.sender, version: head.version, timeMs, micros, data: data.subarray(off + 10) };
}

interface DecodedHead {
  readonly subject: string;
  readonly type: string;
  readonly sender: string;
  readonly version: string | undefined;
}

/** Whether `data[from..to)` equals `bytes` (a loop: for a few dozen bytes it beats `Buffer#compare` with offsets). */
function sameBytes(bytes: Buffer, data: Buffer, from: number, to: number): boolean {
  const n = bytes.length;
  if (n !== to - from) return false;
  for (let i = 0; i < n; i++) if (bytes[i] !== data[from + i]) return false;
  return true;
}

/** Longest head kept by a {@link HeadCache}. */
const MAX_CACHED_HEAD = 1024;

/**
 * The last head decoded from one publisher: a publisher repeats its subject,
 * type, sender and version, so their bytes are compared with the last ones
 * (one `compare`) instead of being decoded again.
 */
export class HeadCache {
  bytes: Buffer | null = null;
  head: DecodedHead | null = null;
}
