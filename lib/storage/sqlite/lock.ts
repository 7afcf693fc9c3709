/**
 * One process, one storage per file: the set of files this process has open
 * and the exclusive lock SQLite takes on a file for as long as its connection
 * lives. Builds on driver.ts.
 * @module
 */
import { promises as fsp } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { Database } from 'sqlite3';
import { StorageLockedError } from '../../errors.js';
import { all, closeDatabase, noop, openDatabase, run, sqliteCode } from './driver.js';

/** @internal Files (real paths) opened by a storage of this process: see {@link lockKey}. */
export const openFiles = new Set<string>();

/**
 * The key of `path` in {@link openFiles}: its real path (the directory's for a
 * file yet to be created), so that two spellings of one file meet.
 * @internal
 */
export async function lockKey(path: string): Promise<string> {
  const absolute = resolve(path);
  try {
    return await fsp.realpath(absolute);
  } catch {
    const dir = await fsp.realpath(dirname(absolute)).catch(() => dirname(absolute));
    return join(dir, basename(absolute));
  }
}

/**
 * Opens the file and takes its lock for as long as the connection lives:
 * in exclusive locking mode SQLite keeps every lock it took, and BEGIN
 * EXCLUSIVE takes the strongest. WAL mode entered afterwards keeps its index
 * in the process's memory (no -shm file). The lock is the kernel's (fcntl),
 * released when the process dies however it dies: nothing stale to clean up
 * after a kill -9, no pid to check.
 *
 * A connection that failed to take the lock still holds a shared one (SQLite
 * keeps it in this mode), and two openers waiting for each other's shared
 * lock would both time out; so each attempt does not wait, and a failed one
 * closes its connection and tries again after a random pause, until
 * `busyTimeout` ran out.
 * @internal
 */
export async function openLocked(path: string, busyTimeout: number): Promise<Database> {
  const deadline = performance.now() + busyTimeout;
  for (;;) {
    const db = await openDatabase(path);
    try {
      db.configure('busyTimeout', 0);
      await lockFile(db, path);
      return db;
    } catch (err) {
      await closeDatabase(db).catch(noop);
      const left = deadline - performance.now();
      if (!(err instanceof StorageLockedError) || left <= 0) throw err;
      await new Promise((resolve) => setTimeout(resolve, Math.min(left, 5 + Math.random() * 45)));
    }
  }
}

/** @internal Takes the file's exclusive lock, or fails with `StorageLockedError`. */
export async function lockFile(db: Database, path: string): Promise<void> {
  await all(db, 'PRAGMA locking_mode = EXCLUSIVE');
  try {
    await run(db, 'BEGIN EXCLUSIVE');
    await run(db, 'COMMIT');
  } catch (err) {
    await run(db, 'ROLLBACK').catch(noop);
    const code = sqliteCode(err);
    if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
      throw new StorageLockedError(`storage ${path} is in use by another process`, { cause: err });
    }
    throw err;
  }
}
