/**
 * PostTroll's message model: {@link PubMessage}, its string form
 * ({@link encodePostTroll} / {@link decodePostTroll}) and datetimes with
 * microseconds and optional time zone ({@link PubDateTime}).
 *
 * The string form, byte for byte as PostTroll (`posttroll.message`) writes and reads it:
 *
 *     pytroll:/<subject> <type> <sender> <time> <version>[ <mime> <data>]
 *
 * - The magic is `pytroll:/`; subjects start with `/`, so `/counter` is written `pytroll://counter`.
 * - Decoding splits on runs of whitespace (Python's `\s`, which is not JavaScript's: it includes
 *   `\x1c`–`\x1f` and `\x85`, and not U+FEFF) into at most 7 fields; only the data (field 7) keeps
 *   its spaces. Leading whitespace of the data is therefore lost, as in PostTroll.
 * - Mime types: `text/ascii` (data is the raw string), `application/json`, `binary/octet-stream`
 *   (the raw string, marked binary). Falsy data (`''`, `0`, `false`, `null`, `{}`, `[]`, empty bytes)
 *   is left out; such a message decodes with data `''`.
 * - Versions: `v1.01` writes times without zone (UTC implied), later versions (`v1.2`) with it.
 *   The writer uses the message's `version`, else `v1.2` when the JSON data holds a datetime, else
 *   `v1.01`. The reader accepts versions that compare `<= 'v1.2'` as strings (as PostTroll does:
 *   `'v1.10'` passes, `'v1.3'` does not).
 * - JSON is written as Python's `json.dumps` does by default: `', '` and `': '` separators,
 *   `\uXXXX` escapes of everything outside printable ASCII (surrogate pairs for astral characters),
 *   numbers as Python prints them (safe integers as integers, other numbers as `float` repr: `1.5`,
 *   `1e-05`, `1e+16`, `NaN`, `Infinity`). JavaScript has one number type: a Python `3.0` decodes to `3`
 *   and is written back as `3`; integers beyond 2^53 lose precision (write a `bigint` to send one exactly).
 *   Integer-like keys come first in a JavaScript object, so such keys may be written back in another order.
 *
 * Datetimes inside JSON data: PostTroll turns every JSON string that parses as an ISO date/time
 * back into a datetime (`"2026-01-02"` included). This decoder does not by default: strings stay
 * strings. Give `reviveString: revivePostTrollDates` to {@link decodePostTroll} to get PostTroll's
 * behaviour ({@link PubDateTime} values), or any other policy function.
 *
 * @module
 */
import os from 'node:os';
import { InvalidOptionsError, PubMessageError } from '../errors.js';

/** The magic word every PostTroll message starts with. */
export const POSTTROLL_MAGIC = 'pytroll:/';

/** The newest message version this reader accepts (compared as a string, like PostTroll). */
export const POSTTROLL_MAX_VERSION = 'v1.2';

/** Default of {@link DecodePostTrollOptions.maxBytes}: 16 MiB of UTF-8. */
export const DEFAULT_POSTTROLL_MAX_BYTES = 16 * 1024 * 1024;

/** Deepest nesting of arrays and objects that JSON data may have (encoding, and reviving on decode). */
export const POSTTROLL_MAX_JSON_DEPTH = 1000;

/** Python's `\s` in a `str` pattern (characters for which `str.isspace()` is true). */
const PY_WS = '[\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const PY_WS_ANY = new RegExp(PY_WS);

