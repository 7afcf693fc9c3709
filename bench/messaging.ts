/**
 * Messaging throughput benchmark: `npx tsx bench/messaging.ts [options]`.
 * Prints one JSON line per result (see docs/benchmarks.md).
 *
 * Each implementation runs in two fresh child processes on loopback, a
 * receiver and a sender, driven over IPC by this process:
 *
 * - `raw-net`: a plain `net` socket with the packeter's framing, batched
 *   writes and an incremental parser (bench/lib/raw-peer.ts): the baseline;
 * - `snakemq`: Link + Packeter + Messaging with acknowledgements (the default),
 *   a `new Message(payload)` per send;
 * - `snakemq-bytes`: the same, sending the payload Buffer itself
 *   (`send('alice', payload)`);
 * - `snakemq-noack`: the same with `acknowledgements: false`;
 * - `snakemq-all` (only with `--impl`): acknowledgements on, but every
 *   message of a round sent in one synchronous loop instead of in chunks.
 *
 * Per size: every pair of processes starts, each runs one warm-up round
 * (not reported), then measured rounds alternating between the
 * implementations (5, or 3 when the size has already taken 30 s). A round
 * is timed from the sender's first `send` to the receiver's receipt of the
 * last message (one machine-wide monotonic clock). The reported figure is the best round (this 2-core machine is
 * shared, and other load only ever slows a round down); the median and
 * every round are in the line too, and the ratio line has both.
 *
 * Each process also reports the CPU time it used per round. Divided by the
 * message count that gives `cpu_us_per_msg` for each side (median over the
 * rounds), and `cpu_bound_msgs_per_s` = 1e6 / the larger of the two: the
 * rate the pair would reach with a core each and no waiting. Other load on
 * the machine barely changes it, so `ratio_cpu` (snakemq's bound / the
 * baseline's) is the steadiest comparison on a shared machine.
 *
 * Options:
 *   --sizes=100B,1MiB       which sizes (default both)
 *   --impl=raw-net,snakemq  which implementations (default raw-net,snakemq,snakemq-bytes,snakemq-noack;
 *                           also snakemq-all)
 *   --rounds=5              measured rounds per implementation (at most)
 *   --min-rounds=3          ... but after this many, stop once a size has
 *   --budget=30             ... taken this many seconds (keeps `npm run bench` short)
 *   --msgs-100B=5000000     messages per round of 100 bytes
 *   --msgs-1MiB=2048        messages per round of 1 MiB
 *   --prof=DIR              run the peers with --cpu-prof into DIR
 *   --help                  this list
 * Environment: BENCH_NODE_FLAGS="--trace-gc ..." adds node flags to every peer.
 * @module
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs, helpAndExit, type ChildReport, type ParentCommand } from './lib/ipc.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');

const args = benchArgs();
const opt = (name: string, def: string): string => args.get(name) ?? def;
helpAndExit(import.meta.url, args);

/** Measured rounds per implementation: up to ROUNDS, fewer (but MIN_ROUNDS at least) once a size has taken BUDGET_MS. */
const ROUNDS = Number(opt('rounds', '5'));
const MIN_ROUNDS = Math.min(ROUNDS, Number(opt('min-rounds', '3')));
const BUDGET_MS = Number(opt('budget', '30')) * 1000;
const ROUND_TIMEOUT_MS = 120_000;
const PROF_DIR = args.has('prof') ? resolve(opt('prof', 'prof')) : null;

interface Size {
  bench: string;
  label: string;
  size: number;
  n: number;
  /** Ratio of snakemq to raw-net the issue asks for. */
  target: number;
  /** Implementations measured at this size (default: those of --impl). */
  impls?: string[];
}
const ALL_SIZES: Size[] = [
  { bench: 'messaging-100B', label: '100B', size: 100, n: Number(opt('msgs-100B', '5000000')), target: 0.5 },
  { bench: 'messaging-1MiB', label: '1MiB', size: 1024 * 1024, n: Number(opt('msgs-1MiB', '2048')), target: 0.9 },
  // Persistent messages with SQLite storage (durability 'process') and acknowledgements, end to end:
  // the round ends when the last message is both committed and acknowledged. The target is absolute: >= 50,000 msgs/s.
  {
    bench: 'messaging-100B-persistent',
    label: '100B-persistent',
    size: 100,
    n: Number(opt('msgs-persistent', '200000')),
    target: 0,
    impls: ['raw-net', 'snakemq-persistent'],
  },
];
const sizes = ALL_SIZES.filter((s) => opt('sizes', '100B,1MiB,100B-persistent').split(',').includes(s.label));

