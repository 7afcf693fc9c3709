/**
 * Argument checks shared by the storage implementations (internal). They
 * return a problem description, or undefined, so callers can turn it into a
 * rejected promise instead of throwing synchronously.
 * @module
 */
import { Buffer } from 'node:buffer';
import type { StoredMessage } from './types.js';

/** @internal Length of a message uuid in bytes. */
export const UUID_LENGTH = 16;

const isUuid = (u: unknown): u is Buffer => Buffer.isBuffer(u) && u.length === UUID_LENGTH;
/** TTLs and times are finite and within ±2^53 (what the SQLite storage stores exactly). */
const isNumber = (x: unknown): boolean => typeof x === 'number' && Number.isFinite(x) && Math.abs(x) <= Number.MAX_SAFE_INTEGER;

const SURROGATE = /[\ud800-\udfff]/;

/**
 * The ident as stored: lone UTF-16 surrogates replaced by U+FFFD, as UTF-8
 * encoding does anyway (so every path into SQLite agrees on the bytes).
 * @internal
 */
export function wellFormed(ident: string): string {
  return SURROGATE.test(ident) ? Buffer.from(ident, 'utf8').toString('utf8') : ident;
}

/** @internal */
export function checkIdent(ident: unknown): string | undefined {
  return typeof ident === 'string' ? undefined : 'ident must be a string';
}

/** @internal */
export function checkMessages(messages: unknown): string | undefined {
  if (!Array.isArray(messages)) return 'messages must be an array';
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i] as StoredMessage | null;
    if (typeof m !== 'object' || m === null) return `messages[${i}] must be an object`;
    if (!isUuid(m.uuid)) return `messages[${i}].uuid must be a Buffer of ${UUID_LENGTH} bytes`;
    if (!Buffer.isBuffer(m.data)) return `messages[${i}].data must be a Buffer`;
    if (!Number.isInteger(m.flags) || m.flags < 0 || m.flags > 0xffffffff) {
      return `messages[${i}].flags must be an integer in [0, 2^32)`;
    }
    if (m.ttl !== null && !isNumber(m.ttl)) {
      return `messages[${i}].ttl must be null or a finite number within ±2^53`;
    }
  }
  return undefined;
}

/** @internal */
export function checkUuids(uuids: unknown): string | undefined {
  if (!Array.isArray(uuids)) return 'uuids must be an array';
  for (let i = 0; i < uuids.length; i++) {
    if (!isUuid(uuids[i])) return `uuids[${i}] must be a Buffer of ${UUID_LENGTH} bytes`;
  }
  return undefined;
}

/** @internal */
export function checkTtlEntries(entries: unknown): string | undefined {
  if (!Array.isArray(entries)) return 'entries must be an array';
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as { uuid: unknown; ttl: unknown } | null;
    if (typeof e !== 'object' || e === null) return `entries[${i}] must be an object`;
    if (!isUuid(e.uuid)) return `entries[${i}].uuid must be a Buffer of ${UUID_LENGTH} bytes`;
    if (e.ttl !== null && !isNumber(e.ttl)) {
      return `entries[${i}].ttl must be null or a finite number within ±2^53`;
    }
  }
  return undefined;
}

/** @internal */
export function checkAwaySince(awaySince: unknown): string | undefined {
  return awaySince === null || isNumber(awaySince) ? undefined : 'awaySince must be null or a finite number within ±2^53';
}