const ISO_RE = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2})(?::(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?(?:(Z)|([+-])(\d{2})(?::?(\d{2}))?)?)?$/;

/**
 * A Python `datetime` as PostTroll sends it: an instant (or a naive wall time), microseconds, and
 * an optional UTC offset. JavaScript's `Date` has milliseconds only and no zone, so this carries
 * the rest. Naive datetimes (no zone: what `v1.01` writes) keep their wall time in `date` read as
 * UTC. A plain `Date` in message data is written as an aware UTC datetime.
 */
export class PubDateTime {
  /** The instant; for a naive datetime, its wall time read as UTC. */
  readonly date: Date;
  /** Microseconds beyond `date`'s milliseconds, 0..999. */
  readonly micros: number;
  /** Offset from UTC in minutes (`0` for `+00:00`), or `null` for a naive datetime. */
  readonly offsetMinutes: number | null;

  /**
   * @param date the instant (naive: the wall time as UTC); years 1..9999 as Python allows.
   * @param options `micros` 0..999 (default 0); `offsetMinutes` (default `0`, i.e. aware UTC; `null` = naive), an integer within ±1439.
   * @throws PubMessageError on an invalid date, micros or offset.
   */
  constructor(date: Date, options: { micros?: number; offsetMinutes?: number | null } = {}) {
    const { micros = 0, offsetMinutes = 0 } = options;
    if (!(date instanceof Date) || Number.isNaN(date.getTime())) throw new PubMessageError('Invalid datetime: not a valid Date');
    if (!Number.isInteger(micros) || micros < 0 || micros > 999)
      throw new PubMessageError(`Invalid datetime: micros must be an integer in [0, 999], got ${micros}`);
    if (offsetMinutes !== null && (!Number.isInteger(offsetMinutes) || Math.abs(offsetMinutes) >= 1440)) {
      throw new PubMessageError(`Invalid datetime: offsetMinutes must be null or an integer within ±1439, got ${offsetMinutes}`);
    }
    const year = new Date(date.getTime() + (offsetMinutes ?? 0) * 60_000).getUTCFullYear();
    if (year < 1 || year > 9999) throw new PubMessageError(`Invalid datetime: year ${year} is out of 1..9999`);
    this.date = new Date(date.getTime());
    this.micros = micros;
    this.offsetMinutes = offsetMinutes;
  }

  /** True when the datetime has no zone. */
  get naive(): boolean {
    return this.offsetMinutes === null;
  }

  /**
   * Parses an ISO 8601 date or date-time, the subset of Python's `datetime.fromisoformat` in
   * extended format: `YYYY-MM-DD[(T| )HH[:MM[:SS[(.|,)f…]]][Z|±HH[[:]MM]]]`; fractions beyond 6
   * digits are truncated. Returns `undefined` when the string is not such a datetime.
   */
  static parse(text: string): PubDateTime | undefined {
    const m = ISO_RE.exec(text);
    if (!m) return undefined;
    const [, y, mo, d, h = '0', mi = '0', s = '0', frac = '', z, sign, oh, om = '0'] = m;
    const year = Number(y),
      month = Number(mo),
      day = Number(d),
      hour = Number(h),
      minute = Number(mi),
      second = Number(s);
    if (year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return undefined;
    const wall = new Date(0);
    wall.setUTCFullYear(year, month - 1, day);
    wall.setUTCHours(hour, minute, second, 0);
    if (wall.getUTCDate() !== day) return undefined;
    const usec = Number(frac.slice(0, 6).padEnd(6, '0'));
    let offset: number | null = null;
    if (z) offset = 0;
    else if (sign) {
      if (Number(oh) > 23 || Number(om) > 59) return undefined;
      offset = (sign === '-' ? -1 : 1) * (Number(oh) * 60 + Number(om));
    }
    const instant = new Date(wall.getTime() + Math.floor(usec / 1000) - (offset ?? 0) * 60_000);
    try {
      return new PubDateTime(instant, { micros: usec % 1000, offsetMinutes: offset });
    } catch {
      return undefined;
    }
  }

  /**
   * Python's `isoformat()`: `YYYY-MM-DDTHH:MM:SS[.ffffff][±HH:MM]`, the fraction only when
   * microseconds are not 0, the offset only when aware and `zone` is true (`v1.01` writes none:
   * the wall time of the datetime's own offset, as PostTroll's `replace(tzinfo=None)`).
   */
  isoformat(zone = true): string {
    const off = this.offsetMinutes ?? 0;
    const w = new Date(this.date.getTime() + off * 60_000);
    const p2 = (n: number): string => String(n).padStart(2, '0');
    let out = `${String(w.getUTCFullYear()).padStart(4, '0')}-${p2(w.getUTCMonth() + 1)}-${p2(w.getUTCDate())}T${p2(w.getUTCHours())}:${p2(w.getUTCMinutes())}:${p2(w.getUTCSeconds())}`;
    const usec = w.getUTCMilliseconds() * 1000 + this.micros;
    if (usec !== 0) out += '.' + String(usec).padStart(6, '0');
    if (zone && this.offsetMinutes !== null) {
      const a = Math.abs(off);
      out += `${off < 0 ? '-' : '+'}${p2(Math.floor(a / 60))}:${p2(a % 60)}`;
    }
    return out;
  }

  /** The {@link isoformat} with zone. */
  toJSON(): string {
    return this.isoformat();
  }

  /** The {@link isoformat} with zone. */
  toString(): string {
    return this.isoformat();
  }
}

/** A JSON value as message data: plain objects, arrays, strings, numbers, bigints (written as integers), booleans, null, and datetimes. */
export type PubJson = null | boolean | number | bigint | string | Date | PubDateTime | readonly PubJson[] | { readonly [key: string]: PubJson };

/** Message data: text (`text/ascii`, or binary when `binary`), bytes (binary), or a JSON value (`application/json`). */
export type PubData = string | Uint8Array | PubJson;

/** What {@link PubMessage}'s constructor takes. */
export interface PubMessageInit {
  /** Non-empty, no whitespace; PostTroll subjects start with `/` (e.g. `/oper/polar/direct_readout/norrköping`). */
  subject: string;
  /** Non-empty word, no whitespace: `info`, `file`, `dataset`, `beat`… */
  type: string;
  /** `user@host`; default: this process's user and host (see {@link defaultSender}). Non-empty, no whitespace. */
  sender?: string;
  /**
   * When the message was made. A `Date` (with {@link micros}), or an ISO string with up to 6 fraction
   * digits (its microseconds are kept; a zone converts to UTC; no zone means UTC). Default: now.
   */
  time?: Date | string;
  /** Microseconds beyond `time`'s milliseconds (0..999) when `time` is a `Date`; default 0. */
  micros?: number;
  /** `'v1.01'`, `'v1.2'`…: non-empty, no whitespace. Default: chosen when encoding (see {@link PubMessage.wireVersion}). */
  version?: string;
  /** Binary data (`binary/octet-stream`); default: true for `Uint8Array` data, else false. */
  binary?: boolean;
  /** Default `''` (no data). Binary data must be a string or a `Uint8Array`; other data must be JSON-serializable ({@link PubJson}). */
  data?: PubData;
}

let trustedData = false;
let trustedWords = false;

/**
 * One PostTroll message. Immutable once built; the constructor validates what PostTroll's
 * `_validate` does (non-empty subject, type and sender; JSON-serializable data) and, because
 * they would break the string form, refuses whitespace in subject, type, sender and version.
 *
 * The time is `time` (a `Date`, UTC) plus `micros` (0..999), since `Date` stops at milliseconds.
 */
export class PubMessage {
  /** The subject, e.g. `/counter`. */
  readonly subject: string;
  /** The type, e.g. `info`. */
  readonly type: string;
  /** When the message was made (UTC), to the millisecond; see {@link micros}. */
  readonly time: Date;
  /** Microseconds beyond {@link time}'s milliseconds, 0..999. */
  readonly micros: number;
  /** The version given or decoded; `undefined` lets the encoder choose ({@link wireVersion}). */
  readonly version: string | undefined;
  /** True for `binary/octet-stream` data. */
  readonly binary: boolean;
  /** The data; `''` for none. */
  readonly data: PubData;
  #sender: string | undefined;

  /** @throws PubMessageError when a field is invalid. */
  constructor(init: PubMessageInit) {
    if (init === null || typeof init !== 'object') throw new PubMessageError('Invalid message: init must be an object');
    const { subject, type, sender, time, micros, version, data = '' } = init;
    if (!trustedWords) {
      checkWord('subject', subject);
      checkWord('type', type);
      if (sender !== undefined) checkWord('sender', sender);
      if (version !== undefined) checkWord('version', version);
    }
    this.subject = subject;
    this.type = type;
    this.#sender = sender;
    this.version = version;

    if (trustedWords && time instanceof Date) {
      // Decoded from a frame: a finite time and micros in 0..999, checked there.
      this.time = time;
      this.micros = micros ?? 0;
    } else if (time === undefined || time instanceof Date) {
      const dt = new PubDateTime(time ?? new Date(), { micros: micros ?? 0 });
      this.time = dt.date;
      this.micros = dt.micros;
    } else if (typeof time === 'string') {
      if (micros !== undefined) throw new PubMessageError('Invalid time: micros goes with a Date time, not an ISO string');
      const dt = PubDateTime.parse(time);
      if (!dt) throw new PubMessageError(`Invalid time: '${time}'`);
      this.time = dt.date;
      this.micros = dt.micros;
    } else {
      throw new PubMessageError('Invalid time: must be a Date or an ISO string');
    }

    const bytes = data instanceof Uint8Array;
    const binary = init.binary ?? bytes;
    if (typeof binary !== 'boolean') throw new PubMessageError('Invalid binary: must be a boolean');
    if (bytes && !binary) throw new PubMessageError('Invalid data: Uint8Array data is binary (binary: false given)');
    if (binary && !bytes && typeof data !== 'string') throw new PubMessageError('Invalid data: binary data must be a string or a Uint8Array');
    if (!binary && typeof data !== 'string' && !trustedData) {
      try {
        pyDumps(data, false);
      } catch (err) {
        throw new PubMessageError(`Invalid data: data is not JSON serializable: ${(err as Error).message}`, { cause: err });
      }
    }
    this.binary = binary;
    this.data = data;
  }

  /** `user@host`: as given, else {@link defaultSender} (computed on first use). */
  get sender(): string {
    return (this.#sender ??= defaultSender());
  }

  /** The part of {@link sender} before `@`, or `''`. */
  get user(): string {
    const s = this.sender;
    const i = s.indexOf('@');
    return i < 0 ? '' : s.slice(0, i);
  }

  /** The part of {@link sender} after `@`, or `''`. */
  get host(): string {
    const s = this.sender;
    const i = s.indexOf('@');
    return i < 0 ? '' : s.slice(i + 1);
  }

  /** The version the encoder writes: {@link version}, else `'v1.2'` when the JSON data holds a `Date` or {@link PubDateTime}, else `'v1.01'`. */
  get wireVersion(): string {
    if (this.version !== undefined) return this.version;
    return !this.binary && typeof this.data !== 'string' && hasDatetime(this.data, 0) ? 'v1.2' : 'v1.01';
  }

  /** The time as PostTroll writes it: ISO with microseconds when not 0, `+00:00` when `zone` (default true). */
  isoTime(zone = true): string {
    return new PubDateTime(this.time, { micros: this.micros }).isoformat(zone);
  }

  /**
   * The data as bytes: a `Uint8Array` as it is (not copied); a string as ISO-8859-1, one byte per
   * character, which is how {@link encodePostTroll} writes bytes, so binary data round-trips.
   * @throws PubMessageError for JSON data or a string with a character above U+00FF.
   */
  dataBytes(): Uint8Array {
    const d = this.data;
    if (d instanceof Uint8Array) return d;
    if (typeof d !== 'string') throw new PubMessageError('Invalid data: not a string nor bytes');
    // eslint-disable-next-line no-control-regex
    if (/[^\u0000-\u00ff]/.test(d)) throw new PubMessageError('Invalid data: a character above U+00FF is not a byte');
    return new Uint8Array(Buffer.from(d, 'latin1'));
  }

  /** {@link encodePostTroll} of this message. */
  encode(): string {
    return encodePostTroll(this);
  }
}

function checkWord(what: string, v: unknown): asserts v is string {
  if (typeof v !== 'string' || v === '') throw new PubMessageError(`Invalid ${what}: '${String(v)}'`);
  if (PY_WS_ANY.test(v)) throw new PubMessageError(`Invalid ${what}: '${v}' (whitespace)`);
}

/**
 * Builds `user@host` from the two getters, each allowed to throw or return `''` (then the `USER`,
 * `LOGNAME` or `USERNAME` variable, else `unknown`; `localhost`); whitespace becomes `_`.
 * @internal
 */
export function makeSender(getUser: () => string, getHost: () => string): string {
  const attempt = (f: () => string): string => {
    try {
      const v = f();
      return typeof v === 'string' ? v : '';
    } catch {
      return '';
    }
  };
  const user = attempt(getUser) || process.env.USER || process.env.LOGNAME || process.env.USERNAME || 'unknown';
  const host = attempt(getHost) || 'localhost';
  return `${user}@${host}`.replace(new RegExp(PY_WS + '+', 'g'), '_');
}

let cachedSender: string | undefined;

/** This process's `user@host` (`os.userInfo().username`, `os.hostname()`), computed once; never throws (see {@link makeSender}). */
export function defaultSender(): string {
  return (cachedSender ??= makeSender(
    () => os.userInfo().username,
    () => os.hostname(),
  ));
}

function isFalsy(d: PubData): boolean {
  if (d === '' || d === 0 || d === false || d === null || d === 0n) return true;
  if (d instanceof Uint8Array) return d.length === 0;
  if (Array.isArray(d)) return d.length === 0;
  if (typeof d === 'object' && !(d instanceof Date) && !(d instanceof PubDateTime)) return Object.keys(d).length === 0;
  return false;
}

function hasDatetime(v: unknown, depth: number): boolean {
  if (v instanceof Date || v instanceof PubDateTime) return true;
  if (v === null || typeof v !== 'object' || depth > POSTTROLL_MAX_JSON_DEPTH) return false;
  const items = Array.isArray(v) ? v : Object.values(v);
  return items.some((x) => hasDatetime(x, depth + 1));
}

/**
 * The string form of a message, exactly as PostTroll writes it (see the module notes): header,
 * then, unless the data is falsy, the mime type and the data. `Uint8Array` data is written as
 * ISO-8859-1 characters (a PostTroll reader gets `data.encode('latin-1')` back as the bytes).
 * @throws PubMessageError when the data is no longer JSON-serializable (too deep, a cycle, a non-plain object…).
 */
export function encodePostTroll(msg: PubMessage): string {
  const version = msg.wireVersion;
  const zone = !(version <= 'v1.01');
  const head = `${POSTTROLL_MAGIC}${msg.subject} ${msg.type} ${msg.sender} ${msg.isoTime(zone)} ${version}`;
  const d = msg.data;
  if (isFalsy(d)) return head;
  if (d instanceof Uint8Array) return `${head} binary/octet-stream ${Buffer.from(d.buffer, d.byteOffset, d.byteLength).toString('latin1')}`;
  if (msg.binary) return `${head} binary/octet-stream ${d as string}`;
  if (typeof d === 'string') return `${head} text/ascii ${d}`;
  try {
    return `${head} application/json ${pyDumps(d, zone)}`;
  } catch (err) {
    throw new PubMessageError(`Invalid data: data is not JSON serializable: ${(err as Error).message}`, { cause: err });
  }
}

/** @internal JSON data as {@link encodePostTroll} writes it (Python's `json.dumps`), for the compact wire form. */
export function encodeJsonData(data: PubJson, zone: boolean): string {
  try {
    return pyDumps(data, zone);
  } catch (err) {
    throw new PubMessageError(`Invalid data: data is not JSON serializable: ${(err as Error).message}`, { cause: err });
  }
}

/** @internal Reads JSON data as {@link decodePostTroll} does (the same `reviveString` policy). */
export function decodeJsonData(body: string, reviveString: ((value: string) => PubJson) | undefined): PubJson {
  let data: PubJson;
  try {
    data = JSON.parse(body) as PubJson;
  } catch (err) {
    throw new PubMessageError(`JSON decode failed on '${pyHead(body, 36)} ...'`, { cause: err });
  }
  if (!reviveString) return data;
  try {
    return revive(data, false, reviveString, 0) as PubJson;
  } catch (err) {
    if (err instanceof PubMessageError) throw err;
    throw new PubMessageError('reviveString threw', { cause: err });
  }
}

/**
 * @internal Builds a message from fields already checked (decoded from a frame): the JSON data is
 * not validated again, nor (with `words`) the subject, type, sender and version.
 */
export function trustedPubMessage<T extends PubMessage, A extends unknown[]>(make: (...args: A) => T, words = false, ...args: A): T {
  trustedData = true;
  trustedWords = words;
  try {
    return make(...args);
  } finally {
    trustedData = false;
    trustedWords = false;
  }
}

/** @internal Throws {@link PubMessageError} unless `v` is a non-empty string without whitespace (subject, type, sender, version). */
export function checkPubWord(what: string, v: unknown): asserts v is string {
  checkWord(what, v);
}

const SHORT_ESCAPES: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' };

/** Python `json.dumps(s)` of a string (ensure_ascii). */
function pyString(s: string): string {
  // eslint-disable-next-line no-control-regex
  return '"' + s.replace(/["\\\u0000-\u001f\u007f-\uffff]/g, (c) => SHORT_ESCAPES[c] ?? '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0')) + '"';
}

/** Python's `repr` of a float, or of an int for safe integers. */
export function pyNumber(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return 'Infinity';
  if (x === -Infinity) return '-Infinity';
  if (Object.is(x, -0)) return '-0.0';
  if (Number.isSafeInteger(x)) return String(x);
  const [mant, e] = x.toExponential().split('e') as [string, string];
  const neg = mant.startsWith('-');
  const digits = mant.replace('-', '').replace('.', '');
  const exp = Number(e);
  let body: string;
  if (exp >= -4 && exp < 16) {
    if (exp >= 0) {
      const int = digits.slice(0, exp + 1).padEnd(exp + 1, '0');
      body = `${int}.${digits.slice(exp + 1) || '0'}`;
    } else {
      body = `0.${'0'.repeat(-exp - 1)}${digits}`;
    }
  } else {
    const m = digits.length === 1 ? digits : `${digits[0]}.${digits.slice(1)}`;
    body = `${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  return neg ? '-' + body : body;
}

/** Python `json.dumps(v, default=<datetime isoformat>)`: separators `', '`, `': '`, ensure_ascii. Throws plain Errors. */
function pyDumps(v: unknown, zone: boolean, depth = 0, seen: Set<object> = new Set()): string {
  switch (typeof v) {
    case 'string':
      return pyString(v);
    case 'number':
      return pyNumber(v);
    case 'bigint':
      return v.toString();
    case 'boolean':
      return v ? 'true' : 'false';
    case 'object':
      break;
    default:
      throw new Error(`a ${typeof v} is not JSON serializable`);
  }
  if (v === null) return 'null';
  if (v instanceof PubDateTime) return pyString(v.isoformat(zone));
  if (v instanceof Date) return pyString(new PubDateTime(v).isoformat(zone));
  if (depth >= POSTTROLL_MAX_JSON_DEPTH) throw new Error(`nesting deeper than ${POSTTROLL_MAX_JSON_DEPTH}`);
  if (seen.has(v)) throw new Error('circular reference detected');
  seen.add(v);
  let out: string;
  if (Array.isArray(v)) {
    const parts: string[] = [];
    for (let i = 0; i < v.length; i++) parts.push(pyDumps(v[i], zone, depth + 1, seen));
    out = `[${parts.join(', ')}]`;
  } else {
    const proto: unknown = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) throw new Error(`a ${(v as object).constructor?.name ?? 'object'} is not JSON serializable`);
    const parts: string[] = [];
    for (const key of Object.keys(v)) parts.push(`${pyString(key)}: ${pyDumps((v as Record<string, unknown>)[key], zone, depth + 1, seen)}`);
    out = `{${parts.join(', ')}}`;
  }
  seen.delete(v);
  return out;
}

/** Options of {@link decodePostTroll}. */
export interface DecodePostTrollOptions {
  /** Longest input accepted, in UTF-8 bytes (a string is measured as UTF-8); default {@link DEFAULT_POSTTROLL_MAX_BYTES}. */
  maxBytes?: number;
  /**
   * Policy for string values in JSON data, called for each string that has an object among its
   * ancestors (the strings PostTroll's `object_hook` sees: not a top-level string, not strings in
   * arrays outside any object; never keys); its result replaces the string. Default: none, strings
   * stay strings. {@link revivePostTrollDates} is PostTroll's own behaviour. A throw becomes a
   * {@link PubMessageError} with the thrown value as `cause`.
   */
  reviveString?: (value: string) => PubJson;
}

/** PostTroll's policy for JSON strings: a string that parses as an ISO date/time ({@link PubDateTime.parse}) becomes a {@link PubDateTime}, others stay. */
export function revivePostTrollDates(value: string): PubJson {
  return PubDateTime.parse(value) ?? value;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Python's `s[:n]` (code points). */
function pyHead(s: string, n: number): string {
  let i = 0;
  for (let k = 0; k < n && i < s.length; k++) i += s.codePointAt(i)! > 0xffff ? 2 : 1;
  return s.slice(0, i);
}

/** Python's `re.split(r'\s+', s, maxsplit)`. */
function pySplit(s: string, maxsplit: number): string[] {
  const re = new RegExp(PY_WS + '+', 'g');
  const out: string[] = [];
  let last = 0;
  let m: RegExpExecArray | null;
  while (out.length < maxsplit && (m = re.exec(s)) !== null) {
    out.push(s.slice(last, m.index));
    last = m.index + m[0].length;
  }
  out.push(s.slice(last));
  return out;
}

function revive(v: unknown, inObject: boolean, fn: (s: string) => PubJson, depth: number): unknown {
  if (typeof v === 'string') return inObject ? fn(v) : v;
  if (v === null || typeof v !== 'object') return v;
  if (depth >= POSTTROLL_MAX_JSON_DEPTH) throw new PubMessageError(`JSON data nests deeper than ${POSTTROLL_MAX_JSON_DEPTH}`);
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = revive(v[i], inObject, fn, depth + 1);
    return v;
  }
  const o = v as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    const old = o[key];
    const value = revive(old, true, fn, depth + 1);
    if (value !== old) Object.defineProperty(o, key, { value, writable: true, enumerable: true, configurable: true });
  }
  return o;
}

/**
 * Reads PostTroll's string form (see the module notes) into a {@link PubMessage}, with PostTroll's
 * error messages. Bytes are read as UTF-8, else as ISO-8859-1 (a BOM is not skipped, as in Python).
 * The message's `version` is the one read; its time converts to UTC (no zone: UTC). Unlike
 * PostTroll, a mime type without data (`… v1.01 text/ascii`) is an error rather than an
 * `IndexError`, and trailing whitespace after the version is no data. JSON is parsed with
 * `JSON.parse` (`__proto__` keys become own data; `NaN`/`Infinity` literals are refused).
 * @throws PubMessageError on any refusal; InvalidOptionsError on bad options.
 */
export function decodePostTroll(input: string | Uint8Array, options: DecodePostTrollOptions = {}): PubMessage {
  const { maxBytes = DEFAULT_POSTTROLL_MAX_BYTES, reviveString } = options;
  if (typeof maxBytes !== 'number' || !(maxBytes >= 0) || !(Number.isInteger(maxBytes) || maxBytes === Infinity)) {
    throw new InvalidOptionsError(`decodePostTroll: option 'maxBytes' must be a non-negative integer, got ${String(maxBytes)}`);
  }
  if (reviveString !== undefined && typeof reviveString !== 'function')
    throw new InvalidOptionsError(`decodePostTroll: option 'reviveString' must be a function`);
  let text: string;
  if (typeof input === 'string') {
    if (input.length > maxBytes || Buffer.byteLength(input, 'utf8') > maxBytes)
      throw new PubMessageError(`Message too large: over ${maxBytes} bytes (maxBytes)`);
    text = input;
  } else if (input instanceof Uint8Array) {
    if (input.byteLength > maxBytes) throw new PubMessageError(`Message too large: ${input.byteLength} bytes, over ${maxBytes} (maxBytes)`);
    try {
      text = UTF8.decode(input);
    } catch {
      text = Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString('latin1');
    }
  } else {
    throw new PubMessageError('Invalid input: must be a string or a Uint8Array');
  }

  if (!text.startsWith(POSTTROLL_MAGIC)) throw new PubMessageError(`This is not a '${POSTTROLL_MAGIC}' message (wrong magick word)`);
  const rest = text.slice(POSTTROLL_MAGIC.length);
  const raw = pySplit(rest, 6);
  if (raw.length < 5) throw new PubMessageError(`Could not decode raw string: '${pyHead(rest, 36)} ...'`);
  const version = raw[4]!;
  if (!(version <= POSTTROLL_MAX_VERSION)) throw new PubMessageError(`Invalid Message version: '${version}'`);
  const time = PubDateTime.parse(raw[3]!);
  if (!time) throw new PubMessageError(`Invalid time: '${raw[3]}'`);

  let data: PubData = '';
  let binary = false;
  if (raw.length === 7 || (raw.length === 6 && raw[5] !== '')) {
    const mime = raw[5]!.toLowerCase();
    const body = raw[6];
    if (mime !== 'application/json' && mime !== 'text/ascii' && mime !== 'binary/octet-stream') throw new PubMessageError(`Unknown mime-type '${mime}'`);
    if (body === undefined) throw new PubMessageError(`No data after mime-type '${mime}'`);
    if (mime === 'application/json') {
      try {
        data = JSON.parse(body) as PubJson;
      } catch (err) {
        throw new PubMessageError(`JSON decode failed on '${pyHead(body, 36)} ...'`, { cause: err });
      }
      if (reviveString) {
        try {
          data = revive(data, false, reviveString, 0) as PubJson;
        } catch (err) {
          if (err instanceof PubMessageError) throw err;
          throw new PubMessageError('reviveString threw', { cause: err });
        }
      }
    } else {
      data = body;
      binary = mime === 'binary/octet-stream';
    }
  }

  trustedData = true;
  try {
    return new PubMessage({ subject: raw[0]!, type: raw[1]!, sender: raw[2]!, time: time.date, micros: time.micros, version, binary, data });
  } finally {
    trustedData = false;
  }
}
