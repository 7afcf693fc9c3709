import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sqlite3 from 'sqlite3';
import type { StoredMessage, StoredQueue } from '../../lib/storage/index.js';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));

/** Temp dirs made by {@link tempDir}, removed by {@link removeTempDirs}. */
const dirs: string[] = [];

export async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'snakemq-storage-test-'));
  dirs.push(dir);
  return dir;
}

export async function removeTempDirs(): Promise<void> {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
}

/** A 16-byte uuid that encodes `i` (and `salt`), so failures are readable. */
export function uuid(i: number, salt = 0): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(salt, 0);
  b.writeUInt32BE(i, 12);
  return b;
}

export function msg(i: number, extra: Partial<StoredMessage> = {}): StoredMessage {
  return { uuid: uuid(i), data: Buffer.from(`message ${i}`), flags: 1, ttl: null, ...extra };
}

/** load() result as plain comparable data, queues sorted by ident. */
export function plain(queues: StoredQueue[]): unknown[] {
  return [...queues]
    .sort((a, b) => (a.ident < b.ident ? -1 : a.ident > b.ident ? 1 : 0))
    .map((q) => ({
      ident: q.ident,
      awaySince: q.awaySince,
      messages: q.messages.map((m) => ({
        uuid: m.uuid.toString('hex'),
        data: m.data.toString('hex'),
        flags: m.flags,
        ttl: m.ttl,
      })),
    }));
}

export const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Raw sqlite3 access, to build foreign files and inspect ours. */
export async function withRawDb<T>(path: string, fn: (q: RawDb) => Promise<T>): Promise<T> {
  const db = await new Promise<sqlite3.Database>((resolve, reject) => {
    const d: sqlite3.Database = new sqlite3.Database(path, (err) => (err ? reject(err) : resolve(d)));
  });
  const q: RawDb = {
    all: (sql, params = []) =>
      new Promise((resolve, reject) => db.all(sql, params, (err: Error | null, rows: unknown[]) => (err ? reject(err) : resolve(rows)))),
    exec: (sql) => new Promise((resolve, reject) => db.exec(sql, (err: Error | null) => (err ? reject(err) : resolve()))),
  };
  try {
    return await fn(q);
  } finally {
    await new Promise<void>((resolve, reject) => db.close((err) => (err ? reject(err) : resolve())));
  }
}

export interface RawDb {
  all(sql: string, params?: unknown[]): Promise<unknown[]>;
  exec(sql: string): Promise<void>;
}

export interface ChildResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a TypeScript fixture with tsx; as an unprivileged user if we are root (so file modes apply). */
export function runFixture(script: string, args: string[], opts: { unprivileged?: boolean; imports?: string[] } = {}): Promise<ChildResult> {
  const asNobody = opts.unprivileged && process.getuid?.() === 0;
  const imports = (opts.imports ?? []).flatMap((m) => ['--import', m]);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ...imports, join(FIXTURES, script), ...args], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(asNobody ? { uid: 65534, gid: 65534 } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}
