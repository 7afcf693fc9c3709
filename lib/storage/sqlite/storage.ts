/**
 * {@link SqliteQueuesStorage}: the durable queue storage. Opening (options,
 * lock, schema), the calls of the {@link QueuesStorage} contract collected
 * into batches (calls of one event-loop turn join one transaction), the
 * serial job chain, loading and closing. Builds on driver.ts (sqlite3),
 * lock.ts, schema.ts, batch.ts and writer.ts (which writes the batches).
 * @module
 */
import type { Buffer } from 'node:buffer';
import { stat } from 'node:fs/promises';
import type { Database } from 'sqlite3';
import { ClosedError, InvalidArgumentError, StorageLockedError } from '../../errors.js';
import { createLogger } from '../../util/log.js';
import { is, validateOptions } from '../../util/options.js';
import type { QueuesStorage, StorageSize, StoredMessage, StoredQueue } from '../types.js';
import { checkAwaySince, checkIdent, checkMessages, checkTtlEntries, checkUuids, wellFormed } from '../validate.js';
import { Batch, type PendingInsert } from './batch.js';
import { all, closeDatabase, loadSqlite3, noop, run, sqliteVersion, toStorageError } from './driver.js';
import { lockKey, openFiles, openLocked } from './lock.js';
import {
  DEFAULT_SQLITE_ALLOW_IDENTITY_CHANGE,
  DEFAULT_SQLITE_BUSY_TIMEOUT,
  DEFAULT_SQLITE_DURABILITY,
  DEFAULT_SQLITE_IDENTITY,
  DEFAULT_SQLITE_MAX_PAGE_COUNT,
  type SqliteDurability,
  type SqliteSettings,
  type SqliteStorageOptions,
  type SqliteStorageStats,
} from './options.js';
import { checkHeader, checkWritable, ensureSchema, requireFeatures } from './schema.js';
import { SQL_PRUNE } from './sql.js';
import { BatchWriter } from './writer.js';

const log = createLogger('snakemq:storage');

/**
 * A durable {@link QueuesStorage} in one SQLite file (WAL journal), via the
 * `sqlite3` package. Create it with {@link SqliteQueuesStorage.open}.
 *
 * Group commit: every call made in the same event-loop turn, or while the
 * previous transaction is in flight, joins one transaction (`BEGIN IMMEDIATE …
 * COMMIT`) written with a few batched statements. All promises of a
 * transaction resolve after its COMMIT; if it fails it is rolled back and all
 * of them reject with a `StorageError` whose `cause` is the SQLite error
 * (`cause.code`, e.g. `'SQLITE_FULL'`). Calls apply in call order. Buffers
 * passed in must not be modified until their promise settles.
 *
 * A full disk: a transaction that fails with `SQLITE_FULL` is tried once more
 * after a `wal_checkpoint(TRUNCATE)` gave the WAL's space back; while writes
 * keep failing, each transaction starts with such a checkpoint, so writes
 * succeed again as soon as there is room. An idle storage on a filesystem with
 * less than 64 MiB free also truncates its WAL every 256 KiB or so.
 *
 * One process, one storage per file: the file is locked (SQLite's exclusive
 * locking mode, a lock the kernel drops when the process dies, even by
 * `kill -9`) for as long as the storage is open, and a second `open` fails
 * with `StorageLockedError`. Other tools cannot read the file meanwhile. The
 * owning identity can be recorded in the file (option `identity`).
 */
export class SqliteQueuesStorage implements QueuesStorage {
  /** Always `true`: resolved writes survive a restart (see {@link SqliteDurability}). */
  readonly durable = true;
  /** The database file. */
  readonly path: string;
  /** The durability mode in effect. */
  readonly durability: SqliteDurability;
  /** The identity recorded in the file (`null`: none was ever given). */
  readonly identity: string | null;

  private readonly db: Database;
  private readonly writer: BatchWriter;
  /** The batch collecting calls, not started yet. */
  private pending: Batch | null = null;
  /** Tail of the serial job chain (transactions, loads, close); never rejects. */
  private tail: Promise<void> = Promise.resolve();
  private closing: Promise<void> | null = null;

  private constructor(
    db: Database,
    path: string,
    durability: SqliteDurability,
    identity: string | null,
    private readonly key: string,
  ) {
    this.db = db;
    this.writer = new BatchWriter(db, path);
    this.path = path;
    this.durability = durability;
    this.identity = identity;
  }

