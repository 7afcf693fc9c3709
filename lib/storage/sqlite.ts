import { Buffer } from 'node:buffer';
import { constants as fsConstants, promises as fsp } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import sqlite3 from 'sqlite3';
import type { Database, RunResult, Statement } from 'sqlite3';
import {
  ClosedError,
  InvalidArgumentError,
  SnakeMQError,
  StorageError,
  StorageIdentityError,
  StorageLockedError,
  StorageSchemaError,
} from '../errors.js';
import { createLogger } from '../util/log.js';
import { is, validateOptions } from '../util/options.js';
import type { QueuesStorage, StoredMessage, StoredQueue } from './types.js';
import { checkAwaySince, checkIdent, checkMessages, checkTtlEntries, checkUuids, wellFormed } from './validate.js';

const log = createLogger('snakemq:storage');

/**
 * What a committed write survives (both modes use a WAL journal):
 * - `'process'`: `PRAGMA synchronous = NORMAL`. A write whose promise resolved
 *   survives a crash or `kill -9` of the process; the last transactions may be
 *   lost on power loss or an OS crash (the database stays consistent).
 * - `'power'`: `PRAGMA synchronous = FULL` (plus `fullfsync` on macOS). Every
 *   commit is fsynced: a resolved write also survives power loss. Slower.
 */
export type SqliteDurability = 'process' | 'power';

/** Options of {@link SqliteQueuesStorage.open}. Unknown keys are rejected. */
export interface SqliteStorageOptions {
  /**
   * What a resolved write survives: a process crash (`'process'`) or also
   * power loss (`'power'`). See {@link SqliteDurability}.
   * @default 'process'
   */
  durability?: SqliteDurability;
  /**
   * How long (ms) `open` waits for the file's lock when another process (or
   * another storage of this process) holds it, before failing with
   * `StorageLockedError`: a storage holds its file exclusively while open.
   * @default 5000
   */
  busyTimeout?: number;
  /**
   * Upper bound on the size of the database, in pages (4096 bytes by
   * default), or `null` for SQLite's own limit; never below the current size.
   * Transactions that would grow the database beyond it fail with a
   * `StorageError` whose `cause.code` is `'SQLITE_FULL'`, exactly as on a full
   * disk. Meant for tests (simulating a full disk) and for capping disk use.
   * @default null
   */
  maxPageCount?: number | null;
  /**
   * The identity of the Messaging that will use the storage, or `null` not
   * to check it. Recorded in the file at the first open with an identity;
   * opening the file later with another identity fails with
   * `StorageIdentityError` (its queues were stored for messages sent under
   * the recorded name), unless {@link allowIdentityChange} is set.
   * @default null
   */
  identity?: string | null;
  /**
   * Open a file recorded for another identity anyway, and record
   * {@link identity} in its place: the messages it holds will be sent under
   * the new name.
   * @default false
   */
  allowIdentityChange?: boolean;
}

/** Default of {@link SqliteStorageOptions.durability}. */
export const DEFAULT_SQLITE_DURABILITY: SqliteDurability = 'process';
/** Default of {@link SqliteStorageOptions.busyTimeout} (ms). */
export const DEFAULT_SQLITE_BUSY_TIMEOUT = 5000;
/** Default of {@link SqliteStorageOptions.maxPageCount}: no limit of ours. */
export const DEFAULT_SQLITE_MAX_PAGE_COUNT: number | null = null;
/** Default of {@link SqliteStorageOptions.identity}: not checked. */
export const DEFAULT_SQLITE_IDENTITY: string | null = null;
/** Default of {@link SqliteStorageOptions.allowIdentityChange}. */
export const DEFAULT_SQLITE_ALLOW_IDENTITY_CHANGE = false;
/** `PRAGMA application_id` of a snakemq-ts storage file: `'SMQT'` as a big-endian 32-bit number. */
export const SQLITE_APPLICATION_ID = 0x534d5154;
/** `PRAGMA user_version` of the schema this build reads and writes. */
export const SQLITE_SCHEMA_VERSION = 2;
/** Schema versions this build opens; older ones are upgraded at open. */
const READABLE_SCHEMA_VERSIONS: readonly number[] = [1, SQLITE_SCHEMA_VERSION];

/** Counters of a {@link SqliteQueuesStorage}, since it was opened. */
export interface SqliteStorageStats {
  /** Transactions committed by group commit. */
  readonly transactions: number;
  /** Transactions that failed and were rolled back (their promises rejected). */
  readonly failedTransactions: number;
  /** Batched statements executed inside those transactions (each writes many rows). */
  readonly statements: number;
  /** Message rows inserted (by committed transactions). */
  readonly rowsInserted: number;
  /** Message rows deleted (by committed transactions). */
  readonly rowsDeleted: number;
  /** Transactions tried a second time after a full disk (and a checkpoint that gave space back). */
  readonly retriedTransactions: number;
  /** `wal_checkpoint(TRUNCATE)` runs that completed (after a failure, or when idle with a grown WAL). */
  readonly checkpoints: number;
}

