/**
 * The write side of the group commit: {@link BatchWriter} writes a
 * {@link Batch} in one transaction with the batched statements of sql.ts,
 * retries it once after a checkpoint on a full disk, keeps the WAL truncated
 * on a disk low on space, and counts what it did. Builds on driver.ts.
 * @module
 */
import { Buffer } from 'node:buffer';
import { promises as fsp } from 'node:fs';
import { dirname } from 'node:path';
import type { Database, RunResult, Statement } from 'sqlite3';
import { createLogger } from '../../util/log.js';
import type { Batch, PendingInsert } from './batch.js';
import { all, noop, prepare, run, sqliteCode, toStorageError } from './driver.js';
import type { Stats } from './options.js';
import { CHUNK, INSERT_ROWS, LEN_BITS, OFFSET_BITS, PACKED_MAX_BYTES, PACKED_MAX_DATA, SQL, exactNumber, type StatementName } from './sql.js';

const log = createLogger('snakemq:storage');

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

/** @internal Writes the batches of one storage's connection, one at a time (the storage's job chain orders them). */
export class BatchWriter {
  /** What {@link SqliteQueuesStorage.stats} reports. */
  readonly counters: Stats = {
    transactions: 0,
    failedTransactions: 0,
    statements: 0,
    rowsInserted: 0,
    rowsDeleted: 0,
    retriedTransactions: 0,
    checkpoints: 0,
  };
  private readonly statements = new Map<StatementName, Statement>();
  /** Estimated bytes written to the WAL since the last checkpoint of ours. */
  private walBytes = 0;
  /** `walBytes` at which an idle storage next looks at the free disk space. */
  private nextSpaceCheck = IDLE_CHECKPOINT_BYTES;
  /** A write failed: checkpoint before the next one (to give the WAL's space back). */
  private checkpointDue = false;

  constructor(
    private readonly db: Database,
    private readonly path: string,
  ) {}

  /**
   * Writes `batch` in one transaction (once more after a checkpoint if the
   * disk was full) and settles its promise; never rejects.
   */
  async commit(batch: Batch): Promise<void> {
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
  }

  /** After a commit with no batch pending: truncates a grown WAL if the disk is low on space. */
  async idle(): Promise<void> {
    if (this.walBytes >= this.nextSpaceCheck) {
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
        const values = set.slice(at, at + CHUNK).map(([ident, since]) => `[${JSON.stringify(ident)},${exactNumber(since)}]`);
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
        inserted += await this.exec('insertOne', [first.ident, first.uuid, first.data, first.flags, first.ttl]);
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

  /** Finalizes the prepared statements (before the connection closes). */
  async finalize(): Promise<void> {
    for (const stmt of this.statements.values()) {
      await new Promise<void>((resolve) => stmt.finalize(() => resolve()));
    }
    this.statements.clear();
  }
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
