/**
 * `snakemq-ts/sqlite`: durable queue storage in one SQLite file,
 * {@link SqliteQueuesStorage}, for `new Messaging(ident, packeter, { storage })`.
 *
 * It needs the `sqlite3` package, an optional peer dependency (a native
 * addon, so the main `snakemq-ts` entry never loads it): `npm install
 * sqlite3`. This entry imports without it; `SqliteQueuesStorage.open` loads
 * it and rejects with a `StorageError` naming `npm install sqlite3` when it
 * is missing. See docs/storage.md.
 * @module
 */
export * from './storage/sqlite.js';
