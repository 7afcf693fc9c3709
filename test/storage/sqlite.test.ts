import { randomBytes } from 'node:crypto';
import { chmod, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidArgumentError, InvalidOptionsError, StorageError, StorageSchemaError } from '../../lib/errors.js';
import {
  DEFAULT_SQLITE_BUSY_TIMEOUT,
  DEFAULT_SQLITE_DURABILITY,
  DEFAULT_SQLITE_MAX_PAGE_COUNT,
  SQLITE_APPLICATION_ID,
  SQLITE_SCHEMA_VERSION,
  SqliteQueuesStorage,
} from '../../lib/storage/sqlite.js';
import type { StoredMessage } from '../../lib/storage/index.js';
import { msg, plain, removeTempDirs, runFixture, tempDir, turn, uuid, withRawDb } from './helpers.js';

const opened: SqliteQueuesStorage[] = [];
async function open(path: string, options?: Parameters<typeof SqliteQueuesStorage.open>[1]) {
  const s = await SqliteQueuesStorage.open(path, options);
  opened.push(s);
  return s;
}
async function dbPath(name = 'queues.db'): Promise<string> {
  return join(await tempDir(), name);
}

afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
  await removeTempDirs();
});

describe('SqliteQueuesStorage: persistence', () => {
  it('gives back everything, in order, after a reopen', async () => {
    const path = await dbPath();
    const s = await open(path);
    const expected = new Map<string, StoredMessage[]>();
    for (let round = 0; round < 5; round++) {
      const calls: Promise<void>[] = [];
      for (let i = 0; i < 40; i++) {
        const ident = `peer-${i % 7}`;
        const m = msg(round * 1000 + i, { data: randomBytes(i * 3), flags: i % 4, ttl: i % 3 ? i / 7 : null });
        calls.push(s.push(ident, [m]));
        expected.set(ident, [...(expected.get(ident) ?? []), m]);
      }
      await Promise.all(calls);
    }
    await s.remove('peer-0', [uuid(0), uuid(4007)]);
    expected.set(
      'peer-0',
      expected.get('peer-0')!.filter((m) => !m.uuid.equals(uuid(0)) && !m.uuid.equals(uuid(4007))),
    );
    await s.setAwaySince('peer-3', 1_700_000_000_000);
    await s.close();

    const again = await open(path);
    const loaded = await again.load();
    const want = [...expected].map(([ident, messages]) => ({
      ident,
      messages,
      awaySince: ident === 'peer-3' ? 1_700_000_000_000 : null,
    }));
    expect(plain(loaded)).toEqual(plain(want));
  });

  it('keeps order between small and large (unpacked) messages of a queue', async () => {
    const path = await dbPath();
    const s = await open(path);
    const big = (i: number) => msg(i, { data: randomBytes(200_000), ttl: 0.3 });
    const messages = [msg(1), big(2), msg(3), msg(4), big(5), big(6), msg(7)];
    await Promise.all(messages.map((m, i) => s.push(i % 2 ? 'x' : 'y', [m])));
    await s.close();
    const loaded = await (await open(path)).load();
    expect(plain(loaded)).toEqual(
      plain([
        { ident: 'x', awaySince: null, messages: messages.filter((_, i) => i % 2) },
        { ident: 'y', awaySince: null, messages: messages.filter((_, i) => !(i % 2)) },
      ]),
    );
  });

  it('handles many queues in one transaction', async () => {
    const s = await open(await dbPath());
    const calls = Array.from({ length: 3000 }, (_, i) => s.push(`q${i % 1500}`, [msg(i, { ttl: i % 5 })]));
    await Promise.all(calls);
    expect(s.stats.transactions).toBe(1);
    const loaded = await s.load();
    expect(loaded).toHaveLength(1500);
    const q7 = loaded.find((q) => q.ident === 'q7')!;
    expect(q7.messages.map((m) => [m.uuid.readUInt32BE(12), m.ttl])).toEqual([
      [7, 2],
      [1507, 2],
    ]);
  });

  it('updates TTLs of a large queue', async () => {
    const s = await open(await dbPath());
    const n = 20_000;
    await s.push(
      'q',
      Array.from({ length: n }, (_, i) => msg(i, { ttl: 100 })),
    );
    await s.updateTtl(
      'q',
      Array.from({ length: n }, (_, i) => ({ uuid: uuid(i), ttl: i % 2 ? null : 100 - i / 1000 })),
    );
    const [q] = await s.load();
    expect(q!.messages).toHaveLength(n);
    q!.messages.forEach((m, i) => expect(m.ttl).toBe(i % 2 ? null : 100 - i / 1000));
  });

  it('lets load() see writes issued before it, and close() flush pending ones', async () => {
    const path = await dbPath();
    const s = await open(path);
    const pushed = s.push('q', [msg(1)]);
    const loaded = s.load();
    const late = s.push('q', [msg(2)]);
    const closed = s.close();
    await Promise.all([pushed, late, closed]);
    expect((await loaded)[0]!.messages.map((m) => m.uuid.readUInt32BE(12))).toContain(1);
    const again = await open(path);
    expect(plain(await again.load())).toEqual(plain([{ ident: 'q', awaySince: null, messages: [msg(1), msg(2)] }]));
  });
});