/** The SQLite settings in effect on a storage's connection, as read back by {@link SqliteQueuesStorage.settings}. */
export interface SqliteSettings {
  /** Always `'wal'`. */
  readonly journalMode: string;
  /** `'NORMAL'` for durability `'process'`, `'FULL'` for `'power'`. */
  readonly synchronous: 'OFF' | 'NORMAL' | 'FULL' | 'EXTRA';
  /** {@link SQLITE_APPLICATION_ID}. */
  readonly applicationId: number;
  /** {@link SQLITE_SCHEMA_VERSION}. */
  readonly userVersion: number;
  /** `PRAGMA max_page_count`. */
  readonly maxPageCount: number;
  /** The SQLite library version. */
  readonly sqliteVersion: string;
}

type Stats = { -readonly [K in keyof SqliteStorageStats]: SqliteStorageStats[K] };

const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

/** Added by schema version 2: key 'identity' is the owning identity. */
const META_SCHEMA = 'CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value) WITHOUT ROWID;';

const SCHEMA = `
CREATE TABLE messages (
  seq INTEGER PRIMARY KEY,
  queue TEXT NOT NULL,
  uuid BLOB NOT NULL,
  data BLOB NOT NULL,
  flags INTEGER NOT NULL,
  ttl REAL
);
CREATE INDEX messages_queue_uuid ON messages (queue, uuid);
CREATE TABLE queues (
  ident TEXT PRIMARY KEY NOT NULL,
  away_since INTEGER
);
${META_SCHEMA}
PRAGMA application_id = ${SQLITE_APPLICATION_ID};
PRAGMA user_version = ${SQLITE_SCHEMA_VERSION};
`;

/*
 * Batched statements take a few large parameters instead of one per value:
 * the sqlite3 package spends ~2 µs binding each parameter, several times what
 * SQLite needs to insert a row. Bytes (uuids, data) travel in one BLOB cut
 * with substr(); other values in JSON read with json_each(). Numbers go
 * through JSON as an integer pair "n,k" meaning n / 2^k, because SQLite's
 * text-to-double conversion is not always correctly rounded while integers
 * and divisions by powers of two are exact.
 */
const num = (n: string, k: string): string =>
  `CAST(${n} AS REAL) / (1 << min(${k}, 62)) / (1 << max(${k} - 62, 0))`;

/** Bits of a packed insert row (see SQL.insert): offset in the BLOB, data length; the dictionary index above. */
const LEN_BITS = 17;
const OFFSET_BITS = 22;
/** Data at most this long goes through the packed INSERT; longer data is inserted alone. */
const PACKED_MAX_DATA = 2 ** LEN_BITS - 1;
/** Bytes of uuids and data per packed INSERT, at most (offsets are 1-based). */
const PACKED_MAX_BYTES = 2 ** OFFSET_BITS - 1;
/** Rows per packed INSERT, at most (keeps the packed integers below 2^53). */
const INSERT_ROWS = 4096;
/** Entries per DELETE / TTL / away statement, at most. */
const CHUNK = 8192;
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

/** Files (real paths) opened by a storage of this process: see {@link lockKey}. */
const openFiles = new Set<string>();

