/**
 * Publish/subscribe fan-out benchmark: `npx tsx bench/pubsub.ts [options]`
 * (or `npm run bench -- pubsub`). Prints one JSON line per result (see
 * docs/benchmarks.md, "Publish/subscribe").
 *
 * One publisher process and `--subs` subscribers spread over at most
 * `--procs` subscriber processes (one subscriber per process by default, up
 * to 100), all on TCP loopback, processes of bench/pubsub-peer.ts. Every
 * process hosts the three implementations at once, so they share the
 * processes and the topology; only the one measured is busy:
 *
 * - `raw`: a `net` fan-out with 4-byte length framing (the baseline): the
 *   publisher copies each 100-byte frame into every socket's write batch;
 *   the subscribers parse and count frames;
 * - `zeromq`: zeromq.js PUB/SUB, topic frame `/bench/x` + 100-byte frame,
 *   each SUB subscribed to `/bench`; high-water marks `--zmq-hwm` both sides;
 * - `zeromq-nodrop`: the same with an XPUB socket and ZMQ_XPUB_NODROP, so
 *   that the publisher waits at the high-water mark instead of dropping
 *   (lossless, as the snakemq and raw publishers pace themselves to be);
 * - `snakemq`: snakemq-ts Publisher on a Peer, one Peer (own identity, own
 *   Link and Messaging, defaults: acknowledgements on) and Subscriber
 *   (topic `/bench`) per subscriber; `publish('/bench/x', 'info', data)`.
 *
 * Each round publishes the same `msgs` 100-byte messages with each
 * implementation, paced every `--batch` messages (see bench/pubsub-peer.ts);
 * rounds alternate between the implementations (one warm-up round each,
 * not reported, then `--rounds`). A round is timed from the first publish
 * to the last delivery in any subscriber (one machine-wide monotonic
 * clock); `deliveries_per_s` is the number of messages received, summed
 * over the subscribers, divided by that. A subscriber process that has not
 * received everything once it got nothing more for `--settle` ms after the
 * publisher finished reports what it has: messages lost
 * (zeromq's PUB drops at its high-water mark without telling) show in
 * `lost`. For snakemq `dropped` counts the copies the Publisher dropped
 * (its subscribers' `dropped` counters; `slow_events`: `slowSubscriber`
 * events). The reported figure is the best round; the median and every
 * round are in the line too.
 *
 * Options:
 *   --subs=1,10,100        subscriber counts, one run each
 *   --procs=100            most subscriber processes (subscribers are spread evenly over them)
 *   --impl=raw,zeromq,zeromq-nodrop,snakemq  implementations
 *   --deliveries=1000000   messages per round = this / subscribers (at least --min-msgs)
 *   --min-msgs=10000
 *   --rounds=3             measured rounds per implementation
 *   --batch=1000           publisher pacing: messages between waits
 *   --zmq-hwm=5120         zeromq send/receive high-water marks (snakemq: 4,096 in the
 *                          messaging queue + 1,024 held by the Publisher)
 *   --settle=500           a subscriber process not done that received nothing for this
 *                          many ms after the publisher finished reports what it has
 *   --prof=DIR             run the publisher and the first subscriber process with
 *                          --cpu-prof into DIR/<bench>-pub and DIR/<bench>-sub0
 *   --help                 this list
 * Environment: BENCH_PUBSUB_ACK=0 turns acknowledgements off in every snakemq-ts peer
 * (diagnostics; recorded in the env line).
 * @module
 */
import { cpus, loadavg, totalmem } from 'node:os';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { benchArgs, helpAndExit } from './lib/ipc.js';
import { Child, guard, sleep } from './lib/proc.js';

const args = benchArgs();
helpAndExit(import.meta.url, args);
const opt = (name: string, def: string): string => args.get(name) ?? def;
const num = (name: string, def: number): number => {
  const v = Number(opt(name, String(def)));
  if (!Number.isSafeInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer`);
  return v;
};
const SUBS = opt('subs', '1,10,100')
  .split(',')
  .map((s) => {
    const n = Number(s);
    if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--subs: ${s} is not a positive integer`);
    return n;
  });
const MAX_PROCS = num('procs', 100);
const IMPLS = opt('impl', 'raw,zeromq,zeromq-nodrop,snakemq').split(',');
for (const i of IMPLS) if (!['raw', 'zeromq', 'zeromq-nodrop', 'snakemq'].includes(i)) throw new Error(`unknown --impl ${i}`);
const DELIVERIES = num('deliveries', 1_000_000);
const MIN_MSGS = num('min-msgs', 10_000);
const ROUNDS = num('rounds', 3);
const BATCH = num('batch', 1000);
const ZMQ_HWM = num('zmq-hwm', 5120);
const SETTLE_MS = num('settle', 500);
const PEER = '../pubsub-peer.ts';
const PROF_DIR = args.has('prof') ? resolve(opt('prof', 'prof')) : null;
/** Node flags of a child: a CPU profile into PROF_DIR/label with --prof. */
function profFlags(label: string): string[] {
  if (PROF_DIR === null) return [];
  const dir = join(PROF_DIR, label);
  mkdirSync(dir, { recursive: true });
  return ['--cpu-prof', `--cpu-prof-dir=${dir}`];
}
const TARGET_VS_RAW = 0.5;
const TARGET_VS_ZEROMQ = 1;