  /**
   * Opens (creating if needed) the storage file at `path`. The file must be
   * writable: a read-only file or directory makes `open` reject.
   *
   * Rejects with:
   * - `InvalidOptionsError` / `InvalidArgumentError` for bad options or path;
   * - `StorageSchemaError` if the file is not an SQLite database, or is one of
   *   another application or schema version (the file is left untouched);
   * - `StorageLockedError` if another process, or another storage of this
   *   process, has the file open (after waiting `busyTimeout`);
   * - `StorageIdentityError` if the file was recorded for another identity
   *   than `options.identity` (and `allowIdentityChange` is not set);
   * - `StorageError` if it cannot be opened for writing (read-only file or
   *   directory, permissions, I/O error; `cause` is the underlying error),
   *   or if the `sqlite3` package (an optional peer dependency, loaded at the
   *   first `open`) is not installed or fails to load (the message says
   *   `npm install sqlite3`; `cause` is the import's error).
   *
   * A version-1 file (of an earlier build) is upgraded to the current schema.
   */
  static async open(path: string, options?: SqliteStorageOptions): Promise<SqliteQueuesStorage> {
    const opts = validateOptions<Required<SqliteStorageOptions>>(
      'SqliteQueuesStorage',
      options,
      {
        durability: is.oneOf('process', 'power'),
        busyTimeout: is.integer(0, 2 ** 31 - 1),
        maxPageCount: (v) =>
          v === null || (Number.isInteger(v) && (v as number) >= 1 && (v as number) <= 0xfffffffe)
            ? undefined
            : 'must be null or an integer in [1, 4294967294]',
        identity: (v) => (v === null || typeof v === 'string' ? undefined : 'must be null or a string'),
        allowIdentityChange: is.boolean(),
      },
      {
        durability: DEFAULT_SQLITE_DURABILITY,
        busyTimeout: DEFAULT_SQLITE_BUSY_TIMEOUT,
        maxPageCount: DEFAULT_SQLITE_MAX_PAGE_COUNT,
        identity: DEFAULT_SQLITE_IDENTITY,
        allowIdentityChange: DEFAULT_SQLITE_ALLOW_IDENTITY_CHANGE,
      },
    );
    if (typeof path !== 'string' || path === '' || path === ':memory:') {
      throw new InvalidArgumentError('SqliteQueuesStorage: path must be a file path (use MemoryQueuesStorage for memory)');
    }
    await loadSqlite3();
    const key = await lockKey(path);
    // POSIX locks belong to the process, and closing any descriptor of the file
    // (checkHeader's) drops them all: a second open in this process must not
    // get that far.
    if (openFiles.has(key)) throw new StorageLockedError(`storage ${path} is already open in this process`);
    openFiles.add(key);
    let db: Database | null = null;
    try {
      // SQLite only reads a foreign file until its first write, but we look at
      // the header ourselves so that nothing of ours ever touches such a file.
      await checkHeader(path);
      await checkWritable(path);
      db = await openLocked(path, opts.busyTimeout);
      db.configure('busyTimeout', opts.busyTimeout);
      await requireFeatures(db);
      await all(db, `PRAGMA synchronous = ${opts.durability === 'power' ? 'FULL' : 'NORMAL'}`);
      if (opts.durability === 'power') await all(db, 'PRAGMA fullfsync = ON');
      const wanted = opts.identity === null ? null : wellFormed(opts.identity);
      const identity = await ensureSchema(db, path, wanted, opts.allowIdentityChange);
      // Random uuids make the (queue, uuid) index hot: keep it in cache.
      await all(db, 'PRAGMA cache_size = -16384');
      await all(db, 'PRAGMA journal_size_limit = 67108864');
      if (opts.maxPageCount !== null) await all(db, `PRAGMA max_page_count = ${opts.maxPageCount}`);
      await run(db, 'CREATE TEMP TABLE smq_ttl (uuid BLOB PRIMARY KEY NOT NULL, ttl REAL) WITHOUT ROWID');
      log(`opened ${path} (durability ${opts.durability}, identity ${JSON.stringify(identity)})`);
      return new SqliteQueuesStorage(db, path, opts.durability, identity, key);
    } catch (err) {
      if (db) await closeDatabase(db).catch(noop);
      openFiles.delete(key);
      throw toStorageError(err, `cannot open storage ${path}`);
    }
  }

