/**
 * Memory per connection: `npx tsx bench/connections.ts [options]`
 * (`npm run bench -- connections`). Prints JSON lines (docs/benchmarks.md,
 * "Memory and soak").
 *
 * One listener process (bench/lib/mem-server.ts, run with `--expose-gc`)
 * holds N identified peers that each sent one message; the peers are raw
 * sockets in one client process (bench/lib/mem-client.ts: the descriptor
 * limit is per process, so the two sides are separate). Measured twice in
 * the same run, each in a fresh listener process, with the same client
 * and the same bytes both ways:
 *
 * - `raw-net` (the baseline): a `net` server with the same 4-byte framing,
 *   a frame parser per socket and a Map of identified peers, writing the
 *   handshake a Messaging writes and answering PING and MESSAGE (ACK);
 * - `snakemq`: Link + Packeter + Messaging with the defaults
 *   (acknowledgements on), `maxConnections: 20000` when the Link has it.
 *
 * For each: settle, collect garbage, read RSS; open the N connections
 * (each one writes PROTOCOL_VERSION, IDENTIFICATION, EXTENSIONS, PING and
 * a 100-byte MESSAGE, and is done when its ACK arrives); once the listener
 * counted N identified peers and N messages, settle, collect, read again.
 * `rss_per_conn_kb` = (after − before) / N, in kB (1,000 bytes). Then the
 * client closes them all and, once the listener saw every disconnect, a
 * third reading (`rss_after_close_mb`, for information).
 *
 * Options:
 *   --connections=10000   peers held at once (at most 19,000: one process's descriptors)
 *   --concurrency=200     connections being opened at a time
 *   --mode=ack            ack (the default) or plain (no EXTENSIONS: a Python snakeMQ peer)
 *   --impl=raw-net,snakemq  which listeners, in this order
 *   --help                this list
 * @module
 */
import { cpus, loadavg } from 'node:os';
import { helpAndExit } from './lib/ipc.js';
import { Child, cliArgs, emit, guard, mb, numArg } from './lib/proc.js';

const args = cliArgs();
helpAndExit(import.meta.url, args);
const N = numArg(args, 'connections', 10_000, 1, 19_000);
const CONCURRENCY = numArg(args, 'concurrency', 200, 1, 5000);
const MODE = args.get('mode') ?? 'ack';
if (MODE !== 'ack' && MODE !== 'plain') throw new Error(`--mode=${MODE}: ack or plain`);
const IMPLS = (args.get('impl') ?? 'raw-net,snakemq').split(',');
for (const i of IMPLS) if (i !== 'raw-net' && i !== 'snakemq') throw new Error(`--impl: unknown ${i} (raw-net, snakemq)`);

const TARGET_RATIO = 2;
const kb = (bytes: number): number => Math.round(bytes / 100) / 10;

interface Mem {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

emit({ bench: 'connections-env', node: process.version, cpus: cpus().length, loadavg: loadavg().map((x) => +x.toFixed(2)), connections: N, mode: MODE });

const client = new Child('client', 'mem-client.ts', []);
client.onProgress = (m) => process.stderr.write(`[connections] ${m.done}/${m.n} connected in ${m.ms} ms\n`);
const perConn = new Map<string, number>();
try {
  await client.next('ready', 30_000);
  for (const impl of IMPLS) {
    const server = new Child(`listener-${impl}`, 'mem-server.ts', [impl === 'raw-net' ? 'raw' : 'snakemq', MODE], ['--expose-gc']);
    try {
      const info = await server.next('listening', 30_000);
      const before = (await server.ask({ t: 'measure' }, 'memory', 60_000)).mem as Mem;
      const t0 = performance.now();
      const reached = server.next('reached', 300_000);
      server.send({ t: 'wait', messages: N, live: N });
      const held = await guard(
        client.ask({ t: 'hold', port: info.port, n: N, concurrency: CONCURRENCY, ack: MODE === 'ack', prefix: `peer-${impl}-` }, 'held', 300_000),
        server,
      );
      await guard(reached, client);
      const connectSecs = (performance.now() - t0) / 1000;
      const after = (await server.ask({ t: 'measure' }, 'memory', 60_000)).mem as Mem;
      const gone = server.next('reached', 120_000);
      server.send({ t: 'wait', messages: N, live: 0 });
      await guard(client.ask({ t: 'release' }, 'released', 120_000), server);
      await guard(gone, client);
      const closed = (await server.ask({ t: 'measure' }, 'memory', 60_000)).mem as Mem;
      const rssPer = (after.rss - before.rss) / N;
      perConn.set(impl, rssPer);
      const line: Record<string, unknown> = {
        bench: 'connections',
        impl,
        connections: N,
        mode: MODE,
        rss_per_conn_kb: kb(rssPer),
        heap_used_per_conn_kb: kb((after.heapUsed - before.heapUsed) / N),
        external_per_conn_kb: kb((after.external - before.external) / N),
        rss_before_mb: mb(before.rss),
        rss_held_mb: mb(after.rss),
        rss_after_close_mb: mb(closed.rss),
        heap_used_before_mb: mb(before.heapUsed),
        heap_used_held_mb: mb(after.heapUsed),
        connect_secs: Math.round(connectSecs * 10) / 10,
        client_errors: held.errors,
      };
      if (impl === 'snakemq') line.max_connections_option = info.max_connections_option;
      emit(line);
    } catch (error) {
      emit({ bench: 'connections', impl, error: error instanceof Error ? error.message : String(error) });
      process.exitCode = 1;
    } finally {
      await server.stop();
    }
  }
} finally {
  await client.stop();
}
const base = perConn.get('raw-net');
const ours = perConn.get('snakemq');
if (base !== undefined && ours !== undefined) {
  const ratio = Math.round((ours / base) * 100) / 100;
  emit({
    bench: 'connections',
    impl: 'snakemq',
    baseline: 'raw-net',
    figure: 'rss per connection, snakemq / raw-net',
    ratio,
    target: `<= ${TARGET_RATIO}`,
    meets_target: ratio <= TARGET_RATIO,
  });
}
