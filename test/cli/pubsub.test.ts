/**
 * `smq publish` and `smq subscribe`, as child processes over real sockets.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Link, Messaging, Packeter } from '../../lib/index.js';
import { Publisher } from '../../lib/pubsub/index.js';
import { ROOT, Smq, jsonLines, killAll, removeTempDirs, smq } from './helpers.js';

afterEach(() => killAll());
afterAll(() => removeTempDirs());

/** Each test spawns a few Node processes (about 1 s of startup each, more on a loaded machine). */
const SLOW = 60_000;
const ISO_MICROS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00$/;

/** A subscriber listening on a free port; resolves with it and its bound URL. */
async function subscriber(args: string[]): Promise<{ sub: Smq; url: string }> {
  const sub = new Smq(['subscribe', '--ident', 'alice', '--listen', 'tcp://127.0.0.1:0', ...args]);
  return { sub, url: await sub.listeningUrl() };
}

/** Publishes from a peer `bob` connecting to `url`, once one subscriber is subscribed. */
function publish(url: string, args: string[]): Promise<{ code: number | string; stdout: string; stderr: string }> {
  return smq(['publish', '--ident', 'bob', '--connect', url, '--wait-subscribers', '1', '--timeout', '20', ...args]);
}

/** Waits until `p` printed `n` lines on stdout (no fixed sleep: polls its collected output). */
async function linesOf(p: Smq, n: number): Promise<string[]> {
  await expect.poll(() => p.stdout.split('\n').length - 1, { timeout: 20_000, interval: 50 }).toBeGreaterThanOrEqual(n);
  return p.stdout.trimEnd().split('\n');
}

