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
import { checkAwaySince, checkIdent, checkMessages, checkTtlEntries, checkUuids } from './validate.js';

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
   * Upper bound on the size of the database file, in pages (4096 bytes by
   * default), or `null` for SQLite's own limit. Writes that would grow the file
   * beyond it fail with a `StorageError` whose `cause.code` is `SQLITE_FULL`.
   * Meant for tests (simulating a full disk) and for capping disk use.
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
  /** Data statements (INSERT/DELETE/UPDATE) executed inside those transactions. */
  readonly statements: number;
  /** Message rows inserted. */
  readonly rowsInserted: number;
  /** Message rows deleted. */
  readonly rowsDeleted: number;
}

type Stats = { -readonly [K in keyof SqliteStorageStats]: SqliteStorageStats[K] };

const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');
/** Rows per batched statement, at most; a power of two. Larger buys little and costs prepare time. */
const ROW_CAP = 1024;

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

const rep = (s: string, n: number): string => Array<string>(n).fill(s).join(',');

/** Batched statements: `perRow` parameters per row plus `fixed` ones. */
const KINDS = {
  insert: {
    perRow: 5,
    fixed: 0,
    sql: (n: number) => `INSERT INTO messages (queue, uuid, data, flags, ttl) VALUES ${rep('(?,?,?,?,?)', n)}`,
  },
  delete: {
    perRow: 1,
    fixed: 1,
    sql: (n: number) => `DELETE FROM messages WHERE queue = ? AND uuid IN (${rep('?', n)})`,
  },
  ttl: {
    perRow: 2,
    fixed: 1,
    sql: (n: number) =>
      `UPDATE messages SET ttl = v.column2 FROM (VALUES ${rep('(?,?)', n)}) AS v ` +
      'WHERE messages.queue = ? AND messages.uuid = v.column1',
  },
  awayDelete: {
    perRow: 1,
    fixed: 0,
    sql: (n: number) => `DELETE FROM queues WHERE ident IN (${rep('?', n)})`,
  },
  awaySet: {
    perRow: 2,
    fixed: 0,
    sql: (n: number) =>
      `INSERT INTO queues (ident, away_since) VALUES ${rep('(?,?)', n)} ` +
      'ON CONFLICT (ident) DO UPDATE SET away_since = excluded.away_since',
  },
} as const;
type Kind = keyof typeof KINDS;

interface PendingInsert {
  readonly ident: string;
  readonly uuid: Buffer;
  readonly data: Buffer;
  readonly flags: number;
  ttl: number | null;
  cancelled: boolean;
}

/**
 * The operations collected for one transaction, already reduced so that
 * running DELETEs, then UPDATEs, then INSERTs gives the same result as
 * applying the calls one by one: a remove cancels a push of the same batch,
 * a TTL update is folded into a push of the same batch, and DELETE/UPDATE
 * (which run before the INSERTs) only reach rows committed earlier.
 */
class Batch {
  readonly inserts: PendingInsert[] = [];
  /** uuid (latin1) + ident -> pending inserts carrying it. */
  readonly index = new Map<string, PendingInsert[]>();
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
}

/**
 * A durable {@link QueuesStorage} in one SQLite file (WAL journal), via the
 * `sqlite3` package. Create it with {@link SqliteQueuesStorage.open}.
 *
 * Group commit: every call made in the same event-loop turn, or while the
 * previous transaction is in flight, joins one transaction (`BEGIN IMMEDIATE …
 * COMMIT`) written with multi-row statements. All promises of a transaction
 * resolve after its COMMIT; if it fails it is rolled back and all of them
 * reject with a `StorageError` whose `cause` is the SQLite error. Calls apply
 * in call order. Buffers passed in must not be modified until their promise
 * settles. Only one connection (one process) should write a given file.
 */
export class SqliteQueuesStorage implements QueuesStorage {
  /** Always `true`: resolved writes survive a restart (see {@link SqliteDurability}). */
  readonly durable = true;
  /** The database file. */
  readonly path: string;
  /** The durability mode in effect. */
  readonly durability: SqliteDurability;

