/**
 * Plumbing shared by the examples (not part of snakemq-ts): run another
 * example file as a child process, forward its output, wait for one of its
 * lines, and make sure no child outlives its parent — on success, on an
 * exception, on Ctrl-C, and even when the parent is killed (a child watches
 * its IPC channel to the parent).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

/** The repository root: children run there, so `--import tsx` resolves. */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Set in the environment of every child started by {@link startPeer}. */
const CHILD_ENV = 'SNAKEMQ_EXAMPLE_CHILD';

/** Whether this process was started by another example (rather than by you). */
export const isChild = process.env[CHILD_ENV] === '1';

const running = new Set<PeerProcess>();

/** One example running in a child process (`node --import tsx examples/<file>`). */
export class PeerProcess {
  readonly proc: ChildProcess;
  /** Resolves with the exit code (or the signal name) once the child has exited. */
  readonly exited: Promise<number | string>;
  readonly #lines: string[] = [];
  #wake: (() => void)[] = [];
  #done = false;
  #stderr = '';

  /**
   * @param file example file, relative to `examples/`
   * @param args its command-line arguments
   * @param prefix put in front of each forwarded output line ('' forwards them as they are)
   */
  constructor(file: string, args: string[] = [], prefix = '') {
    this.proc = spawn(process.execPath, ['--import', 'tsx', join('examples', file), ...args], {
      cwd: ROOT,
      env: { ...process.env, [CHILD_ENV]: '1' },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    running.add(this);
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      console.log(prefix + line);
      this.#lines.push(line);
      this.#notify();
    });
    this.proc.stderr!.on('data', (chunk: Buffer) => {
      this.#stderr += chunk.toString();
      process.stderr.write(chunk);
    });
    this.exited = new Promise((resolve) => {
      // 'close', not 'exit': every line the child printed has been read by then.
      this.proc.on('close', (code, signal) => {
        running.delete(this);
        this.#done = true;
        this.#notify();
        resolve(code ?? signal ?? 'unknown');
      });
    });
  }

  /** Waits for an output line matching `pattern` (lines already printed count too). */
  async waitFor(pattern: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    let seen = 0;
    for (;;) {
      for (; seen < this.#lines.length; seen++) {
        const match = this.#lines[seen]!.match(pattern);
        if (match) return match;
      }
      if (this.#done) throw new Error(`child exited before printing ${pattern}${this.#stderr ? `; stderr:\n${this.#stderr}` : ''}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${pattern}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Sends a command to the child over its IPC channel. */
  send(command: unknown): void {
    this.proc.send(command as object);
  }

  /** Waits for the child to exit by itself and fails unless it exited with code 0. */
  async succeeded(timeoutMs = 20_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`child ${this.proc.pid} did not exit in time`)), timeoutMs);
    });
    try {
      const code = await Promise.race([this.exited, timeout]);
      if (code !== 0) throw new Error(`child ${this.proc.pid} exited with ${code}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Kills the child (SIGKILL unless told otherwise) and waits until it is gone. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.#done) return;
    this.proc.kill(signal);
    await this.exited;
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = [];
    for (const fn of wake) fn();
  }
}

/** Starts `examples/<file>` in a child process. */
export function startPeer(file: string, args: string[] = [], prefix = ''): PeerProcess {
  return new PeerProcess(file, args, prefix);
}

/** Kills every child still running and waits for them. */
export async function killChildren(): Promise<void> {
  await Promise.all([...running].map((child) => child.kill()));
}

// Children never outlive this process, however it ends.
process.on('exit', () => {
  for (const child of running) child.proc.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    for (const child of running) child.proc.kill('SIGKILL');
    process.exit(130);
  });
}

if (isChild) {
  // Our parent example is gone (even killed with SIGKILL): go too. The channel
  // is unref'd so that it does not keep an otherwise finished child alive.
  process.on('disconnect', () => process.exit(1));
  process.channel?.unref();
}

/**
 * Exits with code 1 if the example has not finished after `ms`: an example
 * must never hang, even when something goes wrong.
 */
export function deadline(ms: number): void {
  setTimeout(() => {
    console.error(`example did not finish within ${ms} ms`);
    process.exit(1);
  }, ms).unref();
}
