/**
 * Storage benchmark: `npx tsx bench/storage.ts [N]`. Prints JSON lines.
 *
 * For each durability mode: pushes N 100-byte persistent messages the way
 * Messaging does (one push() call per message, 1000 calls per event-loop
 * turn over 10 queues, all awaited), then removes them all the same way,
 * then times 200 lone pushes (one transaction each).
 * Baseline: the raw sqlite3 package inserting the same rows in one
 * transaction with one prepared single-row INSERT. `cpu_s` counts every
 * thread of the process, so it is less sensitive to a busy machine than the
 * wall-clock rates.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sqlite3 from 'sqlite3';
import type { StoredMessage } from '../lib/storage/index.js';
import { SqliteQueuesStorage, type SqliteDurability } from '../lib/storage/sqlite.js';

const N = Number(process.argv[2] ?? 100_000);
const PER_TURN = 1000;
const QUEUES = 10;
const LATENCY_SAMPLES = 200;

const messages: StoredMessage[] = Array.from({ length: N }, () => ({
  uuid: randomBytes(16),
  data: randomBytes(100),
  flags: 1,
  ttl: null,
}));
const ident = (i: number): string => `peer-${i % QUEUES}`;
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** CPU seconds of all threads (SQLite runs on libuv's pool) since `since`. */
function cpuSeconds(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return +((used.user + used.system) / 1e6).toFixed(3);
}

function emit(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

async function benchStorage(dir: string, durability: SqliteDurability): Promise<number> {
  const storage = await SqliteQueuesStorage.open(join(dir, `${durability}.db`), { durability });
  try {
    let started = performance.now();
    let cpu = process.cpuUsage();
    let pending: Promise<void>[] = [];
    for (let i = 0; i < N; i++) {
      pending.push(storage.push(ident(i), [messages[i]!]));
      if ((i + 1) % PER_TURN === 0) await turn();
    }
    await Promise.all(pending);
    let seconds = (performance.now() - started) / 1000;
    const written = storage.stats;
    const writeRate = Math.round(N / seconds);
    emit({
      bench: 'storage-write',
      durability,
      msgs: N,
      seconds: +seconds.toFixed(3),
      msgs_per_s: writeRate,
      cpu_s: cpuSeconds(cpu),
      transactions: written.transactions,
      statements: written.statements,
    });

    started = performance.now();
    cpu = process.cpuUsage();
    pending = [];
    for (let i = 0; i < N; i++) {
      pending.push(storage.remove(ident(i), [messages[i]!.uuid]));
      if ((i + 1) % PER_TURN === 0) await turn();
    }
    await Promise.all(pending);
    seconds = (performance.now() - started) / 1000;
    const after = storage.stats;
    emit({
      bench: 'storage-remove',
      durability,
      msgs: N,
      seconds: +seconds.toFixed(3),
      msgs_per_s: Math.round(N / seconds),
      cpu_s: cpuSeconds(cpu),
      transactions: after.transactions - written.transactions,
      statements: after.statements - written.statements,
      rows_deleted: after.rowsDeleted,
    });

    // One message per transaction: what a lone persistent send waits for.
    const latencies: number[] = [];
    for (let i = 0; i < LATENCY_SAMPLES; i++) {
      const t = performance.now();
      await storage.push('latency', [messages[i]!]);
      latencies.push(performance.now() - t);
    }
    latencies.sort((a, b) => a - b);
    emit({
      bench: 'storage-commit-latency',
      durability,
      samples: LATENCY_SAMPLES,
      p50_ms: +latencies[Math.floor(LATENCY_SAMPLES / 2)]!.toFixed(3),
      p99_ms: +latencies[Math.floor(LATENCY_SAMPLES * 0.99)]!.toFixed(3),
    });
    return writeRate;
  } finally {
    await storage.close();
  }
}

async function benchRaw(dir: string): Promise<number> {
  const db = await new Promise<sqlite3.Database>((resolve, reject) => {
    const d: sqlite3.Database = new sqlite3.Database(join(dir, 'raw.db'), (err) => (err ? reject(err) : resolve(d)));
  });
  const run = (sql: string): Promise<void> => new Promise((resolve, reject) => db.run(sql, (err: Error | null) => (err ? reject(err) : resolve())));
  await run('PRAGMA journal_mode = WAL');
  await run('PRAGMA synchronous = NORMAL');
  await run(
    'CREATE TABLE messages (seq INTEGER PRIMARY KEY, queue TEXT NOT NULL, uuid BLOB NOT NULL, ' + 'data BLOB NOT NULL, flags INTEGER NOT NULL, ttl REAL)',
  );
  await run('CREATE INDEX messages_queue_uuid ON messages (queue, uuid)');
  const started = performance.now();
  const cpu = process.cpuUsage();
  await run('BEGIN IMMEDIATE');
  const stmt = db.prepare('INSERT INTO messages (queue, uuid, data, flags, ttl) VALUES (?,?,?,?,?)');
  await new Promise<void>((resolve, reject) => {
    let left = N;
    for (let i = 0; i < N; i++) {
      const m = messages[i]!;
      stmt.run([ident(i), m.uuid, m.data, m.flags, m.ttl], (err: Error | null) => {
        if (err) reject(err);
        else if (--left === 0) resolve();
      });
    }
  });
  await run('COMMIT');
  const seconds = (performance.now() - started) / 1000;
  await new Promise<void>((resolve) => stmt.finalize(() => resolve()));
  await new Promise<void>((resolve, reject) => db.close((err) => (err ? reject(err) : resolve())));
  const rate = Math.round(N / seconds);
  emit({
    bench: 'storage-write-raw-sqlite3',
    durability: 'process',
    msgs: N,
    seconds: +seconds.toFixed(3),
    msgs_per_s: rate,
    cpu_s: cpuSeconds(cpu),
  });
  return rate;
}

const dir = mkdtempSync(join(tmpdir(), 'snakemq-bench-storage-'));
try {
  const raw = await benchRaw(dir);
  const processRate = await benchStorage(dir, 'process');
  const powerRate = await benchStorage(dir, 'power');
  emit({
    bench: 'storage-write-vs-raw',
    process_ratio: +(processRate / raw).toFixed(2),
    power_ratio: +(powerRate / raw).toFixed(2),
  });
} finally {
  rmSync(dir, { recursive: true, force: true });
}
