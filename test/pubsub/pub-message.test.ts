import { describe, expect, it } from 'vitest';
import vectors from '../fixtures/posttroll-messages.json' with { type: 'json' };
import { ErrorCode, InvalidOptionsError, PubMessageError } from '../../lib/errors.js';
import {
  DEFAULT_POSTTROLL_MAX_BYTES,
  POSTTROLL_MAX_JSON_DEPTH,
  PubDateTime,
  PubMessage,
  decodePostTroll,
  defaultSender,
  encodePostTroll,
  makeSender,
  pyNumber,
  revivePostTrollDates,
  type PubData,
  type PubJson,
} from '../../lib/pubsub/pub-message.js';

/** The fixture writes Python datetimes as `{"$datetime": iso}`. */
function fromVector(v: unknown): PubJson {
  if (Array.isArray(v)) return v.map(fromVector);
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (typeof o.$datetime === 'string') return PubDateTime.parse(o.$datetime)!;
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, fromVector(x)]));
  }
  return v as PubJson;
}

function toVector(v: unknown): unknown {
  if (v instanceof PubDateTime) return { $datetime: v.isoformat() };
  if (Array.isArray(v)) return v.map(toVector);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toVector(x)]));
  return v;
}

function view(m: PubMessage): Record<string, unknown> {
  return {
    subject: m.subject,
    type: m.type,
    sender: m.sender,
    time: m.isoTime(m.version! > 'v1.01'),
    version: m.version,
    binary: m.binary,
    data: toVector(m.data),
  };
}

function refusal(f: () => unknown): PubMessageError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(PubMessageError);
    expect((err as PubMessageError).code).toBe('SMQ_ERR_PUB_MESSAGE');
    return err as PubMessageError;
  }
  throw new Error('expected a PubMessageError');
}

const compat = { reviveString: revivePostTrollDates };
const head = 'pytroll://c info u@h 2026-12-01T10:00:00 v1.01';

describe('PostTroll vectors', () => {
  it('the fixture holds encode vectors and decode vectors (some of them error cases)', () => {
    expect(vectors.encode.length).toBeGreaterThan(10);
    expect(vectors.decode.filter((v) => 'error' in v).length).toBeGreaterThan(3);
    expect(vectors.decode.filter((v) => 'decoded' in v).length).toBeGreaterThan(2);
  });

  for (const v of vectors.encode) {
    it(`encodes "${v.name}" byte for byte`, () => {
      const f = v.fields;
      const msg = new PubMessage({
        subject: f.subject,
        type: f.type,
        sender: f.sender,
        time: f.time,
        version: f.version ?? undefined,
        binary: f.binary,
        data: fromVector(f.data) as PubData,
      });
      expect(encodePostTroll(msg)).toBe(v.encoded);
      expect(msg.encode()).toBe(v.encoded);
      expect(msg.wireVersion).toBe(v.decoded.version);
    });

    it(`decodes "${v.name}" as PostTroll does (with revivePostTrollDates), and writes it back unchanged`, () => {
      const msg = decodePostTroll(v.encoded, compat);
      expect(view(msg)).toEqual(v.decoded);
      expect(encodePostTroll(msg)).toBe(v.encoded);
      expect(view(decodePostTroll(Buffer.from(v.encoded, 'utf8'), compat))).toEqual(v.decoded);
    });
  }

  for (const v of vectors.decode) {
    if ('error' in v) {
      it(`refuses "${v.name}" with PostTroll's message`, () => {
        const err = refusal(() => decodePostTroll(v.encoded as string));
        expect(`MessageError: ${err.message}`).toBe(v.error);
        expect(err.name).toBe('PubMessageError');
      });
    } else {
      it(`decodes "${v.name}"`, () => {
        expect(view(decodePostTroll(v.encoded, compat))).toEqual(v.decoded);
      });
    }
  }

  it('leaves ISO-looking JSON strings as strings by default', () => {
    const v = vectors.decode.find((x) => x.name.startsWith('json string that looks like a date'))!;
    expect(decodePostTroll(v.encoded).data).toEqual({ when: '2026-01-02', name: 'x' });
    const e = vectors.encode.find((x) => x.name.startsWith('json with datetime (v1.2'))!;
    expect(decodePostTroll(e.encoded).data).toEqual({ start_time: '2026-01-02T03:04:05+00:00', uri: '/data/a.nc' });
    expect(encodePostTroll(decodePostTroll(e.encoded))).toBe(e.encoded);
  });
});

