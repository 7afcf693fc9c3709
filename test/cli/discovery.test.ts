/**
 * `smq nameserver`, `smq lookup`, and `smq publish/subscribe --service`, as
 * child processes over real sockets on 127.0.0.1. Never multicast: the
 * nameservers run with --no-multicast on an ephemeral UDP port of 127.0.0.1,
 * publishers register by RPC (--nameserver) or announce by unicast (--announce-to).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, Smq, closedPort, jsonLines, killAll, smq } from './helpers.js';

afterEach(() => killAll());

const SLOW = 30_000;
/** Nothing here may inherit a nameserver from the environment. */
const ENV = { ...process.env, SNAKEMQ_NAMESERVERS: '' };

/** A nameserver on free ports of 127.0.0.1; resolves with its listener URL and UDP port. */
async function nameserver(): Promise<{ ns: Smq; url: string; udpPort: number }> {
  const ns = new Smq(['nameserver', '--listen', 'tcp://127.0.0.1:0', '--no-multicast', '--udp-host', '127.0.0.1', '--udp-port', '0'], ENV);
  const url = await ns.listeningUrl();
  const udp = await ns.waitStderr(/^udp on 127\.0\.0\.1:(\d+)$/m);
  return { ns, url, udpPort: Number(udp[1]) };
}