describe('SqliteQueuesStorage: group commit', () => {
  it('writes 10,000 pushes of one tick in a single transaction', async () => {
    const s = await open(await dbPath());
    const calls = Array.from({ length: 10_000 }, (_, i) => s.push(`peer-${i % 10}`, [msg(i)]));
    await Promise.all(calls);
    expect(s.stats.transactions).toBeLessThanOrEqual(3);
    expect(s.stats.transactions).toBe(1);
    expect(s.stats.statements).toBeLessThanOrEqual(5);
    expect(s.stats.rowsInserted).toBe(10_000);
    const loaded = await s.load();
    expect(loaded.reduce((n, q) => n + q.messages.length, 0)).toBe(10_000);
  });

  it('collects calls made while a transaction is in flight into the next one', async () => {
    const s = await open(await dbPath());
    const calls: Promise<void>[] = [];
    for (let i = 0; i < 10_000; i++) {
      calls.push(s.push('q', [msg(i)]));
      if (i % 100 === 99) await turn(); // 100 event-loop turns
    }
    await Promise.all(calls);
    expect(s.stats.transactions).toBeLessThan(50);
    const [q] = await s.load();
    expect(q!.messages.map((m) => m.uuid.readUInt32BE(12))).toEqual(Array.from({ length: 10_000 }, (_, i) => i));
  });

  it('never writes a message pushed and removed in the same tick', async () => {
    const s = await open(await dbPath());
    await s.push('q', [msg(1)]);
    const before = s.stats;
    await Promise.all([s.push('q', [msg(2), msg(3)]), s.remove('q', [uuid(2)])]);
    expect(s.stats.rowsInserted - before.rowsInserted).toBe(1);
    expect(plain(await s.load())).toEqual(plain([{ ident: 'q', awaySince: null, messages: [msg(1), msg(3)] }]));
  });

  it('resolves a batch that reduced to nothing without a transaction', async () => {
    const s = await open(await dbPath());
    await Promise.all([s.push('q', []), s.updateTtl('q', []), s.remove('q', [])]);
    expect(s.stats.transactions).toBe(0);
    await Promise.all([s.push('q', [msg(1)]), s.remove('q', [uuid(1)])]);
    // Still one DELETE: an older row might carry the same uuid.
    expect(s.stats).toMatchObject({ transactions: 1, rowsInserted: 0 });
  });
});