describe('splitting and whitespace', () => {
  it("splits on runs of Python's whitespace, at most 7 fields, the data keeping its inner and trailing spaces", () => {
    const m = decodePostTroll('pytroll://c\u00a0\x1cinfo\x85u@h\u3000 2026-12-01T10:00:00\t\n\v\fv1.01 text/ascii  a \t b \n');
    expect([m.subject, m.type, m.sender, m.version, m.data]).toEqual(['/c', 'info', 'u@h', 'v1.01', 'a \t b \n']);
  });

  it('does not split on U+FEFF, which JavaScript counts as whitespace and Python does not', () => {
    expect(decodePostTroll('pytroll://c\ufeffx info u@h 2026-12-01T10:00:00 v1.01').subject).toBe('/c\ufeffx');
  });

  it('loses leading whitespace of the data, as PostTroll does', () => {
    const enc = new PubMessage({ subject: '/c', type: 'info', sender: 'u@h', time: '2026-12-01T10:00:00', data: '  x' }).encode();
    expect(enc).toBe(`${head} text/ascii   x`);
    expect(decodePostTroll(enc).data).toBe('x');
  });

  it('reads mime types case-insensitively, and trailing whitespace after the version as no data', () => {
    expect(decodePostTroll(`${head} TEXT/ASCII hi`).data).toBe('hi');
    const m = decodePostTroll(`${head}  \n`);
    expect([m.data, m.binary]).toEqual(['', false]);
  });

  it('refuses a mime type without data, a blank subject and a bad time', () => {
    expect(refusal(() => decodePostTroll(`${head} text/ascii`)).message).toBe("No data after mime-type 'text/ascii'");
    expect(refusal(() => decodePostTroll(' pytroll://c info u@h 2026-12-01T10:00:00 v1.01')).message).toMatch(/wrong magick/);
    expect(refusal(() => decodePostTroll('pytroll:/ info u@h 2026-12-01T10:00:00 v1.01')).message).toBe("Invalid subject: ''");
    expect(refusal(() => decodePostTroll('pytroll:/ c info u@h 2026-12-01T10:00:00 v1.01')).message).toBe("Invalid time: 'u@h'");
    expect(refusal(() => decodePostTroll('pytroll://c info u@h 2026-13-01T10:00:00 v1.01')).message).toBe("Invalid time: '2026-13-01T10:00:00'");
  });

  it('compares versions as strings against v1.2', () => {
    expect(decodePostTroll('pytroll://c info u@h 2026-12-01T10:00:00 v1.10').version).toBe('v1.10');
    expect(decodePostTroll('pytroll://c info u@h 2026-12-01T10:00:00 v1.1').version).toBe('v1.1');
    expect(refusal(() => decodePostTroll('pytroll://c info u@h 2026-12-01T10:00:00 v2')).message).toBe("Invalid Message version: 'v2'");
  });

  it('cuts the quoted head of error messages at 36 code points', () => {
    const err = refusal(() => decodePostTroll(`${head} application/json ["😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀"`));
    expect(err.message).toBe(`JSON decode failed on '["${'😀'.repeat(34)} ...'`);
  });
});

