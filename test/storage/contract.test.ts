import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ClosedError, InvalidArgumentError } from '../../lib/errors.js';
import { MemoryQueuesStorage, type QueuesStorage, type StoredMessage } from '../../lib/storage/index.js';
import { SqliteQueuesStorage } from '../../lib/storage/sqlite.js';
import { msg, plain, removeTempDirs, tempDir, turn, uuid } from './helpers.js';

interface Impl {
  name: string;
  durable: boolean;
  open(): Promise<QueuesStorage>;
}

const impls: Impl[] = [
  { name: 'MemoryQueuesStorage', durable: false, open: async () => new MemoryQueuesStorage() },
  {
    name: 'SqliteQueuesStorage',
    durable: true,
    open: async () => SqliteQueuesStorage.open(join(await tempDir(), 'queues.db')),
  },
];

describe.each(impls)('QueuesStorage contract: $name', (impl) => {
  const open: QueuesStorage[] = [];
  const make = async (): Promise<QueuesStorage> => {
    const s = await impl.open();
    open.push(s);
    return s;
  };
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
    await removeTempDirs();
  });

  it('reports durability', async () => {
    expect((await make()).durable).toBe(impl.durable);
  });

  it('loads nothing when empty', async () => {
    expect(await (await make()).load()).toEqual([]);
  });

  it('keeps queue order across calls and queues', async () => {
    const s = await make();
    await s.push('a', [msg(1), msg(2)]);
    await s.push('b', [msg(10)]);
    await s.push('a', [msg(3, { ttl: 2.5, flags: 3 })]);
    await Promise.all([s.push('b', [msg(11)]), s.push('a', [msg(4)]), s.push('b', [msg(12)])]);
    expect(plain(await s.load())).toEqual(
      plain([
        { ident: 'a', awaySince: null, messages: [msg(1), msg(2), msg(3, { ttl: 2.5, flags: 3 }), msg(4)] },
        { ident: 'b', awaySince: null, messages: [msg(10), msg(11), msg(12)] },
      ]),
    );
  });

  it('stores empty and binary data, any flags', async () => {
    const s = await make();
    const data = Buffer.from([0, 255, 0, 1, 2]);
    await s.push('q', [msg(1, { data: Buffer.alloc(0) }), msg(2, { data, flags: 0xffffffff })]);
    const [q] = await s.load();
    expect(q!.messages[0]!.data.length).toBe(0);
    expect(q!.messages[1]!.data.equals(data)).toBe(true);
    expect(q!.messages[1]!.flags).toBe(0xffffffff);
  });

  it('removes by uuid, ignoring unknown uuids and queues', async () => {
    const s = await make();
    await s.push('a', [msg(1), msg(2), msg(3), msg(4)]);
    await s.push('b', [msg(2)]);
    await s.remove('a', [uuid(2), uuid(99)]);
    await s.remove('nobody', [uuid(1)]);
    await s.remove('a', []);
    expect(plain(await s.load())).toEqual(
      plain([
        { ident: 'a', awaySince: null, messages: [msg(1), msg(3), msg(4)] },
        { ident: 'b', awaySince: null, messages: [msg(2)] },
      ]),
    );
    await s.remove('a', [uuid(1), uuid(3), uuid(4)]);
    expect(plain(await s.load())).toEqual(plain([{ ident: 'b', awaySince: null, messages: [msg(2)] }]));
  });

  it('updates TTLs exactly (including null), ignoring unknown uuids', async () => {
    const s = await make();
    const ttls = [0.1, 1 / 3, 59.99999999999999, 350221.157398632, 1e-9, 123456789.123, -2.75, 2 ** 52 + 0.5 * 2];
    const messages = ttls.map((_, i) => msg(i, { ttl: 60 }));
    await s.push('q', messages);
    await s.updateTtl('q', [...ttls.map((ttl, i) => ({ uuid: uuid(i), ttl })), { uuid: uuid(500), ttl: 1 }]);
    await s.updateTtl('q', [{ uuid: uuid(0), ttl: null }]);
    await s.updateTtl('nobody', [{ uuid: uuid(1), ttl: 5 }]);
    const [q] = await s.load();
    expect(q!.messages.map((m) => m.ttl)).toEqual([null, ...ttls.slice(1)]);
  });

  it('stores pushed TTLs exactly', async () => {
    const s = await make();
    const ttls: (number | null)[] = [null, 0, 1, 7.5, 0.1 + 0.2, Math.PI * 1e6, 4.9e-20, Number.MAX_SAFE_INTEGER];
    for (let i = 0; i < 200; i++) ttls.push(Math.random() * 10 ** Math.floor(Math.random() * 12 - 4));
    await s.push(
      'q',
      ttls.map((ttl, i) => msg(i, { ttl })),
    );
    const [q] = await s.load();
    expect(q!.messages.map((m) => m.ttl)).toEqual(ttls);
  });

  it('records awaySince', async () => {
    const s = await make();
    await s.push('gone', [msg(2)]);
    await s.setAwaySince('gone', 1_700_000_000_123);
    await s.push('here', [msg(1)]);
    await s.setAwaySince('here', 1_700_000_000_000);
    await s.setAwaySince('here', null);
    await s.setAwaySince('never', null);
    expect(plain(await s.load())).toEqual(
      plain([
        { ident: 'gone', awaySince: 1_700_000_000_123, messages: [msg(2)] },
        { ident: 'here', awaySince: null, messages: [msg(1)] },
      ]),
    );
    await s.setAwaySince('gone', null);
    await s.setAwaySince('here', 5.25);
    expect(plain(await s.load())).toEqual(
      plain([
        { ident: 'gone', awaySince: null, messages: [msg(2)] },
        { ident: 'here', awaySince: 5.25, messages: [msg(1)] },
      ]),
    );
  });

  it('does not load queues that hold no messages, and forgets them', async () => {
    const s = await make();
    await s.setAwaySince('left', 1_700_000_000_000);
    await s.push('drained', [msg(1)]);
    await s.setAwaySince('drained', 1_700_000_000_001);
    await s.remove('drained', [uuid(1)]);
    expect(await s.load()).toEqual([]);
    // The state was dropped: a message queued later counts from a fresh awaySince.
    await s.push('left', [msg(2)]);
    await s.push('drained', [msg(3)]);
    expect(plain(await s.load())).toEqual(
      plain([
        { ident: 'drained', awaySince: null, messages: [msg(3)] },
        { ident: 'left', awaySince: null, messages: [msg(2)] },
      ]),
    );
  });

  it('forgets a queue without messages, and leaves one with messages as it is', async () => {
    const s = await make();
    await s.setAwaySince('idle', 100);
    await s.push('busy', [msg(1)]);
    await s.setAwaySince('busy', 200);
    await Promise.all([s.forget('idle'), s.forget('busy'), s.forget('unknown')]);
    await s.push('idle', [msg(2)]);
    expect(plain(await s.load())).toEqual(
      plain([
        { ident: 'busy', awaySince: 200, messages: [msg(1)] },
        { ident: 'idle', awaySince: null, messages: [msg(2)] },
      ]),
    );
    await s.remove('busy', [uuid(1)]);
    await s.forget('busy');
    await s.push('busy', [msg(3)]);
    expect(plain(await s.load()).map((q) => (q as { ident: string; awaySince: unknown }).awaySince)).toEqual([null, null]);
  });

  it('applies forget in call order within one tick', async () => {
    const s = await make();
    await s.push('a', [msg(1)]);
    await s.setAwaySince('a', 10);
    await Promise.all([s.setAwaySince('b', 20), s.setAwaySince('c', 30), s.setAwaySince('d', 40), s.push('d', [msg(9)])]);
    await Promise.all([
      s.remove('a', [uuid(1)]),
      s.forget('a'), // empty by now: forgotten
      s.push('a', [msg(2)]), // after the forget: a fresh queue
      s.forget('b'),
      s.setAwaySince('b', 21), // after the forget: kept
      s.push('c', [msg(3)]),
      s.forget('c'), // holds a message: kept as it is
      s.remove('d', [uuid(9)]),
      s.forget('d'),
      s.forget('d'),
    ]);
    await s.push('b', [msg(4)]);
    await s.push('d', [msg(5)]);
    expect(plain(await s.load())).toEqual(
      plain([
        { ident: 'a', awaySince: null, messages: [msg(2)] },
        { ident: 'b', awaySince: 21, messages: [msg(4)] },
        { ident: 'c', awaySince: 30, messages: [msg(3)] },
        { ident: 'd', awaySince: null, messages: [msg(5)] },
      ]),
    );
  });

  it('applies calls of one tick in call order', async () => {
    const s = await make();
    await s.push('q', [msg(1), msg(2)]);
    const calls = [
      s.push('q', [msg(3)]),
      s.remove('q', [uuid(3)]), // pushed in this tick: never stored
      s.updateTtl('q', [{ uuid: uuid(1), ttl: 9 }]),
      s.remove('q', [uuid(1)]), // after its TTL update
      s.push('q', [msg(1, { data: Buffer.from('again') })]), // same uuid, new message, after the remove
      s.updateTtl('q', [{ uuid: uuid(1), ttl: 4 }]),
      s.push('q', [msg(4)]),
      s.updateTtl('q', [{ uuid: uuid(4), ttl: 1.5 }]),
      s.setAwaySince('q', 10),
      s.setAwaySince('q', 20),
    ];
    await Promise.all(calls);
    expect(plain(await s.load())).toEqual(
      plain([
        {
          ident: 'q',
          awaySince: 20,
          messages: [msg(2), msg(1, { data: Buffer.from('again'), ttl: 4 }), msg(4, { ttl: 1.5 })],
        },
      ]),
    );
  });

  it('normalises idents with lone surrogates consistently', async () => {
    const s = await make();
    await s.push('a\ud800', [msg(1), msg(2)]);
    await s.remove('a\ud800', [uuid(1)]);
    await s.setAwaySince('a\ud800', 3);
    const queues = await s.load();
    expect(queues.map((q) => [q.ident, q.messages.length, q.awaySince])).toEqual([['a\ufffd', 1, 3]]);
  });

  it('accepts odd but valid idents', async () => {
    const s = await make();
    const idents = ['', 'with "quotes" and \\ backslash', 'nul\0inside', 'ünïcødé 😀', '\n\t\u2028'];
    for (const [i, ident] of idents.entries()) await s.push(ident, [msg(i)]);
    await s.setAwaySince(idents[1]!, 7);
    await s.remove(idents[2]!, [uuid(2)]);
    const loaded = await s.load();
    expect(new Set(loaded.map((q) => q.ident))).toEqual(new Set(idents.filter((_, i) => i !== 2)));
    expect(loaded.find((q) => q.ident === idents[1])!.awaySince).toBe(7);
  });

  it('rejects invalid arguments with InvalidArgumentError', async () => {
    const s = await make();
    const bad: [string, () => Promise<unknown>][] = [
      ['short uuid', () => s.push('q', [{ ...msg(1), uuid: Buffer.alloc(15) }])],
      ['data not a Buffer', () => s.push('q', [{ ...msg(1), data: 'x' as unknown as Buffer }])],
      ['NaN ttl', () => s.push('q', [msg(1, { ttl: NaN })])],
      ['infinite ttl', () => s.push('q', [msg(1, { ttl: Infinity })])],
      ['fractional flags', () => s.push('q', [msg(1, { flags: 1.5 })])],
      ['ident not a string', () => s.push(7 as unknown as string, [msg(1)])],
      ['remove uuid', () => s.remove('q', [Buffer.alloc(3)])],
      ['ttl entry', () => s.updateTtl('q', [{ uuid: uuid(1), ttl: NaN }])],
      ['awaySince', () => s.setAwaySince('q', NaN)],
      ['forget ident', () => s.forget(null as unknown as string)],
    ];
    for (const [what, call] of bad) {
      await expect(call(), what).rejects.toBeInstanceOf(InvalidArgumentError);
    }
    expect(await s.load()).toEqual([]);
  });

  it('matches a step-by-step model under random calls and ticks', async () => {
    const s = await make();
    const model = new MemoryQueuesStorage();
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const idents = ['a', 'b', 'c'];
    let next = 0;
    const pending: Promise<void>[] = [];
    for (let step = 0; step < 600; step++) {
      const ident = idents[rand(3)]!;
      const r = rand(100);
      // uuids come from a small pool so removes, TTL updates and duplicates hit.
      const some = (): Buffer[] => Array.from({ length: 1 + rand(3) }, () => uuid(rand(40)));
      if (r < 45) {
        const messages: StoredMessage[] = some().map((u) => ({
          uuid: u,
          data: Buffer.from(`m${next++}`),
          flags: rand(4),
          ttl: rand(3) === 0 ? null : rand(1000) / 8,
        }));
        pending.push(s.push(ident, messages));
        await model.push(ident, messages);
      } else if (r < 75) {
        const uuids = some();
        pending.push(s.remove(ident, uuids));
        await model.remove(ident, uuids);
      } else if (r < 85) {
        const entries = some().map((u) => ({ uuid: u, ttl: rand(4) === 0 ? null : rand(1000) / 16 }));
        pending.push(s.updateTtl(ident, entries));
        await model.updateTtl(ident, entries);
      } else if (r < 92) {
        pending.push(s.forget(ident));
        await model.forget(ident);
      } else {
        const since = rand(2) === 0 ? null : 1000 + rand(1000);
        pending.push(s.setAwaySince(ident, since));
        await model.setAwaySince(ident, since);
      }
      if (rand(10) === 0) await turn();
      if (rand(50) === 0) expect(plain(await s.load())).toEqual(plain(await model.load()));
    }
    await Promise.all(pending);
    expect(plain(await s.load())).toEqual(plain(await model.load()));
    await model.close();
  });

  it('rejects every call with ClosedError after close, and close is idempotent', async () => {
    const s = await make();
    await s.push('q', [msg(1)]);
    const first = s.close();
    const second = s.close();
    await Promise.all([first, second]);
    await s.close();
    const calls: [string, () => Promise<unknown>][] = [
      ['load', () => s.load()],
      ['push', () => s.push('q', [msg(2)])],
      ['remove', () => s.remove('q', [uuid(1)])],
      ['updateTtl', () => s.updateTtl('q', [{ uuid: uuid(1), ttl: 1 }])],
      ['setAwaySince', () => s.setAwaySince('q', 1)],
      ['forget', () => s.forget('q')],
    ];
    for (const [what, call] of calls) {
      await expect(call(), what).rejects.toBeInstanceOf(ClosedError);
    }
  });

  it('settles calls made before close, rejects calls made after it', async () => {
    const s = await make();
    const before = s.push('q', [msg(1)]);
    const closed = s.close();
    const after = s.push('q', [msg(2)]);
    await Promise.all([expect(before).resolves.toBeUndefined(), expect(after).rejects.toBeInstanceOf(ClosedError), closed]);
  });
});
