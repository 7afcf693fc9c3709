import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidOptionsError, StorageIdentityError, StorageLockedError } from '../../lib/errors.js';
import {
  DEFAULT_SQLITE_ALLOW_IDENTITY_CHANGE,
  DEFAULT_SQLITE_IDENTITY,
  SQLITE_APPLICATION_ID,
  SQLITE_SCHEMA_VERSION,
  SqliteQueuesStorage,
} from '../../lib/storage/sqlite.js';
import { FIXTURES, REPO_ROOT, msg, plain, removeTempDirs, runFixture, tempDir, withRawDb } from './helpers.js';

const opened: SqliteQueuesStorage[] = [];
const children: ChildProcess[] = [];

async function open(path: string, options?: Parameters<typeof SqliteQueuesStorage.open>[1]) {
  const s = await SqliteQueuesStorage.open(path, options);
  opened.push(s);
  return s;
}

/** A child process holding the storage open (fixtures/hold-child.ts), once it said so. */
async function holder(path: string, options: object, push?: string): Promise<ChildProcess> {
  const args = ['--import', 'tsx', join(FIXTURES, 'hold-child.ts'), path, JSON.stringify(options)];
  const child = spawn(process.execPath, push === undefined ? args : [...args, push], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('open\n')) resolve();
    });
    child.once('close', (code) => reject(new Error(`holder exited (${code}) before opening: ${stderr}`)));
  });
  return child;
}

/** SIGKILLs a child and waits until it is gone (its descriptors closed). */
function killHard(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('close', () => resolve());
    child.kill('SIGKILL');
  });
}

afterEach(async () => {
  await Promise.all(children.splice(0).map(killHard));
  for (const s of opened.splice(0)) await s.close();
  await removeTempDirs();
});

