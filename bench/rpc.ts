/**
 * RPC benchmark: `npx tsx bench/rpc.ts [options]` (or `npm run bench -- rpc`).
 * Prints one JSON line per result.
 *
 * The server runs in a child process (bench/rpc-server.ts), this process is
 * the client; they talk over TCP on loopback. Measured, for snakeMQ RPC
 * (`impl: "snakemq"`: `calc.add(i, 1)` through a proxy, default options,
 * acknowledged delivery on) and for the baseline (`impl: "raw-echo"`: a plain
 * `net` socket with the packeter's framing, 4-byte big-endian length + a
 * payload as long as the RPC request, echoed back by the server):
 *
 * - `rpc-sequential`: one call at a time; p50/p99 latency and calls/s. The
 *   `ratio_p50` line is snakemq p50 / raw-echo p50 (the target: <= 1.5);
 * - `rpc-pipelined`: `--window` calls outstanding at once (each of `--window`
 *   loops awaits its call, then makes the next); calls/s (target: >= 150,000);
 * - `rpc-codec`: encode + decode of one small request and its reply, in this
 *   process (no I/O).
 *
 * Measured rounds alternate between the two implementations so that load
 * from elsewhere on the (shared) machine hits both alike; each line reports
 * the best round (lowest p50, highest rate) and the median, plus the CPU time
 * each process spent per call (median over rounds), which other load hardly
 * changes.
 *
 * Options:
 *   --rounds=3              measured rounds per implementation and benchmark
 *   --calls=20000           sequential calls per round
 *   --pipelined-calls=200000  calls per pipelined round
 *   --window=100            calls outstanding in the pipelined benchmark
 *   --max-seconds=1.5       a round also stops after this long (keeps the whole run
 *                           under ~40 s on a loaded machine)
 *   --codec-pairs=200000    request+reply pairs of the codec benchmark (0: skip)
 *   --only=sequential|pipelined  run one of the two benchmarks
 *   --impl=raw-echo,messaging-echo,snakemq  which implementations; also
 *                           `snakemq-noack` (snakemq with `acknowledgements: false`
 *                           on both sides)
 *   --prof=DIR              run the server process with --cpu-prof into DIR (profile this
 *                           process with `node --import tsx --cpu-prof bench/rpc.ts`)
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Link } from '../lib/link/index.js';
import { Message, Messaging } from '../lib/messaging/index.js';
import { Packeter } from '../lib/packeter/index.js';
import { benchArgs } from './lib/ipc.js';
import { RpcClient, decodeReply, decodeRequest, encodeReply, encodeRequest } from '../lib/rpc/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');

const args = benchArgs();
const num = (name: string, def: number): number => {
  const v = Number(args.get(name) ?? def);
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${name} must be a number >= 0`);
  return v;
};
const ROUNDS = Math.max(1, num('rounds', 3));
const CALLS = Math.max(1, num('calls', 20_000));
const PIPELINED_CALLS = Math.max(1, num('pipelined-calls', 200_000));
const WINDOW = Math.max(1, num('window', 100));
const MAX_MS = num('max-seconds', 1.5) * 1000;
const CODEC_PAIRS = num('codec-pairs', 200_000);
const ONLY = args.get('only');
if (ONLY !== undefined && ONLY !== 'sequential' && ONLY !== 'pipelined') throw new Error('--only must be sequential or pipelined');
const PROF_DIR = args.has('prof') ? resolve(args.get('prof')!) : null;
const IMPLS = (args.get('impl') ?? 'raw-echo,messaging-echo,snakemq').split(',');
for (const name of IMPLS) if (!['raw-echo', 'snakemq', 'snakemq-noack', 'messaging-echo'].includes(name)) throw new Error(`unknown --impl ${name}`);
const TARGET_RATIO_P50 = 1.5;
const TARGET_PIPELINED = 150_000;

function emit(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

const round1 = (x: number): number => Math.round(x * 10) / 10;
const round3 = (x: number): number => Math.round(x * 1000) / 1000;
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const percentile = (sorted: Float64Array, p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;

// --- codec (in process) ----------------------------------------------------------

function codec(): void {
  if (CODEC_PAIRS === 0) return;
  const reqId = randomBytes(16);
  const pair = (i: number): void => {
    const req = decodeRequest(encodeRequest({ command: 'call', object: 'calc', method: 'add', args: [i, 1], kwargs: {}, reqId }));
    decodeReply(encodeReply({ reqId: req.reqId!, ok: true, value: i + 1 }));
  };
  for (let i = 0; i < 20_000; i++) pair(i); // warm-up
  const start = performance.now();
  const deadline = start + Math.min(MAX_MS, 1000);
  let n = 0;
  while (n < CODEC_PAIRS && (n & 1023 || performance.now() < deadline)) pair(n++);
  const ms = performance.now() - start;
  emit({ bench: 'rpc-codec', pairs: n, us_per_pair: round3((ms * 1000) / n), pairs_per_s: Math.round((n / ms) * 1000) });
}

// --- the server process -------------------------------------------------------------

interface Ready {
  t: 'ready';
  rpcUrl: string;
  /** The same RPC server on a messaging instance with acknowledgements off. */
  rpcNoAckUrl: string;
  rawPort: number;
}

class ServerProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  private readonly waiters: ((msg: Record<string, unknown>) => void)[] = [];

  constructor() {
    const prof = PROF_DIR === null ? [] : ['--cpu-prof', `--cpu-prof-dir=${PROF_DIR}`];
    this.child = spawn(process.execPath, ['--import', 'tsx', ...prof, join(here, 'rpc-server.ts')], {
      cwd: root,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child.on('message', (msg: Record<string, unknown>) => this.waiters.shift()?.(msg));
    this.exited = new Promise((res) => this.child.once('exit', () => res()));
  }

  /** The next message from the server (they come one per request, in order). */
  next<T>(timeoutMs = 30_000): Promise<T> {
    return new Promise<T>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`server process: no answer within ${timeoutMs} ms`)), timeoutMs);
      const onExit = (): void => rej(new Error('server process exited'));
      this.child.once('exit', onExit);
      this.waiters.push((msg) => {
        clearTimeout(timer);
        this.child.off('exit', onExit);
        res(msg as T);
      });
    });
  }

  /** CPU time (user + system) the server has used so far, in µs. */
  async cpuUs(): Promise<number> {
    const answer = this.next<{ us: number }>();
    this.child.send({ t: 'cpu' });
    return (await answer).us;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    if (this.child.connected) this.child.send({ t: 'exit' });
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    await this.exited;
    clearTimeout(timer);
  }
}

// --- the two clients --------------------------------------------------------------------

interface Impl {
  readonly name: string;
  /** One call; resolves (with the result, if any) when its answer is back. */
  call(i: number): Promise<unknown>;
  /** Throws when `result` is not the answer to call `i`. */
  check(i: number, result: unknown): void;
}

/** Raw baseline: frames queued by the callers go out in one corked write per tick, like Messaging's pump. */
class RawEchoClient implements Impl {
  readonly name = 'raw-echo';
  private readonly sock: net.Socket;
  private readonly waiting: (() => void)[] = [];
  private waitingHead = 0;
  private out: Buffer[] = [];
  private flushScheduled = false;
  private pending: Buffer | null = null;
  private readonly flush = (): void => {
    this.flushScheduled = false;
    const out = this.out;
    this.out = [];
    this.sock.cork();
    for (const b of out) this.sock.write(b);
    this.sock.uncork();
  };

  constructor(
    port: number,
    private readonly payload: Buffer,
  ) {
    this.sock = net.connect({ port, host: '127.0.0.1', noDelay: true });
    this.sock.on('data', (chunk: Buffer) => this.onData(chunk));
  }

  async ready(): Promise<void> {
    await once(this.sock, 'connect');
  }

  check(): void {}

  call(): Promise<void> {
    const frame = Buffer.allocUnsafe(4 + this.payload.length);
    frame.writeUInt32BE(this.payload.length, 0);
    this.payload.copy(frame, 4);
    this.out.push(frame);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(this.flush);
    }
    return new Promise<void>((res) => this.waiting.push(res));
  }

  private onData(chunk: Buffer): void {
    const buf = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    this.pending = null;
    let off = 0;
    while (buf.length - off >= 4) {
      const end = off + 4 + buf.readUInt32BE(off);
      if (end > buf.length) break;
      off = end;
      const res = this.waiting[this.waitingHead];
      this.waiting[this.waitingHead++] = undefined as unknown as () => void;
      if (this.waitingHead > 4096 && this.waitingHead * 2 > this.waiting.length) {
        this.waiting.splice(0, this.waitingHead);
        this.waitingHead = 0;
      }
      res?.();
    }
    if (off < buf.length) this.pending = Buffer.from(buf.subarray(off));
  }

  close(): void {
    this.sock.destroy();
  }
}

class SnakeMQClient implements Impl {
  private readonly link = new Link();
  private readonly messaging: Messaging;
  private readonly client: RpcClient;
  private readonly calc: { add(a: number, b: number): Promise<number> };
  /** messaging-echo: resolvers of the messages in flight, in order. */
  private readonly echoes: (() => void)[] = [];
  private echoHead = 0;
  private echoPayload = Buffer.alloc(0);

