/**
 * The SQLite queue storage, {@link SqliteQueuesStorage}, with its options and
 * figures: what the package's `snakemq-ts/sqlite` entry exports (lib/sqlite.ts),
 * and the path in-repository code imports it from. The implementation is in
 * lib/storage/sqlite/: storage.ts (the class and its group commit), batch.ts,
 * sql.ts, schema.ts, lock.ts, driver.ts (sqlite3, loaded at the first open)
 * and options.ts.
 * @module
 */
export { SqliteQueuesStorage } from './sqlite/storage.js';
export {
  DEFAULT_SQLITE_BUSY_TIMEOUT,
  DEFAULT_SQLITE_DURABILITY,
  DEFAULT_SQLITE_MAX_PAGE_COUNT,
  DEFAULT_SQLITE_IDENTITY,
  DEFAULT_SQLITE_ALLOW_IDENTITY_CHANGE,
} from './sqlite/options.js';
export type { SqliteDurability, SqliteSettings, SqliteStorageOptions, SqliteStorageStats } from './sqlite/options.js';
export { SQLITE_APPLICATION_ID, SQLITE_SCHEMA_VERSION } from './sqlite/schema.js';
