/**
 * Memory kept for identities that came and went: `npx tsx
 * bench/identities.ts [options]` (`npm run bench -- identities`). Prints
 * JSON lines (docs/benchmarks.md, "Memory and soak").
 *
 * One listener Messaging (bench/lib/mem-server.ts, `--expose-gc`, the
 * defaults: acknowledgements on) and one client process
 * (bench/lib/mem-client.ts) that runs N peers, `--concurrency` at a time,
 * each with a fresh identity: connect, PROTOCOL_VERSION + IDENTIFICATION +
 * EXTENSIONS + PING + one 100-byte MESSAGE, wait for its ACK, close.
 *
 * Readings (settled, after full collections): at the start; after the run
 * (the listener counted N messages and saw every disconnect); after the
 * idle-identity grace period. The grace period is an option of Messaging
 * added by the hardening work: the listener looks for it at run time (an
 * exported `DEFAULT_…GRACE…` constant, or a likely name such as
 * `idleIdentityGrace`, each tried on a throwaway Messaging) and passes
 * `--grace-ms`; without one the line says `no grace option`. After the run
 * the listener is read every second until RSS is within the target of the
 * start, or `3 × grace + 5 s` passed.
 *
 * Target (issue 12): within 30 MB of the starting RSS after the grace period.
 *
 * Options:
 *   --identities=200000   peers (identities), each connects once
 *   --concurrency=500     connections open at a time
 *   --grace-ms=2000       grace period asked of the listener (when the option exists)
 *   --grace-option=NAME   the option's name, when it is none of the likely ones
 *   --mode=ack            ack (the default) or plain (no EXTENSIONS: a Python snakeMQ peer)
 *   --help                this list
 * @module
 */
import { cpus, loadavg } from 'node:os';
import { helpAndExit } from './lib/ipc.js';
import { Child, cliArgs, emit, guard, mb, numArg, sleep } from './lib/proc.js';

const args = cliArgs();
helpAndExit(import.meta.url, args);
const N = numArg(args, 'identities', 200_000, 1, 10_000_000);
const CONCURRENCY = numArg(args, 'concurrency', 500, 1, 5000);
const GRACE_MS = numArg(args, 'grace-ms', 2000, 0, 600_000);
const MODE = args.get('mode') ?? 'ack';
if (MODE !== 'ack' && MODE !== 'plain') throw new Error(`--mode=${MODE}: ack or plain`);
const TARGET_MB = 30;

interface Mem {
  rss: number;
  heapUsed: number;
  external: number;
}

emit({
  bench: 'identities-env',
  node: process.version,
  cpus: cpus().length,
  loadavg: loadavg().map((x) => +x.toFixed(2)),
  identities: N,
  concurrency: CONCURRENCY,
  mode: MODE,
});

const serverArgs = ['snakemq', MODE, `--grace-ms=${GRACE_MS}`];
if (args.has('grace-option')) serverArgs.push(`--grace-option=${args.get('grace-option')}`);
// Room for the heap of a library that keeps every identity (about 3.5 GB for 200,000 of them).
const server = new Child('listener', 'mem-server.ts', serverArgs, ['--expose-gc', '--max-old-space-size=16384']);
const client = new Child('client', 'mem-client.ts', []);
client.onProgress = (m) => process.stderr.write(`[identities] ${m.done}/${m.n} identities done in ${m.ms} ms\n`);
try {
  const [info] = await Promise.all([server.next('listening', 30_000), client.next('ready', 30_000)]);
  const measure = async (): Promise<Mem> => (await server.ask({ t: 'measure' }, 'memory', 300_000)).mem as Mem;
  const start = await measure();
  const t0 = performance.now();
  const reached = server.next('reached', 1_800_000);
  server.send({ t: 'wait', messages: N, live: 0 });
  const churned = await guard(
    client.ask({ t: 'churn', port: info.port, n: N, concurrency: CONCURRENCY, ack: MODE === 'ack', prefix: 'id-' }, 'churned', 1_800_000),
    server,
  );
  await guard(reached, client);
  const runSecs = (performance.now() - t0) / 1000;
  const tRun = performance.now();
  const afterRun = await measure();
  // After the grace period: read until within the target, or give up.
  const deadline = tRun + 3 * GRACE_MS + 5000;
  await sleep(GRACE_MS);
  let afterGrace = await measure();
  while (afterGrace.rss - start.rss > TARGET_MB * 1e6 && performance.now() < deadline) {
    await sleep(1000);
    afterGrace = await measure();
  }
  const graceSecs = (performance.now() - tRun) / 1000;
  const growth = afterGrace.rss - start.rss;
  emit({
    bench: 'identities',
    impl: 'snakemq',
    identities: N,
    concurrency: CONCURRENCY,
    mode: MODE,
    grace_option: info.grace_option,
    grace_ms: info.grace_ms,
    rss_start_mb: mb(start.rss),
    rss_after_run_mb: mb(afterRun.rss),
    rss_after_grace_mb: mb(afterGrace.rss),
    rss_per_identity_after_run_kb: Math.round((afterRun.rss - start.rss) / N / 100) / 10,
    heap_used_start_mb: mb(start.heapUsed),
    heap_used_after_run_mb: mb(afterRun.heapUsed),
    heap_used_after_grace_mb: mb(afterGrace.heapUsed),
    rss_growth_after_grace_mb: mb(growth),
    read_secs_after_run: Math.round(graceSecs * 10) / 10,
    run_secs: Math.round(runSecs * 10) / 10,
    client_errors: churned.errors,
    client_error_codes: churned.codes,
    target: `rss after grace <= start + ${TARGET_MB} MB`,
    meets_target: growth <= TARGET_MB * 1e6,
  });
} catch (error) {
  emit({ bench: 'identities', impl: 'snakemq', error: error instanceof Error ? error.message : String(error) });
  process.exitCode = 1;
} finally {
  await Promise.all([client.stop(), server.stop(10_000)]);
}