describe('unicode and bytes', () => {
  const subject = '/oper/polar/direct_readout/norrköping/日本/😀';

  it('writes and reads unicode subjects and text data, as strings and as UTF-8 bytes', () => {
    const msg = new PubMessage({ subject, type: 'info', sender: 'ü@h', time: '2026-12-01T10:00:00', data: 'grüß 😀' });
    const enc = encodePostTroll(msg);
    expect(enc).toBe(`pytroll:/${subject} info ü@h 2026-12-01T10:00:00 v1.01 text/ascii grüß 😀`);
    for (const input of [enc, new Uint8Array(Buffer.from(enc, 'utf8'))]) {
      const m = decodePostTroll(input);
      expect([m.subject, m.sender, m.data]).toEqual([subject, 'ü@h', 'grüß 😀']);
    }
  });

  it('reads bytes that are not UTF-8 as ISO-8859-1', () => {
    const bytes = Buffer.from('pytroll://norrköping info u@h 2026-12-01T10:00:00 v1.01 text/ascii \xe9\xff', 'latin1');
    const m = decodePostTroll(bytes);
    expect([m.subject, m.data]).toEqual(['/norrköping', 'éÿ']);
  });

  it('does not skip a UTF-8 BOM', () => {
    expect(refusal(() => decodePostTroll(Buffer.from('\ufeffpytroll://c info u@h 2026-12-01T10:00:00 v1.01', 'utf8'))).message).toMatch(/wrong magick/);
  });

  it('round-trips binary data of every byte value, through the string and through its UTF-8 bytes', () => {
    const bytes = new Uint8Array(256).map((_, i) => i);
    const msg = new PubMessage({ subject: '/bin', type: 'data', sender: 'u@h', time: '2026-12-01T10:00:00', data: bytes });
    expect(msg.binary).toBe(true);
    const enc = encodePostTroll(msg);
    expect(enc.startsWith('pytroll://bin data u@h 2026-12-01T10:00:00 v1.01 binary/octet-stream \x00\x01')).toBe(true);
    for (const input of [enc, Buffer.from(enc, 'utf8')]) {
      const m = decodePostTroll(input);
      expect(m.binary).toBe(true);
      expect(Buffer.from(m.dataBytes()).equals(Buffer.from(bytes))).toBe(true);
      expect(encodePostTroll(m)).toBe(enc);
    }
    const sub = new PubMessage({ subject: '/bin', type: 'data', sender: 'u@h', data: bytes.subarray(65, 68) });
    expect(decodePostTroll(sub.encode()).data).toBe('ABC');
  });

  it('leaves out empty bytes, refuses binary:false bytes, binary JSON, and dataBytes of non-Latin-1 text', () => {
    expect(new PubMessage({ subject: '/b', type: 'd', sender: 'u@h', time: '2026-12-01T10:00:00', data: new Uint8Array(0) }).encode()).toBe(
      'pytroll://b d u@h 2026-12-01T10:00:00 v1.01',
    );
    refusal(() => new PubMessage({ subject: '/b', type: 'd', binary: false, data: new Uint8Array(1) }));
    refusal(() => new PubMessage({ subject: '/b', type: 'd', binary: true, data: { a: 1 } }));
    refusal(() => new PubMessage({ subject: '/b', type: 'd', data: '€' }).dataBytes());
    refusal(() => new PubMessage({ subject: '/b', type: 'd', data: [1] }).dataBytes());
  });
});

