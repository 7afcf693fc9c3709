import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, RpcBadRequestError } from '../../lib/errors.js';
import { MAX_DEPTH, decodeReply, decodeRequest, encodeReply, encodeRequest, tryDecodeRequest, tryDecodeReply } from '../../lib/rpc/index.js';
import { decodeOwnCall, decodeOwnReply, encodeCall, encodeCallHead, ownReplyId } from '../../lib/rpc/codec.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const ascii = (s: string): string => Buffer.from(s, 'ascii').toString('hex');
/** MessagePack fixstr of an ASCII string. */
const fixstr = (s: string): string => (0xa0 | s.length).toString(16) + ascii(s);

const REQ_ID = hex('000102030405060708090a0b0c0d0e0f');

// Built by hand from the MessagePack spec, in Python's key order.
const CALL_ADD_1_2 =
  ascii('rpcreq') +
  '86' +
  fixstr('command') +
  fixstr('call') +
  fixstr('object') +
  fixstr('calc') +
  fixstr('method') +
  fixstr('add') +
  fixstr('args') +
  '92 01 02' +
  fixstr('kwargs') +
  '80' +
  fixstr('req_id') +
  'c4 10 000102030405060708090a0b0c0d0e0f';

// Raw MessagePack packer for malformed fixtures (Map keeps any key type and order).
const raw = new Packr({ useRecords: false, variableMapSize: true, encodeUndefinedAsNil: true });
const req = (entries: [unknown, unknown][]): Buffer => Buffer.concat([Buffer.from('rpcreq'), raw.pack(new Map(entries))]);
const rep = (entries: [unknown, unknown][]): Buffer => Buffer.concat([Buffer.from('rpcrep'), raw.pack(new Map(entries))]);
const goodEntries = (): [unknown, unknown][] => [
  ['command', 'call'],
  ['object', 'calc'],
  ['method', 'add'],
  ['args', [1, 2]],
  ['kwargs', new Map()],
  ['req_id', REQ_ID],
];
const without = (key: string): [unknown, unknown][] => goodEntries().filter(([k]) => k !== key);
const withValue = (key: string, value: unknown): [unknown, unknown][] => goodEntries().map(([k, v]) => [k, k === key ? value : v]);