interface Impl {
  name: string;
  script: string;
  receiverArgs: string[];
  senderArgs: (url: string) => string[];
}
const IMPLS: Record<string, Impl> = {
  'raw-net': {
    name: 'raw-net',
    script: 'raw-peer.ts',
    receiverArgs: ['receiver'],
    senderArgs: (url) => ['sender', url],
  },
  snakemq: {
    name: 'snakemq',
    script: 'snakemq-peer.ts',
    receiverArgs: ['receiver', 'ack'],
    senderArgs: (url) => ['sender', url, 'ack', 'chunked'],
  },
  'snakemq-bytes': {
    name: 'snakemq-bytes',
    script: 'snakemq-peer.ts',
    receiverArgs: ['receiver', 'ack'],
    senderArgs: (url) => ['sender', url, 'ack', 'bytes'],
  },
  'snakemq-noack': {
    name: 'snakemq-noack',
    script: 'snakemq-peer.ts',
    receiverArgs: ['receiver', 'noack'],
    senderArgs: (url) => ['sender', url, 'noack', 'chunked'],
  },
  'snakemq-persistent': {
    name: 'snakemq-persistent',
    script: 'snakemq-peer.ts',
    receiverArgs: ['receiver', 'ack'],
    senderArgs: (url) => ['sender', url, 'ack', 'chunked', 'persistent'],
  },
  'snakemq-all': {
    name: 'snakemq-all',
    script: 'snakemq-peer.ts',
    receiverArgs: ['receiver', 'ack'],
    senderArgs: (url) => ['sender', url, 'ack', 'all'],
  },
};
const impls = opt('impl', 'raw-net,snakemq,snakemq-bytes,snakemq-noack')
  .split(',')
  .map((name) => {
    const impl = IMPLS[name];
    if (impl === undefined) throw new Error(`unknown --impl ${name}; known: ${Object.keys(IMPLS).join(', ')}`);
    return impl;
  });

/** The snakemq peers' diagnostic settings (bench/lib/snakemq-peer.ts), recorded in the result lines when set. */
const overrides = Object.fromEntries(Object.entries(process.env).filter(([k]) => /^BENCH_(DEDUP_WINDOW|QUEUE_BOUND_BYTES|CHUNK_MESSAGES)$/.test(k)));

