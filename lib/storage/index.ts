/**
 * Queue storage: the {@link QueuesStorage} contract and its implementations,
 * {@link SqliteQueuesStorage} (durable, one SQLite file) and
 * {@link MemoryQueuesStorage} (not persistent).
 * @module
 */
export type { QueuesStorage, StoredMessage, StoredQueue } from './types.js';
export { MemoryQueuesStorage } from './memory.js';
export {
  SqliteQueuesStorage,
  DEFAULT_SQLITE_BUSY_TIMEOUT,
  DEFAULT_SQLITE_DURABILITY,
  DEFAULT_SQLITE_MAX_PAGE_COUNT,
  DEFAULT_SQLITE_IDENTITY,
  DEFAULT_SQLITE_ALLOW_IDENTITY_CHANGE,
  SQLITE_APPLICATION_ID,
  SQLITE_SCHEMA_VERSION,
} from './sqlite.js';
export type { SqliteDurability, SqliteSettings, SqliteStorageOptions, SqliteStorageStats } from './sqlite.js';
