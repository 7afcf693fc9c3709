import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Link, Messaging, Packeter, RpcServer } from '../../lib/index.js';
import { SqliteQueuesStorage } from '../../lib/sqlite.js';
import { Smq, closedPort, jsonLines, killAll, removeTempDirs, smq, tempDir } from './helpers.js';

afterEach(() => killAll());
afterAll(() => removeTempDirs());

const HEX32 = /^[0-9a-f]{32}$/;
/** Each test spawns several Node processes (about 1 s of startup each, more on a loaded machine). */
const SLOW = 60_000;

describe('smq: usage', () => {
  it(
    'prints help and exits 0',
    async () => {
      const [main, send] = await Promise.all([smq(['--help']), smq(['send', '--help'])]);
      expect(main.code).toBe(0);
      expect(main.stdout).toMatch(/^Usage: smq <command>/);
      expect(main.stdout).toMatch(/listen[\s\S]*send[\s\S]*call[\s\S]*certs/);
      expect(send.code).toBe(0);
      expect(send.stdout).toMatch(/^Usage: smq send/);
      expect(send.stdout).toContain('--persistent');
      expect(send.stderr).toBe('');
    },
    SLOW,
  );

  it(
    'rejects bad arguments with a message and exit code 2',
    async () => {
      const cases: [string[], RegExp][] = [
        [['listen', '--ident', 'bob', '--listen', 'tcp://127.0.0.1:0', '--bogus'], /unknown option '--bogus'/],
        [['listen', '--listen', 'tcp://127.0.0.1:0'], /--ident is required/],
        [['listen', '--ident', 'bob', '--listen', 'tcp://127.0.0.1'], /--listen: invalid endpoint "tcp:\/\/127\.0\.0\.1": missing port/],
        [['send', '--ident', 'alice', '--connect', 'tcp://127.0.0.1:4000', '--count', '3'], /--to is required/],
        [['send', '--ident', 'alice', '--connect', 'tcp://127.0.0.1:4000', '--to', 'bob', '--count', 'x'], /--count must be an integer/],
        [['listen', '--ident', 'bob', '--listen', 'tls://127.0.0.1:0'], /needs --tls-cert and --tls-key/],
        [['frobnicate'], /unknown command 'frobnicate'/],
        [[], /missing command/],
      ];
      const results = await Promise.all(cases.map(([args]) => smq(args)));
      results.forEach((r, i) => {
        expect(r.code, cases[i]![0].join(' ')).toBe(2);
        expect(r.stderr).toMatch(cases[i]![1]);
        expect(r.stderr).toMatch(/Try 'smq( \w+)? --help'/);
        expect(r.stdout).toBe('');
      });
    },
    SLOW,
  );
});