describe('limits', () => {
  const enc = `${head} text/ascii ${'x'.repeat(100)}`;
  const size = Buffer.byteLength(enc);

  it('refuses input over maxBytes, strings measured as UTF-8', () => {
    expect(DEFAULT_POSTTROLL_MAX_BYTES).toBe(16 * 1024 * 1024);
    expect(decodePostTroll(enc, { maxBytes: size }).data).toHaveLength(100);
    expect(decodePostTroll(Buffer.from(enc), { maxBytes: size }).data).toHaveLength(100);
    refusal(() => decodePostTroll(enc, { maxBytes: size - 1 }));
    refusal(() => decodePostTroll(Buffer.from(enc), { maxBytes: size - 1 }));
    const wide = `${head} text/ascii ${'ö'.repeat(10)}`;
    expect(wide.length).toBe(size - 90);
    refusal(() => decodePostTroll(wide, { maxBytes: wide.length }));
    refusal(() => decodePostTroll('x'.repeat(DEFAULT_POSTTROLL_MAX_BYTES + 1)));
    expect(() => decodePostTroll(enc, { maxBytes: -1 })).toThrow(InvalidOptionsError);
    expect(() => decodePostTroll(enc, { reviveString: 'dates' as never })).toThrow(InvalidOptionsError);
  });

  it('keeps __proto__ keys as own data, never as prototypes, with and without a reviver', () => {
    const input = `${head} application/json {"__proto__": {"polluted": "2026-01-02"}, "a": [{"__proto__": 1}]}`;
    for (const options of [{}, compat]) {
      const data = decodePostTroll(input, options).data as Record<string, unknown>;
      expect(Object.getPrototypeOf(data)).toBe(Object.prototype);
      expect(Object.hasOwn(data, '__proto__')).toBe(true);
      expect(Object.getPrototypeOf(data['__proto__'])).toBe(Object.prototype);
      expect((data as { polluted?: unknown }).polluted).toBeUndefined();
      expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
    }
    const revived = decodePostTroll(input, compat).data as Record<string, Record<string, unknown>>;
    expect(revived['__proto__']!.polluted).toBeInstanceOf(PubDateTime);
    expect(encodePostTroll(decodePostTroll(input))).toBe(input);
  });

  it('bounds JSON nesting when reviving and when encoding', () => {
    const deep = '['.repeat(POSTTROLL_MAX_JSON_DEPTH + 5) + ']'.repeat(POSTTROLL_MAX_JSON_DEPTH + 5);
    expect(Array.isArray(decodePostTroll(`${head} application/json ${deep}`).data)).toBe(true);
    refusal(() => decodePostTroll(`${head} application/json ${deep}`, compat));
    let v: PubJson = 1;
    for (let i = 0; i < POSTTROLL_MAX_JSON_DEPTH + 5; i++) v = [v];
    refusal(() => new PubMessage({ subject: '/d', type: 'd', data: v }));
  });
});

