import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteQueuesStorage, type SqliteDurability } from '../../lib/storage/sqlite.js';
import { FIXTURES, REPO_ROOT, removeTempDirs, tempDir } from './helpers.js';

afterEach(removeTempDirs);

/**
 * Runs fixtures/crash-child.ts, SIGKILLs it once it has acknowledged
 * `killAfter` pushes and `removesBefore` removals (a removal is only issued
 * once its push resolved, so on a busy machine it may come much later: wait
 * for it rather than assume it), and returns everything it acknowledged,
 * read to the end of its output.
 */
function runAndKill(path: string, durability: SqliteDurability, killAfter: number, removesBefore: number) {
  return new Promise<{ pushed: Set<number>; removed: Set<number>; errors: string[]; signal: string | null }>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(FIXTURES, 'crash-child.ts'), path, durability], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const pushed = new Set<number>();
    const removed = new Set<number>();
    const errors: string[] = [];
    let buffered = '';
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        const [kind, n] = line.split(' ');
        if (kind === 'p') pushed.add(Number(n));
        else if (kind === 'r') removed.add(Number(n));
        else errors.push(line);
      }
      if (pushed.size >= killAfter && removed.size >= removesBefore) child.kill('SIGKILL');
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`child acknowledged only ${pushed.size} pushes, ${removed.size} removals; stderr: ${stderr}`));
    }, 60_000);
    child.on('error', reject);
    child.on('close', (_code, signal) => {
      clearTimeout(timer);
      resolve({ pushed, removed, errors, signal });
    });
  });
}

describe('SqliteQueuesStorage: crash (kill -9)', () => {
  it.each(['process', 'power'] as const)('keeps every acknowledged write when killed with SIGKILL (durability %s)', { timeout: 90_000 }, async (durability) => {
    const path = join(await tempDir(), 'queues.db');
    const { pushed, removed, errors, signal } = await runAndKill(path, durability, 3000, 10);
    expect(signal).toBe('SIGKILL');
    expect(errors).toEqual([]);
    expect(pushed.size).toBeGreaterThanOrEqual(3000);
    expect(removed.size).toBeGreaterThanOrEqual(10);

    const storage = await SqliteQueuesStorage.open(path);
    try {
      const queues = await storage.load();
      expect(queues.map((q) => q.ident)).toEqual(['peer']);
      const stored = queues[0]!.messages.map((m) => m.uuid.readUInt32BE(12));
      // In order, no duplicates.
      for (let i = 1; i < stored.length; i++) expect(stored[i]).toBeGreaterThan(stored[i - 1]!);
      const present = new Set(stored);
      // Every 10th message gets removed once its push resolved; without an
      // acknowledged removal it may be either way. Only acknowledged writes
      // are checked: what the child did after its last report may or may
      // not have reached the file.
      for (const n of pushed) {
        if (n % 10 !== 0) expect(present.has(n), `acknowledged push ${n}`).toBe(true);
      }
      for (const n of removed) expect(present.has(n), `acknowledged remove ${n}`).toBe(false);
      // Transactions commit in call order: what survived is a prefix of what was pushed.
      const max = Math.max(...stored);
      for (let n = 0; n <= max; n++) {
        if (n % 10 !== 0) expect(present.has(n), `prefix ${n}`).toBe(true);
      }
      const sample = queues[0]!.messages.find((m) => m.uuid.readUInt32BE(12) === stored[0]);
      expect(sample!.ttl).toBe(stored[0]);
      expect(sample!.data).toEqual(Buffer.alloc(100, stored[0]! & 0xff));
    } finally {
      await storage.close();
    }
  });
});
