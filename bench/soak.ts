/**
 * Soak: `npm run soak [-- options]` (not part of `npm test` nor of
 * `npm run bench`). Prints JSON lines (docs/benchmarks.md, "Memory and
 * soak"); exits non-zero when a phase fails.
 *
 * Phase `fuzz` (60 s): one listener process (bench/lib/soak-listener.ts:
 * Link + Packeter + Messaging, the defaults) under connection churn and
 * broken input from a child process (bench/lib/soak-fuzzer.ts: random
 * bytes, truncated and oversized lengths, mutated valid frames, connect /
 * disconnect storms, trickling and idle connections, fresh identities),
 * bounded in time and in connections (`--max-connections`), loopback only.
 * Every `--sample-secs` the listener's memory is read after a full
 * collection, then a legitimate peer (a fresh Link + Messaging in this
 * process, identity `probe-<k>`) connects, sends `echo:<k>` and must get it
 * back within 20 s. A last probe runs once the fuzzer finished.
 *
 * Phase `exchange` (120 s): two peer processes (bench/lib/soak-peer.ts,
 * full stack, acknowledgements on) send to each other at full speed both
 * ways (100-byte messages, some of 16 KiB and 1 MiB); every `--sample-secs`
 * both are read after a full collection. At the end both stop and wait
 * until everything they sent was acknowledged; each must have received
 * exactly what the other sent, in order.
 *
 * Memory bound, per process: the largest RSS read during the warm-up (the
 * first quarter of the phase, but at least min(15 s, half the phase), and at
 * least one reading) + `--bound-mb` (64 MB).
 * A phase fails when a later reading is above it, when a process exits or
 * stops answering (30 s per reading), when a probe fails, or (exchange)
 * when counts or order do not match. The slope of RSS over the second half
 * (least squares, MB/min) is reported too, for information.
 *
 * Options:
 *   --seconds=N          both phases last N s (quick check: --seconds=10)
 *   --fuzz-seconds=60    phase fuzz
 *   --exchange-seconds=120  phase exchange
 *   --phase=fuzz,exchange   which phases
 *   --bound-mb=64        allowed RSS growth after the warm-up
 *   --sample-secs=5      reading interval
 *   --concurrency=128    fuzzer connections at a time
 *   --max-connections=400000  fuzzer connections in all
 *   --seed=1             the fuzzer's random seed
 *   --help               this list
 * @module
 */
import { cpus, loadavg } from 'node:os';
import { Link, Message, Messaging, Packeter } from '../lib/index.js';
import { helpAndExit } from './lib/ipc.js';
import { Child, cliArgs, emit, guard, mb, numArg, sleep, type MemReading, type Msg } from './lib/proc.js';

const args = cliArgs();
helpAndExit(import.meta.url, args);
const seconds = args.has('seconds') ? numArg(args, 'seconds', 60, 1, 3600) : null;
const FUZZ_SECS = seconds ?? numArg(args, 'fuzz-seconds', 60, 1, 3600);
const EXCHANGE_SECS = seconds ?? numArg(args, 'exchange-seconds', 120, 1, 3600);
const BOUND_MB = numArg(args, 'bound-mb', 64, 1, 100_000);
const SAMPLE_MS = numArg(args, 'sample-secs', 5, 1, 600) * 1000;
const CONCURRENCY = numArg(args, 'concurrency', 128, 1, 2000);
const MAX_CONNECTIONS = numArg(args, 'max-connections', 400_000, 1, 10_000_000);
const SEED = numArg(args, 'seed', 1, 1, 0xffffffff);
const PHASES = (args.get('phase') ?? 'fuzz,exchange').split(',');
for (const p of PHASES) if (p !== 'fuzz' && p !== 'exchange') throw new Error(`--phase: unknown ${p} (fuzz, exchange)`);
const READ_TIMEOUT_MS = 30_000;
const PROBE_TIMEOUT_MS = 20_000;

const round1 = (x: number): number => Math.round(x * 10) / 10;

interface Reading {
  t: number;
  rss: number;
}

/** The memory bound of one process (see the header): pass/fail and the figures. */
function judge(readings: Reading[], durationS: number): { ok: boolean; figures: Record<string, unknown> } {
  const warmEnd = Math.max(durationS / 4, Math.min(15, durationS / 2));
  // Half a second of slack: a reading due at the end of the warm-up counts in it.
  const warm = readings.filter((r, i) => i === 0 || r.t <= warmEnd + 0.5);
  const later = readings.slice(warm.length);
  const base = Math.max(...warm.map((r) => r.rss));
  const limit = base + BOUND_MB * 1e6;
  const peak = later.length > 0 ? Math.max(...later.map((r) => r.rss)) : null;
  const half = readings.filter((r) => r.t >= durationS / 2);
  let slope: number | null = null;
  if (half.length >= 2) {
    const mt = half.reduce((s, r) => s + r.t, 0) / half.length;
    const mr = half.reduce((s, r) => s + r.rss, 0) / half.length;
    const num = half.reduce((s, r) => s + (r.t - mt) * (r.rss - mr), 0);
    const den = half.reduce((s, r) => s + (r.t - mt) ** 2, 0);
    slope = den > 0 ? (num / den) * 60 : null;
  }
  return {
    ok: peak === null || peak <= limit,
    figures: {
      warmup_secs: round1(warmEnd),
      warmup_rss_max_mb: mb(base),
      limit_mb: mb(limit),
      rss_max_after_warmup_mb: peak === null ? null : mb(peak),
      rss_last_mb: mb(readings[readings.length - 1]!.rss),
      readings: readings.length,
      slope_mb_per_min_second_half: slope === null ? null : round1(slope / 1e6),
    },
  };
}

