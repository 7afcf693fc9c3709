import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StorageError } from '../../lib/errors.js';
import type { StoredMessage } from '../../lib/storage/index.js';
import { SqliteQueuesStorage } from '../../lib/storage/sqlite.js';
import { uuid } from './helpers.js';

/*
 * A real full disk: a 2 MiB tmpfs mounted for the test (root can, as in CI).
 * Without the right to mount, `maxPageCount` stands in for the disk (weaker:
 * the WAL does not count against it).
 */
let dir: string;
let mounted = false;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'snakemq-disk-full-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir], { stdio: 'ignore' });
    mounted = true;
  } catch {
    mounted = false;
  }
});

afterAll(async () => {
  if (mounted) execFileSync('umount', [dir]);
  await rm(dir, { recursive: true, force: true });
});

const DATA = 4096;
const message = (i: number): StoredMessage => ({ uuid: uuid(i), data: Buffer.alloc(DATA, i & 0xff), flags: 1, ttl: null });
const causeCode = (e: unknown): unknown => ((e as StorageError).cause as { code?: unknown } | undefined)?.code;

describe('SqliteQueuesStorage: full disk', () => {
  it('recovers once space is free again: every later write succeeds, nothing lost or duplicated', async () => {
    const path = join(dir, 'queues.db');
    const filler = join(dir, 'filler');
    if (mounted) await writeFile(filler, Buffer.alloc(512 * 1024, 1));
    const s = await SqliteQueuesStorage.open(path, mounted ? {} : { maxPageCount: 512 });
    try {
      // Fill it: persistent pushes until the disk is full (2 MiB / 4 KiB bounds the loop).
      const stored: number[] = [];
      let next = 0;
      let full: unknown = null;
      while (full === null && next < 2000) {
        const i = next++;
        await s.push('peer', [message(i)]).then(
          () => stored.push(i),
          (e: unknown) => (full = e),
        );
      }
      expect(full).toBeInstanceOf(StorageError);
      expect(causeCode(full)).toBe('SQLITE_FULL');
      expect(stored.length).toBeGreaterThan(50);
      // While it stays full, writes keep failing, each with StorageError.
      for (let k = 0; k < 3; k++) {
        const e = await s.push('peer', [message(next++)]).catch((err: unknown) => err);
        expect(e).toBeInstanceOf(StorageError);
      }

      // Free space: the file beside the database (or, with maxPageCount, messages).
      if (mounted) await rm(filler);
      const drained = stored.splice(0, mounted ? stored.length : Math.ceil(stored.length / 2));
      await s.remove(
        'peer',
        drained.map((i) => uuid(i)),
      );

      // A queue flowing through a disk this size, several times over: every write succeeds.
      const failures: unknown[] = [];
      for (let k = 0; k < 300; k++) {
        const i = next++;
        await s.push('peer', [message(i)]).catch((e: unknown) => failures.push(e));
        await s.remove('peer', [uuid(i)]).catch((e: unknown) => failures.push(e));
      }
      const kept: number[] = [];
      for (let k = 0; k < 20; k++) {
        const i = next++;
        await s.push('peer', [message(i)]).then(
          () => kept.push(i),
          (e: unknown) => failures.push(e),
        );
      }
      expect(failures).toEqual([]);
      if (mounted) {
        // Idle, the WAL does not keep holding the disk.
        expect((await stat(`${path}-wal`)).size).toBeLessThan(512 * 1024);
      }
      await s.close();

      const again = await SqliteQueuesStorage.open(path);
      try {
        const queues = await again.load();
        expect(queues.map((q) => q.ident)).toEqual(['peer']);
        const ids = queues[0]!.messages.map((m) => m.uuid.readUInt32BE(12));
        expect(ids).toEqual([...stored, ...kept]);
        expect(queues[0]!.messages.every((m) => m.data.equals(Buffer.alloc(DATA, m.uuid.readUInt32BE(12) & 0xff)))).toBe(true);
      } finally {
        await again.close();
      }
    } finally {
      await s.close();
    }
  }, 60_000);
});
