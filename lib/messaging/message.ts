import { randomFillSync } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';

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

/** Options of a new {@link Message}. */
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

const UUID_POOL_SIZE = 16 * 1024;
let uuidPool = Buffer.allocUnsafe(0);
let uuidPoolOffset = 0;

/** 16 random bytes shaped as a UUID v4, taken from a pooled random buffer (fast). */
export function randomUuid(): Buffer {
  if (uuidPoolOffset + 16 > uuidPool.length) {
    uuidPool = randomFillSync(Buffer.allocUnsafe(UUID_POOL_SIZE));
    uuidPoolOffset = 0;
  }
  const id = uuidPool.subarray(uuidPoolOffset, uuidPoolOffset + 16);
  uuidPoolOffset += 16;
  id[6] = (id[6]! & 0x0f) | 0x40;
  id[8] = (id[8]! & 0x3f) | 0x80;
  return id;
}

function toBuffer(data: Buffer | Uint8Array | string): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  throw new InvalidArgumentError('message data must be a Buffer, Uint8Array or string');
}

/**
 * One message: opaque data bytes plus a 16-byte uuid, a TTL and flags
 * (reference §4).
 *
 * ```ts
 * new Message('hello');                              // no TTL limit, transient
 * new Message(buf, { ttl: 600, persistent: true });  // waits up to 10 min, stored durably
 * ```
 */
export class Message {
  /** The payload. */
  readonly data: Buffer;
  /** 16-byte id chosen by the original sender and kept across re-sends. */
  readonly uuid: Buffer;
  /** Seconds left to wait for a disconnected peer; `null` = no limit. */
  ttl: number | null;
  /** Flag bits (see {@link FLAG_PERSISTENT}). */
  readonly flags: number;

  constructor(data: Buffer | Uint8Array | string, options?: MessageOptions) {
    this.data = toBuffer(data);
    let flags = 0;
    let ttl: number | null = DEFAULT_TTL;
    let uuid: Buffer | undefined;
    if (options !== undefined) {
      if (options.ttl !== undefined) {
        if (options.ttl !== null && !(typeof options.ttl === 'number' && options.ttl >= 0 && options.ttl <= MAX_TTL)) {
          throw new InvalidArgumentError(`message ttl must be null or a number of seconds in [0, ${MAX_TTL}]`);
        }
        ttl = options.ttl;
      }
      if (options.flags !== undefined) {
        if (!Number.isInteger(options.flags) || options.flags < 0 || options.flags > 0xffffffff) {
          throw new InvalidArgumentError('message flags must be a 32-bit unsigned integer');
        }
        flags = options.flags;
      }
      if (options.persistent) flags |= FLAG_PERSISTENT;
      if (options.uuid !== undefined) {
        if (!(options.uuid instanceof Uint8Array) || options.uuid.byteLength !== 16) {
          throw new InvalidArgumentError('message uuid must be 16 bytes');
        }
        uuid = toBuffer(options.uuid);
      }
    }
    this.uuid = uuid ?? randomUuid();
    this.ttl = ttl;
    this.flags = flags;
  }

  /** Whether {@link FLAG_PERSISTENT} is set. */
  get persistent(): boolean {
    return (this.flags & FLAG_PERSISTENT) !== 0;
  }

  /** The uuid as 32 lowercase hex characters. */
  get id(): string {
    return this.uuid.toString('hex');
  }
}