/** A legitimate peer: connects to `url`, sends `echo:<k>` and waits for it to come back. Resolves with the time it took. */
async function probe(url: string, k: number): Promise<number> {
  const link = new Link();
  const messaging = new Messaging(`probe-${k}`, new Packeter(link));
  const t0 = performance.now();
  try {
    const text = `echo:${k}`;
    const echoed = new Promise<void>((resolve) =>
      messaging.on('message', (_connId, from, message) => {
        if (from === 'listener' && message.data.toString() === text) resolve();
      }),
    );
    link.addConnector(url, { reconnectDelay: () => 250 });
    messaging.send('listener', new Message(text));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`probe ${k}: no echo within ${PROBE_TIMEOUT_MS} ms`)), PROBE_TIMEOUT_MS);
    });
    try {
      await Promise.race([echoed, timeout]);
    } finally {
      clearTimeout(timer);
    }
    return Math.round(performance.now() - t0);
  } finally {
    await Promise.race([messaging.close(), sleep(3000)]);
  }
}

async function fuzzPhase(): Promise<boolean> {
  const bench = 'soak-fuzz';
  const reasons: string[] = [];
  const readings: Reading[] = [];
  const listener = new Child('soak-listener', 'soak-listener.ts', [], ['--expose-gc']);
  let fuzzer: Child | null = null;
  let last: Msg | null = null;
  let finished: Msg | null = null;
  const probes = { ok: 0, failed: 0, max_ms: 0 };
  try {
    const info = await listener.next('listening', 30_000);
    const url = String(info.url);
    const port = Number(new URL(url).port);
    fuzzer = new Child('soak-fuzzer', 'soak-fuzzer.ts', [String(port), String(FUZZ_SECS), String(SEED), String(CONCURRENCY), String(MAX_CONNECTIONS)]);
    let fuzzConns = 0;
    fuzzer.onProgress = (m) => (fuzzConns = Number(m.connections));
    const done = fuzzer.next('finished', (FUZZ_SECS + 120) * 1000);
    done.then((m) => (finished = m)).catch(() => undefined);
    const t0 = performance.now();
    let k = 0;
    const readOnce = async (): Promise<void> => {
      const s = await guard(listener.ask({ t: 'sample' }, 'sample', READ_TIMEOUT_MS), listener);
      const mem = s.mem as MemReading;
      const t = (performance.now() - t0) / 1000;
      readings.push({ t, rss: mem.rss });
      last = s;
      let probeMs: number | string;
      try {
        probeMs = await guard(probe(url, k++), listener);
        probes.ok++;
        probes.max_ms = Math.max(probes.max_ms, probeMs);
      } catch (error) {
        probes.failed++;
        probeMs = error instanceof Error ? error.message : String(error);
        if (!listener.alive) throw error;
        reasons.push(String(probeMs));
      }
      emit({
        bench,
        t_s: round1(t),
        rss_mb: mb(mem.rss),
        heap_used_mb: mb(mem.heapUsed),
        external_mb: mb(mem.external),
        fuzz_connections: fuzzConns,
        ...(s.counters as object),
        probe_ms: probeMs,
      });
    };
    while (finished === null && fuzzer.failed === null) {
      const tick = performance.now();
      await readOnce();
      await Promise.race([sleep(Math.max(0, SAMPLE_MS - (performance.now() - tick))), done.catch(() => undefined)]);
    }
    await guard(done, listener);
    // The fuzzer is done: the listener must still serve a legitimate peer.
    await readOnce();
  } catch (error) {
    reasons.push(error instanceof Error ? error.message : String(error));
  } finally {
    await Promise.all([fuzzer?.stop(), listener.stop(10_000)]);
  }
  let figures: Record<string, unknown> = {};
  if (readings.length > 0) {
    const verdict = judge(readings, FUZZ_SECS);
    figures = verdict.figures;
    if (!verdict.ok) reasons.push(`listener RSS ${figures.rss_max_after_warmup_mb} MB above the bound ${figures.limit_mb} MB (warm-up max + ${BOUND_MB} MB)`);
  }
  const fin = finished as Msg | null;
  const summary: Record<string, unknown> = {
    bench,
    result: reasons.length === 0 ? 'pass' : 'fail',
    seconds: FUZZ_SECS,
    seed: SEED,
    bound: `listener RSS <= warm-up max + ${BOUND_MB} MB`,
    ...figures,
    fuzz_connections: fin?.connections ?? null,
    fuzz_refused: fin?.refused ?? null,
    fuzz_identities: fin?.identities ?? null,
    by_scenario: fin?.by_kind ?? null,
    avg_ms_by_scenario: fin?.avg_ms_by_kind ?? null,
    listener: (last as Msg | null)?.counters ?? null,
    protocol_error_codes: (last as Msg | null)?.error_codes ?? null,
    probes,
  };
  if (reasons.length > 0) summary.error = reasons.join('; ');
  emit(summary);
  return reasons.length === 0;
}

