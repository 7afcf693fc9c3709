/**
 * Forked helper processes of the memory and soak benchmarks
 * (bench/connections.ts, bench/identities.ts, bench/soak.ts), and the
 * helpers those children share: IPC request/reply, a settled, garbage-
 * collected memory reading, JSON-line output.
 *
 * A child is forked with `--import tsx` (plus extra node flags such as
 * `--expose-gc`), talks over IPC with `{ t: <type>, … }` objects, and exits
 * when its parent goes away. A child that exits while a report is awaited
 * fails that wait at once (a crash is a result, never a hang).
 * @module
 */
import { benchArgs, onCommand as ipcOnCommand, report as ipcReport } from './ipc.js';
import { fork, type ChildProcess } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(here, '..', '..');

/** A message over IPC, either way. */
export interface Msg {
  t: string;
  [key: string]: unknown;
}

/** Prints one JSON line (one figure) on stdout. */
export function emit(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

/** Bytes to MB (10^6), one decimal. */
export const mb = (bytes: number): number => Math.round(bytes / 1e5) / 10;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A forked child and its stream of reports. */
export class Child {
  readonly proc: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly inbox: Msg[] = [];
  private readonly waiters: { type: string; resolve: (m: Msg) => void; reject: (e: Error) => void }[] = [];
  private failure: Error | null = null;
  /** Called for every `progress` report (not queued). */
  onProgress: ((m: Msg) => void) | null = null;

  constructor(
    readonly label: string,
    script: string,
    argv: string[],
    nodeFlags: string[] = [],
  ) {
    this.proc = fork(join(here, script), argv, {
      cwd: ROOT,
      execArgv: ['--import', 'tsx', ...nodeFlags],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.proc.on('message', (m: Msg) => {
      if (m.t === 'error') return this.fail(new Error(`${label}: ${String(m.message)}`));
      if (m.t === 'progress' && this.onProgress) return this.onProgress(m);
      const i = this.waiters.findIndex((w) => w.type === m.t);
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(m);
      else this.inbox.push(m);
    });
    this.exited = new Promise((res) => {
      this.proc.on('exit', (code, signal) => {
        this.fail(new Error(`${label} exited (${signal ?? `code ${code}`})`));
        res({ code, signal });
      });
    });
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Why this child can no longer answer (exited or reported an error), if so. */
  get failed(): Error | null {
    return this.failure;
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const w of this.waiters.splice(0)) w.reject(error);
    for (const f of this.failWaiters.splice(0)) f(this.failure);
  }

  private readonly failWaiters: ((e: Error) => void)[] = [];

  /** Rejects once this child exited or reported an error (never resolves). */
  whenFailed(): Promise<never> {
    const p = new Promise<never>((_, rej) => {
      if (this.failure) rej(this.failure);
      else this.failWaiters.push(rej);
    });
    p.catch(() => undefined);
    return p;
  }

  /** The next report of this type (one already received counts). */
  next(type: string, timeoutMs: number): Promise<Msg> {
    const p = this.nextUnguarded(type, timeoutMs);
    // Awaited later, maybe after it failed: not an unhandled rejection meanwhile.
    p.catch(() => undefined);
    return p;
  }

  private nextUnguarded(type: string, timeoutMs: number): Promise<Msg> {
    const i = this.inbox.findIndex((m) => m.t === type);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0]!);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((res, rej) => {
      const w = {
        type,
        resolve: (m: Msg) => {
          clearTimeout(timer);
          res(m);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          rej(e);
        },
      };
      const timer = setTimeout(() => {
        const k = this.waiters.indexOf(w);
        if (k >= 0) this.waiters.splice(k, 1);
        rej(new Error(`${this.label}: no '${type}' within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  send(m: Msg): void {
    if (this.proc.connected) this.proc.send(m);
  }

  /** Sends `m` and waits for the report `reply`. */
  ask(m: Msg, reply: string, timeoutMs: number): Promise<Msg> {
    const p = this.next(reply, timeoutMs);
    this.send(m);
    return p;
  }

  /** Asks the child to exit; kills it if it has not within `ms`. */
  async stop(ms = 5000): Promise<void> {
    if (!this.alive) return;
    this.send({ t: 'exit' });
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), ms);
    await this.exited;
    clearTimeout(timer);
  }
}

/**
 * `p`, or the failure of any of `children` if one exits or reports an error
 * first: a wait on one process never outlives the crash of another.
 */
export function guard<T>(p: Promise<T>, ...children: Child[]): Promise<T> {
  const failures = children.map((c) => c.whenFailed());
  return Promise.race([p, ...failures]);
}

// --- in a child --------------------------------------------------------------

/** Sends a report to the parent (no-op when not forked). */
export const report: (m: Msg) => void = ipcReport;

/** Calls `handler` for each command from the parent (see bench/lib/ipc.ts). */
export const onCommand: (handler: (m: Msg) => void | Promise<void>) => void = ipcOnCommand;

/** `process.memoryUsage()` in bytes, as sent to the parent. */
export interface MemReading {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

function reading(): MemReading {
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers };
}

/** Full garbage collection (the process must run with `--expose-gc`). */
export function fullGc(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (typeof gc !== 'function') throw new Error('run with --expose-gc');
  gc();
  gc();
}

/**
 * Memory once the process has settled: up to `rounds` times, let the event
 * loop idle `pauseMs`, collect garbage twice, read; stop as soon as two
 * readings in a row agree within 1 % of RSS. The last reading is returned.
 */
export async function settledMemory(rounds = 8, pauseMs = 250): Promise<MemReading> {
  let last: MemReading | null = null;
  for (let i = 0; i < rounds; i++) {
    await sleep(pauseMs);
    fullGc();
    await new Promise((r) => setImmediate(r));
    fullGc();
    const m = reading();
    if (last !== null && Math.abs(m.rss - last.rss) <= 0.01 * last.rss) return m;
    last = m;
  }
  return last!;
}

/** A quick reading: one full collection, no waiting (for samples taken under load). */
export function gcMemory(): MemReading {
  fullGc();
  return reading();
}

/** `--name=value` and `--flag` command-line options (bench/lib/ipc.ts `benchArgs`). */
export const cliArgs: (argv?: readonly string[]) => Map<string, string> = benchArgs;

/** A number option, refused when it is not a finite number in [min, max]. */
export function numArg(args: Map<string, string>, name: string, def: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const raw = args.get(name);
  if (raw === undefined) return def;
  const n = Number(raw.replace(/_/g, ''));
  if (!Number.isFinite(n) || n < min || n > max) throw new Error(`--${name}=${raw}: expected a number in [${min}, ${max}]`);
  return n;
}