  /** A snapshot of the counters (transactions, statements, rows). */
  get stats(): SqliteStorageStats {
    return { ...this.writer.counters };
  }

  /**
   * Messages stored (one count query, after the writes issued before it) and
   * the size of the database file and its WAL; `bytes` is `null` (not
   * counted). Rejects with `ClosedError` after `close()`.
   */
  size(): Promise<StorageSize> {
    if (this.closing) return closedPromise();
    return this.enqueue(async () => {
      try {
        const [row] = await all<{ n: number }>(this.db, 'SELECT count(*) AS n FROM messages');
        const fileBytes = (await fileSize(this.path)) + (await fileSize(`${this.path}-wal`));
        return { messages: Number(row?.n ?? 0), bytes: null, fileBytes };
      } catch (err) {
        throw toStorageError(err, 'cannot read the storage size');
      }
    });
  }

  /** Reads back the SQLite settings in effect (diagnostics, tests). Rejects with `ClosedError` after `close()`. */
  settings(): Promise<SqliteSettings> {
    if (this.closing) return closedPromise();
    return this.enqueue(async () => {
      const get = async (pragma: string): Promise<unknown> => {
        const [row] = await all(this.db, `PRAGMA ${pragma}`);
        return row ? Object.values(row)[0] : undefined;
      };
      try {
        const levels = ['OFF', 'NORMAL', 'FULL', 'EXTRA'] as const;
        return {
          journalMode: String(await get('journal_mode')),
          synchronous: levels[Number(await get('synchronous'))] ?? 'OFF',
          applicationId: Number(await get('application_id')),
          userVersion: Number(await get('user_version')),
          maxPageCount: Number(await get('max_page_count')),
          sqliteVersion: sqliteVersion(),
        };
      } catch (err) {
        throw toStorageError(err, 'cannot read storage settings');
      }
    });
  }

  /**
   * Every queue that holds messages, messages in push order. Sees every write
   * issued before it. Queues without messages are forgotten (their rows
   * deleted, best effort: not on a full disk).
   */
  load(): Promise<StoredQueue[]> {
    if (this.closing) return closedPromise();
    return this.enqueue(() => this.readAll());
  }

  /** Appends messages to the end of queue `ident`. */
  push(ident: string, messages: readonly StoredMessage[]): Promise<void> {
    const problem = this.check(checkIdent(ident) ?? checkMessages(messages));
    if (problem) return problem;
    ident = wellFormed(ident);
    const identJson = JSON.stringify(ident);
    const b = this.batchFor(ident);
    for (const m of messages) {
      const p: PendingInsert = {
        ident,
        identJson,
        uuid: m.uuid,
        data: m.data,
        flags: m.flags,
        ttl: m.ttl,
        cancelled: false,
      };
      b.inserts.push(p);
      if (b.index) b.addToIndex(p);
    }
    return b.promise;
  }

  /** Removes every message of queue `ident` carrying one of `uuids`; unknown ones are ignored. */
  remove(ident: string, uuids: readonly Buffer[]): Promise<void> {
    const problem = this.check(checkIdent(ident) ?? checkUuids(uuids));
    if (problem) return problem;
    ident = wellFormed(ident);
    const b = this.batchFor(ident);
    if (uuids.length === 0) return b.promise;
    let deletes = b.deletes.get(ident);
    if (!deletes) b.deletes.set(ident, (deletes = new Map()));
    const ttls = b.ttls.get(ident);
    const index = b.indexed();
    for (const uuid of uuids) {
      const k = uuid.toString('latin1');
      const same = index.get(k + ident);
      if (same) {
        for (const p of same) p.cancelled = true;
        index.delete(k + ident);
      }
      ttls?.delete(k);
      // Also deleted in the database: an older row may carry the same uuid.
      deletes.set(k, uuid);
    }
    return b.promise;
  }

  /** Sets the TTL of the messages of queue `ident` carrying each uuid; unknown ones are ignored. */
  updateTtl(ident: string, entries: readonly { uuid: Buffer; ttl: number | null }[]): Promise<void> {
    const problem = this.check(checkIdent(ident) ?? checkTtlEntries(entries));
    if (problem) return problem;
    ident = wellFormed(ident);
    const b = this.batchFor(ident);
    if (entries.length === 0) return b.promise;
    let ttls = b.ttls.get(ident);
    if (!ttls) b.ttls.set(ident, (ttls = new Map()));
    const index = b.indexed();
    for (const { uuid, ttl } of entries) {
      const k = uuid.toString('latin1');
      for (const p of index.get(k + ident) ?? []) p.ttl = ttl;
      ttls.set(k, { uuid, ttl });
    }
    return b.promise;
  }