const SQL = {
  /**
   * ?1 BLOB of uuid+data per row; ?2 JSON array, one integer per row:
   * dictionary index << 39 | 1-based offset in ?1 << 17 | data length;
   * ?3 JSON dictionary [[ident, flags, ttl n, ttl k], …] (rows share few).
   * Scalar json_each values are cheap, `->>` on every row is not. CROSS JOIN
   * keeps the rows as the outer loop (the dictionary gets an automatic index).
   */
  insert:
    `WITH d(i, queue, flags, ttl) AS MATERIALIZED (` +
    `SELECT key, value ->> 0, value ->> 1, ${num('value ->> 2', 'value ->> 3')} FROM json_each(?3)) ` +
    'INSERT INTO messages (queue, uuid, data, flags, ttl) ' +
    `SELECT d.queue, substr(?1, (j.value >> ${LEN_BITS}) & ${PACKED_MAX_BYTES}, 16), ` +
    `substr(?1, ((j.value >> ${LEN_BITS}) & ${PACKED_MAX_BYTES}) + 16, j.value & ${PACKED_MAX_DATA}), d.flags, d.ttl ` +
    `FROM json_each(?2) AS j CROSS JOIN d ON d.i = j.value >> ${LEN_BITS + OFFSET_BITS} ORDER BY j.key`,
  /** One large message. */
  insertOne: 'INSERT INTO messages (queue, uuid, data, flags, ttl) VALUES (?1, ?2, ?3, ?4, ?5)',
  /** ?1 queue, ?2 BLOB of uuids. */
  delete:
    'WITH RECURSIVE u(o) AS (SELECT 1 UNION ALL SELECT o + 16 FROM u WHERE o + 16 <= length(?2)) ' +
    'DELETE FROM messages WHERE queue = ?1 AND uuid IN (SELECT substr(?2, o, 16) FROM u)',
  /** ?1 BLOB of uuids, ?2 JSON [[ttl n, ttl k], …]. A keyed temp table keeps the UPDATE's plan index-driven. */
  ttlStage:
    'INSERT OR REPLACE INTO temp.smq_ttl (uuid, ttl) ' +
    `SELECT substr(?1, j.key * 16 + 1, 16), ${num('j.value ->> 0', 'j.value ->> 1')} FROM json_each(?2) AS j`,
  /** ?1 queue. */
  ttlApply:
    'UPDATE messages SET ttl = (SELECT t.ttl FROM temp.smq_ttl AS t WHERE t.uuid = messages.uuid) ' +
    'WHERE queue = ?1 AND uuid IN (SELECT uuid FROM temp.smq_ttl)',
  ttlClear: 'DELETE FROM temp.smq_ttl',
  /** ?1 JSON [[ident, since n, since k], …]. */
  awaySet:
    `INSERT INTO queues (ident, away_since) SELECT j.value ->> 0, ${num('j.value ->> 1', 'j.value ->> 2')} ` +
    'FROM json_each(?1) AS j WHERE true ON CONFLICT (ident) DO UPDATE SET away_since = excluded.away_since',
  /** ?1 JSON [ident, …]. */
  awayDelete: 'DELETE FROM queues WHERE ident IN (SELECT value FROM json_each(?1))',
  /** ?1 JSON [ident, …]: only queues without messages. */
  forget:
    'DELETE FROM queues WHERE ident IN (SELECT value FROM json_each(?1)) ' +
    'AND NOT EXISTS (SELECT 1 FROM messages WHERE messages.queue = queues.ident)',
} as const;
type StatementName = keyof typeof SQL;
/** Run by load(), outside the batches. */
const SQL_PRUNE = 'DELETE FROM queues WHERE NOT EXISTS (SELECT 1 FROM messages WHERE messages.queue = queues.ident)';

interface PendingInsert {
  readonly ident: string;
  /** JSON.stringify(ident), computed once per push() call. */
  readonly identJson: string;
  readonly uuid: Buffer;
  readonly data: Buffer;
  readonly flags: number;
  ttl: number | null;
  cancelled: boolean;
}

/**
 * The calls collected for one transaction, reduced so that running the
 * DELETEs, then the TTL UPDATEs, then the INSERTs gives the same result as
 * applying the calls one by one: a remove cancels a push of the same batch, a
 * TTL update is folded into a push of the same batch, and DELETE/UPDATE (run
 * before the INSERTs) therefore only need to reach rows committed earlier.
 * Forgets run last: a call on a forgotten queue other than `setAwaySince`
 * (which overrides the forget) starts the next batch, so a forget is the last
 * call on its queue in a batch.
 */
class Batch {
  readonly inserts: PendingInsert[] = [];
  /** uuid (latin1) + ident -> pending inserts carrying it; built on the first remove/updateTtl. */
  index: Map<string, PendingInsert[]> | null = null;
  /** ident -> uuid (latin1) -> uuid */
  readonly deletes = new Map<string, Map<string, Buffer>>();
  /** ident -> uuid (latin1) -> new ttl */
  readonly ttls = new Map<string, Map<string, { uuid: Buffer; ttl: number | null }>>();
  readonly away = new Map<string, number | null>();
  /** Idents to forget if they hold no messages once the rest of the batch applied. */
  readonly forgets = new Set<string>();
  calls = 0;
  readonly promise: Promise<void>;
  resolve!: () => void;
  reject!: (err: Error) => void;

  constructor() {
    this.promise = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  indexed(): Map<string, PendingInsert[]> {
    if (!this.index) {
      this.index = new Map();
      for (const p of this.inserts) if (!p.cancelled) this.addToIndex(p);
    }
    return this.index;
  }

  addToIndex(p: PendingInsert): void {
    const key = p.uuid.toString('latin1') + p.ident;
    const same = this.index!.get(key);
    if (same) same.push(p);
    else this.index!.set(key, [p]);
  }
}

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
   *   directory, permissions, I/O error; `cause` is the underlying error).
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
          sqliteVersion: sqlite3.VERSION,
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

