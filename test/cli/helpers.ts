import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '..', '..');
/** The real bin file of package.json (it runs lib/cli through tsx in a checkout). */
export const BIN = join(ROOT, 'bin', 'smq.js');

/** One `smq` child process, its output collected. */
export class Smq {
  readonly proc: ChildProcess;
  stdout = '';
  stderr = '';
  /** Resolves with the exit code (or the signal name). */
  readonly exited: Promise<number | string>;
  private waiters: (() => void)[] = [];

  constructor(args: string[], env?: NodeJS.ProcessEnv) {
    this.proc = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      env: env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc.stdout!.on('data', (d: Buffer) => {
      this.stdout += d.toString();
      this.wake();
    });
    this.proc.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      this.wake();
    });
    this.exited = new Promise((resolve) => {
      this.proc.on('close', (code, signal) => {
        resolve(code ?? signal ?? -1);
        this.wake();
      });
    });
    running.add(this);
    void this.exited.then(() => running.delete(this));
  }

  /** Waits for a stderr match (e.g. the `listening on URL` line). */
  async waitStderr(re: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    let done = false;
    void this.exited.then(() => (done = true));
    for (;;) {
      const m = re.exec(this.stderr);
      if (m) return m;
      if (done) throw new Error(`smq exited before ${re} appeared on stderr:\n${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${re} on stderr:\n${this.stderr}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, 100);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** The bound URL printed by a listener (`listening on URL`). */
  async listeningUrl(): Promise<string> {
    return (await this.waitStderr(/^listening on (\S+)$/m))[1]!;
  }

  /** Waits for the exit; returns the code and the output. */
  async result(): Promise<{ code: number | string; stdout: string; stderr: string }> {
    const code = await this.exited;
    return { code, stdout: this.stdout, stderr: this.stderr };
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

const running = new Set<Smq>();

/** Runs `smq ARGS` to completion. */
export function smq(args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number | string; stdout: string; stderr: string }> {
  return new Smq(args, env).result();
}

/** Kills what a failed test left running. */
export function killAll(): void {
  for (const p of running) p.proc.kill('SIGKILL');
  running.clear();
}

const dirs: string[] = [];
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'smq-cli-'));
  dirs.push(dir);
  return dir;
}
export function removeTempDirs(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** A TCP port on 127.0.0.1 that nothing listens on (bound then released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** Parses JSON lines. */
export function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