describe('rpc codec: wire fixtures', () => {
  it('encodes a call byte-exactly (prefix, key order, bin req_id)', () => {
    const data = encodeRequest({ command: 'call', object: 'calc', method: 'add', args: [1, 2], kwargs: {}, reqId: REQ_ID });
    expect(data.toString('hex')).toBe(hex(CALL_ADD_1_2).toString('hex'));
  });

  it('decodes the fixture to the expected request', () => {
    const r = decodeRequest(hex(CALL_ADD_1_2));
    expect(r).toEqual({ command: 'call', object: 'calc', method: 'add', args: [1, 2], kwargs: {}, reqId: REQ_ID });
    expect(Buffer.isBuffer(r.reqId)).toBe(true);
  });

  it('decodes what a Python peer sends (other key order, kwargs, str/bin/nil/float/uint64/nested)', () => {
    const data = hex(
      ascii('rpcreq') +
        '86' +
        fixstr('req_id') +
        'c4 02 abcd' +
        fixstr('kwargs') +
        '81' +
        fixstr('flag') +
        'c3' +
        fixstr('args') +
        '96' +
        fixstr('hi') +
        'c4 03 010203' +
        'c0' +
        'cb 3ff8000000000000' +
        'cf ffffffffffffffff' +
        '81' +
        fixstr('k') +
        '91 d0 ff' +
        fixstr('method') +
        fixstr('m') +
        fixstr('object') +
        fixstr('o') +
        fixstr('command') +
        fixstr('signal'),
    );
    const r = decodeRequest(data);
    expect(r.command).toBe('signal');
    expect(r.object).toBe('o');
    expect(r.method).toBe('m');
    expect(r.kwargs).toEqual({ flag: true });
    expect(r.args).toEqual(['hi', Buffer.from([1, 2, 3]), null, 1.5, 2n ** 64n - 1n, { k: [-1] }]);
    expect(Buffer.isBuffer(r.args[1])).toBe(true);
    expect(r.reqId).toEqual(Buffer.from([0xab, 0xcd]));
  });

  it('encodes replies byte-exactly', () => {
    expect(encodeReply({ reqId: REQ_ID, ok: true, value: 3 }).toString('hex')).toBe(
      ascii('rpcrep') + '83' + fixstr('req_id') + 'c410000102030405060708090a0b0c0d0e0f' + fixstr('ok') + 'c3' + fixstr('return') + '03',
    );
    const err = encodeReply({ reqId: REQ_ID, ok: false, exception: { name: 'E', message: 'm' }, exceptionFormat: 'tb' });
    expect(err.toString('hex')).toBe(
      ascii('rpcrep') +
        '84' +
        fixstr('req_id') +
        'c410000102030405060708090a0b0c0d0e0f' +
        fixstr('ok') +
        'c2' +
        fixstr('exception') +
        '82' +
        fixstr('name') +
        fixstr('E') +
        fixstr('message') +
        fixstr('m') +
        fixstr('exception_format') +
        fixstr('tb'),
    );
    expect(decodeReply(err)).toEqual({ reqId: REQ_ID, ok: false, exception: { name: 'E', message: 'm' }, exceptionFormat: 'tb' });
  });

  it('round-trips values: Buffer/Uint8Array as bin -> Buffer, Date as timestamp, bigint, undefined -> nil, nested maps', () => {
    const date = new Date(1_700_000_000_123);
    const args = [Buffer.from('ab'), new Uint8Array([7]), date, 2n ** 60n, undefined, { a: { b: [1, 'x'] } }, -0.5, 'žluťoučký'];
    const r = decodeRequest(encodeRequest({ command: 'signal', object: 'o', method: 'm', args, kwargs: {} }));
    expect(r.args).toEqual([Buffer.from('ab'), Buffer.from([7]), date, 2n ** 60n, null, { a: { b: [1, 'x'] } }, -0.5, 'žluťoučký']);
    expect(Buffer.isBuffer(r.args[1])).toBe(true);
    expect(r.reqId).toBeUndefined();
  });

  it('decoded bins do not alias the received data', () => {
    const data = encodeRequest({ command: 'signal', object: 'o', method: 'm', args: [Buffer.from('abc')], kwargs: {} });
    const r = decodeRequest(data);
    data.fill(0);
    expect((r.args[0] as Buffer).toString()).toBe('abc');
  });

  it('accepts a nil or absent exception_format and a str req_id', () => {
    const a = decodeReply(
      rep([
        ['req_id', 'id1'],
        ['ok', false],
        ['exception', 'boom'],
      ]),
    );
    expect(a).toEqual({ reqId: 'id1', ok: false, exception: 'boom', exceptionFormat: '' });
    const b = decodeReply(
      rep([
        ['req_id', REQ_ID],
        ['ok', false],
        ['exception', null],
        ['exception_format', null],
      ]),
    );
    expect(b.ok).toBe(false);
  });
});