describe('JSON as Python writes it', () => {
  const dumps = (data: PubJson): string =>
    new PubMessage({ subject: '/j', type: 'j', sender: 'u@h', time: '2026-12-01T10:00:00', data }).encode().replace(/^.*? application\/json /, '');

  it('writes floats as Python repr and safe integers as integers', () => {
    const cases: [number, string][] = [
      [1.5, '1.5'],
      [1e-5, '1e-05'],
      [0.0001, '0.0001'],
      [1e16, '1e+16'],
      [1.5e300, '1.5e+300'],
      [5e-324, '5e-324'],
      [2 ** 53, '9007199254740992.0'],
      [1.2345678901234568e20, '1.2345678901234568e+20'],
      [1e15 + 0.5, '1000000000000000.5'],
      [1 / 3, '0.3333333333333333'],
      [-2.5e-7, '-2.5e-07'],
      [-0, '-0.0'],
      [42, '42'],
      [-(2 ** 53 - 1), '-9007199254740991'],
      [NaN, 'NaN'],
      [Infinity, 'Infinity'],
      [-Infinity, '-Infinity'],
    ];
    for (const [x, s] of cases) expect(pyNumber(x), String(x)).toBe(s);
    expect(dumps([1.5, 1e-5, 1e16, 2n ** 64n, true, false, null])).toBe('[1.5, 1e-05, 1e+16, 18446744073709551616, true, false, null]');
  });

  it('escapes outside printable ASCII, astral characters as surrogate pairs', () => {
    expect(dumps({ ké: 'é😀\n\r\t\b\f"\\\x7f\x01~ ' })).toBe('{"k\\u00e9": "\\u00e9\\ud83d\\ude00\\n\\r\\t\\b\\f\\"\\\\\\u007f\\u0001~ "}');
    expect(dumps({ a: [], b: {}, c: [{}, [[]]] })).toBe('{"a": [], "b": {}, "c": [{}, [[]]]}');
  });

  it('writes datetimes per version: v1.2 with the zone, v1.01 without, naive ones never with', () => {
    const t = new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 123));
    const at = (data: PubJson, version?: string): string =>
      new PubMessage({ subject: '/d', type: 'd', sender: 'u@h', time: t, micros: 456, version, data }).encode();
    expect(at({ t })).toBe('pytroll://d d u@h 2026-01-02T03:04:05.123456+00:00 v1.2 application/json {"t": "2026-01-02T03:04:05.123000+00:00"}');
    expect(at({ t }, 'v1.01')).toBe('pytroll://d d u@h 2026-01-02T03:04:05.123456 v1.01 application/json {"t": "2026-01-02T03:04:05.123000"}');
    const cet = PubDateTime.parse('2026-01-02T03:04:05.000007+02:00')!;
    expect(cet.date.toISOString()).toBe('2026-01-02T01:04:05.000Z');
    expect(at([cet])).toMatch(/ v1\.2 application\/json \["2026-01-02T03:04:05\.000007\+02:00"\]$/);
    expect(at([cet], 'v1.01')).toMatch(/ v1\.01 application\/json \["2026-01-02T03:04:05\.000007"\]$/);
    expect(at({ n: new PubDateTime(t, { offsetMinutes: null }) })).toMatch(/v1\.2 application\/json \{"n": "2026-01-02T03:04:05\.123000"\}$/);
    expect(at('text with no datetime')).toMatch(/ v1\.01 text\/ascii /);
  });

  it('parses the ISO subset of fromisoformat', () => {
    expect(PubDateTime.parse('2026-01-02')!.isoformat()).toBe('2026-01-02T00:00:00');
    expect(PubDateTime.parse('2026-01-02T03')!.isoformat()).toBe('2026-01-02T03:00:00');
    expect(PubDateTime.parse('2026-01-02T03:04Z')!.isoformat()).toBe('2026-01-02T03:04:00+00:00');
    expect(PubDateTime.parse('2026-01-02T03:04:05.1234567-0530')!.isoformat()).toBe('2026-01-02T03:04:05.123456-05:30');
    expect(PubDateTime.parse('0001-01-01T00:00:00')!.isoformat()).toBe('0001-01-01T00:00:00');
    for (const bad of ['2026-02-30', '2026-01-02T24:00:00', 'x2026-01-02', '2026', '20260102', '2026-01-02T03:04:05+25:00', '0000-01-01']) {
      expect(PubDateTime.parse(bad), bad).toBeUndefined();
    }
  });

  it('refuses data that is not JSON-serializable, with the typed error', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    for (const data of [new Map(), { a: undefined }, cyclic, [() => 1], { s: Symbol('x') }, { b: new Uint8Array(1) }]) {
      expect(refusal(() => new PubMessage({ subject: '/x', type: 'x', data: data as never })).message).toMatch(/^Invalid data: data is not JSON serializable/);
    }
    const shared = { k: 1 };
    expect(dumps({ a: shared, b: shared })).toBe('{"a": {"k": 1}, "b": {"k": 1}}');
  });
});

describe('reviveString policy', () => {
  it('applies only to strings with an object ancestor, as PostTroll object_hook does', () => {
    const seen: string[] = [];
    const policy = (s: string): PubJson => {
      seen.push(s);
      return s.toUpperCase();
    };
    const m = decodePostTroll(`${head} application/json ["a", ["b"], {"k": ["c", {"d": "e"}]}]`, { reviveString: policy });
    expect(m.data).toEqual(['a', ['b'], { k: ['C', { d: 'E' }] }]);
    expect(seen.sort()).toEqual(['c', 'e']);
    expect(decodePostTroll(`${head} application/json "2026-01-02"`, compat).data).toBe('2026-01-02');
  });

  it('wraps a throwing policy in PubMessageError with the cause', () => {
    const boom = new Error('boom');
    const err = refusal(() =>
      decodePostTroll(`${head} application/json {"a": "b"}`, {
        reviveString: () => {
          throw boom;
        },
      }),
    );
    expect(err.cause).toBe(boom);
  });
});