/** The arguments of each README line running `smq <command>` (single-quoted words kept whole). */
function readmeCommands(command: string): string[][] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const lines = readme.split('\n').filter((l) => l.startsWith(`npx --no-install smq ${command} `));
  expect(lines.length, `README shows 'smq ${command}'`).toBeGreaterThan(0);
  return lines.map((line) => [...line.replace(/\s+#.*$/, '').matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2]!).slice(3));
}

describe('smq publish and smq subscribe', () => {
  it(
    'subscribe --json prints what publish --wait-subscribers publishes, then both exit 0',
    async () => {
      const { sub, url } = await subscriber(['--publisher', 'bob', '--count', '3', '--json']);
      const pub = await publish(url, ['--subject', '/counter', 'a', 'b', 'héllo ✓']);
      expect(pub.code, pub.stderr).toBe(0);
      expect(pub.stdout).toBe('');
      // Not a terminal: no status lines of the publisher's own.
      expect(pub.stderr).not.toMatch(/subscriber alice|published/);
      const { code, stdout, stderr } = await sub.result();
      expect(code, stderr).toBe(0);
      expect(stderr).not.toMatch(/subscribed at|publisher bob/);
      const lines = jsonLines(stdout);
      expect(lines).toHaveLength(3);
      for (const line of lines) {
        expect(Object.keys(line)).toEqual(['subject', 'type', 'sender', 'time', 'version', 'data', 'from']);
        expect(line).toMatchObject({ subject: '/counter', type: 'info', version: 'v1.01', from: 'bob' });
        expect(line.sender).toMatch(/^\S+@\S+$/);
        expect(line.time).toMatch(ISO_MICROS);
        expect(Math.abs(Date.parse(line.time as string) - Date.now())).toBeLessThan(60_000);
      }
      expect(lines.map((l) => l.data)).toEqual(['a', 'b', 'héllo ✓']);
    },
    SLOW,
  );

  it(
    '--topic filters subjects; plain output is the PostTroll string form; without --count SIGTERM exits 0',
    async () => {
      const { sub, url } = await subscriber(['--publisher', 'bob', '--topic', '/counter', '--topic', '/x/*/z']);
      // Published first, on subjects that match no filter: never printed.
      const other = await publish(url, ['--subject', '/other', '--type', 'note', 'not for alice']);
      expect(other.code, other.stderr).toBe(0);
      const wrong = await publish(url, ['--subject', '/x/y/w', 'nor this']);
      expect(wrong.code, wrong.stderr).toBe(0);
      const [counter, token] = [
        await publish(url, ['--subject', '/counter/sub', '--type', 'beat', 'one two', 'line1\nline2']),
        await publish(url, ['--subject', '/x/y/z', '--count', '2', '--size', '10']),
      ];
      expect(counter.code, counter.stderr).toBe(0);
      expect(token.code, token.stderr).toBe(0);
      const lines = await linesOf(sub, 4);
      // v1.01 writes the time without a zone (UTC implied), as PostTroll does.
      const head = (subject: string, type: string) => new RegExp(`^pytroll:/${subject} ${type} \\S+@\\S+ \\d{4}-\\d\\d-\\d\\dT[\\d:.]+ v1\\.01 `);
      expect(lines).toHaveLength(4);
      expect(lines[0]).toMatch(head('/counter/sub', 'beat'));
      expect(lines[0]).toMatch(/ text\/ascii one two$/);
      // Line breaks in text: a JSON string, so that the output stays one line per message.
      expect(lines[1]).toMatch(/ application\/json "line1\\nline2"$/);
      expect(lines[2]).toMatch(head('/x/y/z', 'info'));
      expect(lines[2]).toMatch(/ text\/ascii msg 0\.\.\.\.\.$/);
      expect(lines[3]).toMatch(/ text\/ascii msg 1\.\.\.\.\.$/);
      expect(sub.stdout).not.toMatch(/not for alice|nor this/);
      sub.proc.kill('SIGTERM');
      const { code, stderr } = await sub.result();
      expect(code, stderr).toBe(0);
    },
    SLOW,
  );

  it(
    'publish --json publishes JSON values; --count/--size generates padded text',
    async () => {
      const { sub, url } = await subscriber(['--publisher', 'bob', '--count', '9', '--json']);
      const values = ['{"n": 1, "tags": ["a", "b"]}', '[1, 2.5, null]', '"a string"', 'true', '0'];
      const json = await publish(url, ['--subject', '/values', '--json', '--interval', '0.01', ...values]);
      expect(json.code, json.stderr).toBe(0);
      const generated = await publish(url, ['--subject', '/gen', '--count', '4', '--size', '12']);
      expect(generated.code, generated.stderr).toBe(0);
      const { code, stdout, stderr } = await sub.result();
      expect(code, stderr).toBe(0);
      const lines = jsonLines(stdout);
      expect(lines.map((l) => [l.subject, l.data])).toEqual([
        ['/values', { n: 1, tags: ['a', 'b'] }],
        ['/values', [1, 2.5, null]],
        ['/values', 'a string'],
        ['/values', true],
        ['/values', 0],
        ['/gen', 'msg 0.......'],
        ['/gen', 'msg 1.......'],
        ['/gen', 'msg 2.......'],
        ['/gen', 'msg 3.......'],
      ]);
    },
    SLOW,
  );

  it(
    'a refused subscription is an error (exit 1) with the reason',
    async () => {
      const link = new Link();
      const messaging = new Messaging('strict', new Packeter(link));
      const pub = new Publisher(messaging, { allow: (ident) => ident !== 'alice' });
      try {
        const url = await link.addListener('tcp://127.0.0.1:0');
        const refused = await smq(['subscribe', '--ident', 'alice', '--connect', url, '--publisher', 'strict', '--timeout', '20']);
        expect(refused.code).toBe(1);
        expect(refused.stdout).toBe('');
        expect(refused.stderr).toMatch(/smq subscribe: strict refused the subscription: strict does not serve alice/);
      } finally {
        await pub.close();
        await messaging.close();
      }
    },
    SLOW,
  );

  it(
    'binary data: base64 in --json, the PostTroll form (or binary/base64 for control bytes) without',
    async () => {
      const link = new Link();
      const messaging = new Messaging('lib', new Packeter(link));
      const pub = new Publisher(messaging);
      try {
        const url = await link.addListener('tcp://127.0.0.1:0');
        const both = new Promise<void>((resolve) => pub.on('subscribe', () => pub.subscriberCount === 2 && resolve()));
        const common = ['--connect', url, '--publisher', 'lib', '--count', '2', '--timeout', '20'];
        const json = new Smq(['subscribe', '--ident', 'alice', ...common, '--json']);
        const plain = new Smq(['subscribe', '--ident', 'carol', ...common]);
        await both;
        const bytes = new Uint8Array([0, 1, 0xff, 0x0a]);
        expect((await pub.publish('/bin', 'file', bytes)).written).toBe(2);
        expect((await pub.publish('/bin', 'file', 'AB\u00e9', { binary: true })).written).toBe(2);
        const [j, p] = [await json.result(), await plain.result()];
        expect(j.code, j.stderr).toBe(0);
        expect(jsonLines(j.stdout).map((l) => [l.data, l.from])).toEqual([
          [Buffer.from(bytes).toString('base64'), 'lib'],
          [Buffer.from('AB\u00e9', 'latin1').toString('base64'), 'lib'],
        ]);
        expect(p.code, p.stderr).toBe(0);
        const lines = p.stdout.trimEnd().split('\n');
        expect(lines).toHaveLength(2);
        expect(lines[0]).toMatch(new RegExp(` binary/base64 ${Buffer.from(bytes).toString('base64').replace(/[+/]/g, '\\$&')}$`));
        expect(lines[1]).toMatch(/ binary\/octet-stream AB\u00e9$/);
      } finally {
        await pub.close();
        await messaging.close();
      }
    },
    SLOW,
  );

  it(
    "the README's subscribe and publish lines work together",
    async () => {
      const [subscribeArgs] = readmeCommands('subscribe');
      const publishes = readmeCommands('publish');
      const readmeUrl = subscribeArgs![subscribeArgs!.indexOf('--listen') + 1]!;
      // The README's port may be taken here: port 0, then the bound URL.
      const sub = new Smq([...subscribeArgs!.map((a) => (a === readmeUrl ? 'tcp://127.0.0.1:0' : a)), '--count', '3']);
      const url = await sub.listeningUrl();
      for (const args of publishes) {
        expect(args[args.indexOf('--connect') + 1]).toBe(readmeUrl);
        const r = await smq([...args.map((a) => (a === readmeUrl ? url : a)), '--timeout', '20']);
        expect(r.code, r.stderr).toBe(0);
      }
      const { code, stdout, stderr } = await sub.result();
      expect(code, stderr).toBe(0);
      expect(jsonLines(stdout).map((l) => [l.subject, l.data, l.from])).toEqual([
        ['/counter', 'one', 'bob'],
        ['/counter', 'two', 'bob'],
        ['/counter', { n: 1 }, 'bob'],
      ]);
    },
    SLOW,
  );

  it(
    'bad usage exits 2 with a message; help describes both commands',
    async () => {
      const peer = ['--ident', 'bob', '--connect', 'tcp://127.0.0.1:4000'];
      const cases: [string[], RegExp][] = [
        [['publish', ...peer, 'x'], /--subject is required/],
        [['publish', ...peer, '--subject', '/a'], /nothing to publish/],
        [['publish', ...peer, '--subject', '/a', '--json', '{bad'], /DATA '\{bad' is not valid JSON/],
        [['publish', ...peer, '--subject', '/a', '--count', '2', 'x'], /DATA arguments or --count, not both/],
        [['publish', ...peer, '--subject', '/a', '--size', '5', 'x'], /--size goes with --count/],
        [['publish', ...peer, '--subject', '/a', '--wait-subscribers', '-1', 'x'], /--wait-subscribers/],
        [['publish', ...peer, '--subject', '/a', '--type', 'two words', 'x'], /--type: Invalid type/],
        [['publish', ...peer, '--subject', '/a', '--interval', 'soon', 'x'], /--interval must be a number of seconds/],
        [['subscribe', ...peer], /--publisher IDENT is required/],
        [['subscribe', ...peer, '--publisher', 'carol', '--topic', '/a/>/b'], /--topic '\/a\/>\/b'/],
        [['subscribe', ...peer, '--publisher', 'bob'], /--publisher names this peer itself/],
        [['subscribe', ...peer, '--publisher', 'carol', 'extra'], /unexpected argument 'extra'/],
      ];
      const [main, pubHelp, subHelp, ...results] = await Promise.all([
        smq(['--help']),
        smq(['publish', '--help']),
        smq(['help', 'subscribe']),
        ...cases.map(([args]) => smq(args)),
      ]);
      results.forEach((r, i) => {
        expect(r.code, cases[i]![0].join(' ')).toBe(2);
        expect(r.stderr).toMatch(cases[i]![1]);
        expect(r.stderr).toMatch(/Try 'smq (publish|subscribe) --help'/);
        expect(r.stdout).toBe('');
      });
      expect(main!.stdout).toMatch(/publish +publish messages[\s\S]*subscribe +subscribe at publishers/);
      expect(pubHelp!.code).toBe(0);
      expect(pubHelp!.stdout).toMatch(/^Usage: smq publish/);
      expect(pubHelp!.stdout).toContain('--wait-subscribers K');
      expect(subHelp!.code).toBe(0);
      expect(subHelp!.stdout).toMatch(/^Usage: smq subscribe/);
      expect(subHelp!.stdout).toContain('{"subject", "type", "sender"');
    },
    SLOW,
  );
});
