/**
 * {@link SqliteQueuesStorage}: the durable queue storage, its group commit
 * (calls of one event-loop turn join one transaction, written with the
 * batched statements of sql.ts) and its WAL upkeep on a full or small disk.
 * Builds on driver.ts (sqlite3), lock.ts, schema.ts, batch.ts and sql.ts.
 * @module
 */
import { Buffer } from 'node:buffer';
import { promises as fsp } from 'node:fs';
import { dirname } from 'node:path';
import type { Database, RunResult, Statement } from 'sqlite3';
import { ClosedError, InvalidArgumentError, StorageLockedError } from '../../errors.js';
import { createLogger } from '../../util/log.js';
import { is, validateOptions } from '../../util/options.js';
import type { QueuesStorage, StoredMessage, StoredQueue } from '../types.js';
import { checkAwaySince, checkIdent, checkMessages, checkTtlEntries, checkUuids, wellFormed } from '../validate.js';
import { Batch, type PendingInsert } from './batch.js';
import { all, closeDatabase, loadSqlite3, noop, prepare, run, sqliteCode, sqliteVersion, toStorageError } from './driver.js';
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
  type Stats,
} from './options.js';
import { checkHeader, checkWritable, ensureSchema, requireFeatures } from './schema.js';
import {
  CHUNK,
  INSERT_ROWS,
  LEN_BITS,
  OFFSET_BITS,
  PACKED_MAX_BYTES,
  PACKED_MAX_DATA,
  SQL,
  SQL_PRUNE,
  exactNumber,
  type StatementName,
} from './sql.js';

const log = createLogger('snakemq:storage');

/**
 * SQLite checkpoints by itself only every 1000 pages (4 MiB) and never gives
 * the WAL file's space back: on a small disk the WAL then takes the room the
 * database needs to absorb it, and a checkpoint cannot complete even after
 * space was freed. So every this many (estimated) WAL bytes an idle storage
 * looks at the free space, and truncates the WAL when it is below
 * {@link LOW_DISK_SPACE} (a TRUNCATE checkpoint costs fsyncs, which lone
 * commits on a roomy disk should not wait for).
 */
