/**
 * The `sqlite3` package behind promises: loading it (only when a storage
 * opens, for it is a native addon and an optional peer dependency), opening
 * and closing a connection, running SQL, and turning its errors into
 * `StorageError`s. Builds on sqlite3 and lib/errors.ts.
 * @module
 */
import type { Database, Statement } from 'sqlite3';
import { SnakeMQError, StorageError, StorageSchemaError } from '../../errors.js';

type Sqlite3 = typeof import('sqlite3');

/** The sqlite3 module, once {@link loadSqlite3} loaded it. */
let sqlite3: Sqlite3 | null = null;

/**
 * @internal Loads the sqlite3 package (once): imported here rather than at
 * the top so that `import 'snakemq-ts/sqlite'` works without it, and a
 * storage that cannot open says what to install. Rejects with a
 * `StorageError` whose `cause` is the import's error.
 */
export async function loadSqlite3(): Promise<void> {
  if (sqlite3) return;
  try {
    sqlite3 = (await import('sqlite3')).default;
  } catch (err) {
    throw new StorageError(
      'SqliteQueuesStorage needs the sqlite3 package (an optional peer dependency of snakemq-ts): ' +
        `npm install sqlite3 (loading it failed: ${err instanceof Error ? err.message : String(err)})`,
      { cause: err },
    );
  }
}

/** @internal The SQLite library version (after {@link loadSqlite3}). */
export function sqliteVersion(): string {
  return sqlite3!.VERSION;
}

/** @internal */
export function sqliteCode(err: unknown): unknown {
  return (err as { code?: unknown } | null)?.code;
}

/** @internal The error to reject with: SnakeMQErrors as they are, SQLITE_NOTADB as a StorageSchemaError, anything else as a StorageError (`cause` the original). */
export function toStorageError(err: unknown, what: string): SnakeMQError {
  if (err instanceof SnakeMQError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const message = `${what}: ${err instanceof Error ? err.message : String(err)}`;
  return code === 'SQLITE_NOTADB' ? new StorageSchemaError(message, { cause: err }) : new StorageError(message, { cause: err });
}

/** @internal */
export function noop(): void {}

/** @internal Opens (creating) the file; call {@link loadSqlite3} first. */
export function openDatabase(path: string): Promise<Database> {
  return new Promise((resolve, reject) => {
    const db: Database = new sqlite3!.Database(path, sqlite3!.OPEN_READWRITE | sqlite3!.OPEN_CREATE, (err) => {
      if (err) reject(new StorageError(`cannot open storage ${path}: ${err.message}`, { cause: err }));
      else resolve(db);
    });
  });
}

/** @internal */
export function closeDatabase(db: Database): Promise<void> {
  return new Promise((resolve, reject) => db.close((err) => (err ? reject(err) : resolve())));
}

/** @internal */
export function run(db: Database, sql: string): Promise<void> {
  return new Promise((resolve, reject) => db.run(sql, (err: Error | null) => (err ? reject(err) : resolve())));
}

/** @internal */
export function exec(db: Database, sql: string): Promise<void> {
  return new Promise((resolve, reject) => db.exec(sql, (err: Error | null) => (err ? reject(err) : resolve())));
}

/** @internal */
export function all<T = Record<string, unknown>>(db: Database, sql: string, params: unknown[] = []): Promise<T[]> {
  return new Promise((resolve, reject) => db.all<T>(sql, params, (err: Error | null, rows: T[]) => (err ? reject(err) : resolve(rows))));
}

/** @internal */
export function prepare(db: Database, sql: string): Promise<Statement> {
  return new Promise((resolve, reject) => {
    const stmt: Statement = db.prepare(sql, (err: Error | null) => (err ? reject(err) : resolve(stmt)));
  });
}