/**
 * `"n,k"` with x = n / 2^k, n an integer (so SQLite reads it exactly), or
 * `"null,0"`. Only |x| < 2^-71 (meaningless as a TTL or a time) falls back to
 * a decimal that SQLite may round differently.
 */
function exactNumber(x: number | null): string {
  if (x === null) return 'null,0';
  if (Number.isInteger(x)) return `${x},0`;
  // x is not an integer, so |x| < 2^52 and k >= 1; n = x * 2^k is exact (a power-of-two scaling).
  let k = 52 - Math.floor(Math.log2(Math.abs(x)));
  if (k > 124) return `${JSON.stringify(x)},0`;
  let n = x * 2 ** k;
  if (!Number.isInteger(n)) {
    n *= 2; // Math.log2 rounded up at a power of two
    k++;
  }
  return `${n},${k}`;
}

async function requireFeatures(db: Database): Promise<void> {
  try {
    await all(db, `SELECT '[1]' ->> 0, json_each.value FROM json_each('[1]')`);
  } catch (err) {
    // SQLITE_ERROR is a missing function or syntax; anything else (e.g. SQLITE_NOTADB) is about the file.
    if ((err as { code?: unknown }).code !== 'SQLITE_ERROR') throw err;
    throw new StorageError(`SQLite ${sqlite3.VERSION} lacks JSON support (3.38 or later needed)`, { cause: err });
  }
}