describe('SqliteQueuesStorage: failures', () => {
  it('rejects every call of a failed transaction with StorageError (SQLITE_FULL), atomically', async () => {
    const path = await dbPath();
    const s = await open(path, { maxPageCount: 12 });
    await s.push('q', [msg(0)]);
    await s.setAwaySince('q', 1);
    const big = Array.from({ length: 300 }, (_, i) => msg(i + 1, { data: randomBytes(400) }));
    const calls = [s.push('q', big), s.remove('q', [uuid(0)]), s.setAwaySince('q', null), s.updateTtl('q', [{ uuid: uuid(0), ttl: 5 }])];
    const results = await Promise.allSettled(calls);
    for (const r of results) {
      expect(r.status).toBe('rejected');
      const err = (r as PromiseRejectedResult).reason as StorageError;
      expect(err).toBeInstanceOf(StorageError);
      expect(err.code).toBe('SMQ_ERR_STORAGE');
      expect((err.cause as { code?: string }).code).toBe('SQLITE_FULL');
    }
    // Tried twice (after a checkpoint, in case that gave space back), failed twice, applied nothing.
    expect(s.stats).toMatchObject({ failedTransactions: 1, retriedTransactions: 1, rowsInserted: 1, rowsDeleted: 0 });
    // Nothing of the failed batch was applied, and the storage still works.
    expect(plain(await s.load())).toEqual(plain([{ ident: 'q', awaySince: 1, messages: [msg(0)] }]));
    await s.push('q', [msg(1000)]);
    expect((await s.load())[0]!.messages).toHaveLength(2);
  });

  it('rejects a non-SQLite file with StorageSchemaError and leaves it untouched', async () => {
    const dir = await tempDir();
    const files: [string, Buffer][] = [
      ['random.bin', randomBytes(8192)],
      ['text.txt', Buffer.from('hello, this is not a database\n'.repeat(200))],
      ['tiny', Buffer.from('SQL')],
      ['fake-header', Buffer.concat([Buffer.from('SQLite format 3\0'), randomBytes(4080)])],
    ];
    for (const [name, bytes] of files) {
      const path = join(dir, name);
      await writeFile(path, bytes);
      const err = await SqliteQueuesStorage.open(path).catch((e: unknown) => e);
      expect(err, name).toBeInstanceOf(StorageSchemaError);
      expect((err as StorageSchemaError).code).toBe('SMQ_ERR_STORAGE_SCHEMA');
      expect((await readFile(path)).equals(bytes), name).toBe(true);
    }
    expect((await readdir(dir)).sort()).toEqual(files.map(([n]) => n).sort());
  });

  it('rejects a foreign SQLite database with StorageSchemaError and changes nothing in it', async () => {
    const path = await dbPath('foreign.db');
    await withRawDb(path, async (db) => {
      await db.exec(`CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
        INSERT INTO users (name) VALUES ('ann'), ('bob');
        CREATE TABLE messages (x);`);
    });
    const before = await readFile(path);
    await expect(SqliteQueuesStorage.open(path)).rejects.toBeInstanceOf(StorageSchemaError);
    expect((await readFile(path)).equals(before)).toBe(true);
    const rows = await withRawDb(path, (db) => db.all('SELECT name FROM users ORDER BY id'));
    expect(rows).toEqual([{ name: 'ann' }, { name: 'bob' }]);
  });

  it('rejects a database of another application_id or schema version', async () => {
    const other = await dbPath('other-app.db');
    await withRawDb(other, (db) => db.exec('PRAGMA application_id = 42'));
    const otherBytes = await readFile(other);
    await expect(SqliteQueuesStorage.open(other)).rejects.toThrow(/application_id 0x0000002a/);
    expect((await readFile(other)).equals(otherBytes)).toBe(true);

    const newer = await dbPath('newer.db');
    await (await SqliteQueuesStorage.open(newer)).close();
    await withRawDb(newer, (db) => db.exec(`PRAGMA user_version = ${SQLITE_SCHEMA_VERSION + 1}`));
    const err = await SqliteQueuesStorage.open(newer).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageSchemaError);
    expect(String((err as Error).message)).toMatch(new RegExp(`found .*user_version ${SQLITE_SCHEMA_VERSION + 1}`));

    const mangled = await dbPath('mangled.db');
    await (await SqliteQueuesStorage.open(mangled)).close();
    await withRawDb(mangled, (db) => db.exec('DROP TABLE queues'));
    await expect(SqliteQueuesStorage.open(mangled)).rejects.toBeInstanceOf(StorageSchemaError);
  });

  it('creates the schema in an empty existing file', async () => {
    const path = await dbPath();
    await writeFile(path, '');
    const s = await open(path);
    await s.push('q', [msg(1)]);
    expect(await s.settings()).toMatchObject({
      journalMode: 'wal',
      applicationId: SQLITE_APPLICATION_ID,
      userVersion: SQLITE_SCHEMA_VERSION,
    });
    expect((await stat(path)).size).toBeGreaterThan(0);
  });

  it('rejects opening a read-only file with StorageError (EACCES), file unchanged', async () => {
    const dir = await tempDir();
    const path = join(dir, 'queues.db');
    const s = await SqliteQueuesStorage.open(path);
    await s.push('q', [msg(1)]);
    await s.close();
    const before = await readFile(path);
    await chmod(path, 0o444);
    await chmod(dir, 0o777); // the directory stays writable (for the -wal/-shm files)
    const result = await runFixture('open-child.ts', [path], { unprivileged: true });
    expect(result.stderr).toBe('');
    expect(JSON.parse(result.stdout)).toMatchObject({
      stage: 'open',
      name: 'StorageError',
      code: 'SMQ_ERR_STORAGE',
      causeCode: 'EACCES',
    });
    expect((await readFile(path)).equals(before)).toBe(true);
  });

  it('rejects opening in a read-only directory with StorageError', async () => {
    const dir = await tempDir();
    await chmod(dir, 0o555);
    const result = await runFixture('open-child.ts', [join(dir, 'queues.db')], { unprivileged: true });
    expect(result.stderr).toBe('');
    expect(JSON.parse(result.stdout)).toMatchObject({
      stage: 'open',
      name: 'StorageError',
      code: 'SMQ_ERR_STORAGE',
      causeCode: 'SQLITE_CANTOPEN',
    });
    expect(await readdir(dir)).toEqual([]);
  });

  it('rejects bad options and paths', async () => {
    const path = await dbPath();
    await expect(SqliteQueuesStorage.open(path, { durabilty: 'power' } as never)).rejects.toBeInstanceOf(InvalidOptionsError);
    await expect(SqliteQueuesStorage.open(path, { durability: 'disk' as never })).rejects.toBeInstanceOf(InvalidOptionsError);
    await expect(SqliteQueuesStorage.open(path, { busyTimeout: -1 })).rejects.toBeInstanceOf(InvalidOptionsError);
    await expect(SqliteQueuesStorage.open(path, { maxPageCount: 0 })).rejects.toBeInstanceOf(InvalidOptionsError);
    await expect(SqliteQueuesStorage.open(':memory:')).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(SqliteQueuesStorage.open('')).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(await readdir(join(path, '..'))).toEqual([]);
  });
});

describe('SqliteQueuesStorage: settings', () => {
  it('has documented defaults', () => {
    expect(DEFAULT_SQLITE_DURABILITY).toBe('process');
    expect(DEFAULT_SQLITE_BUSY_TIMEOUT).toBe(5000);
    expect(DEFAULT_SQLITE_MAX_PAGE_COUNT).toBeNull();
  });

  it.each([
    [undefined, 'process', 'NORMAL'],
    ['process', 'process', 'NORMAL'],
    ['power', 'power', 'FULL'],
  ] as const)('durability %s means %s: WAL, synchronous=%s', async (durability, mode, synchronous) => {
    const s = await open(await dbPath(), durability ? { durability } : undefined);
    expect(s.durability).toBe(mode);
    expect(await s.settings()).toMatchObject({ journalMode: 'wal', synchronous });
  });

  it('applies maxPageCount', async () => {
    const s = await open(await dbPath(), { maxPageCount: 1000, busyTimeout: 100 });
    expect((await s.settings()).maxPageCount).toBe(1000);
  });
});
