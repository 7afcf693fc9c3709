/**
 * UDP push benchmark: `npx tsx bench/udp.ts [options]`. Prints JSON lines
 * `{bench:'udp', ...}` (see docs/benchmarks.md).
 *
 * A sender process blasts N messages of 100 bytes over loopback as fast as
 * it can (bursts of `--burst` sends, then one event-loop turn), a receiver
 * process counts what arrives. Two implementations, alternating per round,
 * each pair of processes fresh:
 *
 * - `raw-dgram`: the baseline, a plain `dgram` socket sending the very bytes
 *   snakeMQ would (one prebuilt datagram of the snakeMQ format) to a plain
 *   socket that counts datagrams;
 * - `snakemq`: `peer.send('bob', payload)` through a `udp://` connector to a
 *   peer listening on `udp://`, counting `message` events.
 *
 * Per implementation the line reports the best round by received messages/s:
 * `sent`, `received`, `loss_pct` (UDP drops what the receiver's socket
 * buffer cannot hold: at full speed some loss is expected and is the point
 * of the figure), `send_msgs_per_s` (the sender's calls until every datagram
 * was handed to the kernel) and `recv_msgs_per_s` (received messages over the
 * time from the first send to the last arrival). The ratio line compares
 * snakemq to the baseline.
 *
 * Options:
 *   --msgs=200000   messages per round
 *   --rounds=3      rounds per implementation
 *   --burst=256     sends per event-loop turn
 *   --impl=raw-dgram,snakemq
 *   --help          this list
 * @module
 */
