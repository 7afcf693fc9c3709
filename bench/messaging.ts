/**
 * Messaging throughput benchmark: `npx tsx bench/messaging.ts [options]`.
 * Prints one JSON line per result (see docs/benchmarks.md).
 *
 * Each implementation runs in two fresh child processes on loopback, a
 * receiver and a sender, driven over IPC by this process:
 *
 * - `raw-net`: a plain `net` socket with the packeter's framing, batched
 *   writes and an incremental parser (bench/lib/raw-peer.ts): the baseline;
 * - `snakemq`: Link + Packeter + Messaging with acknowledgements (the default);
 * - `snakemq-noack`: the same with `acknowledgements: false`;
 * - `snakemq-all` (only with `--impl`): acknowledgements on, but every
 *   message of a round sent in one synchronous loop instead of in chunks.
 *
 * Per implementation and size: one warm-up round (not reported), then
 * `--rounds` measured rounds. A round is timed from the sender's first
 * `send` to the receiver's receipt of the last message (one machine-wide
 * monotonic clock). The reported figure is the median round; the best one
 * and every round are in the line too.
 *
 * Options:
 *   --sizes=100B,1MiB       which sizes (default both)
 *   --impl=raw-net,snakemq  which implementations (default raw-net,snakemq,snakemq-noack)
 *   --rounds=3              measured rounds per implementation
 *   --msgs-100B=1000000     messages per round of 100 bytes
 *   --msgs-1MiB=1024        messages per round of 1 MiB
 *   --prof=DIR              run the peers with --cpu-prof into DIR
 * @module
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildReport, ParentCommand } from './lib/ipc.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');

const args = new Map<string, string>();
for (const a of process.argv.slice(2)) {
  const m = /^--([^=]+)(?:=(.*))?$/.exec(a);
  if (m) args.set(m[1]!, m[2] ?? 'true');
}
const opt = (name: string, def: string): string => args.get(name) ?? def;

const ROUNDS = Number(opt('rounds', '3'));
const ROUND_TIMEOUT_MS = 120_000;
const PROF_DIR = args.has('prof') ? resolve(opt('prof', 'prof')) : null;

interface Size {
  bench: string;
  label: string;
  size: number;
  n: number;
  /** Ratio of snakemq to raw-net the issue asks for. */
  target: number;
}
const ALL_SIZES: Size[] = [
  { bench: 'messaging-100B', label: '100B', size: 100, n: Number(opt('msgs-100B', '1000000')), target: 0.5 },
  { bench: 'messaging-1MiB', label: '1MiB', size: 1024 * 1024, n: Number(opt('msgs-1MiB', '1024')), target: 0.9 },
];
const sizes = ALL_SIZES.filter((s) => opt('sizes', '100B,1MiB').split(',').includes(s.label));

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
  'snakemq-noack': {
    name: 'snakemq-noack',
    script: 'snakemq-peer.ts',
    receiverArgs: ['receiver', 'noack'],
    senderArgs: (url) => ['sender', url, 'noack', 'chunked'],
  },
  'snakemq-all': {
    name: 'snakemq-all',
    script: 'snakemq-peer.ts',
    receiverArgs: ['receiver', 'ack'],
    senderArgs: (url) => ['sender', url, 'ack', 'all'],
  },
};
const impls = opt('impl', 'raw-net,snakemq,snakemq-noack')
  .split(',')
  .map((name) => {
    const impl = IMPLS[name];
    if (impl === undefined) throw new Error(`unknown --impl ${name}; known: ${Object.keys(IMPLS).join(', ')}`);
    return impl;
  });

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
    const execArgv = ['--import', 'tsx'];
    if (PROF_DIR !== null) {
      mkdirSync(PROF_DIR, { recursive: true });
      execArgv.push('--cpu-prof', `--cpu-prof-dir=${PROF_DIR}`, `--cpu-prof-name=${label}-${Date.now()}.cpuprofile`);
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
}

async function runRound(rx: Peer, tx: Peer, n: number, size: number): Promise<RoundResult> {
  rx.command({ t: 'expect', n, size });
  await rx.next('armed');
  const done = rx.next('done');
  tx.command({ t: 'send', n, size });
  const [d, f] = await Promise.all([done, tx.next('finished')]);
  if (d.count !== n || d.bytes !== n * size) throw new Error(`receiver got ${d.count} messages / ${d.bytes} bytes, expected ${n} / ${n * size}`);
  return { secs: (d.t1 - f.t0) / 1000, senderSecs: (f.tDrained - f.t0) / 1000 };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const round3 = (x: number): number => Math.round(x * 1000) / 1000;

/** Runs one implementation at one size; returns the median rate in messages/s. */
async function measure(impl: Impl, sz: Size): Promise<number | null> {
  const tag = `${impl.name}-${sz.label}`;
  const rx = new Peer(`${tag}-receiver`, impl.script, impl.receiverArgs);
  let tx: Peer | null = null;
  try {
    const { url } = await rx.next('listening', 30_000);
    tx = new Peer(`${tag}-sender`, impl.script, impl.senderArgs(url));
    await Promise.all([rx.next('connected', 30_000), tx.next('connected', 30_000)]);
    // Warm-up: lets the JIT settle and the connection's buffers grow.
    await runRound(rx, tx, Math.max(1, Math.round(sz.n / 5)), sz.size);
    const rounds: RoundResult[] = [];
    for (let r = 0; r < ROUNDS; r++) rounds.push(await runRound(rx, tx, sz.n, sz.size));
    const rates = rounds.map((r) => sz.n / r.secs);
    const rate = median(rates);
    const line: Record<string, unknown> = {
      bench: sz.bench,
      impl: impl.name,
      msgs: sz.n,
      bytes_per_msg: sz.size,
      secs: round3(sz.n / rate),
      msgs_per_s: Math.round(rate),
    };
    if (sz.size >= 1024 * 1024) line.mb_per_s = Math.round((rate * sz.size) / 1e6);
    line.stat = `median of ${ROUNDS}`;
    line.best_msgs_per_s = Math.round(Math.max(...rates));
    line.runs_msgs_per_s = rates.map((x) => Math.round(x));
    line.sender_secs = rounds.map((r) => round3(r.senderSecs));
    emit(line);
    return rate;
  } catch (error) {
    emit({ bench: sz.bench, impl: impl.name, error: error instanceof Error ? error.message : String(error) });
    process.exitCode = 1;
    return null;
  } finally {
    await Promise.all([tx?.stop(), rx.stop()]);
  }
}

for (const sz of sizes) {
  const rates = new Map<string, number>();
  for (const impl of impls) {
    const rate = await measure(impl, sz);
    if (rate !== null) rates.set(impl.name, rate);
  }
  const base = rates.get('raw-net');
  if (base === undefined) continue;
  for (const [name, rate] of rates) {
    if (name === 'raw-net') continue;
    const ratio = Math.round((rate / base) * 100) / 100;
    emit({ bench: sz.bench, impl: name, baseline: 'raw-net', ratio, target: sz.target, meets_target: ratio >= sz.target });
  }
}