describe('rpc codec: malformed input is RpcBadRequestError', () => {
  const nested = (depth: number): unknown => {
    let v: unknown = 1;
    for (let i = 0; i < depth; i++) v = [v];
    return v;
  };
  const requests: [string, Buffer][] = [
    ['empty', Buffer.alloc(0)],
    ['wrong prefix', Buffer.concat([Buffer.from('rpcrep'), raw.pack(new Map(goodEntries()))])],
    ['prefix only', Buffer.from('rpcreq')],
    ['not a map (array)', Buffer.concat([Buffer.from('rpcreq'), raw.pack([1, 2])])],
    ['not a map (str)', Buffer.concat([Buffer.from('rpcreq'), raw.pack('x')])],
    ['not MessagePack (0xc1)', hex(ascii('rpcreq') + '81 c1 c0')],
    ['truncated', req(goodEntries()).subarray(0, 30)],
    ['trailing bytes', Buffer.concat([req(goodEntries()), hex('00')])],
    ['huge announced array', hex(ascii('rpcreq') + '81' + fixstr('args') + 'dd ffffffff')],
    ['huge announced str', hex(ascii('rpcreq') + '81' + fixstr('args') + 'db ffffffff 61')],
    ['msgpackr record extension', hex(ascii('rpcreq') + '81' + fixstr('args') + 'd4 72 40')],
    ['msgpackr error extension', hex(ascii('rpcreq') + '81' + fixstr('args') + 'd4 65 00 93 a1 45 a1 6d c0')],
    ['regexp extension (ext8)', hex(ascii('rpcreq') + '81' + fixstr('args') + 'c7 01 78 00')],
    ['structured-clone pointer (fixext4 0x70)', hex(ascii('rpcreq') + '81' + fixstr('args') + 'd6 70 00000000')],
    ['too deep', req(withValue('args', [nested(MAX_DEPTH)]))],
    ['missing command', req(without('command'))],
    ['unknown command', req(withValue('command', 'exec'))],
    ['command not a string', req(withValue('command', 1))],
    ['missing object', req(without('object'))],
    ['object not a string', req(withValue('object', Buffer.from('calc')))],
    ['method not a string', req(withValue('method', null))],
    ['missing method', req(without('method'))],
    ['missing args', req(without('args'))],
    ['args not an array', req(withValue('args', new Map([['a', 1]])))],
    ['missing kwargs', req(without('kwargs'))],
    ['kwargs not a map', req(withValue('kwargs', []))],
    ['call without req_id', req(without('req_id'))],
    ['req_id of the wrong type', req(withValue('req_id', 42))],
    ['empty req_id', req(withValue('req_id', Buffer.alloc(0)))],
    ['req_id too long', req(withValue('req_id', Buffer.alloc(257)))],
    ['bin map key in args', req(withValue('args', [new Map([[Buffer.from('k'), 1]])]))],
    ['nil map key in kwargs', req(withValue('kwargs', new Map([[null, 1]])))],
    ['array map key', req(withValue('args', [new Map([[[1], 1]])]))],
  ];
  it.each(requests)('request: %s', (_name, data) => {
    expect(() => decodeRequest(data)).toThrow(RpcBadRequestError);
    expect(tryDecodeRequest(data).ok).toBe(false);
  });

  it('nesting up to MAX_DEPTH is accepted', () => {
    expect(decodeRequest(req(withValue('args', [nested(MAX_DEPTH - 2)]))).args).toHaveLength(1);
  });

  it('request: larger than maxPayload', () => {
    const data = req(withValue('args', ['x'.repeat(1000)]));
    expect(() => decodeRequest(data, { maxPayload: 500 })).toThrow(/exceeds maxPayload/);
    expect(decodeRequest(data, { maxPayload: 2000 }).args).toHaveLength(1);
  });

  it('a readable req_id is reported with the error', () => {
    const r = tryDecodeRequest(req(withValue('method', 5)));
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.reqId).toEqual(REQ_ID);
      expect(r.error.message).toMatch(/'method' must be a string/);
    }
  });

  const replies: [string, Buffer][] = [
    [
      'wrong prefix',
      Buffer.concat([
        Buffer.from('rpcreq'),
        raw.pack(
          new Map<string, unknown>([
            ['req_id', REQ_ID],
            ['ok', true],
            ['return', 1],
          ]),
        ),
      ]),
    ],
    [
      'missing req_id',
      rep([
        ['ok', true],
        ['return', 1],
      ]),
    ],
    [
      'missing ok',
      rep([
        ['req_id', REQ_ID],
        ['return', 1],
      ]),
    ],
    [
      'ok not a boolean',
      rep([
        ['req_id', REQ_ID],
        ['ok', 1],
        ['return', 1],
      ]),
    ],
    [
      'ok without return',
      rep([
        ['req_id', REQ_ID],
        ['ok', true],
      ]),
    ],
    [
      'error without exception',
      rep([
        ['req_id', REQ_ID],
        ['ok', false],
        ['exception_format', ''],
      ]),
    ],
    [
      'exception_format not a string',
      rep([
        ['req_id', REQ_ID],
        ['ok', false],
        ['exception', 'x'],
        ['exception_format', 3],
      ]),
    ],
    ['not MessagePack', hex(ascii('rpcrep') + 'c1')],
  ];
  it.each(replies)('reply: %s', (_name, data) => {
    expect(() => decodeReply(data)).toThrow(RpcBadRequestError);
    expect(tryDecodeReply(data).ok).toBe(false);
  });
});