  constructor(readonly name: string) {
    this.messaging = new Messaging(`client-${name}`, new Packeter(this.link), { acknowledgements: name !== 'snakemq-noack' });
    this.client = new RpcClient(this.messaging, { timeout: 60_000 });
    this.calc = this.client.proxy<{ add(a: number, b: number): number }>('server', 'calc');
    if (name === 'messaging-echo') {
      this.messaging.addReceiveHook('echo', () => {
        const res = this.echoes[this.echoHead];
        this.echoes[this.echoHead++] = undefined as unknown as () => void;
        if (this.echoHead > 4096 && this.echoHead * 2 > this.echoes.length) {
          this.echoes.splice(0, this.echoHead);
          this.echoHead = 0;
        }
        res?.();
      });
      this.call = this.echo;
    }
  }

  /** Sets the size of the messaging-echo payload. */
  echoSize(bytes: number): void {
    this.echoPayload = Buffer.concat([Buffer.from('echo'), randomBytes(bytes - 4)]);
  }

  private echo(): Promise<void> {
    this.messaging.send('server', new Message(this.echoPayload, { ttl: 0 }));
    return new Promise<void>((res) => this.echoes.push(res));
  }

  async ready(url: string): Promise<void> {
    const up = new Promise<void>((res) => this.messaging.once('connect', () => res()));
    this.link.addConnector(url);
    await up;
  }

  call(i: number): Promise<unknown> {
    return this.calc.add(i, 1);
  }

  check(i: number, result: unknown): void {
    if (this.name !== 'messaging-echo' && result !== i + 1) throw new Error(`${this.name}: wrong result`);
  }

  async close(): Promise<void> {
    void this.client.close();
    await Promise.race([this.messaging.close(), new Promise((res) => setTimeout(res, 1000).unref())]);
  }
}

// --- measurements -----------------------------------------------------------------------

interface SeqRound {
  lat: Float64Array;
  calls: number;
  ms: number;
  cpu: { client: number; server: number };
}
interface PipeRound {
  calls: number;
  ms: number;
  cpu: { client: number; server: number };
}

const clientCpuUs = (): number => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

async function withCpu<T extends { calls: number }>(server: ServerProcess, run: () => Promise<T>): Promise<T & { cpu: { client: number; server: number } }> {
  const s0 = await server.cpuUs();
  const c0 = clientCpuUs();
  const r = await run();
  const c1 = clientCpuUs();
  const s1 = await server.cpuUs();
  return { ...r, cpu: { client: (c1 - c0) / r.calls, server: (s1 - s0) / r.calls } };
}

async function sequential(impl: Impl, n: number, maxMs: number): Promise<Omit<SeqRound, 'cpu'>> {
  const lat = new Float64Array(n);
  const start = performance.now();
  const deadline = start + maxMs;
  let i = 0;
  let t = start;
  while (i < n && t < deadline) {
    const t0 = performance.now();
    impl.check(i, await impl.call(i));
    t = performance.now();
    lat[i++] = (t - t0) * 1000;
  }
  return { lat: lat.subarray(0, i).sort(), calls: i, ms: t - start };
}

async function pipelined(impl: Impl, n: number, window: number, maxMs: number): Promise<Omit<PipeRound, 'cpu'>> {
  const start = performance.now();
  const deadline = start + maxMs;
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < n && (next & 255 || performance.now() < deadline)) {
      const i = next++;
      impl.check(i, await impl.call(i));
      done++;
    }
  };
  await Promise.all(Array.from({ length: window }, worker));
  return { calls: done, ms: performance.now() - start };
}

// --- main ---------------------------------------------------------------------------------

codec();

const server = new ServerProcess();
const killServer = (): void => {
  if (server.child.exitCode === null) server.child.kill('SIGKILL');
};
process.on('exit', killServer);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    killServer();
    process.exit(130);
  });
}

