import { Buffer } from 'node:buffer';
import { promises as fsp } from 'node:fs';
import sqlite3 from 'sqlite3';
import type { Database, RunResult, Statement } from 'sqlite3';
import {
  ClosedError,
  InvalidArgumentError,
  SnakeMQError,
  StorageError,
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
   * How long (ms) to wait for a lock held by another connection to the same
   * file (e.g. a tool reading it) before failing with `SQLITE_BUSY`.
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
}

/** Default of {@link SqliteStorageOptions.durability}. */
export const DEFAULT_SQLITE_DURABILITY: SqliteDurability = 'process';
/** Default of {@link SqliteStorageOptions.busyTimeout} (ms). */
export const DEFAULT_SQLITE_BUSY_TIMEOUT = 5000;
/** Default of {@link SqliteStorageOptions.maxPageCount}: no limit of ours. */
export const DEFAULT_SQLITE_MAX_PAGE_COUNT: number | null = null;
/** `PRAGMA application_id` of a snakemq-ts storage file: `'SMQT'` as a big-endian 32-bit number. */
export const SQLITE_APPLICATION_ID = 0x534d5154;
/** `PRAGMA user_version` of the schema this build reads and writes. */
export const SQLITE_SCHEMA_VERSION = 1;

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
} as const;
type StatementName = keyof typeof SQL;

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
 * passed in must not be modified until their promise settles. Only one
 * process should use a given file at a time.
 */
export class SqliteQueuesStorage implements QueuesStorage {
  /** Always `true`: resolved writes survive a restart (see {@link SqliteDurability}). */
  readonly durable = true;
  /** The database file. */
  readonly path: string;
  /** The durability mode in effect. */
  readonly durability: SqliteDurability;

  private readonly db: Database;
  private readonly statements = new Map<StatementName, Statement>();
  private readonly counters: Stats = {
    transactions: 0,
    failedTransactions: 0,
    statements: 0,
    rowsInserted: 0,
    rowsDeleted: 0,
  };
  /** The batch collecting calls, not started yet. */
  private pending: Batch | null = null;
  /** Tail of the serial job chain (transactions, loads, close); never rejects. */
  private tail: Promise<void> = Promise.resolve();
  private closing: Promise<void> | null = null;

  private constructor(db: Database, path: string, durability: SqliteDurability) {
    this.db = db;
    this.path = path;
    this.durability = durability;
  }

  /**
   * Opens (creating if needed) the storage file at `path`. The file must be
   * writable: a read-only file or directory makes `open` reject.
   *
   * Rejects with:
   * - `InvalidOptionsError` / `InvalidArgumentError` for bad options or path;
   * - `StorageSchemaError` if the file is not an SQLite database, or is one of
   *   another application or schema version (the file is left untouched);
   * - `StorageError` if it cannot be opened for writing (read-only file or
   *   directory, permissions, I/O error; `cause` is the underlying error).
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
      },
      {
        durability: DEFAULT_SQLITE_DURABILITY,
        busyTimeout: DEFAULT_SQLITE_BUSY_TIMEOUT,
        maxPageCount: DEFAULT_SQLITE_MAX_PAGE_COUNT,
      },
    );
    if (typeof path !== 'string' || path === '' || path === ':memory:') {
      throw new InvalidArgumentError(
        'SqliteQueuesStorage: path must be a file path (use MemoryQueuesStorage for memory)',
      );
    }
    // SQLite only reads a foreign file until its first write, but we look at
    // the header ourselves so that nothing of ours ever touches such a file.
    await checkHeader(path);
    const db = await openDatabase(path);
    try {
      db.configure('busyTimeout', opts.busyTimeout);
      await requireFeatures(db);
      await all(db, `PRAGMA synchronous = ${opts.durability === 'power' ? 'FULL' : 'NORMAL'}`);
      if (opts.durability === 'power') await all(db, 'PRAGMA fullfsync = ON');
      await ensureSchema(db, path);
      // Random uuids make the (queue, uuid) index hot: keep it in cache.
      await all(db, 'PRAGMA cache_size = -16384');
      await all(db, 'PRAGMA journal_size_limit = 67108864');
      if (opts.maxPageCount !== null) await all(db, `PRAGMA max_page_count = ${opts.maxPageCount}`);
      await run(db, 'CREATE TEMP TABLE smq_ttl (uuid BLOB PRIMARY KEY NOT NULL, ttl REAL) WITHOUT ROWID');
      log(`opened ${path} (durability ${opts.durability})`);
      return new SqliteQueuesStorage(db, path, opts.durability);
    } catch (err) {
      await closeDatabase(db).catch(noop);
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
   * Every queue that has messages or a non-null `awaySince`, messages in push
   * order. Sees every write issued before it.
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
    const b = this.batch();
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
    const b = this.batch();
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
    const b = this.batch();
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
    const b = this.batch();
    b.away.set(wellFormed(ident), awaySince);
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
    try {
      const wrote = await this.write(batch);
      if (wrote && log.enabled) {
        log(`committed ${batch.calls} calls in ${(performance.now() - started).toFixed(1)} ms`);
      }
      batch.resolve();
    } catch (err) {
      this.counters.failedTransactions++;
      const error = toStorageError(err, 'storage transaction failed');
      log(`transaction of ${batch.calls} calls failed: ${error.message}`);
      batch.reject(error);
    }
  }

  /** Writes a batch in one transaction; false when it reduced to nothing. */
  private async write(b: Batch): Promise<boolean> {
    const inserts = b.inserts.filter((p) => !p.cancelled);
    if (inserts.length === 0 && b.deletes.size === 0 && b.ttls.size === 0 && b.away.size === 0) return false;
    let deleted = 0;
    await run(this.db, 'BEGIN IMMEDIATE');
    try {
      for (const [ident, byUuid] of b.deletes) {
        const uuids = [...byUuid.values()];
        for (let at = 0; at < uuids.length; at += CHUNK) {
          const blob = Buffer.concat(uuids.slice(at, at + CHUNK));
          deleted += await this.exec('delete', [ident, blob]);
        }
      }
      for (const [ident, byUuid] of b.ttls) {
        const entries = [...byUuid.values()];
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
        const rows = set
          .slice(at, at + CHUNK)
          .map(([ident, since]) => `[${JSON.stringify(ident)},${exactNumber(since)}]`);
        await this.exec('awaySet', [`[${rows.join(',')}]`]);
      }
      await run(this.db, 'COMMIT');
      this.counters.transactions++;
      this.counters.rowsInserted += inserted;
      this.counters.rowsDeleted += deleted;
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
      else queues.set(ident, { ident, messages: [], awaySince: away_since });
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

/** Checks that the file is ours (or empty: then creates the schema) and writable. */
async function ensureSchema(db: Database, path: string): Promise<void> {
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
      // A write, so a read-only file fails here rather than at the first push.
      await run(db, `PRAGMA user_version = ${SQLITE_SCHEMA_VERSION}`);
    }
    await run(db, 'COMMIT');
  } catch (err) {
    await run(db, 'ROLLBACK').catch(noop);
    throw err;
  }
}

async function schemaState(db: Database): Promise<'empty' | 'ours' | 'foreign'> {
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
  if (appId !== SQLITE_APPLICATION_ID || version !== SQLITE_SCHEMA_VERSION) return 'foreign';
  const names = new Set(tables.map((t) => t.name));
  return names.has('messages') && names.has('queues') && names.has('messages_queue_uuid') ? 'ours' : 'foreign';
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
