import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FIXTURES, removeTempDirs, runFixture, tempDir } from './helpers.js';

afterEach(removeTempDirs);

describe('sqlite3 is an optional peer dependency', () => {
  it('without it, the main entry and the SQLite entry import, and open() rejects with a StorageError naming npm install sqlite3', async () => {
    const dir = await tempDir();
    const path = join(dir, 'q.db');
    const result = await runFixture('no-sqlite3-child.ts', [path], { imports: [join(FIXTURES, 'no-sqlite3.mjs')] });
    expect(result.code, result.stderr).toBe(0);
    const outcome = JSON.parse(result.stdout.trim().split('\n').pop()!);
    expect(outcome).toMatchObject({
      stages: ['main', 'sqlite entry'],
      opened: false,
      storageError: true,
      name: 'StorageError',
      code: 'SMQ_ERR_STORAGE',
      causeCode: 'ERR_MODULE_NOT_FOUND',
    });
    expect(outcome.message).toContain('npm install sqlite3');
    expect(outcome.message).toContain("Cannot find package 'sqlite3'");
    expect(existsSync(path)).toBe(false);
  });
});
