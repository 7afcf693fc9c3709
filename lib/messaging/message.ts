import { Buffer } from 'node:buffer';
import { randomFillSync } from 'node:crypto';
import { InvalidArgumentError, InvalidOptionsError } from '../errors.js';
import { validateOptions } from '../util/options.js';

/** Message flag bit 0: the sender keeps the message in durable storage until it leaves the queue. */
export const FLAG_PERSISTENT = 0x1;

/** TTL value meaning "no limit" (wire value `0xFFFFFFFF`). */
export const TTL_INFINITE = null;

/** Largest finite TTL in seconds that fits the wire (`0xFFFFFFFE`). */
export const MAX_TTL = 0xfffffffe;

/**
 * Default TTL of a new message: no limit. A message sent while its peer is
 * away waits for the peer (queues are bounded, see the messaging options),
 * instead of snakeMQ's default of 0 which silently drops it.
 */
export const DEFAULT_TTL: number | null = null;

/**
 * Options of a new {@link Message}. Checked like every options object: an
 * unknown key (a misspelt `persistant`) or a bad value throws
 * `InvalidOptionsError`.
 */
export interface MessageOptions {
  /**
   * Seconds the message may wait for a disconnected peer; `null` = no limit.
   * Fractions are truncated on the wire. `0` = send only if the peer is connected now.
   * @default null
   */
  ttl?: number | null;
  /** Flag bits; see {@link FLAG_PERSISTENT}. @default 0 */
  flags?: number;
  /** Shorthand for setting {@link FLAG_PERSISTENT}. @default false */
  persistent?: boolean;
  /** 16-byte id; random (UUID v4) unless given. Re-sends keep it. */
  uuid?: Uint8Array;
}

// 64 KiB per refill: randomFillSync costs about 2 ns per uuid at this size, 3.5 at 16 KiB (per-call overhead).
const UUID_POOL_SIZE = 64 * 1024;
let uuidPool = Buffer.allocUnsafe(0);
let uuidPoolView = new DataView(uuidPool.buffer, uuidPool.byteOffset, 0);
let uuidPoolOffset = 0;

/**
 * @internal Reserves 16 random bytes shaped as a UUID v4 in the pooled random
 * buffer; returns their offset in {@link currentUuidPool} (read it after this call).
 */
export function reserveUuid(): number {
  if (uuidPoolOffset + 16 > uuidPool.length) refillUuidPool();
  const off = uuidPoolOffset;
  uuidPoolOffset += 16;
  return off;
}

/** A fresh pool of random bytes, every 16 of them shaped as a UUID v4 (version and variant bits) at once. */
function refillUuidPool(): void {
  const pool = randomFillSync(Buffer.allocUnsafe(UUID_POOL_SIZE));
  for (let off = 0; off < UUID_POOL_SIZE; off += 16) {
    pool[off + 6] = (pool[off + 6]! & 0x0f) | 0x40;
    pool[off + 8] = (pool[off + 8]! & 0x3f) | 0x80;
  }
  uuidPool = pool;
  uuidPoolView = new DataView(pool.buffer, pool.byteOffset, pool.byteLength);
  uuidPoolOffset = 0;
}

/** @internal The DataView of the random pool that {@link reserveUuid} reserved from last. */
export function currentUuidPool(): DataView {
  return uuidPoolView;
}

/** @internal Copies a 16-byte uuid between DataViews (four 32-bit moves). */
export function copyUuid(target: DataView, offset: number, src: DataView, from: number): void {
  target.setUint32(offset, src.getUint32(from));
  target.setUint32(offset + 4, src.getUint32(from + 4));
  target.setUint32(offset + 8, src.getUint32(from + 8));
  target.setUint32(offset + 12, src.getUint32(from + 12));
}

/** @internal The uuid at `view[offset..offset+16)` as a Buffer (sharing its memory). */
export function uuidAt(view: DataView, offset: number): Buffer {
  return Buffer.from(view.buffer, view.byteOffset + offset, 16);
}

/** 16 random bytes shaped as a UUID v4 (from a pooled random buffer: fast). */
export function randomUuid(): Buffer {
  const off = reserveUuid();
  return uuidPool.subarray(off, off + 16);
}

/** A DataView over all of `buf`. */
export function viewOf(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** @internal Message data as a Buffer (no copy for a Buffer or Uint8Array). */
export function toBuffer(data: Buffer | Uint8Array | string): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  throw new InvalidArgumentError('message data must be a Buffer, Uint8Array or string');
}

const MAX_FLAGS = 0xffffffff;

/** The checks of {@link MessageOptions}: used to word the error once the cheap checks below found a problem. */
const OPTION_CHECKS = {
  ttl: (v: unknown) => (v === null || (typeof v === 'number' && v >= 0 && v <= MAX_TTL) ? undefined : `must be null or a number of seconds in [0, ${MAX_TTL}]`),
  flags: (v: unknown) => (Number.isInteger(v) && (v as number) >= 0 && (v as number) <= MAX_FLAGS ? undefined : 'must be a 32-bit unsigned integer'),
  persistent: (v: unknown) => (typeof v === 'boolean' ? undefined : 'must be a boolean'),
  uuid: (v: unknown) => (v instanceof Uint8Array && v.byteLength === 16 ? undefined : 'must be 16 bytes (a Uint8Array)'),
};
const OPTION_DEFAULTS: MessageOptions = {};

/** Throws the {@link InvalidOptionsError} describing what is wrong with `options` (known to be wrong). */
function invalidOptions(options: unknown): never {
  validateOptions('Message', options, OPTION_CHECKS, OPTION_DEFAULTS);
  // Only an inherited enumerable key gets here (validateOptions looks at own keys).
  throw new InvalidOptionsError('Message: options must be a plain object of ttl, flags, persistent, uuid');
}