function emit(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

/** A forked peer process and its stream of reports. */
class Peer {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  private readonly inbox: ChildReport[] = [];
  private readonly waiters: { type: string; resolve: (r: ChildReport) => void; reject: (e: Error) => void }[] = [];
  private failure: Error | null = null;

  constructor(
    readonly label: string,
    script: string,
    argv: string[],
  ) {
    const execArgv = ['--import', 'tsx', ...(process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean)];
    if (PROF_DIR !== null) {
      // One folder per process: with tsx, the module-loader worker thread writes a profile too (the smaller file).
      const dir = join(PROF_DIR, label);
      mkdirSync(dir, { recursive: true });
      execArgv.push('--cpu-prof', `--cpu-prof-dir=${dir}`);
    }
    this.child = fork(join(here, 'lib', script), argv, {
      cwd: root,
      execArgv,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child.on('message', (msg: ChildReport) => {
      if (msg.t === 'error') return this.fail(new Error(`${label}: ${msg.message}`));
      const i = this.waiters.findIndex((w) => w.type === msg.t);
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(msg);
      else this.inbox.push(msg);
    });
    this.exited = new Promise((res) => {
      this.child.on('exit', (code) => {
        this.fail(new Error(`${label} exited (code ${code})`));
        res(code);
      });
    });
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const w of this.waiters.splice(0)) w.reject(error);
  }

  /** The next report of this type (one already received counts). */
  next<T extends ChildReport['t']>(type: T, timeoutMs = ROUND_TIMEOUT_MS): Promise<Extract<ChildReport, { t: T }>> {
    const i = this.inbox.findIndex((m) => m.t === type);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0] as Extract<ChildReport, { t: T }>);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`${this.label}: no '${type}' within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        type,
        resolve: (r) => {
          clearTimeout(timer);
          res(r as Extract<ChildReport, { t: T }>);
        },
        reject: (e) => {
          clearTimeout(timer);
          rej(e);
        },
      });
    });
  }

  command(cmd: ParentCommand): void {
    if (this.child.connected) this.child.send(cmd);
  }

  /** Asks the child to exit; kills it if it has not within `ms`. */
  async stop(ms = 5000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.command({ t: 'exit' });
    const timer = setTimeout(() => this.child.kill('SIGKILL'), ms);
    await this.exited;
    clearTimeout(timer);
  }
}

interface RoundResult {
  secs: number;
  /** Sender's first send to its queue being empty again (acknowledged / written). */
  senderSecs: number;
  /** CPU time (user + system) of each process during the round, in ms. */
  senderCpuMs: number;
  receiverCpuMs: number;
}

async function runRound(rx: Peer, tx: Peer, n: number, size: number): Promise<RoundResult> {
  rx.command({ t: 'expect', n, size });
  await rx.next('armed');
  const done = rx.next('done');
  tx.command({ t: 'send', n, size });
  const [d, f] = await Promise.all([done, tx.next('finished')]);
  if (d.count !== n || d.bytes !== n * size) throw new Error(`receiver got ${d.count} messages / ${d.bytes} bytes, expected ${n} / ${n * size}`);
  return { secs: (d.t1 - f.t0) / 1000, senderSecs: (f.tDrained - f.t0) / 1000, senderCpuMs: f.cpuMs, receiverCpuMs: d.cpuMs };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const round3 = (x: number): number => Math.round(x * 1000) / 1000;

interface Pair {
  impl: Impl;
  rx: Peer;
  tx: Peer | null;
  rounds: RoundResult[];
  error: string | null;
}

async function startPair(impl: Impl, sz: Size): Promise<Pair> {
  const tag = `${impl.name}-${sz.label}`;
  const pair: Pair = { impl, rx: new Peer(`${tag}-receiver`, impl.script, impl.receiverArgs), tx: null, rounds: [], error: null };
  try {
    const { url } = await pair.rx.next('listening', 30_000);
    pair.tx = new Peer(`${tag}-sender`, impl.script, impl.senderArgs(url));
    await Promise.all([pair.rx.next('connected', 30_000), pair.tx.next('connected', 30_000)]);
  } catch (error) {
    pair.error = error instanceof Error ? error.message : String(error);
  }
  return pair;
}

async function round(pair: Pair, n: number, size: number, record: boolean): Promise<void> {
  if (pair.error !== null) return;
  try {
    const r = await runRound(pair.rx, pair.tx!, n, size);
    if (record) pair.rounds.push(r);
  } catch (error) {
    pair.error = error instanceof Error ? error.message : String(error);
  }
}

/**
 * Runs every implementation at one size. The pairs of processes all start
 * first; then rounds alternate between implementations (raw, snakemq, …,
 * raw, snakemq, …) so that a burst of load from elsewhere on the machine
 * hits all of them alike.
 */
async function measureSize(sz: Size): Promise<void> {
  const pairs: Pair[] = [];
  const chosen = sz.impls ? sz.impls.map((name) => IMPLS[name]!) : impls;
  for (const impl of chosen) pairs.push(await startPair(impl, sz));
  try {
    // Warm-up: lets the JIT settle and the connection's buffers grow.
    for (const pair of pairs) await round(pair, Math.max(1, Math.round(sz.n / 5)), sz.size, false);
    const started = performance.now();
    for (let r = 0; r < ROUNDS; r++) {
      if (r >= MIN_ROUNDS && performance.now() - started > BUDGET_MS) break;
      for (const pair of pairs) await round(pair, sz.n, sz.size, true);
    }
  } finally {
    await Promise.all(pairs.flatMap((p) => [p.tx?.stop(), p.rx.stop()]));
  }
  const rates = new Map<string, { median: number; best: number; cpuBound: number }>();
  for (const { impl, rounds, error } of pairs) {
    if (error !== null) {
      emit({ bench: sz.bench, impl: impl.name, error });
      process.exitCode = 1;
      continue;
    }
    const runs = rounds.map((r) => sz.n / r.secs);
    const best = Math.max(...runs);
    const med = median(runs);
    // CPU cost per message of each side (median over the rounds): unlike the
    // wall-clock rate, hardly affected by other load on the machine.
    const senderUs = median(rounds.map((r) => (r.senderCpuMs * 1000) / sz.n));
    const receiverUs = median(rounds.map((r) => (r.receiverCpuMs * 1000) / sz.n));
    const cpuBound = 1e6 / Math.max(senderUs, receiverUs);
    rates.set(impl.name, { median: med, best, cpuBound });
    const line: Record<string, unknown> = {
      bench: sz.bench,
      impl: impl.name,
      msgs: sz.n,
      bytes_per_msg: sz.size,
      secs: round3(sz.n / best),
      msgs_per_s: Math.round(best),
    };
    if (sz.size >= 1024 * 1024) line.mb_per_s = Math.round((best * sz.size) / 1e6);
    line.stat = `best of ${rounds.length}`;
    line.median_msgs_per_s = Math.round(med);
    line.runs_msgs_per_s = runs.map((x) => Math.round(x));
    line.sender_secs = rounds.map((r) => round3(r.senderSecs));
    line.cpu_us_per_msg = { sender: round3(senderUs), receiver: round3(receiverUs) };
    line.cpu_bound_msgs_per_s = Math.round(cpuBound);
    if (Object.keys(overrides).length > 0) line.overrides = overrides;
    emit(line);
  }
  const base = rates.get('raw-net');
  if (base === undefined) return;
  for (const [name, rate] of rates) {
    if (name === 'raw-net') continue;
    const ratio = Math.round((rate.best / base.best) * 100) / 100;
    emit({
      bench: sz.bench,
      impl: name,
      baseline: 'raw-net',
      ratio,
      ratio_median: Math.round((rate.median / base.median) * 100) / 100,
      ratio_cpu: Math.round((rate.cpuBound / base.cpuBound) * 100) / 100,
      target: sz.target,
      meets_target: ratio >= sz.target,
    });
  }
}

emit({ bench: 'messaging-env', node: process.version, cpus: cpus().length, loadavg: loadavg().map((x) => +x.toFixed(2)) });
for (const sz of sizes) await measureSize(sz);