const IDLE_CHECKPOINT_BYTES = 256 * 1024;
/** Free bytes on the file's filesystem below which an idle storage keeps its WAL truncated. */
const LOW_DISK_SPACE = 64 * 1024 * 1024;
/** Rough WAL cost of a transaction (the pages of the tables and the index it touches) and of one row. */
const TRANSACTION_WAL_BYTES = 3 * 4096;
const ROW_WAL_BYTES = 64;

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
  private readonly statements = new Map<StatementName, Statement>();
  private readonly counters: Stats = {
    transactions: 0,
    failedTransactions: 0,
    statements: 0,
    rowsInserted: 0,
    rowsDeleted: 0,
    retriedTransactions: 0,
    checkpoints: 0,
  };
  /** Estimated bytes written to the WAL since the last checkpoint of ours. */
  private walBytes = 0;
  /** `walBytes` at which an idle storage next looks at the free disk space. */
  private nextSpaceCheck = IDLE_CHECKPOINT_BYTES;
  /** A write failed: checkpoint before the next one (to give the WAL's space back). */
  private checkpointDue = false;
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
      throw new InvalidArgumentError(
        'SqliteQueuesStorage: path must be a file path (use MemoryQueuesStorage for memory)',
      );
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
    return { ...this.counters };
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
    const started = performance.now();
    // Space may be free again: give the WAL's back before it is written to.
    if (this.checkpointDue) await this.checkpoint();
    try {
      let wrote: boolean;
      try {
        wrote = await this.write(batch);
      } catch (err) {
        // SQLITE_FULL means nothing was committed, so the batch can be tried again.
        if (sqliteCode(err) !== 'SQLITE_FULL' || !(await this.checkpoint())) throw err;
        this.counters.retriedTransactions++;
        log(`transaction of ${batch.calls} calls hit a full disk; retrying after a checkpoint`);
        wrote = await this.write(batch);
      }
      if (wrote && log.enabled) {
        log(`committed ${batch.calls} calls in ${(performance.now() - started).toFixed(1)} ms`);
      }
      batch.resolve();
    } catch (err) {
      this.counters.failedTransactions++;
      this.checkpointDue = true;
      const error = toStorageError(err, 'storage transaction failed');
      log(`transaction of ${batch.calls} calls failed: ${error.message}`);
      batch.reject(error);
    }
    if (this.pending === null && this.walBytes >= this.nextSpaceCheck) {
      this.nextSpaceCheck = this.walBytes + IDLE_CHECKPOINT_BYTES;
      if ((await freeSpace(this.path)) < LOW_DISK_SPACE) await this.checkpoint();
    }
  }

  /** `wal_checkpoint(TRUNCATE)`: whether it completed (the WAL is empty and its space given back). */
  private async checkpoint(): Promise<boolean> {
    try {
      const [row] = await all<{ busy: number }>(this.db, 'PRAGMA wal_checkpoint(TRUNCATE)');
      if (row?.busy) return false;
      this.counters.checkpoints++;
      this.walBytes = 0;
      this.nextSpaceCheck = IDLE_CHECKPOINT_BYTES;
      this.checkpointDue = false;
      return true;
    } catch (err) {
      log(`checkpoint failed: ${(err as Error).message}`);
      return false;
    }
  }

  /** Writes a batch in one transaction; false when it reduced to nothing. */
  private async write(b: Batch): Promise<boolean> {
    const inserts = b.inserts.filter((p) => !p.cancelled);
    if (inserts.length === 0 && b.deletes.size === 0 && b.ttls.size === 0 && b.away.size === 0 && b.forgets.size === 0) {
      return false;
    }
    let deleted = 0;
    let rows = 0;
    await run(this.db, 'BEGIN IMMEDIATE');
    try {
      for (const [ident, byUuid] of b.deletes) {
        const uuids = [...byUuid.values()];
        rows += uuids.length;
        for (let at = 0; at < uuids.length; at += CHUNK) {
          const blob = Buffer.concat(uuids.slice(at, at + CHUNK));
          deleted += await this.exec('delete', [ident, blob]);
        }
      }
      for (const [ident, byUuid] of b.ttls) {
        const entries = [...byUuid.values()];
        rows += entries.length;
        for (let at = 0; at < entries.length; at += CHUNK) {
          const chunk = entries.slice(at, at + CHUNK);
          const json = `[${chunk.map((e) => `[${exactNumber(e.ttl)}]`).join(',')}]`;
          await this.exec('ttlStage', [Buffer.concat(chunk.map((e) => e.uuid)), json]);
          await this.exec('ttlApply', [ident]);
          await this.exec('ttlClear', []);
        }
      }
      const inserted = await this.insert(inserts);
      const away = [...b.away];
      const gone = away.filter(([, since]) => since === null).map(([ident]) => ident);
      const set = away.filter(([, since]) => since !== null);
      for (let at = 0; at < gone.length; at += CHUNK) {
        await this.exec('awayDelete', [JSON.stringify(gone.slice(at, at + CHUNK))]);
      }
      for (let at = 0; at < set.length; at += CHUNK) {
        const values = set
          .slice(at, at + CHUNK)
          .map(([ident, since]) => `[${JSON.stringify(ident)},${exactNumber(since)}]`);
        await this.exec('awaySet', [`[${values.join(',')}]`]);
      }
      const forgets = [...b.forgets];
      for (let at = 0; at < forgets.length; at += CHUNK) {
        await this.exec('forget', [JSON.stringify(forgets.slice(at, at + CHUNK))]);
      }
      await run(this.db, 'COMMIT');
      this.counters.transactions++;
      this.counters.rowsInserted += inserted;
      this.counters.rowsDeleted += deleted;
      let bytes = TRANSACTION_WAL_BYTES + (rows + away.length + forgets.length) * ROW_WAL_BYTES;
      for (const p of inserts) bytes += ROW_WAL_BYTES + p.data.length;
      this.walBytes += bytes;
      return true;
    } catch (err) {
      // SQLite may have rolled back already (e.g. on SQLITE_FULL); then this fails harmlessly.
      await run(this.db, 'ROLLBACK').catch(noop);
      throw err;
    }
  }

  /** Inserts rows in order: packed statements, and large messages one by one in between. Returns rows inserted. */
  private async insert(rows: readonly PendingInsert[]): Promise<number> {
    let inserted = 0;
    let at = 0;
    while (at < rows.length) {
      const first = rows[at]!;
      if (first.data.length > PACKED_MAX_DATA) {
        inserted += await this.exec('insertOne', [
          first.ident,
          first.uuid,
          first.data,
          first.flags,
          first.ttl,
        ]);
        at++;
        continue;
      }
      const dict = new Map<string, number>();
      const packed: number[] = [];
      let bytes = 0;
      let end = at;
      for (; end < rows.length && end - at < INSERT_ROWS; end++) {
        const p = rows[end]!;
        const size = 16 + p.data.length;
        if (p.data.length > PACKED_MAX_DATA || bytes + size > PACKED_MAX_BYTES) break;
        const entry = `[${p.identJson},${p.flags},${exactNumber(p.ttl)}]`;
        let index = dict.get(entry);
        if (index === undefined) dict.set(entry, (index = dict.size));
        packed.push(index * 2 ** (LEN_BITS + OFFSET_BITS) + (bytes + 1) * 2 ** LEN_BITS + p.data.length);
        bytes += size;
      }
      const blob = Buffer.allocUnsafe(bytes);
      let offset = 0;
      for (let i = at; i < end; i++) {
        const p = rows[i]!;
        p.uuid.copy(blob, offset);
        p.data.copy(blob, offset + 16);
        offset += 16 + p.data.length;
      }
      const json = `[${packed.join(',')}]`;
      inserted += await this.exec('insert', [blob, json, `[${[...dict.keys()].join(',')}]`]);
      at = end;
    }
    return inserted;
  }

  private async exec(name: StatementName, params: unknown[]): Promise<number> {
    let stmt = this.statements.get(name);
    if (!stmt) {
      stmt = await prepare(this.db, SQL[name]);
      this.statements.set(name, stmt);
    }
    this.counters.statements++;
    return new Promise<number>((resolve, reject) => {
      stmt.run(params, function (this: RunResult, err: Error | null) {
        if (err) reject(err);
        else resolve(this.changes);
      });
    });
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
      for (const stmt of this.statements.values()) {
        await new Promise<void>((resolve) => stmt.finalize(() => resolve()));
      }
      this.statements.clear();
      await closeDatabase(this.db);
      log(`closed ${this.path}`);
    } catch (err) {
      throw toStorageError(err, `cannot close storage ${this.path}`);
    } finally {
      openFiles.delete(this.key);
    }
  }
}

/** Bytes available to us on the filesystem holding `path` (Infinity when unknown). */
async function freeSpace(path: string): Promise<number> {
  try {
    const fs = await fsp.statfs(dirname(path));
    return fs.bavail * fs.bsize;
  } catch {
    return Infinity;
  }
}

function closedPromise(): Promise<never> {
  return Promise.reject(new ClosedError('storage is closed'));
}

function nextImmediate(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
