/**
 * What a new user tries first with `smq`: the README's serve/call pair,
 * `--ttl 0`, and what a persistent send says about what it stored (on a
 * terminal, on a timeout, at a second Ctrl-C).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SqliteQueuesStorage } from '../../lib/sqlite.js';
import { BIN, ROOT, Smq, closedPort, killAll, removeTempDirs, smq, tempDir } from './helpers.js';

afterEach(() => killAll());
afterAll(() => removeTempDirs());

const SLOW = 60_000;

/** The arguments of the README line running `smq <command>` (single-quoted words kept whole; no comments). */
function readmeCommand(command: string): string[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const line = readme.split('\n').find((l) => l.startsWith(`npx --no-install smq ${command} `));
  expect(line, `README shows 'smq ${command}'`).toBeDefined();
  const words = [...line!.replace(/\s+#.*$/, '').matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2]!);
  expect(words.slice(0, 4)).toEqual(['npx', '--no-install', 'smq', command]);
  return words.slice(3);
}

/** Messages stored for `ident` in an SQLite file. */
async function storedIn(file: string, ident: string): Promise<number> {
  const storage = await SqliteQueuesStorage.open(file);
  try {
    return (await storage.load()).find((q) => q.ident === ident)?.messages.length ?? 0;
  } finally {
    await storage.close();
  }
}

describe('smq: the README examples', () => {
  it(
    'smq serve --example calc, then the README smq call prints 3',
    async () => {
      const serveArgs = readmeCommand('serve');
      const callArgs = readmeCommand('call');
      const readmeUrl = serveArgs[serveArgs.indexOf('--listen') + 1]!;
      expect(callArgs[callArgs.indexOf('--connect') + 1]).toBe(readmeUrl);
      // The README's port may be taken here: port 0, then the bound URL.
      const server = new Smq(serveArgs.map((a) => (a === readmeUrl ? 'tcp://127.0.0.1:0' : a)));
      const url = await server.listeningUrl();
      expect(server.stderr).toMatch(/^serving calc: add\(a, b\)/m);
      const [add, divide] = await Promise.all([
        smq([...callArgs.map((a) => (a === readmeUrl ? url : a)), '--timeout', '20']),
        smq(['call', '--ident', 'carol', '--connect', url, '--to', 'bob', '--object', 'calc', '--method', 'divide', '--args', '[1, 0]', '--timeout', '20']),
      ]);
      expect(add.code, add.stderr).toBe(0);
      expect(add.stdout).toBe('3\n');
      expect(divide.code).toBe(1);
      expect(divide.stderr).toMatch(/calc\.divide raised RangeError: calc\.divide: division by zero/);
      server.proc.kill('SIGINT');
      const { code, stderr } = await server.result();
      expect(code).toBe(130);
      expect(stderr).toMatch(/carol called calc\.divide, which raised: calc\.divide: division by zero/);
    },
    SLOW,
  );

  it(
    'smq serve refuses an unknown or missing --example (exit 2)',
    async () => {
      const [unknown, missing] = await Promise.all([
        smq(['serve', '--ident', 'bob', '--listen', 'tcp://127.0.0.1:0', '--example', 'nope']),
        smq(['serve', '--ident', 'bob', '--listen', 'tcp://127.0.0.1:0']),
      ]);
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toMatch(/unknown --example 'nope' \(one of: calc\)/);
      expect(missing.code).toBe(2);
      expect(missing.stderr).toMatch(/--example NAME/);
    },
    SLOW,
  );
});

describe('smq send --ttl 0: only if connected now', () => {
  it(
    'waits for the connection, then delivers',
    async () => {
      const listener = new Smq(['listen', '--ident', 'bob', '--listen', 'tcp://127.0.0.1:0', '--count', '2']);
      const url = await listener.listeningUrl();
      const sent = await smq(['send', '--ident', 'alice', '--connect', url, '--to', 'bob', '--ttl', '0', '--timeout', '20', 'one', 'two']);
      expect(sent.code, sent.stderr).toBe(0);
      const { code, stdout } = await listener.result();
      expect(code).toBe(0);
      expect(stdout).toBe('alice: one\nalice: two\n');
    },
    SLOW,
  );

  it(
    'fails without sending when the peer does not connect in time',
    async () => {
      const absent = `tcp://127.0.0.1:${await closedPort()}`;
      const sent = await smq(['send', '--ident', 'alice', '--connect', absent, '--to', 'bob', '--ttl', '0', '--timeout', '1', 'x']);
      expect(sent.code).toBe(1);
      expect(sent.stderr).toMatch(
        /smq send: bob is not connected \(waited 1 s\): --ttl 0 sends only to a peer connected now, so none of 1 message\(s\) was sent/,
      );
    },
    SLOW,
  );
});

/** Runs `smq ARGS` with stderr (and stdout) on a pseudo-terminal; returns the exit code and what it wrote. */
function onTerminal(args: string[]): Promise<{ code: number | null; output: string }> {
  const pty = 'import os, pty, sys\nsys.exit(os.waitstatus_to_exitcode(pty.spawn(sys.argv[1:])))';
  return new Promise((resolve, reject) => {
    const child = spawn('python3', ['-c', pty, process.execPath, BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 40_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe('smq send --persistent --storage: what is stored', () => {
  it(
    'shows "stored N/M" progress on a terminal, and says on a timeout what is stored',
    async () => {
      const db = join(tempDir(), 'q.db');
      const absent = `tcp://127.0.0.1:${await closedPort()}`;
      const { code, output } = await onTerminal([
        'send',
        '--ident',
        'alice',
        '--connect',
        absent,
        '--to',
        'bob',
        '--count',
        '3000',
        '--persistent',
        '--storage',
        db,
        '--timeout',
        '2',
      ]);
      expect(code, output).toBe(1);
      expect(output).toMatch(new RegExp(`\\r\\x1b\\[Kstored 3000/3000 in ${db}, 0/3000 delivered to bob`));
      expect(output).toMatch(
        /timed out after 2 s: 0 of 3000 messages delivered to bob, 3000 still queued; 3000 message\(s\) for bob stored in \S+q\.db \(a later run with --storage \S+ --count 0 delivers them\), 0 not stored/,
      );
      expect(await storedIn(db, 'bob')).toBe(3000);
    },
    SLOW,
  );

  it(
    'shows no progress when stderr is not a terminal',
    async () => {
      const db = join(tempDir(), 'q.db');
      const absent = `tcp://127.0.0.1:${await closedPort()}`;
      const { code, stderr } = await smq([
        'send',
        '--ident',
        'alice',
        '--connect',
        absent,
        '--to',
        'bob',
        '--count',
        '3000',
        '--persistent',
        '--storage',
        db,
        '--timeout',
        '1',
      ]);
      expect(code).toBe(1);
      expect(stderr).not.toContain('\x1b[K');
      expect(stderr).toMatch(/3000 message\(s\) for bob stored in/);
    },
    SLOW,
  );

  it(
    'Ctrl-C twice: exits at once and says how many are stored and how many are not, as the file holds',
    async () => {
      const db = join(tempDir(), 'q.db');
      const absent = `tcp://127.0.0.1:${await closedPort()}`;
      const count = 100_000;
      const sender = new Smq([
        'send',
        '--ident',
        'alice',
        '--connect',
        absent,
        '--to',
        'bob',
        '--count',
        String(count),
        '--size',
        '100',
        '--persistent',
        '--storage',
        db,
      ]);
      await sender.waitStderr(/cannot connect to/);
      sender.proc.kill('SIGINT');
      await sender.waitStderr(/interrupted: storing what is queued before exiting \(interrupt again to exit at once\)/);
      sender.proc.kill('SIGINT'); // a no-op if storing already finished and it exited
      const { code, stderr } = await sender.result();
      expect(code).toBe(130);
      const m = /(\d+) message\(s\) for bob stored in \S+, (\d+) not stored/.exec(stderr);
      expect(m, stderr).not.toBeNull();
      const [stored, lost] = [Number(m![1]), Number(m![2])];
      expect(stored + lost).toBe(count);
      // The figures follow committed transactions: the file holds at least what was said (a commit may land as it exits).
      const inFile = await storedIn(db, 'bob');
      expect(inFile).toBeGreaterThanOrEqual(stored);
      expect(inFile).toBeLessThanOrEqual(count);
    },
    SLOW,
  );
});