  /** Records since when the peer of queue `ident` has been away (`null`: connected). */
  setAwaySince(ident: string, awaySince: number | null): Promise<void> {
    const problem = this.check(checkIdent(ident) ?? checkAwaySince(awaySince));
    if (problem) return problem;
    ident = wellFormed(ident);
    const b = this.batch();
    b.away.set(ident, awaySince);
    // The state it sets is the same whether the forget before it deleted the row or not.
    b.forgets.delete(ident);
    return b.promise;
  }

  /**
   * Deletes the row of queue `ident` if it holds no messages once the calls
   * made before this one applied; a queue with messages is left as it is.
   */
  forget(ident: string): Promise<void> {
    const problem = this.check(checkIdent(ident));
    if (problem) return problem;
    const b = this.batch();
    b.forgets.add(wellFormed(ident));
    return b.promise;
  }

  /**
   * Waits for the transaction in flight and the pending one to commit, then
   * closes the database. Idempotent (returns the same promise); from the call
   * on, every other method rejects with `ClosedError`.
   */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = this.enqueue(() => this.shutdown());
    }
    return this.closing;
  }

  private check(problem: string | undefined): Promise<never> | undefined {
    if (this.closing) return closedPromise();
    return problem === undefined ? undefined : Promise.reject(new InvalidArgumentError(problem));
  }

  private enqueue<T>(job: () => Promise<T>): Promise<T> {
    const result = this.tail.then(job);
    this.tail = result.then(noop, noop);
    return result;
  }

  /** The batch for a call on queue `ident` other than setAwaySince: a new one if the pending one forgets it. */
  private batchFor(ident: string): Batch {
    if (this.pending?.forgets.has(ident)) this.pending = null;
    return this.batch();
  }

  private batch(): Batch {
    let b = this.pending;
    if (!b) {
      const batch = (b = this.pending = new Batch());
      // The setImmediate lets every call of the current turn (and of the I/O
      // callbacks of the same loop iteration) join this batch.
      void this.enqueue(() => nextImmediate().then(() => this.commit(batch)));
    }
    b.calls++;
    return b;
  }

  private async commit(batch: Batch): Promise<void> {
    if (this.pending === batch) this.pending = null;
    await this.writer.commit(batch);
    if (this.pending === null) await this.writer.idle();
  }

  private async readAll(): Promise<StoredQueue[]> {
    type Row = { queue: string; uuid: Buffer; data: Buffer; flags: number; ttl: number | null };
    let rows: Row[];
    let away: { ident: string; away_since: number | null }[];
    try {
      await run(this.db, SQL_PRUNE);
    } catch (err) {
      log(`cannot forget queues without messages: ${(err as Error).message}`);
    }
    try {
      await run(this.db, 'BEGIN');
      try {
        rows = await all<Row>(this.db, 'SELECT queue, uuid, data, flags, ttl FROM messages ORDER BY seq');
        away = await all(this.db, 'SELECT ident, away_since FROM queues WHERE away_since IS NOT NULL');
      } finally {
        await run(this.db, 'COMMIT').catch(noop);
      }
    } catch (err) {
      throw toStorageError(err, 'cannot load storage');
    }
    const queues = new Map<string, { ident: string; messages: StoredMessage[]; awaySince: number | null }>();
    for (const r of rows) {
      let q = queues.get(r.queue);
      if (!q) queues.set(r.queue, (q = { ident: r.queue, messages: [], awaySince: null }));
      q.messages.push({ uuid: r.uuid, data: r.data, flags: r.flags, ttl: r.ttl });
    }
    for (const { ident, away_since } of away) {
      const q = queues.get(ident);
      if (q) q.awaySince = away_since;
    }
    return [...queues.values()];
  }

  private async shutdown(): Promise<void> {
    try {
      await this.writer.finalize();
      await closeDatabase(this.db);
      log(`closed ${this.path}`);
    } catch (err) {
      throw toStorageError(err, `cannot close storage ${this.path}`);
    } finally {
      openFiles.delete(this.key);
    }
  }
}

function closedPromise(): Promise<never> {
  return Promise.reject(new ClosedError('storage is closed'));
}

function nextImmediate(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The size of a file, 0 when it does not exist. */
async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}