describe('PubMessage', () => {
  it('validates its fields with the typed error', () => {
    expect(refusal(() => new PubMessage({ subject: '', type: 'info' })).message).toBe("Invalid subject: ''");
    refusal(() => new PubMessage({ subject: '/a b', type: 'info' }));
    refusal(() => new PubMessage({ subject: '/a', type: 'in\tfo' }));
    refusal(() => new PubMessage({ subject: '/a', type: 'info', sender: '' }));
    refusal(() => new PubMessage({ subject: '/a', type: 'info', version: 'v 1' }));
    refusal(() => new PubMessage({ subject: '/a', type: 'info', time: new Date(NaN) }));
    refusal(() => new PubMessage({ subject: '/a', type: 'info', time: new Date(0), micros: 1000 }));
    refusal(() => new PubMessage({ subject: '/a', type: 'info', time: '2026-12-01T10:00:00', micros: 1 }));
    refusal(() => new PubMessage({ subject: '/a', type: 'info', time: 'yesterday' }));
    refusal(() => new PubMessage({ subject: '/a', type: 'info', binary: 'yes' as never }));
    refusal(() => new PubMessage(null as never));
    expect(ErrorCode.PUB_MESSAGE).toBe('SMQ_ERR_PUB_MESSAGE');
  });

  it('defaults sender lazily to user@host, time to now, data to none', () => {
    const before = Date.now();
    const m = new PubMessage({ subject: '/a', type: 'info' });
    expect(m.time.getTime()).toBeGreaterThanOrEqual(before);
    expect(m.sender).toBe(defaultSender());
    expect(m.sender).toMatch(/^[^\s@]+@\S+$/);
    expect(m.user + '@' + m.host).toBe(m.sender);
    expect(m.encode()).toMatch(/^pytroll:\/\/a info \S+ \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})? v1\.01$/);
  });

  it('builds the default sender safely when userInfo or hostname throw', () => {
    const fail = (): string => {
      throw new Error('no passwd entry');
    };
    expect(
      makeSender(
        () => 'me',
        () => 'box',
      ),
    ).toBe('me@box');
    expect(makeSender(fail, fail)).toMatch(/@localhost$/);
    expect(
      makeSender(
        () => 'John Doe',
        () => 'my box',
      ),
    ).toBe('John_Doe@my_box');
    const env = process.env.USER;
    process.env.USER = 'envuser';
    try {
      expect(makeSender(fail, () => 'h')).toBe('envuser@h');
    } finally {
      if (env === undefined) delete process.env.USER;
      else process.env.USER = env;
    }
  });

  it('keeps microseconds of an ISO time and converts zones to UTC', () => {
    const m = new PubMessage({ subject: '/a', type: 'info', sender: 'u@h', time: '2026-12-01T12:00:00.000001+02:00' });
    expect([m.time.toISOString(), m.micros, m.isoTime(), m.isoTime(false)]).toEqual([
      '2026-12-01T10:00:00.000Z',
      1,
      '2026-12-01T10:00:00.000001+00:00',
      '2026-12-01T10:00:00.000001',
    ]);
  });

  it('leaves out falsy data like PostTroll', () => {
    for (const data of ['', 0, false, null, {}, [], 0n] as PubJson[]) {
      expect(new PubMessage({ subject: '/e', type: 'beat', sender: 'u@h', time: '2026-12-01T10:00:00', data }).encode()).toBe(
        'pytroll://e beat u@h 2026-12-01T10:00:00 v1.01',
      );
    }
    expect(new PubMessage({ subject: '/e', type: 'n', sender: 'u@h', time: '2026-12-01T10:00:00', data: NaN }).encode()).toMatch(/application\/json NaN$/);
  });
});