async function checkHeader(path: string): Promise<void> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new StorageError(`cannot open storage ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const { size } = await fh.stat();
    if (size === 0) return;
    const head = Buffer.alloc(SQLITE_MAGIC.length);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    if (bytesRead < head.length || !head.equals(SQLITE_MAGIC)) {
      throw new StorageSchemaError(`${path} is not an SQLite database`);
    }
  } catch (err) {
    throw toStorageError(err, `cannot read storage ${path}`);
  } finally {
    await fh.close();
  }
}

/**
 * SQLite opens a file it may not write read-only, and then cannot take the
 * write lock (an I/O error): say what is wrong instead.
 */
async function checkWritable(path: string): Promise<void> {
  try {
    await fsp.access(path, fsConstants.W_OK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new StorageError(`cannot open storage ${path}: the file is read-only`, { cause: err });
  }
}

/**
 * The key of `path` in {@link openFiles}: its real path (the directory's for a
 * file yet to be created), so that two spellings of one file meet.
 */
async function lockKey(path: string): Promise<string> {
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
 */
async function openLocked(path: string, busyTimeout: number): Promise<Database> {
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

async function lockFile(db: Database, path: string): Promise<void> {
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

/**
 * Checks that the file is ours (or empty: then creates the schema) and
 * writable, upgrades a version-1 file, and checks or records the identity.
 * Returns the identity recorded in the file.
 */
async function ensureSchema(
  db: Database,
  path: string,
  identity: string | null,
  allowIdentityChange: boolean,
): Promise<string | null> {
  const state = await schemaState(db);
  if (state === 'foreign') throw foreignError(path, await describe(db));
  // Switching to WAL writes the header, so only after the file was found to be ours or empty.
  const [mode] = await all<{ journal_mode: string }>(db, 'PRAGMA journal_mode = WAL');
  if (mode?.journal_mode !== 'wal') {
    throw new StorageError(`cannot use a WAL journal for ${path} (journal mode ${mode?.journal_mode})`);
  }
  // BEGIN IMMEDIATE takes the write lock: a concurrent opener cannot create the schema twice.
  await run(db, 'BEGIN IMMEDIATE');
  try {
    const now = await schemaState(db);
    if (now === 'foreign') throw foreignError(path, await describe(db));
    if (now === 'empty') {
      await exec(db, SCHEMA);
      log(`created schema version ${SQLITE_SCHEMA_VERSION} in ${path}`);
    } else {
      if (now === 1) {
        await exec(db, META_SCHEMA);
        log(`upgraded ${path} from schema version 1 to ${SQLITE_SCHEMA_VERSION}`);
      }
      // A write, so a read-only file fails here rather than at the first push.
      await run(db, `PRAGMA user_version = ${SQLITE_SCHEMA_VERSION}`);
    }
    const [row] = await all<{ value: unknown }>(db, "SELECT value FROM meta WHERE key = 'identity'");
    const stored = typeof row?.value === 'string' ? row.value : null;
    let recorded = stored;
    if (identity !== null && identity !== stored) {
      if (stored !== null && !allowIdentityChange) {
        throw new StorageIdentityError(
          `storage ${path} belongs to identity ${JSON.stringify(stored)}, not ${JSON.stringify(identity)} ` +
            '(its messages were queued under that name; allowIdentityChange to take them over)',
          stored,
          identity,
        );
      }
      await all(db, "INSERT OR REPLACE INTO meta (key, value) VALUES ('identity', ?)", [identity]);
      if (stored !== null) log(`${path}: identity changed from ${JSON.stringify(stored)} to ${JSON.stringify(identity)}`);
      recorded = identity;
    }
    await run(db, 'COMMIT');
    return recorded;
  } catch (err) {
    await run(db, 'ROLLBACK').catch(noop);
    throw err;
  }
}

/** `'empty'`, `'foreign'`, or the schema version of a file of ours. */
async function schemaState(db: Database): Promise<'empty' | 'foreign' | number> {
  const [{ application_id: appId } = { application_id: 0 }] = await all<{ application_id: number }>(
    db,
    'PRAGMA application_id',
  );
  const [{ user_version: version } = { user_version: 0 }] = await all<{ user_version: number }>(
    db,
    'PRAGMA user_version',
  );
  const tables = await all<{ name: string }>(db, "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'");
  if (appId === 0 && version === 0 && tables.length === 0) return 'empty';
  if (appId !== SQLITE_APPLICATION_ID || !READABLE_SCHEMA_VERSIONS.includes(version)) return 'foreign';
  const names = new Set(tables.map((t) => t.name));
  const ours =
    names.has('messages') && names.has('queues') && names.has('messages_queue_uuid') && (version === 1 || names.has('meta'));
  return ours ? version : 'foreign';
}

async function describe(db: Database): Promise<string> {
  const [{ application_id: appId } = { application_id: 0 }] = await all<{ application_id: number }>(
    db,
    'PRAGMA application_id',
  );
  const [{ user_version: version } = { user_version: 0 }] = await all<{ user_version: number }>(
    db,
    'PRAGMA user_version',
  );
  return `application_id 0x${(appId >>> 0).toString(16).padStart(8, '0')}, user_version ${version}`;
}

function foreignError(path: string, found: string): StorageSchemaError {
  const want = `application_id 0x${SQLITE_APPLICATION_ID.toString(16)}, user_version ${SQLITE_SCHEMA_VERSION}`;
  return new StorageSchemaError(
    `${path} is not a snakemq-ts storage of this version (found ${found}, want ${want} with its tables)`,
  );
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

function sqliteCode(err: unknown): unknown {
  return (err as { code?: unknown } | null)?.code;
}

function toStorageError(err: unknown, what: string): SnakeMQError {
  if (err instanceof SnakeMQError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const message = `${what}: ${err instanceof Error ? err.message : String(err)}`;
  return code === 'SQLITE_NOTADB'
    ? new StorageSchemaError(message, { cause: err })
    : new StorageError(message, { cause: err });
}

function closedPromise(): Promise<never> {
  return Promise.reject(new ClosedError('storage is closed'));
}

function noop(): void {}

function nextImmediate(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function openDatabase(path: string): Promise<Database> {
  return new Promise((resolve, reject) => {
    const db: Database = new sqlite3.Database(path, sqlite3.OPEN_READWRITE | sqlite3.OPEN_CREATE, (err) => {
      if (err) reject(new StorageError(`cannot open storage ${path}: ${err.message}`, { cause: err }));
      else resolve(db);
    });
  });
}

function closeDatabase(db: Database): Promise<void> {
  return new Promise((resolve, reject) => db.close((err) => (err ? reject(err) : resolve())));
}

function run(db: Database, sql: string): Promise<void> {
  return new Promise((resolve, reject) => db.run(sql, (err: Error | null) => (err ? reject(err) : resolve())));
}

function exec(db: Database, sql: string): Promise<void> {
  return new Promise((resolve, reject) => db.exec(sql, (err: Error | null) => (err ? reject(err) : resolve())));
}

function all<T = Record<string, unknown>>(db: Database, sql: string, params: unknown[] = []): Promise<T[]> {
  return new Promise((resolve, reject) =>
    db.all<T>(sql, params, (err: Error | null, rows: T[]) => (err ? reject(err) : resolve(rows))),
  );
}

function prepare(db: Database, sql: string): Promise<Statement> {
  return new Promise((resolve, reject) => {
    const stmt: Statement = db.prepare(sql, (err: Error | null) => (err ? reject(err) : resolve(stmt)));
  });
}