function emit(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const r3 = (x: number): number => Math.round(x * 1000) / 1000;
const r2 = (x: number): number => Math.round(x * 100) / 100;

interface Round {
  delivered: number;
  expected: number;
  minPerSub: number;
  secs: number;
  publishSecs: number;
  rate: number;
  pubCpuMs: number;
  subCpuMs: number;
  dropped: number;
  slowEvents: number;
  drainWaits: number;
  stragglers: number;
}

let roundId = 0;

async function runRound(pub: Child, subs: Child[], perProc: number[], impl: string, n: number): Promise<Round> {
  const round = ++roundId;
  await Promise.all(subs.map((s) => guard(s.ask({ t: 'expect', impl, n, round }, 'armed', 30_000), pub, ...subs)));
  const dones = subs.map((s) => s.next(`done:${round}`, 600_000));
  const fin = await guard(pub.ask({ t: 'publish', impl, n, batch: BATCH }, 'finished', 600_000), pub, ...subs);
  const tEnd = Number(fin.tEnd);
  const t0 = Number(fin.t0);
  let stragglers = 0;
  const summaries = await Promise.all(
    subs.map(async (s, k) => {
      // Done, or else what it has once it received nothing more for SETTLE_MS.
      let got = await Promise.race([dones[k]!, sleep(SETTLE_MS).then(() => null)]);
      if (got !== null) return got;
      stragglers++;
      let last = -1;
      for (;;) {
        const c = await guard(s.ask({ t: 'collect', impl }, `collected:${round}`, 30_000), pub, ...subs);
        if (Number(c.count) === last) return c;
        last = Number(c.count);
        got = await Promise.race([dones[k]!, sleep(SETTLE_MS).then(() => null)]);
        if (got !== null) return got;
      }
    }),
  );
  const delivered = summaries.reduce((a, m) => a + Number(m.count), 0);
  const tLast = Math.max(...summaries.map((m) => Number(m.tLast)));
  const secs = (tLast - t0) / 1000;
  return {
    delivered,
    expected: n * perProc.reduce((a, b) => a + b, 0),
    minPerSub: Math.min(...summaries.map((m) => Number(m.min))),
    secs,
    publishSecs: (tEnd - t0) / 1000,
    rate: delivered / secs,
    pubCpuMs: Number(fin.cpuMs),
    subCpuMs: summaries.reduce((a, m) => a + Number(m.cpuMs), 0),
    dropped: Number(fin.dropped ?? 0),
    slowEvents: Number(fin.slowEvents ?? 0),
    drainWaits: Number(fin.drainWaits ?? 0),
    stragglers,
  };
}

async function measure(subCount: number): Promise<void> {
  const procs = Math.min(subCount, MAX_PROCS);
  const perProc = Array.from({ length: procs }, (_, k) => Math.floor(subCount / procs) + (k < subCount % procs ? 1 : 0));
  const n = Math.max(MIN_MSGS, Math.round(DELIVERIES / subCount));
  const bench = `pubsub-fanout-${subCount}`;
  const started = performance.now();
  const pub = new Child(`${bench}-pub`, PEER, ['pub', String(ZMQ_HWM)], profFlags(`${bench}-pub`));
  const subs: Child[] = [];
  try {
    const urls = await guard(pub.next('listening', 60_000), pub);
    let first = 0;
    for (let k = 0; k < procs; k++) {
      subs.push(
        new Child(
          `${bench}-sub${k}`,
          PEER,
          ['sub', String(urls.snakemq), String(urls.zeromq), String(urls.zeromqNodrop), String(urls.raw), String(first), String(perProc[k]), String(ZMQ_HWM)],
          k === 0 ? profFlags(`${bench}-sub0`) : [],
        ),
      );
      first += perProc[k]!;
    }
    await Promise.all(subs.map((s) => guard(s.next('ready', 300_000), pub, ...subs)));
    // zeromq's slow joiner: probe until every SUB got a message.
    await guard(pub.ask({ t: 'probe', on: true }, 'probed', 10_000), pub);
    await Promise.all(subs.map((s) => guard(s.ask({ t: 'zjoined' }, 'zjoined', 60_000), pub, ...subs)));
    await guard(pub.ask({ t: 'probe', on: false }, 'probed', 10_000), pub);
    await sleep(300);
    const counts = await guard(pub.ask({ t: 'count' }, 'count', 10_000), pub);
    if (counts.snakemq !== subCount || counts.raw !== subCount) throw new Error(`publisher sees ${JSON.stringify(counts)}, expected ${subCount}`);
    const setupSecs = (performance.now() - started) / 1000;
    process.stderr.write(`[pubsub] ${subCount} subscribers in ${procs} processes ready in ${setupSecs.toFixed(1)} s\n`);

    const rounds = new Map<string, Round[]>(IMPLS.map((i) => [i, []]));
    for (const impl of IMPLS) await runRound(pub, subs, perProc, impl, Math.max(1000, Math.round(n / 5)));
    for (let r = 0; r < ROUNDS; r++) {
      for (const impl of IMPLS) {
        const res = await runRound(pub, subs, perProc, impl, n);
        rounds.get(impl)!.push(res);
        process.stderr.write(
          `[pubsub] ${subCount} subs ${impl} round ${r + 1}: ${Math.round(res.rate)} deliveries/s, ${res.delivered}/${res.expected} delivered, ${res.secs.toFixed(2)} s\n`,
        );
      }
    }

    const best = new Map<string, { best: number; median: number }>();
    for (const impl of IMPLS) {
      const rs = rounds.get(impl)!;
      const b = rs.reduce((x, y) => (y.rate > x.rate ? y : x));
      const med = median(rs.map((x) => x.rate));
      best.set(impl, { best: b.rate, median: med });
      const deliveries = rs.map((x) => x.delivered);
      const line: Record<string, unknown> = {
        bench,
        impl,
        subscribers: subCount,
        sub_procs: procs,
        msgs: n,
        bytes_per_msg: 100,
        deliveries_expected: b.expected,
        delivered: b.delivered,
        lost: b.expected - b.delivered,
        min_per_subscriber: b.minPerSub,
        secs: r3(b.secs),
        deliveries_per_s: Math.round(b.rate),
        published_per_s: Math.round(n / b.secs),
        stat: `best of ${rs.length}`,
        median_deliveries_per_s: Math.round(med),
        runs_deliveries_per_s: rs.map((x) => Math.round(x.rate)),
        runs_delivered: deliveries,
        publish_secs: rs.map((x) => r3(x.publishSecs)),
        cpu_us_per_delivery: {
          publisher: r3(median(rs.map((x) => (x.pubCpuMs * 1000) / x.delivered))),
          subscribers: r3(median(rs.map((x) => (x.subCpuMs * 1000) / x.delivered))),
        },
      };
      if (impl === 'snakemq') {
        line.dropped = rs.map((x) => x.dropped);
        line.slow_events = rs.map((x) => x.slowEvents);
      }
      if (impl !== 'zeromq') line.drain_waits = rs.map((x) => x.drainWaits);
      line.straggler_procs = rs.map((x) => x.stragglers);
      emit(line);
    }
    const s = best.get('snakemq');
    for (const [base, target] of [
      ['raw', TARGET_VS_RAW],
      ['zeromq', TARGET_VS_ZEROMQ],
      ['zeromq-nodrop', TARGET_VS_ZEROMQ],
    ] as const) {
      const b = best.get(base);
      if (s === undefined || b === undefined) continue;
      const ratio = r2(s.best / b.best);
      emit({
        bench,
        impl: 'snakemq',
        baseline: base,
        ratio,
        ratio_median: r2(s.median / b.median),
        target,
        meets_target: base === 'raw' ? ratio >= target : ratio > target,
      });
    }
    const raw = best.get('raw');
    for (const zimpl of ['zeromq', 'zeromq-nodrop']) {
      const z = best.get(zimpl);
      if (z !== undefined && raw !== undefined)
        emit({ bench, impl: zimpl, baseline: 'raw', ratio: r2(z.best / raw.best), ratio_median: r2(z.median / raw.median) });
    }
  } catch (error) {
    emit({ bench, error: error instanceof Error ? error.message : String(error) });
    process.exitCode = 1;
  } finally {
    await Promise.all([pub, ...subs].map((c) => c.stop()));
  }
}

const zeromqVersion = (createRequire(import.meta.url)('zeromq/package.json') as { version: string }).version;
emit({
  bench: 'pubsub-env',
  node: process.version,
  zeromq: zeromqVersion,
  cpus: cpus().length,
  mem_gb: Math.round(totalmem() / 1e9),
  loadavg: loadavg().map((x) => +x.toFixed(2)),
  batch: BATCH,
  zmq_hwm: ZMQ_HWM,
  ...(process.env.BENCH_PUBSUB_ACK !== undefined ? { BENCH_PUBSUB_ACK: process.env.BENCH_PUBSUB_ACK } : {}),
});
for (const s of SUBS) await measure(s);
process.exit(process.exitCode ?? 0);