async function exchangePhase(): Promise<boolean> {
  const bench = 'soak-exchange';
  const reasons: string[] = [];
  const readings: Record<string, Reading[]> = { a: [], b: [] };
  const a = new Child('soak-peer-a', 'soak-peer.ts', ['a'], ['--expose-gc']);
  let b: Child | null = null;
  const final: Record<string, Record<string, number>> = {};
  try {
    const { url } = await a.next('listening', 30_000);
    b = new Child('soak-peer-b', 'soak-peer.ts', ['b', String(url)], ['--expose-gc']);
    const both = [a, b];
    await guard(Promise.all(both.map((p) => p.next('connected', 30_000))), ...both);
    for (const p of both) p.send({ t: 'start' });
    const t0 = performance.now();
    const prev: Record<string, number> = { a: 0, b: 0 };
    let tPrev = t0;
    for (;;) {
      const tick = performance.now();
      const t = (tick - t0) / 1000;
      const samples = await guard(Promise.all(both.map((p) => p.ask({ t: 'sample' }, 'sample', READ_TIMEOUT_MS))), ...both);
      const dt = (performance.now() - tPrev) / 1000;
      tPrev = performance.now();
      samples.forEach((s, i) => {
        const name = i === 0 ? 'a' : 'b';
        const mem = s.mem as MemReading;
        const c = s.counters as Record<string, number>;
        readings[name]!.push({ t, rss: mem.rss });
        emit({
          bench,
          peer: name,
          t_s: round1(t),
          rss_mb: mb(mem.rss),
          heap_used_mb: mb(mem.heapUsed),
          external_mb: mb(mem.external),
          ...c,
          received_per_s: Math.round((c.received! - prev[name]!) / dt),
        });
        prev[name] = c.received!;
      });
      if (t >= EXCHANGE_SECS) break;
      const remaining = EXCHANGE_SECS * 1000 - (performance.now() - t0);
      await guard(sleep(Math.max(0, Math.min(SAMPLE_MS - (performance.now() - tick), remaining))), ...both);
    }
    const stopped = await guard(Promise.all(both.map((p) => p.ask({ t: 'stop' }, 'stopped', 120_000))), ...both);
    const after = await guard(Promise.all(both.map((p) => p.ask({ t: 'counters' }, 'counters', READ_TIMEOUT_MS))), ...both);
    final.a = after[0]!.counters as Record<string, number>;
    final.b = after[1]!.counters as Record<string, number>;
    const sentA = (stopped[0]!.counters as Record<string, number>).sent!;
    const sentB = (stopped[1]!.counters as Record<string, number>).sent!;
    if (final.b.received !== sentA) reasons.push(`b received ${final.b.received} of the ${sentA} messages a sent`);
    if (final.a.received !== sentB) reasons.push(`a received ${final.a.received} of the ${sentB} messages b sent`);
    for (const [name, c] of Object.entries(final)) if (c.out_of_order! > 0) reasons.push(`${name} received ${c.out_of_order} messages out of order`);
  } catch (error) {
    reasons.push(error instanceof Error ? error.message : String(error));
  } finally {
    await Promise.all([b?.stop(10_000), a.stop(10_000)]);
  }
  const perPeer: Record<string, unknown> = {};
  for (const name of ['a', 'b']) {
    if (readings[name]!.length === 0) continue;
    const verdict = judge(readings[name]!, EXCHANGE_SECS);
    perPeer[name] = { ...verdict.figures, ...(final[name] ?? {}) };
    if (!verdict.ok)
      reasons.push(
        `peer ${name} RSS ${verdict.figures.rss_max_after_warmup_mb} MB above the bound ${verdict.figures.limit_mb} MB (warm-up max + ${BOUND_MB} MB)`,
      );
  }
  const summary: Record<string, unknown> = {
    bench,
    result: reasons.length === 0 ? 'pass' : 'fail',
    seconds: EXCHANGE_SECS,
    bound: `each peer's RSS <= warm-up max + ${BOUND_MB} MB; every message received once, in order`,
    ...perPeer,
  };
  if (reasons.length > 0) summary.error = reasons.join('; ');
  emit(summary);
  return reasons.length === 0;
}

emit({
  bench: 'soak-env',
  node: process.version,
  cpus: cpus().length,
  loadavg: loadavg().map((x) => +x.toFixed(2)),
  phases: PHASES,
  fuzz_seconds: FUZZ_SECS,
  exchange_seconds: EXCHANGE_SECS,
  bound_mb: BOUND_MB,
});
let ok = true;
if (PHASES.includes('fuzz')) ok = (await fuzzPhase()) && ok;
if (PHASES.includes('exchange')) ok = (await exchangePhase()) && ok;
process.exitCode = ok ? 0 : 1;