describe('SqliteQueuesStorage: one process per file', () => {
  it('a second process gets StorageLockedError while the first holds the file, and opens it after a kill -9', async () => {
    const path = join(await tempDir(), 'queues.db');
    const first = await holder(path, { identity: 'bob' }, 'kept');

    const second = await runFixture('open-child.ts', [path, JSON.stringify({ busyTimeout: 0 })]);
    expect(second.stderr).toBe('');
    expect(JSON.parse(second.stdout)).toMatchObject({
      stage: 'open',
      name: 'StorageLockedError',
      code: 'SMQ_ERR_STORAGE_LOCKED',
      causeCode: 'SQLITE_BUSY',
    });
    // This process too, and waiting for the lock (a while) does not help.
    const started = performance.now();
    const err = await SqliteQueuesStorage.open(path, { busyTimeout: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageLockedError);
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);

    await killHard(first);
    const again = await runFixture('open-child.ts', [path, JSON.stringify({ busyTimeout: 0 })]);
    expect(again.stderr).toBe('');
    expect(JSON.parse(again.stdout)).toEqual({ stage: 'push', name: 'ok' });
    const s = await open(path, { identity: 'bob' });
    const [q] = await s.load();
    expect(q!.messages.map((m) => m.data.toString())).toEqual(['kept', 'x']);
  });

  it('of two processes opening a new file at the same time, exactly one gets it', async () => {
    for (let round = 0; round < 2; round++) {
      const path = join(await tempDir(), `race-${round}.db`);
      const results = await Promise.allSettled([0, 1].map(() => holder(path, { busyTimeout: 1000 })));
      const won = results.filter((r) => r.status === 'fulfilled');
      expect(won, JSON.stringify(results.map((r) => (r.status === 'rejected' ? String(r.reason) : 'open')))).toHaveLength(1);
      expect(String((results.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason)).toMatch(/StorageLockedError/);
      await Promise.all(children.splice(0).map(killHard));
    }
  });

  it('a second open in the same process gets StorageLockedError, also through another spelling of the path', async () => {
    const dir = await tempDir();
    const path = join(dir, 'queues.db');
    const s = await open(path);
    await s.push('q', [msg(1)]);
    for (const other of [path, join(dir, '.', 'queues.db'), join(dir, '..', dir.split('/').pop()!, 'queues.db')]) {
      const err = await SqliteQueuesStorage.open(other, { busyTimeout: 0 }).catch((e: unknown) => e);
      expect(err, other).toBeInstanceOf(StorageLockedError);
      expect((err as StorageLockedError).code).toBe('SMQ_ERR_STORAGE_LOCKED');
    }
    // The first one is unaffected, and another process is still kept out.
    await s.push('q', [msg(2)]);
    const outside = await runFixture('open-child.ts', [path, JSON.stringify({ busyTimeout: 0 })]);
    expect(JSON.parse(outside.stdout)).toMatchObject({ name: 'StorageLockedError' });
    await s.close();
    const again = await open(path);
    expect((await again.load())[0]!.messages).toHaveLength(2);
  });

  it('leaves no -shm or lock file behind', async () => {
    const dir = await tempDir();
    const path = join(dir, 'queues.db');
    const s = await open(path);
    await s.push('q', [msg(1)]);
    const { readdir } = await import('node:fs/promises');
    expect((await readdir(dir)).sort()).toEqual(['queues.db', 'queues.db-wal']);
    await s.close();
    expect(await readdir(dir)).toEqual(['queues.db']);
  });
});

describe('SqliteQueuesStorage: owning identity', () => {
  it('records the identity at the first open and refuses another one, changing nothing', async () => {
    const path = join(await tempDir(), 'queues.db');
    const bob = await open(path, { identity: 'bob' });
    expect(bob.identity).toBe('bob');
    await bob.push('alice', [msg(1)]);
    await bob.close();
    const before = await readFile(path);

    const err = await SqliteQueuesStorage.open(path, { identity: 'mallory' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageIdentityError);
    expect(err).toMatchObject({
      name: 'StorageIdentityError',
      code: 'SMQ_ERR_STORAGE_IDENTITY',
      storedIdentity: 'bob',
      identity: 'mallory',
    });
    expect((await readFile(path)).equals(before)).toBe(true);

    // The same identity, or none (not checked), opens it.
    const again = await open(path, { identity: 'bob' });
    expect(plain(await again.load())).toEqual(plain([{ ident: 'alice', awaySince: null, messages: [msg(1)] }]));
    await again.close();
    const unchecked = await open(path);
    expect(unchecked.identity).toBe('bob');
    await unchecked.close();
  });

  it('allowIdentityChange takes the file over for the new identity', async () => {
    const path = join(await tempDir(), 'queues.db');
    await (await open(path, { identity: 'bob' })).close();
    const carol = await open(path, { identity: 'carol', allowIdentityChange: true });
    expect(carol.identity).toBe('carol');
    await carol.close();
    await expect(SqliteQueuesStorage.open(path, { identity: 'bob' })).rejects.toBeInstanceOf(StorageIdentityError);
    // Opening without an identity first, then with one, records it then.
    const later = join(await tempDir(), 'later.db');
    await (await open(later)).close();
    expect((await open(later, { identity: 'dave' })).identity).toBe('dave');
  });

  it('compares identities as stored (lone surrogates as U+FFFD)', async () => {
    const path = join(await tempDir(), 'queues.db');
    await (await open(path, { identity: 'x\ud800' })).close();
    const s = await open(path, { identity: 'x\ud800' });
    expect(s.identity).toBe('x\ufffd');
  });

  it('validates the options', async () => {
    const path = join(await tempDir(), 'queues.db');
    expect(DEFAULT_SQLITE_IDENTITY).toBeNull();
    expect(DEFAULT_SQLITE_ALLOW_IDENTITY_CHANGE).toBe(false);
    await expect(SqliteQueuesStorage.open(path, { identity: 5 as never })).rejects.toBeInstanceOf(InvalidOptionsError);
    await expect(SqliteQueuesStorage.open(path, { allowIdentityChange: 'yes' as never })).rejects.toBeInstanceOf(InvalidOptionsError);
    await expect(SqliteQueuesStorage.open(path, { identiy: 'bob' } as never)).rejects.toBeInstanceOf(InvalidOptionsError);
  });

  it('upgrades a schema-1 file (of an earlier build), keeping its queues', async () => {
    const path = join(await tempDir(), 'v1.db');
    await withRawDb(path, (db) =>
      db.exec(`CREATE TABLE messages (seq INTEGER PRIMARY KEY, queue TEXT NOT NULL, uuid BLOB NOT NULL,
          data BLOB NOT NULL, flags INTEGER NOT NULL, ttl REAL);
        CREATE INDEX messages_queue_uuid ON messages (queue, uuid);
        CREATE TABLE queues (ident TEXT PRIMARY KEY NOT NULL, away_since INTEGER);
        INSERT INTO messages (queue, uuid, data, flags, ttl) VALUES ('alice', zeroblob(16), x'6869', 1, 2.5);
        INSERT INTO queues VALUES ('alice', 1700000000000);
        PRAGMA application_id = ${SQLITE_APPLICATION_ID};
        PRAGMA user_version = 1;`),
    );
    const s = await open(path, { identity: 'bob' });
    expect(await s.settings()).toMatchObject({ userVersion: SQLITE_SCHEMA_VERSION });
    expect(plain(await s.load())).toEqual(
      plain([
        {
          ident: 'alice',
          awaySince: 1_700_000_000_000,
          messages: [{ uuid: Buffer.alloc(16), data: Buffer.from('hi'), flags: 1, ttl: 2.5 }],
        },
      ]),
    );
    await s.close();
    await expect(SqliteQueuesStorage.open(path, { identity: 'eve' })).rejects.toBeInstanceOf(StorageIdentityError);
  });
});
