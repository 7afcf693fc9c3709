/**
 * Runs the benchmarks one after another: `npm run bench [-- NAME…]`
 * (throughput: messaging, storage, rpc, pubsub, pubsub-match; discovery
 * latency, lookups and memory per entry; relay throughput and latency
 * against a direct connection; udp push rate and loss; memory:
 * connections, identities).
 *
 * Each benchmark is a script of its own (bench/NAME.ts) run in a child
 * process; the JSON lines it prints go to stdout, anything else it prints
 * goes to stderr, so `npm run bench --silent | jq` works. With names, only
 * the benchmarks whose name contains one of them run
 * (`npm run bench -- messaging`); a name that is exactly a benchmark's
 * selects that one only (`pubsub` runs bench/pubsub.ts, not pubsub-match).
 * When exactly one benchmark is selected,
 * arguments starting with `--` are passed on to it
 * (`npm run bench -- messaging --rounds=5`); the benchmarks do not share
 * options, so they are refused otherwise.
 *
 * Exits non-zero when a benchmark failed or printed an `error` line.
 * @module
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..');

/**
 * In running order; a script that does not exist (yet) is skipped. The soak
 * (bench/soak.ts, 3 minutes) is not here: `npm run soak`.
 */
const BENCHMARKS = ['messaging', 'storage', 'rpc', 'pubsub', 'pubsub-match', 'discovery', 'relay', 'udp', 'connections', 'identities'];

/**
 * Figures the runner adds to a benchmark's JSON lines: the subject-matching
 * benchmark reports subjects/s, read here as ns per message as well.
 */
const DECORATE: Record<string, (line: Record<string, unknown>) => void> = {
  'pubsub-match': (line) => {
    if (line.bench === 'pubsub-match' && typeof line.msgs_per_s === 'number' && line.msgs_per_s > 0) {
      line.ns_per_msg = Math.round(1e10 / line.msgs_per_s) / 10;
    }
  },
};

const names = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const passOn = process.argv.slice(2).filter((a) => a.startsWith('--'));
const selected = BENCHMARKS.filter((b) => names.length === 0 || names.some((n) => (BENCHMARKS.includes(n) ? b === n : b.includes(n))));
if (selected.length === 0) {
  process.stderr.write(`no benchmark matches ${names.join(', ')}; known: ${BENCHMARKS.join(', ')}\n`);
  process.exit(2);
}
if (passOn.length > 0 && selected.length !== 1) {
  process.stderr.write(`options (${passOn.join(' ')}) need exactly one benchmark; selected: ${selected.join(', ')}\n`);
  process.exit(2);
}

function runOne(name: string): Promise<boolean> {
  const script = join(here, `${name}.ts`);
  return new Promise((done) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, ...passOn], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let ok = true;
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        parsed = undefined;
      }
      if (parsed !== null && typeof parsed === 'object') {
        if ('error' in parsed) ok = false;
        const decorate = DECORATE[name];
        if (decorate !== undefined) {
          decorate(parsed as Record<string, unknown>);
          process.stdout.write(`${JSON.stringify(parsed)}\n`);
        } else process.stdout.write(`${line}\n`);
      } else {
        process.stderr.write(`[${name}] ${line}\n`);
      }
    });
    // Stop the child too when this runner is interrupted.
    const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
    const onInt = forward('SIGINT');
    const onTerm = forward('SIGTERM');
    process.once('SIGINT', onInt);
    process.once('SIGTERM', onTerm);
    child.on('close', (code, signal) => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      if (code !== 0) {
        ok = false;
        process.stderr.write(`[${name}] exited with ${signal ?? `code ${code}`}\n`);
      }
      done(ok);
    });
  });
}

const started = performance.now();
const failed: string[] = [];
for (const name of selected) {
  if (!existsSync(join(here, `${name}.ts`))) {
    process.stderr.write(`[${name}] bench/${name}.ts not found, skipped\n`);
    continue;
  }
  const t = performance.now();
  const ok = await runOne(name);
  process.stderr.write(`[${name}] ${ok ? 'done' : 'FAILED'} in ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
  if (!ok) failed.push(name);
}
process.stderr.write(`benchmarks finished in ${((performance.now() - started) / 1000).toFixed(1)} s${failed.length ? `; failed: ${failed.join(', ')}` : ''}\n`);
process.exitCode = failed.length > 0 ? 1 : 0;
