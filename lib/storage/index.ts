/**
 * Queue storage: the {@link QueuesStorage} contract and
 * {@link MemoryQueuesStorage} (not persistent). The durable
 * `SqliteQueuesStorage` is in its own entry, `snakemq-ts/sqlite`
 * (lib/sqlite.ts), so that this one never loads the sqlite3 native addon.
 * @module
 */
export type { QueuesStorage, StorageSize, StoredMessage, StoredQueue } from './types.js';
export { MemoryQueuesStorage } from './memory.js';
