/**
 * Subject matching benchmark: `npx tsx bench/pubsub-match.ts [options]`.
 * Prints JSON lines.
 *
 * Builds `--subscriptions` subscriptions (half prefix filters such as
 * `/oper/polar/l1b` or `/oper/polar/direct_re`, half token filters such as
 * `/oper/polar/*\/norrköping` or `/oper/geo/l1b/>`, the first two components
 * literal; values are `--subscribers` distinct ids, so
 * dedup is exercised) over a PostTroll-like subject space (4–5 components,
 * Unicode site names), then matches `--msgs` subjects (cycling over
 * `--distinct` pregenerated ones) with:
 *
 * - `impl: "index"`: {@link SubjectIndex.forEachMatch};
 * - `impl: "linear"`: the baseline, a scan of the same filters per subject
 *   (pre-split token filters, the subject split once, a reused dedup set),
 *   over the first `--linear-msgs` subjects only (it is ~1000× slower).
 *
 * Both count the values matched on the subjects they share, and the last line
 * says whether the counts agree and gives the index/linear ratio of msgs/s.
 *
 * Options:
 *   --subscriptions=10000   filters (half prefix, half tokens)
 *   --subscribers=2000      distinct values
 *   --msgs=1000000          subjects matched by the index
 *   --distinct=100000       distinct subjects generated
 *   --linear-msgs=20000     subjects matched by the linear baseline
 * @module
 */
import { SubjectIndex, parseFilter, subjectComponents, type SubjectFilter } from '../lib/pubsub/subject-index.js';
import { benchArgs, helpAndExit } from './lib/ipc.js';

const args = benchArgs();
helpAndExit(import.meta.url, args);
const num = (name: string, def: number): number => {
  const v = Number(args.get(name) ?? def);
  if (!Number.isSafeInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer`);
  return v;
};
const SUBSCRIPTIONS = num('subscriptions', 10_000);
const SUBSCRIBERS = num('subscribers', 2_000);
const MSGS = num('msgs', 1_000_000);
const DISTINCT = num('distinct', 100_000);
const LINEAR_MSGS = Math.min(num('linear-msgs', 20_000), MSGS);

let seed = 0x9e3779b9;
function rand(n: number): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) % n;
}
const pick = <T>(xs: readonly T[]): T => xs[rand(xs.length)]!;
const words = (base: readonly string[], prefix: string, n: number): string[] => [
  ...base,
  ...Array.from({ length: n - base.length }, (_, i) => `${prefix}${i}`),
];

const LEVELS = [
  words(['oper', 'test', 'dev', 'archive'], 'env', 8),
  words(['polar', 'geo', 'metop', 'noaa20'], 'platform', 40),
  words(['direct_readout', 'gds', 'l1b', 'sdr'], 'product', 100),
  words(['norrköping', 'kiruna', 'tromsø', 'Ås', 'ünïcödé', '北京'], 'site', 300),
  words([], 'segment', 20),
];

function subject(): string {
  const depth = rand(10) < 7 ? 4 : 5;
  let s = '';
  for (let i = 0; i < depth; i++) s += `/${pick(LEVELS[i]!)}`;
  return s;
}

function filterString(i: number): string {
  if (i % 2 === 0) {
    const parts = subjectComponents(subject()).slice(0, 3 + rand(2));
    const s = `/${parts.join('/')}`;
    return rand(5) === 0 ? s.slice(0, s.length - 1 - rand(Math.min(parts[parts.length - 1]!.length, 4))) : s;
  }
  const n = 3 + rand(3);
  const parts = Array.from({ length: n }, (_, k) => (k >= 2 && rand(10) < 3 ? '*' : pick(LEVELS[k]!)));
  if (rand(10) < 3) parts[n - 1] = '>';
  if (!parts.includes('*') && !parts.includes('>')) parts[2 + rand(n - 2)] = '*';
  return `/${parts.join('/')}`;
}

function emit(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

function cpuSeconds(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return +((used.user + used.system) / 1e6).toFixed(3);
}

const subjects = Array.from({ length: DISTINCT }, subject);
const subs: Array<{ filter: SubjectFilter; value: number }> = Array.from({ length: SUBSCRIPTIONS }, (_, i) => ({
  filter: parseFilter(filterString(i)),
  value: i % SUBSCRIBERS,
}));

let started = performance.now();
const index = new SubjectIndex<number>();
for (const s of subs) index.add(s.filter, s.value);
const buildMs = performance.now() - started;

type Compiled = { prefix: string; tokens: undefined; value: number } | { prefix: undefined; tokens: string[]; value: number };
const compiled: Compiled[] = subs.map((s) =>
  s.filter.kind === 'prefix'
    ? { prefix: s.filter.value, tokens: undefined, value: s.value }
    : { prefix: undefined, tokens: subjectComponents(s.filter.value), value: s.value },
);
const linearSeen = new Set<number>();
function linearMatch(subject: string, fn: (v: number) => void): number {
  const got = subjectComponents(subject);
  for (const f of compiled) {
    if (f.prefix !== undefined) {
      if (subject.startsWith(f.prefix)) linearSeen.add(f.value);
      continue;
    }
    const want = f.tokens;
    let ok = true;
    for (let i = 0; i < want.length; i++) {
      const w = want[i]!;
      if (w === '>') {
        ok = got.length > i;
        break;
      }
      if (i >= got.length || (w !== '*' && w !== got[i])) {
        ok = false;
        break;
      }
      if (i === want.length - 1) ok = got.length === want.length;
    }
    if (ok) linearSeen.add(f.value);
  }
  for (const v of linearSeen) fn(v);
  const n = linearSeen.size;
  linearSeen.clear();
  return n;
}

let sink = 0;
const count = (v: number): void => {
  sink += v;
};

function run(impl: 'index' | 'linear', msgs: number): { rate: number; matches: number } {
  const matchOne = impl === 'index' ? (s: string) => index.forEachMatch(s, count) : (s: string) => linearMatch(s, count);
  for (let i = 0; i < Math.min(msgs, impl === 'index' ? DISTINCT : 1000); i++) matchOne(subjects[i % DISTINCT]!);
  let matches = 0;
  let agreeMatches = 0;
  const cpu = process.cpuUsage();
  started = performance.now();
  for (let i = 0; i < msgs; i++) {
    const n = matchOne(subjects[i % DISTINCT]!);
    matches += n;
    if (i < LINEAR_MSGS) agreeMatches += n;
  }
  const seconds = (performance.now() - started) / 1000;
  const rate = Math.round(msgs / seconds);
  emit({
    bench: 'pubsub-match',
    impl,
    subscriptions: SUBSCRIPTIONS,
    subscribers: SUBSCRIBERS,
    msgs,
    seconds: +seconds.toFixed(3),
    msgs_per_s: rate,
    matches_per_msg: +(matches / msgs).toFixed(2),
    cpu_s: cpuSeconds(cpu),
    ...(impl === 'index' ? { build_ms: +buildMs.toFixed(1), node_count: index.nodeCount, size: index.size } : {}),
  });
  return { rate, matches: agreeMatches };
}

const indexed = run('index', MSGS);
const linear = run('linear', LINEAR_MSGS);
emit({
  bench: 'pubsub-match-vs-linear',
  ratio: +(indexed.rate / linear.rate).toFixed(1),
  agree: indexed.matches === linear.matches,
  checksum: sink,
});