/**
 * Cheap check of the keys (no allocation): an unknown key, say a misspelt
 * `persistant`, is an {@link InvalidOptionsError} rather than a silently
 * transient message. Values are checked by the helpers below.
 */
function checkOptionKeys(options: MessageOptions): void {
  if (typeof options !== 'object' || options === null) invalidOptions(options);
  for (const key in options) {
    if (key !== 'ttl' && key !== 'flags' && key !== 'persistent' && key !== 'uuid') invalidOptions(options);
  }
}

function ttlOption(options: MessageOptions): number | null {
  const ttl = options.ttl;
  if (ttl === undefined) return DEFAULT_TTL;
  if (ttl !== null && !(typeof ttl === 'number' && ttl >= 0 && ttl <= MAX_TTL)) invalidOptions(options);
  return ttl;
}

function flagsOption(options: MessageOptions): number {
  let flags = 0;
  if (options.flags !== undefined) {
    if (!Number.isInteger(options.flags) || options.flags < 0 || options.flags > MAX_FLAGS) invalidOptions(options);
    flags = options.flags;
  }
  const persistent = options.persistent;
  if (persistent === undefined || persistent === false) return flags;
  if (persistent !== true) invalidOptions(options);
  return (flags | FLAG_PERSISTENT) >>> 0;
}

function uuidOption(options: MessageOptions): Buffer | null {
  const uuid = options.uuid;
  if (uuid === undefined) return null;
  if (!(uuid instanceof Uint8Array) || uuid.byteLength !== 16) invalidOptions(options);
  return toBuffer(uuid);
}

/**
 * One message: opaque data bytes plus a 16-byte uuid, a TTL and flags
 * (reference §4).
 *
 * ```ts
 * new Message('hello');                              // no TTL limit, transient
 * new Message(buf, { ttl: 600, persistent: true });  // waits up to 10 min, stored durably
 * ```
 *
 * @throws `InvalidOptionsError` for an unknown option or a bad value;
 *   `InvalidArgumentError` for data that is not a Buffer, Uint8Array or string.
 */
export class Message {
  /** The payload. */
  readonly data: Buffer;
  /** Seconds left to wait for a disconnected peer; `null` = no limit. */
  ttl: number | null;
  /** Flag bits (see {@link FLAG_PERSISTENT}). */
  readonly flags: number;
  // The uuid lives in a shared buffer (random pool, or the received packet),
  // read through a DataView (four 32-bit loads instead of sixteen byte loads),
  // and becomes a Buffer of its own only when asked for: most messages never are.
  /** @internal Where the uuid lives: a DataView and the offset in it. */
  readonly uuidSource: DataView;
  /** @internal See {@link uuidSource}. */
  readonly uuidOffset: number;
  private uuidBuffer: Buffer | null;

  constructor(data: Buffer | Uint8Array | string, options?: MessageOptions);
  /** @internal Decoded from a frame (see {@link fromFrame}): nothing to validate or copy. */
  constructor(data: Buffer, options: MessageOptions, ttl: number | null, flags: number, uuidSource: DataView, uuidOffset: number);
  constructor(
    data: Buffer | Uint8Array | string,
    options?: MessageOptions,
    wireTtl?: number | null,
    wireFlags?: number,
    wireView?: DataView,
    wireOffset?: number,
  ) {
    if (options === PARTS) {
      this.data = data as Buffer;
      this.ttl = wireTtl!;
      this.flags = wireFlags!;
      this.uuidSource = wireView!;
      this.uuidOffset = wireOffset!;
      this.uuidBuffer = null;
      return;
    }
    // Kept small, with validation in helpers, so that the constructor inlines into the caller's loop.
    this.data = data instanceof Buffer ? data : toBuffer(data);
    if (options !== undefined) checkOptionKeys(options);
    this.ttl = options === undefined ? DEFAULT_TTL : ttlOption(options);
    this.flags = options === undefined ? 0 : flagsOption(options);
    const uuid = options === undefined ? null : uuidOption(options);
    if (uuid === null) {
      const off = reserveUuid();
      this.uuidSource = uuidPoolView;
      this.uuidOffset = off;
    } else {
      this.uuidSource = viewOf(uuid);
      this.uuidOffset = 0;
    }
    this.uuidBuffer = uuid;
  }

  /** 16-byte id chosen by the original sender and kept across re-sends. */
  get uuid(): Buffer {
    return (this.uuidBuffer ??= uuidAt(this.uuidSource, this.uuidOffset));
  }

  /** Whether {@link FLAG_PERSISTENT} is set. */
  get persistent(): boolean {
    return (this.flags & FLAG_PERSISTENT) !== 0;
  }

  /** The uuid as 32 lowercase hex characters. */
  get id(): string {
    return this.uuid.toString('hex');
  }

  /**
   * @internal A message decoded from the MESSAGE frame at `buf[start..end)`
   * (`view` is a DataView over all of `buf`): uuid at `start + 1`, data from
   * `start + 25`. No validation, no copy.
   */
  static fromFrame(buf: Buffer, view: DataView, start: number, end: number, ttl: number | null, flags: number): Message {
    return new Message(buf.subarray(start + 25, end), PARTS, ttl, flags, view, start + 1);
  }

  /** @internal A message of parts already checked (the uuid at `uuidView[uuidOffset..+16)`). */
  static fromParts(data: Buffer, ttl: number | null, flags: number, uuidView: DataView, uuidOffset: number): Message {
    return new Message(data, PARTS, ttl, flags, uuidView, uuidOffset);
  }
}

/** Marks the internal constructor calls of {@link Message.fromFrame} and {@link Message.fromParts}. */
const PARTS: MessageOptions = {};
