/**
 * Options, defaults and reported figures of the SQLite storage: what
 * {@link SqliteQueuesStorage.open} accepts, what {@link SqliteQueuesStorage.stats}
 * and {@link SqliteQueuesStorage.settings} return. Types and constants only.
 * @module
 */

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

/** @internal The mutable counters behind {@link SqliteStorageStats}. */
export type Stats = { -readonly [K in keyof SqliteStorageStats]: SqliteStorageStats[K] };