  private readonly db: Database;
  private readonly maxParams: number;
  private readonly statements = new Map<string, Statement>();
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

  private constructor(db: Database, path: string, durability: SqliteDurability, maxParams: number) {
    this.db = db;
    this.path = path;
    this.durability = durability;
    this.maxParams = maxParams;
  }

  /**
   * Opens (creating if needed) the storage file at `path`.
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
      throw new InvalidArgumentError('SqliteQueuesStorage: path must be a file path (use MemoryQueuesStorage for memory)');
    }
    // SQLite only reads a foreign file until its first write, but we look at
    // the header ourselves so that nothing of ours ever touches such a file.
    await checkHeader(path);
    const db = await openDatabase(path);
    try {
      db.configure('busyTimeout', opts.busyTimeout);
      await all(db, `PRAGMA synchronous = ${opts.durability === 'power' ? 'FULL' : 'NORMAL'}`);
      if (opts.durability === 'power') await all(db, 'PRAGMA fullfsync = ON');
      await ensureSchema(db, path);
      await all(db, 'PRAGMA journal_size_limit = 67108864');
      if (opts.maxPageCount !== null) await all(db, `PRAGMA max_page_count = ${opts.maxPageCount}`);
      const maxParams = await probeMaxParams(db);
      log(`opened ${path} (durability ${opts.durability}, ${maxParams} parameters per statement)`);
      return new SqliteQueuesStorage(db, path, opts.durability, maxParams);
    } catch (err) {
      await closeDatabase(db).catch(() => undefined);
      throw toStorageError(err, `cannot open storage ${path}`);
    }
  }

  /** A snapshot of the counters (transactions, statements, rows). */
  get stats(): SqliteStorageStats {
    return { ...this.counters };
  }

  /**
   * Every queue that has messages or a non-null `awaySince`, messages in push
   * order. Waits for the writes issued before it.
   */
  load(): Promise<StoredQueue[]> {
    if (this.closing) return closedPromise();
    return this.enqueue(() => this.readAll());
  }

  /** Appends messages to the end of queue `ident`. */
  push(ident: string, messages: readonly StoredMessage[]): Promise<void> {
    const problem = this.check(checkIdent(ident) ?? checkMessages(messages));
    if (problem) return problem;
    const b = this.batch();
    for (const m of messages) {
      const p: PendingInsert = { ident, uuid: m.uuid, data: m.data, flags: m.flags, ttl: m.ttl, cancelled: false };
      b.inserts.push(p);
      const key = m.uuid.toString('latin1') + ident;
      const same = b.index.get(key);
      if (same) same.push(p);
      else b.index.set(key, [p]);
    }
    return b.promise;
  }

  /** Removes every message of queue `ident` carrying one of `uuids`; unknown ones are ignored. */
  remove(ident: string, uuids: readonly Buffer[]): Promise<void> {
    const problem = this.check(checkIdent(ident) ?? checkUuids(uuids));
    if (problem) return problem;
    const b = this.batch();
    let deletes = b.deletes.get(ident);
    if (!deletes) b.deletes.set(ident, (deletes = new Map()));
    const ttls = b.ttls.get(ident);
    for (const uuid of uuids) {
      const k = uuid.toString('latin1');
      const key = k + ident;
      const same = b.index.get(key);
      if (same) {
        for (const p of same) p.cancelled = true;
        b.index.delete(key);
      }
      ttls?.delete(k);
      deletes.set(k, uuid);
    }
    return b.promise;
  }

  /** Sets the TTL of the messages of queue `ident` carrying each uuid; unknown ones are ignored. */
  updateTtl(ident: string, entries: readonly { uuid: Buffer; ttl: number | null }[]): Promise<void> {
    const problem = this.check(checkIdent(ident) ?? checkTtlEntries(entries));
    if (problem) return problem;
    const b = this.batch();
    let ttls = b.ttls.get(ident);
    if (!ttls) b.ttls.set(ident, (ttls = new Map()));
    for (const { uuid, ttl } of entries) {
      const k = uuid.toString('latin1');
      for (const p of b.index.get(k + ident) ?? []) p.ttl = ttl;
      ttls.set(k, { uuid, ttl });
    }
    return b.promise;
  }