/** The README's Discovery lines: each one's environment assignments and `smq` arguments (single-quoted words kept whole). */
function readmeDiscovery(): { env: Record<string, string>; args: string[] }[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const smqSection = readme.slice(readme.indexOf('## The `smq` command'));
  const section = smqSection.slice(smqSection.indexOf('### Discovery'));
  const block = /```sh\n([\s\S]*?)```/.exec(section)![1]!;
  return block
    .trim()
    .split('\n')
    .map((line) => {
      const words = [...line.replace(/\s+#.*$/, '').matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2]!);
      const env: Record<string, string> = {};
      while (/^[A-Z_]+=/.test(words[0]!)) {
        const [k, v] = words.shift()!.split('=') as [string, string];
        env[k] = v;
      }
      expect(words.slice(0, 3)).toEqual(['npx', '--no-install', 'smq']);
      return { env, args: words.slice(3) };
    });
}

describe('smq nameserver, lookup, publish/subscribe --service', () => {
  it(
    'a subscriber started first finds the publisher that registers later; the nameserver logs it and stops on SIGTERM',
    async () => {
      const { ns, url } = await nameserver();
      const sub = new Smq(['subscribe', '--ident', 'alice', '--service', 'radar', '--nameserver', url, '--count', '3', '--json', '--timeout', '20'], ENV);
      // The subscriber is up and at the nameserver before the publisher exists.
      await ns.waitStderr(/^connected to alice$/m);
      await sub.waitStderr(/^connected to nameserver$/m);
      const pub = await smq(
        [
          'publish',
          '--ident',
          'bob',
          '--service',
          'radar',
          '--listen',
          'tcp://127.0.0.1:0',
          '--nameserver',
          url,
          '--subject',
          '/radar/scan',
          '--wait-subscribers',
          '1',
          '--timeout',
          '20',
          'a',
          'b',
          'c',
        ],
        ENV,
      );
      expect(pub.code, pub.stderr).toBe(0);
      const bobUrl = /^listening on (\S+)$/m.exec(pub.stderr)![1]!;
      const { code, stdout, stderr } = await sub.result();
      expect(code, stderr).toBe(0);
      expect(jsonLines(stdout).map((l) => [l.subject, l.data, l.from])).toEqual([
        ['/radar/scan', 'a', 'bob'],
        ['/radar/scan', 'b', 'bob'],
        ['/radar/scan', 'c', 'bob'],
      ]);
      // Not a terminal: no status lines of the subscriber's own.
      expect(stderr).not.toMatch(/publisher bob found/);
      // The publisher unregistered when it left.
      await ns.waitStderr(/^unregistered bob \(radar\)$/m);
      expect(ns.stderr).toMatch(new RegExp(`^registered bob \\(radar\\) at ${bobUrl.replace(/[.]/g, '\\.')} from rpc:bob$`, 'm'));
      ns.proc.kill('SIGTERM');
      const done = await ns.result();
      expect(done.code, done.stderr).toBe(0);
      expect(done.stdout).toBe('');
    },
    SLOW,
  );

  it(
    'lookup prints the entries as JSON lines: registered by RPC and announced by unicast UDP',
    async () => {
      const { ns, url, udpPort } = await nameserver();
      const waiting = ['--listen', 'tcp://127.0.0.1:0', '--subject', '/radar', '--wait-subscribers', '1', '--timeout', '20', 'x'];
      const bob = new Smq(['publish', '--ident', 'bob', '--service', 'radar', '--alias', 'wx', '--nameserver', url, ...waiting], ENV);
      const carol = new Smq(['publish', '--ident', 'carol', '--service', 'radar', '--announce-to', `127.0.0.1:${udpPort}`, ...waiting], ENV);
      const [bobUrl, carolUrl] = await Promise.all([bob.listeningUrl(), carol.listeningUrl()]);
      await ns.waitStderr(/^registered bob \(radar wx\) at \S+ from rpc:bob$/m);
      await ns.waitStderr(/^registered carol \(radar\) at \S+ from udp:127\.0\.0\.1:\d+$/m);

      const [radar, wx, all, none] = await Promise.all([
        smq(['lookup', '--nameserver', url, 'radar'], ENV),
        smq(['lookup', '--nameserver', url, '--ident', 'looker', 'wx'], ENV),
        smq(['lookup', '--nameserver', url], ENV),
        smq(['lookup', '--nameserver', url, 'nothing-here'], ENV),
      ]);
      for (const r of [radar, wx, all, none]) expect(r.code, r.stderr).toBe(0);
      const entries = jsonLines(radar.stdout);
      expect(entries.map((e) => Object.keys(e))).toEqual([
        ['identity', 'services', 'endpoints', 'version', 'receivedAt', 'source'],
        ['identity', 'services', 'endpoints', 'version', 'receivedAt', 'source'],
      ]);
      expect(entries).toMatchObject([
        { identity: 'bob', services: ['radar', 'wx'], endpoints: [bobUrl], version: 'v1.2', source: 'rpc:bob' },
        { identity: 'carol', services: ['radar'], endpoints: [carolUrl], version: 'v1.2' },
      ]);
      expect(entries[1]!.source).toMatch(/^udp:127\.0\.0\.1:\d+$/);
      expect(jsonLines(wx.stdout).map((e) => e.identity)).toEqual(['bob']);
      expect(jsonLines(all.stdout).map((e) => e.identity)).toEqual(['bob', 'carol']);
      expect(none.stdout).toBe('');

      // Interrupted, a registered publisher still unregisters.
      bob.proc.kill('SIGTERM');
      expect(await bob.exited).toBe(143);
      await ns.waitStderr(/^unregistered bob \(radar wx\)$/m);
    },
    SLOW,
  );

  it(
    "the README's Discovery lines work together",
    async () => {
      const lines = readmeDiscovery();
      expect(lines.map((l) => l.args[0])).toEqual(['nameserver', 'subscribe', 'publish', 'lookup']);
      const [nsLine, subLine, pubLine, lookupLine] = lines;
      const readmeUrl = nsLine!.args[nsLine!.args.indexOf('--listen') + 1]!;
      // Free ports here; the last --udp-* wins.
      const ns = new Smq([...nsLine!.args.map((a) => (a === readmeUrl ? 'tcp://127.0.0.1:0' : a)), '--udp-host', '127.0.0.1', '--udp-port', '0'], ENV);
      expect(nsLine!.args).toContain('--no-multicast');
      const url = await ns.listeningUrl();
      const envOf = (env: Record<string, string>) => ({ ...ENV, ...Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v === readmeUrl ? url : v])) });
      expect(subLine!.env.SNAKEMQ_NAMESERVERS).toBe(readmeUrl);
      const sub = new Smq([...subLine!.args, '--count', '2', '--timeout', '20'], envOf(subLine!.env));
      await ns.waitStderr(/^connected to alice$/m);
      const pub = await smq([...pubLine!.args, '--timeout', '20'], envOf(pubLine!.env));
      expect(pub.code, pub.stderr).toBe(0);
      const got = await sub.result();
      expect(got.code, got.stderr).toBe(0);
      expect(jsonLines(got.stdout).map((l) => [l.data, l.from])).toEqual([
        ['one', 'bob'],
        ['two', 'bob'],
      ]);
      const looked = await smq(
        lookupLine!.args.map((a) => (a === readmeUrl ? url : a)),
        ENV,
      );
      // bob unregistered when it exited: nothing to print, and still exit 0.
      expect(looked.code, looked.stderr).toBe(0);
      expect(looked.stdout).toBe('');
    },
    SLOW,
  );

  it(
    'lookup exits 1 when no nameserver answers in time',
    async () => {
      const r = await smq(['lookup', '--nameserver', `tcp://127.0.0.1:${await closedPort()}`, '--timeout', '1', 'radar'], ENV);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/smq lookup: no nameserver answered within 1 s/);
    },
    SLOW,
  );

  it(
    'a malformed SNAKEMQ_ variable is an error at start (exit 1, naming it), for every command that opens a peer',
    async () => {
      const [a, b] = await Promise.all([
        smq(['subscribe', '--ident', 'alice', '--listen', 'tcp://127.0.0.1:0', '--publisher', 'bob'], { ...ENV, SNAKEMQ_TCP_KEEPALIVE_IDLE: 'soon' }),
        smq(['listen', '--ident', 'x', '--listen', 'tcp://127.0.0.1:0'], { ...ENV, SNAKEMQ_MC_PORT: '70000' }),
      ]);
      expect([a.code, b.code]).toEqual([1, 1]);
      expect(a.stderr).toMatch(/SNAKEMQ_TCP_KEEPALIVE_IDLE="soon" is malformed/);
      expect(b.stderr).toMatch(/SNAKEMQ_MC_PORT="70000" is malformed/);
    },
    SLOW,
  );

  it(
    'bad usage exits 2 with a message; help describes the commands',
    async () => {
      const ns = 'tcp://127.0.0.1:5557';
      const pub = ['publish', '--ident', 'bob', '--subject', '/a'];
      const cases: [string[], RegExp][] = [
        [[...pub, '--connect', ns, '--service', 'radar', '--nameserver', ns, 'x'], /--service needs a --listen URL/],
        [[...pub, '--listen', 'tcp://127.0.0.1:0', '--alias', 'wx', 'x'], /--alias goes with --service/],
        [[...pub, '--listen', 'tcp://127.0.0.1:0', '--service', 'radar', '--nameserver', ns, '--announce-to', '127.0.0.1:1', 'x'], /not both/],
        [['subscribe', '--ident', 'alice', '--service', 'radar'], /--service needs a nameserver/],
        [['subscribe', '--ident', 'alice', '--service', 'radar', '--publisher', 'bob', '--nameserver', ns], /--publisher or --service, not both/],
        [['lookup', 'radar'], /--nameserver URL is required/],
        [['nameserver', '--udp-host', 'localhost'], /--udp-host must be an IPv4 address/],
      ];
      const [main, nsHelp, ...results] = await Promise.all([smq(['--help']), smq(['nameserver', '--help']), ...cases.map(([args]) => smq(args, ENV))]);
      results.forEach((r, i) => {
        const what = cases[i]![0].join(' ');
        expect(r.code, `${what}\n${r.stderr}`).toBe(2);
        expect(r.stderr, what).toMatch(cases[i]![1]);
        expect(r.stderr).toMatch(/Try 'smq (publish|subscribe|lookup|nameserver) --help'/);
        expect(r.stdout).toBe('');
      });
      expect(main!.stdout).toMatch(/nameserver +run a nameserver[\s\S]*lookup +ask nameservers/);
      expect(nsHelp!.stdout).toMatch(/^Usage: smq nameserver/);
      expect(nsHelp!.stdout).toContain('--no-multicast');
    },
    SLOW,
  );
});