describe('smq: listen and send', () => {
  it(
    'listen --json receives UTF-8 text and binary (base64) from send',
    async () => {
      const listener = new Smq(['listen', '--ident', 'bob', '--listen', 'tcp://127.0.0.1:0', '--count', '2', '--json']);
      const url = await listener.listeningUrl();
      expect(url).toMatch(/^tcp:\/\/127\.0\.0\.1:[1-9][0-9]*$/);
      const binary = Buffer.from([0xff, 0xfe, 0x00, 0x80, 0x41]);
      const [text, bin] = await Promise.all([
        smq(['send', '--ident', 'alice', '--connect', url, '--to', 'bob', '--ttl', '600', 'héllo wörld ✓']),
        smq(['send', '--ident', 'carol', '--connect', url, '--to', 'bob', '--base64', binary.toString('base64')]),
      ]);
      expect(text.code, text.stderr).toBe(0);
      expect(bin.code, bin.stderr).toBe(0);
      const { code, stdout } = await listener.result();
      expect(code).toBe(0);
      const lines = jsonLines(stdout);
      expect(lines).toHaveLength(2);
      for (const line of lines) {
        expect(Object.keys(line)).toEqual(['from', 'uuid', 'ttl', 'flags', 'size', 'data', 'encoding']);
        expect(line.uuid).toMatch(HEX32);
        expect(line.flags).toBe(0);
      }
      const fromAlice = lines.find((l) => l.from === 'alice')!;
      expect(fromAlice).toMatchObject({ data: 'héllo wörld ✓', encoding: 'utf8', size: Buffer.byteLength('héllo wörld ✓') });
      expect(fromAlice.ttl).toBeGreaterThan(500);
      expect(fromAlice.ttl).toBeLessThanOrEqual(600);
      const fromCarol = lines.find((l) => l.from === 'carol')!;
      expect(fromCarol).toMatchObject({ data: binary.toString('base64'), encoding: 'base64', size: 5, ttl: null });
    },
    SLOW,
  );

  it(
    'send --count/--size generates padded messages (over a Unix socket)',
    async () => {
      const dir = tempDir();
      const listener = new Smq(['listen', '--ident', 'bob', '--listen', `unix://${join(dir, 's.sock')}`, '--count', '25']);
      const url = await listener.listeningUrl();
      const sent = await smq(['send', '--ident', 'alice', '--connect', url, '--to', 'bob', '--count', '25', '--size', '16']);
      expect(sent.code, sent.stderr).toBe(0);
      const { code, stdout } = await listener.result();
      expect(code).toBe(0);
      const lines = stdout.trimEnd().split('\n');
      expect(lines).toHaveLength(25);
      expect(lines[0]).toBe('alice: msg 0...........');
      expect(lines[24]).toBe('alice: msg 24..........');
      for (const [i, line] of lines.entries()) {
        expect(line).toBe(`alice: msg ${i}`.padEnd('alice: '.length + 16, '.'));
      }
    },
    SLOW,
  );

  it(
    'persistent send with --storage: a timed-out run leaves the messages, a later --count 0 run delivers them',
    async () => {
      const dir = tempDir();
      const db = join(dir, 'queues.db');
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
        '3',
        '--size',
        '8',
        '--persistent',
        '--storage',
        db,
        '--timeout',
        '1.5',
      ]);
      expect(first.code).toBe(1);
      expect(first.stderr).toMatch(/timed out after 1\.5 s: 0 of 3 messages delivered to bob, 3 still queued/);
      expect(first.stderr).toContain(db);

      const storage = await SqliteQueuesStorage.open(db);
      const stored = await storage.load();
      await storage.close();
      expect(stored.map((q) => [q.ident, q.messages.map((m) => m.data.toString())])).toEqual([['bob', ['msg 0...', 'msg 1...', 'msg 2...']]]);

      const listener = new Smq(['listen', '--ident', 'bob', '--listen', 'tcp://127.0.0.1:0', '--count', '3']);
      const url = await listener.listeningUrl();
      const second = await smq(['send', '--ident', 'alice', '--connect', url, '--to', 'bob', '--count', '0', '--storage', db, '--timeout', '20']);
      expect(second.code, second.stderr).toBe(0);
      expect(second.stderr).toMatch(/3 stored message\(s\) for bob/);
      const { code, stdout } = await listener.result();
      expect(code).toBe(0);
      expect(stdout).toBe('alice: msg 0...\nalice: msg 1...\nalice: msg 2...\n');

      // Delivered means gone from the file: a third run has nothing to wait for, even with bob absent.
      const third = await smq(['send', '--ident', 'alice', '--connect', absent, '--to', 'bob', '--count', '0', '--storage', db, '--timeout', '5']);
      expect(third.code, third.stderr).toBe(0);
    },
    SLOW,
  );
});

describe('smq send to a plain protocol-1 peer', () => {
  it(
    'exits 0 once the messages are written (such a peer cannot acknowledge)',
    async () => {
      const link = new Link();
      const plain = new Messaging('plain', new Packeter(link), { acknowledgements: false });
      const got: string[] = [];
      plain.on('message', (_c, from, m) => got.push(`${from}: ${m.data.toString()}`));
      try {
        const url = await link.addListener('tcp://127.0.0.1:0');
        const sent = await smq(['send', '--ident', 'alice', '--connect', url, '--to', 'plain', '--timeout', '20', 'one', 'two']);
        expect(sent.code, sent.stderr).toBe(0);
        await expect.poll(() => got).toEqual(['alice: one', 'alice: two']);
      } finally {
        await plain.close();
      }
    },
    SLOW,
  );
});

