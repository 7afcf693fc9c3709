import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SqliteQueuesStorage } from '../../lib/storage/sqlite.js';
import { Child } from '../helpers/child.js';
import { Smq, closedPort, killAll, removeTempDirs, smq, tempDir } from '../cli/helpers.js';

const children: Child[] = [];
afterEach(async () => {
  killAll();
  await Promise.all(children.splice(0).map((c) => c.kill()));
});
afterAll(() => removeTempDirs());

/** Each test runs several `smq` processes (about 1 s of startup each, more on a loaded machine). */
const SLOW = 90_000;

describe('smq --storage: one owner per file', () => {
  it(
    "another identity's run neither loads nor delivers the stored messages",
    async () => {
      const db = join(tempDir(), 'queues.db');
      const absent = `tcp://127.0.0.1:${await closedPort()}`;
      const first = await smq([
        'send',
        '--ident',
        'alice',
        '--connect',
        absent,
        '--to',
        'bob',
        '--count',
        '2',
        '--persistent',
        '--storage',
        db,
        '--timeout',
        '1',
      ]);
      expect(first.code).toBe(1);

      const listener = new Smq(['listen', '--ident', 'bob', '--listen', 'tcp://127.0.0.1:0', '--count', '1']);
      const url = await listener.listeningUrl();
      const mallory = await smq(['send', '--ident', 'mallory', '--connect', url, '--to', 'bob', '--count', '0', '--storage', db, '--timeout', '5']);
      expect(mallory.code).not.toBe(0);
      expect(mallory.stderr).toMatch(/belongs to identity "alice", not "mallory"/);

      // Still alice's, and both messages still there; alice's own run delivers them.
      const storage = await SqliteQueuesStorage.open(db, { identity: 'alice' });
      expect((await storage.load()).map((q) => [q.ident, q.messages.length])).toEqual([['bob', 2]]);
      await storage.close();
      const alice = await smq(['send', '--ident', 'alice', '--connect', url, '--to', 'bob', '--count', '0', '--storage', db, '--timeout', '20']);
      expect(alice.code, alice.stderr).toBe(0);
      const { stdout } = await listener.result();
      expect(stdout).toMatch(/^alice: /);
    },
    SLOW,
  );

  it(
    'a second run on a file in use fails, saying why, and works once the first is killed',
    async () => {
      const db = join(tempDir(), 'queues.db');
      const holder = new Child(join(import.meta.dirname, 'child-peer.ts'), [JSON.stringify({ ident: 'alice', storage: db, listen: 'tcp://127.0.0.1:0' })]);
      children.push(holder);
      await holder.line((l) => l === 'ready', 60_000);
      const absent = `tcp://127.0.0.1:${await closedPort()}`;
      const second = await smq([
        'send',
        '--ident',
        'alice',
        '--connect',
        absent,
        '--to',
        'bob',
        '--count',
        '1',
        '--persistent',
        '--storage',
        db,
        '--timeout',
        '1',
      ]);
      expect(second.code).not.toBe(0);
      expect(second.stderr).toMatch(/in use by another process/);

      await holder.kill('SIGKILL');
      const third = await smq([
        'send',
        '--ident',
        'alice',
        '--connect',
        absent,
        '--to',
        'bob',
        '--count',
        '1',
        '--persistent',
        '--storage',
        db,
        '--timeout',
        '1',
      ]);
      expect(third.stderr).toMatch(/1 still queued/);
    },
    SLOW,
  );
});
