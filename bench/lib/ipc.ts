/**
 * Small helpers shared by the benchmark child processes and their parent.
 *
 * Timestamps are `process.hrtime` in milliseconds (float). On Linux that is
 * CLOCK_MONOTONIC, one clock for the whole machine, so a time taken in the
 * sender and one taken in the receiver can be subtracted.
 * @module
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Milliseconds on the machine-wide monotonic clock. */
export function now(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Messages from the parent to a peer process. */
export type ParentCommand =
  /** Receiver: count the next `n` messages of `size` bytes, answer `armed`, then `done`. */
  | { t: 'expect'; n: number; size: number }
  /** Sender: send `n` messages of `size` bytes, answer `finished`. */
  | { t: 'send'; n: number; size: number }
  /** Close everything and exit. */
  | { t: 'exit' };

/** Messages from a peer process to the parent. */
export type ChildReport =
  | { t: 'listening'; url: string }
  | { t: 'connected' }
  | { t: 'armed' }
  /** Receiver: the last expected message arrived at `t1`. */
  | { t: 'done'; t1: number; count: number; bytes: number; firstAt: number; cpuMs: number }
  /**
   * Sender: first send call at `t0`; every message handed to the library (or
   * socket) by `tQueued`; the sender's queue empty again (acknowledged, or
   * written without acknowledgements) at `tDrained`. `cpuMs`: CPU time
   * (user + system) the process used from the command to `tDrained`.
   */
  | { t: 'finished'; t0: number; tQueued: number; tDrained: number; cpuMs: number }
  | { t: 'error'; message: string };

/** CPU time (user + system) this process has used, in ms. */
export function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Sends a report to the parent (no-op when not forked). */
export function report<R = ChildReport>(msg: R): void {
  process.send?.(msg);
}

/**
 * Calls `handler` for each command from the parent; a handler that throws
 * reports `error` and exits 1. Exits when the parent goes away.
 */
export function onCommand<C = ParentCommand>(handler: (cmd: C) => void | Promise<void>): void {
  process.on('message', (cmd: C) => {
    Promise.resolve()
      .then(() => handler(cmd))
      .catch((error: unknown) => {
        report({ t: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
        process.exit(1);
      });
  });
  // The parent died (or closed the channel): nothing left to do.
  process.on('disconnect', () => process.exit(0));
}

/** A payload of `size` pseudo-random bytes (deterministic, cheap to make). */
export function makePayload(size: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  let x = 0x9e3779b9;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf[i] = x & 0xff;
  }
  return buf;
}

/** Resolves on the next turn of the event loop (after I/O). */
export function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** `--name=value` and `--flag` command-line options of a benchmark script. */
export function benchArgs(argv: readonly string[] = process.argv.slice(2)): Map<string, string> {
  const args = new Map<string, string>();
  for (const a of argv) {
    const m = /^--([^=]+)(?:=(.*))?$/.exec(a);
    if (m) args.set(m[1]!, m[2] ?? 'true');
  }
  return args;
}

/** With `--help`: prints the options block of the benchmark file's header (from ` * Options:` to ` * @module`) and exits. */
export function helpAndExit(fileUrl: string, args: ReadonlyMap<string, string>): void {
  if (!args.has('help')) return;
  const header = readFileSync(fileURLToPath(fileUrl), 'utf8').split('\n');
  const from = header.findIndex((l) => l.startsWith(' * Options:'));
  const to = header.findIndex((l, i) => i > from && l.startsWith(' * @module'));
  process.stderr.write(
    `${header
      .slice(from, to)
      .map((l) => l.replace(/^ \* ?/, ''))
      .join('\n')}\n`,
  );
  process.exit(0);
}