describe('rpc codec: prototype pollution', () => {
  it('__proto__ and constructor keys stay plain own data', () => {
    const evil = new Map<string, unknown>([
      ['__proto__', new Map([['polluted', true]])],
      ['constructor', new Map([['prototype', new Map([['polluted', true]])]])],
      ['ok', 1],
    ]);
    const r = decodeRequest(req(withValue('args', [evil]).concat([['kwargs', new Map([['__proto__', new Map([['isAdmin', true]])]])]])));
    const arg = r.args[0] as Record<string, unknown>;
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((Object.prototype as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getPrototypeOf(arg)).toBe(Object.prototype);
    expect(Object.getOwnPropertyNames(arg).sort()).toEqual(['__proto__', 'constructor', 'ok']);
    expect(Object.getOwnPropertyDescriptor(arg, '__proto__')!.value).toEqual({ polluted: true });
    expect(arg.polluted).toBeUndefined();
    expect(arg.constructor).toEqual({ prototype: { polluted: true } });
    expect(Object.getPrototypeOf(r.kwargs)).toBe(Object.prototype);
    expect((r.kwargs as Record<string, unknown>).isAdmin).toBeUndefined();
    expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
  });

  it('the envelope itself cannot be polluted through __proto__', () => {
    const r = decodeRequest(req([...goodEntries(), ['__proto__', new Map([['command', 'signal']])]]));
    expect(r.command).toBe('call');
  });
});

describe('rpc codec: encoding errors', () => {
  it('circular values give InvalidArgumentError and the encoder keeps working', () => {
    const a: Record<string, unknown> = {};
    a.self = a;
    expect(() => encodeRequest({ command: 'call', object: 'o', method: 'm', args: [a], kwargs: {}, reqId: REQ_ID })).toThrow(InvalidArgumentError);
    expect(encodeRequest({ command: 'call', object: 'calc', method: 'add', args: [1, 2], kwargs: {}, reqId: REQ_ID }).toString('hex')).toBe(
      hex(CALL_ADD_1_2).toString('hex'),
    );
  });

  it('too large gives InvalidArgumentError', () => {
    expect(() => encodeReply({ reqId: REQ_ID, ok: true, value: 'x'.repeat(200) }, { maxPayload: 100 })).toThrow(InvalidArgumentError);
  });
});

describe('rpc codec: the fast path for replies to our own calls', () => {
  const template = hex('a1a2a3a4a5a6a7a8 0000000000000000');
  const idOf = (n: number): Buffer => {
    const id = Buffer.from(template);
    id.writeUInt32BE(Math.floor(n / 2 ** 32), 8);
    id.writeUInt32BE(n >>> 0, 12);
    return id;
  };
  const values: unknown[] = [0, -1, 2 ** 40, 1.5, 'text', '', null, true, [1, [2, { a: 3 }]], { k: Buffer.from([1, 2]) }, Buffer.alloc(100, 7), new Date(0)];

  it('reads the id and the value of every successful reply our server writes, as decodeReply does', () => {
    for (const [i, value] of values.entries()) {
      const data = encodeReply({ reqId: idOf(1000 + i), ok: true, value });
      expect(decodeOwnReply(data, template, 1 << 20)).toEqual((decodeReply(data) as { value: unknown }).value);
      expect(ownReplyId(data)).toBe(1000 + i);
    }
  });

  it('a __proto__ key in the value stays data', () => {
    const data = Buffer.concat([encodeReply({ reqId: idOf(1), ok: true, value: null }).subarray(0, -1), hex(`81 ${fixstr('__proto__')} 81 ${fixstr('x')} 01`)]);
    const value = decodeOwnReply(data, template, 1 << 20) as Record<string, unknown>;
    expect(ownReplyId(data)).toBe(1);
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(Object.keys(value)).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it('leaves anything else to the full decoder (undefined): another client, an error reply, another layout, broken or trailing bytes, too large', () => {
    const ok = encodeReply({ reqId: idOf(5), ok: true, value: [1, 2] });
    const other = Buffer.from(ok);
    other[16] ^= 0xff;
    const cases: Buffer[] = [
      other,
      encodeReply({ reqId: idOf(5), ok: false, exception: { name: 'E', message: 'm' }, exceptionFormat: '' }),
      encodeReply({ reqId: Buffer.from(idOf(5).subarray(0, 15)), ok: true, value: 1 }),
      encodeReply({ reqId: 'string-id', ok: true, value: 1 }),
      Buffer.concat([ok, hex('c0')]),
      ok.subarray(0, ok.length - 1),
      Buffer.concat([ok.subarray(0, -3), hex('c1 c1 c1')]),
      Buffer.concat([encodeReply({ reqId: idOf(5), ok: true, value: null }).subarray(0, -1), hex('81 c4 01 00 01')]),
    ];
    for (const data of cases) {
      expect(decodeOwnReply(data, template, 1 << 20)).toBeUndefined();
    }
    expect(decodeOwnReply(ok, template, ok.length - 1)).toBeUndefined();
    // What fell back is still judged by the full decoder: these two are errors there too.
    expect(tryDecodeReply(cases[4]!).ok).toBe(false);
    expect(tryDecodeReply(cases[7]!).ok).toBe(false);
  });
});

describe('rpc codec: the fast path for calls from snakemq-ts clients', () => {
  const template = hex('b1b2b3b4b5b6b7b8 0000000000000000');
  const argsList: unknown[][] = [[], [1, 2], ['é', null, true, 1.5, -3], [[1, [2]], { a: Buffer.from([9]) }], [Buffer.alloc(300, 1)]];

  it('reads every call encodeCall writes exactly as the full decoder does', () => {
    for (const [i, args] of argsList.entries()) {
      for (const [object, method] of [
        ['calc', 'add'],
        ['o'.repeat(40), 'm'.repeat(300)],
      ] as const) {
        const data = encodeCall(encodeCallHead(object, method), args, template, 7 + i);
        const fast = decodeOwnCall(data, 1 << 20);
        const full = decodeRequest(data);
        expect(fast).toEqual(full);
        expect(Object.isFrozen(fast!.kwargs)).toBe(true);
      }
    }
  });

  it('leaves anything else to the full decoder: other layouts, kwargs, signals, broken or trailing bytes, too large', () => {
    const call = encodeCall(encodeCallHead('calc', 'add'), [1, 2], template, 1);
    const cases: Buffer[] = [
      encodeRequest({ command: 'call', object: 'calc', method: 'add', args: [1], kwargs: { k: 1 }, reqId: REQ_ID }),
      encodeRequest({ command: 'signal', object: 'calc', method: 'add', args: [1], kwargs: {} }),
      encodeRequest({ command: 'call', object: 'calc', method: 'add', args: [1], kwargs: {}, reqId: 'str-id' }),
      Buffer.concat([call, hex('c0')]),
      call.subarray(0, call.length - 1),
      // args not an array: a map where the array was.
      Buffer.concat([encodeCallHead('calc', 'add'), hex('80'), call.subarray(call.length - 31)]),
      // a bin key inside the args: an error for the full decoder too.
      Buffer.concat([encodeCallHead('calc', 'add'), hex('91 81 c4 01 00 01'), call.subarray(call.length - 31)]),
      // the object name not a string.
      Buffer.concat([call.subarray(0, 27), hex('01'), call.subarray(27 + 5)]),
    ];
    for (const data of cases) expect(decodeOwnCall(data, 1 << 20)).toBeUndefined();
    expect(decodeOwnCall(call, call.length - 1)).toBeUndefined();
    for (const i of [3, 4, 5, 6, 7]) expect(tryDecodeRequest(cases[i]!).ok).toBe(false);
  });
});