import { fork, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { fileURLToPath } from 'node:url';
import { setImmediate as turn } from 'node:timers/promises';
import { createPeer } from '../lib/peer/index.js';
import { benchArgs, cpuMs, helpAndExit, makePayload, now } from './lib/ipc.js';

const SIZE = 100;
/** The receiver is done once nothing arrived for this long after the sender finished. */
const QUIET_MS = 300;

type Impl = 'raw-dgram' | 'snakemq';
type Cmd = { t: 'send'; port: number; n: number; burst: number } | { t: 'count' } | { t: 'exit' };
type Report =
  | { t: 'listening'; port: number }
  | { t: 'finished'; t0: number; t1: number; failed: number; cpuMs: number }
  | { t: 'count'; count: number; lastAt: number; cpuMs: number }
  | { t: 'error'; message: string };

const args = benchArgs();
const role = args.get('role');

/** The snakeMQ datagram of one 100-byte message from `alice` (what the raw baseline sends). */
function snakemqDatagram(payload: Buffer): Buffer {
  const ident = Buffer.from([2, ...Buffer.from('alice')]);
  const out = Buffer.alloc(4 + ident.length + 4 + 25 + payload.length);
  out.writeUInt32BE(ident.length, 0);
  ident.copy(out, 4);
  out.writeUInt32BE(25 + payload.length, 4 + ident.length);
  const m = 8 + ident.length;
  out[m] = 3;
  out.writeUInt32BE(0xffffffff, m + 17);
  payload.copy(out, m + 25);
  return out;
}

function send(msg: Report): void {
  process.send?.(msg);
}

async function receiver(impl: Impl): Promise<void> {
  let count = 0;
  let lastAt = 0;
  let close: () => Promise<void>;
  let port: number;
  if (impl === 'raw-dgram') {
    const socket = dgram.createSocket('udp4');
    socket.on('message', () => {
      count++;
      lastAt = now();
    });
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
    port = socket.address().port;
    close = () => new Promise((r) => socket.close(() => r()));
  } else {
    const bob = await createPeer({ identity: 'bob', listen: 'udp://127.0.0.1:0' });
    bob.on('message', () => {
      count++;
      lastAt = now();
    });
    port = Number(/:(\d+)$/.exec(bob.listening[0]!)![1]);
    close = () => bob.close();
  }
  process.on('message', (cmd: Cmd) => {
    if (cmd.t === 'count') send({ t: 'count', count, lastAt, cpuMs: cpuMs() });
    if (cmd.t === 'exit') void close().then(() => process.exit(0));
  });
  send({ t: 'listening', port });
}

async function sender(impl: Impl): Promise<void> {
  const payload = makePayload(SIZE);
  process.on('message', (cmd: Cmd) => {
    if (cmd.t !== 'send') return;
    void (async () => {
      const cpu0 = cpuMs();
      let written = 0;
      let failed = 0;
      let allWritten!: () => void;
      const done = new Promise<void>((r) => (allWritten = r));
      const onWritten = (error?: unknown): void => {
        if (error) failed++;
        if (++written === cmd.n) allWritten();
      };
      let sendOne: () => void;
      let close: () => Promise<void>;
      if (impl === 'raw-dgram') {
        const socket = dgram.createSocket('udp4');
        const datagram = snakemqDatagram(payload);
        sendOne = () => socket.send(datagram, cmd.port, '127.0.0.1', onWritten);
        close = () => new Promise((r) => socket.close(() => r()));
      } else {
        const alice = await createPeer({ identity: 'alice' });
        alice.connect(`udp://127.0.0.1:${cmd.port}`, { identity: 'bob' });
        alice.on('sent', () => onWritten());
        alice.on('drop', () => onWritten(new Error('dropped')));
        sendOne = () => void alice.send('bob', payload);
        close = () => alice.close();
      }
      const t0 = now();
      for (let i = 0; i < cmd.n;) {
        const end = Math.min(cmd.n, i + cmd.burst);
        for (; i < end; i++) sendOne();
        await turn();
      }
      await done;
      const t1 = now();
      send({ t: 'finished', t0, t1, failed, cpuMs: cpuMs() - cpu0 });
      await close();
      process.exit(0);
    })().catch((error: unknown) => {
      send({ t: 'error', message: String(error) });
      process.exit(1);
    });
  });
  send({ t: 'listening', port: 0 });
}

function spawnRole(r: 'receiver' | 'sender', impl: Impl): ChildProcess {
  return fork(fileURLToPath(import.meta.url), [`--role=${r}`, `--impl=${impl}`], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

function next(child: ChildProcess, t: Report['t']): Promise<Report> {
  return new Promise((resolve, reject) => {
    const on = (msg: Report) => {
      if (msg.t === 'error') reject(new Error(msg.message));
      else if (msg.t === t) {
        child.off('message', on);
        resolve(msg);
      }
    };
    child.on('message', on);
    child.once('exit', (code) => reject(new Error(`child exited with ${code} before '${t}'`)));
  });
}

interface Round {
  impl: Impl;
  sent: number;
  received: number;
  loss_pct: number;
  send_msgs_per_s: number;
  recv_msgs_per_s: number;
  sender_cpu_us_per_msg: number;
}

async function round(impl: Impl, n: number, burst: number): Promise<Round> {
  const rx = spawnRole('receiver', impl);
  const { port } = (await next(rx, 'listening')) as { port: number };
  const tx = spawnRole('sender', impl);
  await next(tx, 'listening');
  const finishedP = next(tx, 'finished');
  tx.send({ t: 'send', port, n, burst } satisfies Cmd);
  const fin = (await finishedP) as Extract<Report, { t: 'finished' }>;
  let last = -1;
  let counted: Extract<Report, { t: 'count' }>;
  for (;;) {
    await new Promise((r) => setTimeout(r, QUIET_MS));
    const p = next(rx, 'count');
    rx.send({ t: 'count' } satisfies Cmd);
    counted = (await p) as Extract<Report, { t: 'count' }>;
    if (counted.count === last) break;
    last = counted.count;
  }
  rx.send({ t: 'exit' } satisfies Cmd);
  await new Promise((r) => rx.once('exit', r));
  const sent = n - fin.failed;
  const received = counted.count;
  const recvSecs = received > 0 ? (counted.lastAt - fin.t0) / 1000 : Infinity;
  return {
    impl,
    sent,
    received,
    loss_pct: Math.round((1 - received / sent) * 1000) / 10,
    send_msgs_per_s: Math.round(n / ((fin.t1 - fin.t0) / 1000)),
    recv_msgs_per_s: Math.round(received / recvSecs),
    sender_cpu_us_per_msg: Math.round((fin.cpuMs * 1000 * 1000) / n) / 1000,
  };
}

async function main(): Promise<void> {
  helpAndExit(import.meta.url, args);
  const n = Number(args.get('msgs') ?? '200000');
  const rounds = Number(args.get('rounds') ?? '3');
  const burst = Number(args.get('burst') ?? '256');
  const impls = (args.get('impl') ?? 'raw-dgram,snakemq').split(',') as Impl[];
  const results = new Map<Impl, Round[]>(impls.map((i) => [i, []]));
  for (let r = 0; r < rounds; r++) {
    for (const impl of impls) {
      const res = await round(impl, n, burst);
      results.get(impl)!.push(res);
      process.stderr.write(`[udp] round ${r + 1} ${impl}: ${JSON.stringify(res)}\n`);
    }
  }
  const best = new Map<Impl, Round>();
  for (const [impl, list] of results) {
    const b = list.reduce((a, c) => (c.recv_msgs_per_s > a.recv_msgs_per_s ? c : a));
    best.set(impl, b);
    process.stdout.write(
      `${JSON.stringify({ bench: 'udp', ...b, msgs: n, bytes_per_msg: SIZE, stat: `best of ${list.length} by recv_msgs_per_s`, runs_loss_pct: list.map((x) => x.loss_pct), runs_recv_msgs_per_s: list.map((x) => x.recv_msgs_per_s) })}\n`,
    );
  }
  const raw = best.get('raw-dgram');
  const smq = best.get('snakemq');
  if (raw && smq) {
    const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;
    process.stdout.write(
      `${JSON.stringify({ bench: 'udp', impl: 'snakemq', baseline: 'raw-dgram', ratio_send: ratio(smq.send_msgs_per_s, raw.send_msgs_per_s), ratio_recv: ratio(smq.recv_msgs_per_s, raw.recv_msgs_per_s) })}\n`,
    );
  }
}

if (role === 'receiver') void receiver((args.get('impl') ?? 'snakemq') as Impl);
else if (role === 'sender') void sender((args.get('impl') ?? 'snakemq') as Impl);
else
  main().catch((error: unknown) => {
    process.stdout.write(`${JSON.stringify({ bench: 'udp', error: String(error) })}\n`);
    process.exit(1);
  });