describe('smq call', () => {
  it(
    'prints the result as JSON; a remote exception goes to stderr with exit 1',
    async () => {
      const link = new Link();
      const messaging = new Messaging('server', new Packeter(link));
      const server = new RpcServer(messaging);
      server.register('calc', {
        add: (a: number, b: number) => a + b,
        info: async () => ({ name: 'calc', tags: ['a', 'b'], bytes: Buffer.from([1, 2, 3]) }),
        fail: () => {
          throw new TypeError('no such thing: boom');
        },
      });
      try {
        const url = await link.addListener('tcp://127.0.0.1:0');
        const base = ['call', '--ident', 'cli', '--connect', url, '--to', 'server', '--object', 'calc', '--timeout', '20'];
        const [add, info, fail] = await Promise.all([
          smq([...base, '--method', 'add', '--args', '[2, 40]']),
          smq([...base, '--method', 'info']),
          smq([...base, '--method', 'fail', '--args', '[]']),
        ]);
        expect(add.code, add.stderr).toBe(0);
        expect(add.stdout).toBe('42\n');
        expect(info.code, info.stderr).toBe(0);
        expect(JSON.parse(info.stdout)).toEqual({ name: 'calc', tags: ['a', 'b'], bytes: 'AQID' });
        expect(fail.code).toBe(1);
        expect(fail.stdout).toBe('');
        expect(fail.stderr).toMatch(/smq call: server: calc\.fail raised TypeError: no such thing: boom/);
      } finally {
        await server.close();
        await messaging.close();
      }
    },
    SLOW,
  );
});

describe('smq certs and TLS', () => {
  it(
    'creates a CA and peer certificates that work for mutual TLS between listen and send',
    async () => {
      const dir = join(tempDir(), 'certs');
      const made = await smq(['certs', '--out', dir, 'bob', 'alice']);
      expect(made.code, made.stderr).toBe(0);
      for (const f of ['ca.pem', 'ca-key.pem', 'bob.pem', 'bob-key.pem', 'alice.pem', 'alice-key.pem']) {
        expect(existsSync(join(dir, f)), f).toBe(true);
      }
      expect(statSync(join(dir, 'bob-key.pem')).mode & 0o077).toBe(0);

      const tls = (name: string) => ['--tls-cert', join(dir, `${name}.pem`), '--tls-key', join(dir, `${name}-key.pem`), '--tls-ca', join(dir, 'ca.pem')];
      const listener = new Smq(['listen', '--ident', 'bob', '--listen', 'tls://127.0.0.1:0', ...tls('bob'), '--count', '1', '--json']);
      const url = await listener.listeningUrl();
      expect(url).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);
      const [noCert, noOpenssl] = await Promise.all([
        // Without a client certificate the listener refuses the handshake: a runtime failure.
        smq(['send', '--ident', 'mallory', '--connect', url, '--to', 'bob', '--tls-ca', join(dir, 'ca.pem'), '--timeout', '20', 'x']),
        smq(['certs', '--out', join(dir, 'other'), 'carol'], { ...process.env, PATH: join(dir, 'no-such-dir') }),
      ]);
      expect(noCert.code).toBe(1);
      expect(noCert.stderr).toMatch(/smq send: .*TLS/);
      // Then alice, with her certificate (the listener exits after her message).
      const ok = await smq(['send', '--ident', 'alice', '--connect', url, '--to', 'bob', ...tls('alice'), '--timeout', '20', 'over mutual TLS']);
      expect(ok.code, ok.stderr).toBe(0);
      const { code, stdout } = await listener.result();
      expect(code).toBe(0);
      expect(jsonLines(stdout)).toMatchObject([{ from: 'alice', data: 'over mutual TLS', encoding: 'utf8' }]);
      expect(noOpenssl.code).toBe(1);
      expect(noOpenssl.stderr).toMatch(/openssl not found/);
    },
    SLOW,
  );
});
