/**
 * The file format: application id, schema versions and DDL, and the checks
 * made at open (an SQLite file, ours, writable, with the SQLite features the
 * statements need), the upgrade of older files and the owning identity.
 * Builds on driver.ts.
 * @module
 */
import { Buffer } from 'node:buffer';
import { constants as fsConstants, promises as fsp } from 'node:fs';
import type { Database } from 'sqlite3';
import { StorageError, StorageIdentityError, StorageSchemaError } from '../../errors.js';
import { createLogger } from '../../util/log.js';
import { all, exec, noop, run, sqliteVersion, toStorageError } from './driver.js';

const log = createLogger('snakemq:storage');

/** `PRAGMA application_id` of a snakemq-ts storage file: `'SMQT'` as a big-endian 32-bit number. */
export const SQLITE_APPLICATION_ID = 0x534d5154;
/** `PRAGMA user_version` of the schema this build reads and writes. */
export const SQLITE_SCHEMA_VERSION = 2;
/** Schema versions this build opens; older ones are upgraded at open. */
const READABLE_SCHEMA_VERSIONS: readonly number[] = [1, SQLITE_SCHEMA_VERSION];

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

/** @internal Fails unless the SQLite library has the JSON functions the statements use. */
export async function requireFeatures(db: Database): Promise<void> {
  try {
    await all(db, `SELECT '[1]' ->> 0, json_each.value FROM json_each('[1]')`);
  } catch (err) {
    // SQLITE_ERROR is a missing function or syntax; anything else (e.g. SQLITE_NOTADB) is about the file.
    if ((err as { code?: unknown }).code !== 'SQLITE_ERROR') throw err;
    throw new StorageError(`SQLite ${sqliteVersion()} lacks JSON support (3.38 or later needed)`, { cause: err });
  }
}

/** @internal Fails unless `path` is missing, empty, or starts with the SQLite header (read without SQLite). */
export async function checkHeader(path: string): Promise<void> {
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
 * @internal
 */
export async function checkWritable(path: string): Promise<void> {
  try {
    await fsp.access(path, fsConstants.W_OK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new StorageError(`cannot open storage ${path}: the file is read-only`, { cause: err });
  }
}

/**
 * Checks that the file is ours (or empty: then creates the schema) and
 * writable, upgrades a version-1 file, and checks or records the identity.
 * Returns the identity recorded in the file.
 * @internal
 */
export async function ensureSchema(db: Database, path: string, identity: string | null, allowIdentityChange: boolean): Promise<string | null> {
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
  const [{ application_id: appId } = { application_id: 0 }] = await all<{ application_id: number }>(db, 'PRAGMA application_id');
  const [{ user_version: version } = { user_version: 0 }] = await all<{ user_version: number }>(db, 'PRAGMA user_version');
  const tables = await all<{ name: string }>(db, "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'");
  if (appId === 0 && version === 0 && tables.length === 0) return 'empty';
  if (appId !== SQLITE_APPLICATION_ID || !READABLE_SCHEMA_VERSIONS.includes(version)) return 'foreign';
  const names = new Set(tables.map((t) => t.name));
  const ours = names.has('messages') && names.has('queues') && names.has('messages_queue_uuid') && (version === 1 || names.has('meta'));
  return ours ? version : 'foreign';
}

async function describe(db: Database): Promise<string> {
  const [{ application_id: appId } = { application_id: 0 }] = await all<{ application_id: number }>(db, 'PRAGMA application_id');
  const [{ user_version: version } = { user_version: 0 }] = await all<{ user_version: number }>(db, 'PRAGMA user_version');
  return `application_id 0x${(appId >>> 0).toString(16).padStart(8, '0')}, user_version ${version}`;
}

function foreignError(path: string, found: string): StorageSchemaError {
  const want = `application_id 0x${SQLITE_APPLICATION_ID.toString(16)}, user_version ${SQLITE_SCHEMA_VERSION}`;
  return new StorageSchemaError(`${path} is not a snakemq-ts storage of this version (found ${found}, want ${want} with its tables)`);
}
