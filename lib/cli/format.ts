import { Buffer } from 'node:buffer';
import type { Message } from '../messaging/index.js';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The data as text when it is valid UTF-8 (checked strictly), else null. */
export function utf8OrNull(data: Uint8Array): string | null {
  try {
    return strictUtf8.decode(data);
  } catch {
    return null;
  }
}

/** `smq listen --json`: one received message as one JSON line. */
export function messageJson(from: string, message: Message): string {
  const text = utf8OrNull(message.data);
  return JSON.stringify({
    from,
    uuid: message.id,
    ttl: message.ttl,
    flags: message.flags,
    size: message.data.length,
    data: text ?? message.data.toString('base64'),
    encoding: text === null ? 'base64' : 'utf8',
  });
}

/**
 * `smq listen` without `--json`: `<from>: <text>` when the data is valid
 * UTF-8 on one line, else `<from>: <base64>` (the output stays one line per message).
 */
export function messageLine(from: string, message: Message): string {
  const text = utf8OrNull(message.data);
  const shown = text !== null && !/[\r\n\u2028\u2029]/.test(text) ? text : message.data.toString('base64');
  return `${from}: ${shown}`;
}

/**
 * A decoded MessagePack value made JSON-friendly: bytes become base64
 * strings, bigints numbers (or strings when not exactly representable), Maps
 * objects, Sets arrays, undefined null.
 */
export function toJsonValue(value: unknown, seen = new Set<object>()): unknown {
  if (value === undefined) return null;
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (seen.has(value)) return '[circular]';
  seen.add(value);
  try {
    if (Array.isArray(value) || value instanceof Set) return [...value].map((v) => toJsonValue(v, seen));
    if (value instanceof Map) {
      const out: Record<string, unknown> = {};
      for (const [k, v] of value) out[String(k)] = toJsonValue(v, seen);
      return out;
    }
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = toJsonValue(v, seen);
    return out;
  } finally {
    seen.delete(value);
  }
}