const clients = IMPLS.filter((name) => name !== 'raw-echo').map((name) => new SnakeMQClient(name));
let raw: RawEchoClient | null = null;
try {
  const ready = await server.next<Ready>();
  // The raw payload is as long as the RPC request the snakemq client sends for add(i, 1).
  const requestBytes = encodeRequest({ command: 'call', object: 'calc', method: 'add', args: [12345, 1], kwargs: {}, reqId: randomBytes(16) }).length;
  if (IMPLS.includes('raw-echo')) {
    raw = new RawEchoClient(ready.rawPort, randomBytes(requestBytes));
    await raw.ready();
  }
  for (const c of clients) c.echoSize(requestBytes);
  await Promise.all(clients.map((c) => c.ready(c.name === 'snakemq-noack' ? ready.rpcNoAckUrl : ready.rpcUrl)));
  const impls: Impl[] = IMPLS.map((name) => (name === 'raw-echo' ? raw! : clients.find((c) => c.name === name)!));

  // Warm-up (not reported): JIT, socket buffers.
  for (const impl of impls) {
    await sequential(impl, Math.min(CALLS, 3000), 1000);
    await pipelined(impl, Math.min(PIPELINED_CALLS, 30_000), WINDOW, 1000);
  }

  const seq = new Map<string, SeqRound[]>(impls.map((i) => [i.name, []]));
  for (let r = 0; r < (ONLY === 'pipelined' ? 0 : ROUNDS); r++) {
    for (const impl of impls) seq.get(impl.name)!.push(await withCpu(server, () => sequential(impl, CALLS, MAX_MS)));
  }
  const seqBest = new Map<string, number>();
  for (const impl of ONLY === 'pipelined' ? [] : impls) {
    const rounds = seq.get(impl.name)!;
    const p50s = rounds.map((r) => percentile(r.lat, 0.5));
    const best = rounds[p50s.indexOf(Math.min(...p50s))]!;
    seqBest.set(impl.name, percentile(best.lat, 0.5));
    emit({
      bench: 'rpc-sequential',
      impl: impl.name,
      calls: best.calls,
      p50_us: round1(percentile(best.lat, 0.5)),
      p99_us: round1(percentile(best.lat, 0.99)),
      calls_per_s: Math.round((best.calls / best.ms) * 1000),
      stat: `best of ${ROUNDS} (lowest p50)`,
      median_p50_us: round1(median(p50s)),
      runs_p50_us: p50s.map(round1),
      runs_p99_us: rounds.map((r) => round1(percentile(r.lat, 0.99))),
      cpu_us_per_call: { client: round1(median(rounds.map((r) => r.cpu.client))), server: round1(median(rounds.map((r) => r.cpu.server))) },
    });
  }
  if (seqBest.has('snakemq') && seqBest.has('raw-echo')) {
    const ratio = seqBest.get('snakemq')! / seqBest.get('raw-echo')!;
    emit({ bench: 'rpc-sequential', ratio_p50: round3(ratio), target: TARGET_RATIO_P50, ok: ratio <= TARGET_RATIO_P50 });
  }

  const pipe = new Map<string, PipeRound[]>(impls.map((i) => [i.name, []]));
  for (let r = 0; r < (ONLY === 'sequential' ? 0 : ROUNDS); r++) {
    for (const impl of impls) pipe.get(impl.name)!.push(await withCpu(server, () => pipelined(impl, PIPELINED_CALLS, WINDOW, MAX_MS)));
  }
  const pipeBest = new Map<string, number>();
  for (const impl of ONLY === 'sequential' ? [] : impls) {
    const rounds = pipe.get(impl.name)!;
    const rates = rounds.map((r) => (r.calls / r.ms) * 1000);
    const best = Math.max(...rates);
    pipeBest.set(impl.name, best);
    const cpu = { client: median(rounds.map((r) => r.cpu.client)), server: median(rounds.map((r) => r.cpu.server)) };
    const line: Record<string, unknown> = {
      bench: 'rpc-pipelined',
      impl: impl.name,
      window: WINDOW,
      calls: rounds[rates.indexOf(best)]!.calls,
      calls_per_s: Math.round(best),
      stat: `best of ${ROUNDS}`,
      median_calls_per_s: Math.round(median(rates)),
      runs_calls_per_s: rates.map(Math.round),
      cpu_us_per_call: { client: round1(cpu.client), server: round1(cpu.server) },
      // The rate the pair would reach with a core each and no waiting (steadier than the wall clock on a shared machine).
      cpu_bound_calls_per_s: Math.round(1e6 / Math.max(cpu.client, cpu.server)),
    };
    if (impl.name === 'snakemq') {
      line.target_calls_per_s = TARGET_PIPELINED;
      line.ok = best >= TARGET_PIPELINED;
    }
    emit(line);
  }
  if (pipeBest.has('snakemq') && pipeBest.has('raw-echo')) {
    emit({ bench: 'rpc-pipelined', ratio: round3(pipeBest.get('snakemq')! / pipeBest.get('raw-echo')!) });
  }
} catch (error) {
  emit({ bench: 'rpc', error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  process.exitCode = 1;
} finally {
  raw?.close();
  await Promise.all(clients.map((c) => c.close()));
  await server.stop();
}
