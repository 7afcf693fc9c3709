/**
 * Runs every example (and the demo) as a child process, the way a reader
 * would (`node --import tsx examples/<file>.ts`, no arguments), and checks
 * that it exits with code 0 and printed what it is meant to show.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

function runExample(file: string, timeoutMs: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, ['--import', 'tsx', join('examples', file)], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, DEBUG: '' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // The examples' own children watch their parent and go with it.
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, seconds: (performance.now() - started) / 1000 });
    });
  });
}

/** Runs `file` and checks exit code 0 and that every pattern matches a line of its output. */
async function check(file: string, patterns: RegExp[], timeoutMs = 50_000): Promise<Run> {
  const run = await runExample(file, timeoutMs);
  const context = `${file} exited with ${run.code ?? run.signal} after ${run.seconds.toFixed(1)} s\n--- stdout\n${run.stdout}--- stderr\n${run.stderr}`;
  expect(run.code, context).toBe(0);
  const lines = run.stdout.split('\n');
  for (const pattern of patterns) {
    expect(
      lines.some((line) => pattern.test(line)),
      `no line matches ${pattern}\n${context}`,
    ).toBe(true);
  }
  return run;
}

describe.concurrent('examples', () => {
  const messaging = [
    /^\[xlistener\] listening on tcp:\/\/127\.0\.0\.1:\d+$/,
    /^\[xconnector\] received from xlistener \(connection \d+\): "hello", ttl \d+$/,
    /^\[xlistener\] received from xconnector \(connection \d+\): "hi xlistener, thanks"$/,
    /^\[xlistener\] "hello" delivered/,
    /^\[xconnector\] answer delivered$/,
    /^\[xlistener\] closed$/,
    /^\[xconnector\] closed$/,
  ];
  it('messaging-listener.ts', () => check('messaging-listener.ts', messaging), 60_000);
  it('messaging-connector.ts', () => check('messaging-connector.ts', messaging), 60_000);

  const packeter = [
    /^\[packeter-connector\] queued packets \d+, \d+, \d+$/,
    /^\[packeter-connector\] connection \d+: packets up to \d+ written$/,
    /^\[packeter-listener\] received from connection \d+: "hello 3"$/,
    /^\[packeter-listener\] connection \d+: packets up to \d+ written$/,
    /^\[packeter-connector\] received from connection \d+: "hi"$/,
    /^\[packeter-listener\] connection \d+ closed \(by remote\)$/,
    /^\[packeter-connector\] closed$/,
  ];
  it('packeter-listener.ts', () => check('packeter-listener.ts', packeter), 60_000);
  it('packeter-connector.ts', () => check('packeter-connector.ts', packeter), 60_000);

  it('persistent-messaging.ts', async () => {
    const run = await check('persistent-messaging.ts', [
      /^\[xconnector\] persistent message committed to SQLite: state "persisted"$/,
      /^\[xconnector\] stopped; the transient message was dropped: SMQ_ERR_CLOSED$/,
      /^\[xconnector\] restarted: 1 message\(s\) waiting for xlistener$/,
      /^\[xlistener\] from xconnector: "hello, stored on disk" \(persistent: true, TTL \d+ s left\)$/,
      /^\[xlistener\] from xconnector: "second, sent after the restart"/,
      /^\[xconnector\] second message: state "acknowledged"; 0 queued$/,
    ]);
    expect(run.stdout).not.toContain('kept in memory only"'); // the transient message never arrives
    const dir = run.stdout.match(/storage (\S+)\/xconnector\.sqlite/)![1]!;
    expect(existsSync(dir), 'temp dir removed').toBe(false);
  }, 60_000);

  const rpc = [
    /^\[soldier\] abc\.getFo\(\) = "xcv"$/,
    /^\[soldier\] abc\.add\(2, 3\) = 5$/,
    /^\[soldier\] abc\.fail\(\) threw remotely: RangeError: abc\.fail\(\) always fails \(SMQ_ERR_RPC_REMOTE\)$/,
    /^\[soldier\] abc\.noSuchMethod\(\): RpcUnknownMethodError \(SMQ_ERR_RPC_UNKNOWN_METHOD\)$/,
    /^\[boss\] mysignal\("hello from soldier"\)$/,
    /^\[soldier\] abc\.signalsSeen\(\) = 1$/,
    /^\[boss\] closed$/,
    /^\[soldier\] closed$/,
  ];
  it('rpc-listener.ts', () => check('rpc-listener.ts', rpc), 60_000);
  it('rpc-connector.ts', () => check('rpc-connector.ts', rpc), 60_000);

  it(
    'tls.ts',
    () =>
      check('tls.ts', [
        /^\[bob\] listening on tls:\/\/127\.0\.0\.1:\d+$/,
        /^\[bob\] alice connected over TLSv1\.[23] .*peer certificate CN=alice, verified: true$/,
        /^\[alice\] bob connected over TLSv1\.[23] .*peer certificate CN=bob, verified: true$/,
        /^\[alice\] from bob: "hello alice, your certificate checks out"$/,
        /^\[mallory\] connect to tls:\/\/127\.0\.0\.1:\d+ failed: TlsError \(SMQ_ERR_TLS\)$/,
        /^\[bob\] closed$/,
      ]),
    60_000,
  );

  it(
    'pubsub.ts',
    () =>
      check('pubsub.ts', [
        /^\[radar\] archive subscribed to \/oper \(durable\)$/,
        /^\[monitor\] \/oper\/geo\/direct_readout file \{"uri":"ftp:\/\/x\/f2\.h5"\} from radar$/,
        /^\[archive\] \/oper\/polar\/direct_readout file/,
        /^\[radar\] written to 0, held for archive$/,
        /^\[archive\] \/oper\/polar\/overview dataset \{"n":3\} from radar$/,
        /^\[radar\] PostTroll form: pytroll:\/\/oper\/polar\/overview dataset radar@host 2026-12-03T10:00:00 v1\.01 application\/json \{"n": 3\}$/,
        /^\[radar\] closed$/,
      ]),
    60_000,
  );

  it('throttle.ts', async () => {
    const run = await check('throttle.ts', [/^\[receiver\] all 150 kB in \d+\.\d+ s/, /^\[sender\] closed$/]);
    // 150 kB at 100 kB/s with a 10 kB burst cannot take less than 1.4 s (a loaded machine only adds).
    const seconds = Number(run.stdout.match(/all 150 kB in (\d+\.\d+) s/)![1]);
    expect(seconds).toBeGreaterThanOrEqual(1.3);
  }, 60_000);

  it(
    'nat-rpc.ts',
    () =>
      check('nat-rpc.ts', [
        /^\[agent\] no listener; connecting out to tcp:\/\/127\.0\.0\.1:\d+$/,
        /^\[hub\] agent connected from 127\.0\.0\.1:\d+ .*"listener"/,
        /^\[hub\] agent\.describe\(\) = \{"host":.*"pid":\d+/,
        /^\[hub\] agent\.run\("backup", 2\) = \["backup #1 done","backup #2 done"\]$/,
        /^\[hub\] closed$/,
      ]),
    60_000,
  );

  it(
    'intercept.ts',
    () =>
      check('intercept.ts', [
        /^\[clinic\] sent record 1; what goes on the wire: \{"patient":"P-17","card":"4111 \*\*\*\* \*\*\*\* 1234"\}$/,
        /^\[lab\] from clinic: \{"patient":"P-17","card":"4111 \*\*\*\* \*\*\*\* 1234"\}$/,
        /^\[lab\] from clinic: \{"patient":"P-18","note":"no card on file"\}$/,
        /^\[lab\] refused from clinic: "free text, not JSON" \(SMQ_ERR_INTERCEPTED: not a JSON record\)$/,
        /^\[clinic\] lab says it has 2 records$/,
        /^\[clinic\] metrics: to lab: 4 messages, \d+ bytes; from lab: 1 messages, \d+ bytes$/,
        /^\[clinic\] closed$/,
      ]),
    60_000,
  );

  it('demo.ts (npm run demo)', async () => {
    const run = await check('demo.ts', [
      /^bob {3}\| received from alice: "hi bob, alice here"$/,
      /^alice \| received from bob: "hi alice, nice to see you"$/,
      /^alice \| bob\.greet\("alice"\) returned "hello alice, this is bob \(pid \d+\)"$/,
      /^bob {3}\| alice\.greet\("bob"\) returned "hello bob, this is alice \(pid \d+\)"$/,
      /^bob {3}\| "sent while you were away" is committed to bob\.sqlite \(alice is away\)$/,
      /^bob {3}\| \(killed: pid \d+\)$/,
      /^bob {3}\| 1 message\(s\) for alice loaded from bob\.sqlite$/,
      /^alice \| received from bob: "sent while you were away" \(persistent\)$/,
      /^bob {3}\| alice acknowledged "sent while you were away": removed from bob\.sqlite$/,
      /^demo {2}\| demo finished in \d+\.\d s$/,
    ]);
    // bob was restarted; the pid that answered before the kill is not the one that delivered after it.
    const pids = [...run.stdout.matchAll(/^bob {3}\| started: pid (\d+)/gm)].map((m) => m[1]);
    expect(pids).toHaveLength(2);
    expect(pids[0]).not.toBe(pids[1]);
    // The demo reports its own run time (child start-ups included): it must stay short.
    expect(Number(run.stdout.match(/demo finished in (\d+\.\d) s/)![1])).toBeLessThan(15);
    const dir = run.stdout.match(/queues in (\/\S+)\)/)![1]!;
    expect(existsSync(dir), 'temp dir removed').toBe(false);
  }, 60_000);
});