  /** Records since when the peer of queue `ident` has been away (`null`: connected). */
  setAwaySince(ident: string, awaySince: number | null): Promise<void> {
    const problem = this.check(checkIdent(ident) ?? checkAwaySince(awaySince));
    if (problem) return problem;
    const b = this.batch();
    b.away.set(ident, awaySince);
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
      // The setImmediate lets every call of the current turn (and of I/O
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
    await run(this.db, 'BEGIN IMMEDIATE');
    try {
      for (const [ident, uuids] of b.deletes) {
        this.counters.rowsDeleted += await this.runBatched('delete', [...uuids.values()], true, (u, out) => {
          out.push(u);
        }, [ident], []);
      }
      for (const [ident, entries] of b.ttls) {
        if (entries.size === 0) continue;
        await this.runBatched('ttl', [...entries.values()], true, (e, out) => {
          out.push(e.uuid, e.ttl);
        }, [], [ident]);
      }
      this.counters.rowsInserted += await this.runBatched('insert', inserts, false, (p, out) => {
        out.push(p.ident, p.uuid, p.data, p.flags, p.ttl);
      }, [], []);
      const away = [...b.away];
      const gone = away.filter(([, since]) => since === null);
      const set = away.filter(([, since]) => since !== null);
      await this.runBatched('awayDelete', gone, true, ([ident], out) => {
        out.push(ident);
      }, [], []);
      await this.runBatched('awaySet', set, true, ([ident, since], out) => {
        out.push(ident, since);
      }, [], []);
      await run(this.db, 'COMMIT');
      this.counters.transactions++;
      return true;
    } catch (err) {
      // SQLite may already have rolled back (e.g. on SQLITE_FULL); then this fails harmlessly.
      await run(this.db, 'ROLLBACK').catch(noop);
      throw err;
    }
  }

  /**
   * Runs `kind` over `items` in as few statements as possible. Statement sizes
   * are powers of two so a handful of prepared statements are reused: full
   * chunks, then the rest either padded by repeating its last item (only for
   * idempotent statements) or split into powers of two. Returns rows changed.
   */
  private async runBatched<T>(
    kind: Kind,
    items: readonly T[],
    pad: boolean,
    bind: (item: T, out: unknown[]) => void,
    head: readonly unknown[],
    tail: readonly unknown[],
  ): Promise<number> {
    const spec = KINDS[kind];
    const max = Math.min(ROW_CAP, floorPow2(Math.floor((this.maxParams - spec.fixed) / spec.perRow)));
    let changes = 0;
    let at = 0;
    while (at < items.length) {
      const left = items.length - at;
      const count = left >= max ? max : pad ? left : floorPow2(left);
      const size = left >= max ? max : pad ? ceilPow2(left) : count;
      const params: unknown[] = [...head];
      for (let i = 0; i < size; i++) bind(items[at + Math.min(i, count - 1)]!, params);
      params.push(...tail);
      changes += await this.runStatement(kind, size, params);
      at += count;
    }
    return changes;
  }

  private async runStatement(kind: Kind, size: number, params: unknown[]): Promise<number> {
    const key = `${kind}:${size}`;
    let stmt = this.statements.get(key);
    if (!stmt) {
      stmt = await prepare(this.db, KINDS[kind].sql(size));
      this.statements.set(key, stmt);
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

/** SQLite's bound-parameter limit: 32766 by default since 3.32, 999 before (or in custom builds). */
async function probeMaxParams(db: Database): Promise<number> {
  try {
    await all(db, 'SELECT ?32766');
    return 32766;
  } catch {
    return 999;
  }
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

function floorPow2(n: number): number {
  return n < 1 ? 0 : 2 ** Math.floor(Math.log2(n));
}

function ceilPow2(n: number): number {
  return n <= 1 ? 1 : 2 ** Math.ceil(Math.log2(n));
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
