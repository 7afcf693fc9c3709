/**
 * snakeMQ peer for bench/messaging.ts: the full stack (Link, Packeter,
 * Messaging) over TCP on loopback. `alice` receives, `bob` sends.
 *
 * Usage (forked by bench/messaging.ts):
 *   snakemq-peer.ts receiver [ack|noack]
 *   snakemq-peer.ts sender <url> [ack|noack] [chunked|all|bytes]
 *
 * Sending modes (see docs/benchmarks.md):
 * - `chunked` (default): send CHUNK messages (5,000 of 100 bytes, 4 MiB of
 *   big ones) per event-loop turn, yielding with `setImmediate` between
 *   chunks; while `queueLength('alice')` is at its bound (2 MiB of
 *   payload, or 16 messages when larger), wait for the oldest chunk's `delivered()` first. What an
 *   application streaming data would do.
 * - `all`: every message in one synchronous loop, then wait.
 * - `bytes`: as `chunked`, but each message is the payload Buffer itself
 *   (`send('alice', payload)`: no Message object unless asked for).
 * Either way the round ends when the last message is delivered
 * (acknowledged, or written to the socket without acknowledgements).
 * @module
 */
import { Link } from '../../lib/link/index.js';
import { Packeter } from '../../lib/packeter/index.js';
import { Messaging, Message } from '../../lib/messaging/index.js';
import type { Delivery } from '../../lib/messaging/index.js';
import { SqliteQueuesStorage } from '../../lib/storage/sqlite.js';
import { cpuMs, makePayload, now, onCommand, report, turn } from './ipc.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Closes the stack, but gives up after a second (the process exits anyway). */
async function shutdown(): Promise<void> {
  await Promise.race([messaging.close(), new Promise((resolve) => setTimeout(resolve, 1000))]);
  process.exit(0);
}

/** Messages sent per event-loop turn in chunked mode (fewer for big messages). */
const CHUNK_MESSAGES = Number(process.env.BENCH_CHUNK_MESSAGES ?? 5_000);
const CHUNK_BYTES = 4 * 1024 * 1024;
/** Chunked mode sends only while fewer than this many bytes are queued (messages sent but not delivered). */
// Small messages: 2 MiB outstanding keeps the live objects young (cheap for the GC). Big ones: 16 messages, to keep the pipe full.
const QUEUE_BOUND_BYTES = process.env.BENCH_QUEUE_BOUND_BYTES !== undefined ? Number(process.env.BENCH_QUEUE_BOUND_BYTES) : null;

const role = process.argv[2];
const acknowledgements = (role === 'receiver' ? process.argv[3] : process.argv[4]) !== 'noack';
const mode = process.argv[5] === 'all' ? 'all' : process.argv[5] === 'bytes' ? 'bytes' : 'chunked';
const persistent = process.argv[6] === 'persistent';

const link = new Link();
const packeter = new Packeter(link);
// BENCH_DEDUP_WINDOW: override the receiver's de-duplication window (0 = off), to measure what it costs.
const dedup = process.env.BENCH_DEDUP_WINDOW;
// Persistent mode: the sender's queues in a fresh SQLite file (durability 'process': survives kill -9).
const storageDir = persistent ? mkdtempSync(join(tmpdir(), 'smq-bench-')) : null;
const storage = storageDir !== null ? await SqliteQueuesStorage.open(join(storageDir, 'bench.sqlite')) : null;
process.on('exit', () => {
  if (storageDir !== null) rmSync(storageDir, { recursive: true, force: true });
});
const messaging = new Messaging(role === 'receiver' ? 'alice' : 'bob', packeter, {
  storage,
  acknowledgements,
  ...(dedup !== undefined ? { dedupWindow: Number(dedup) } : {}),
});
messaging.on('connect', () => report({ t: 'connected' }));
// BENCH_INTERCEPT=1: one no-op send and receive interceptor on each side, to measure what a registered one costs.
if (process.env.BENCH_INTERCEPT === '1') messaging.intercept({ send: () => undefined, receive: () => undefined });

if (role === 'receiver') {
  let expected = 0;
  let count = 0;
  let bytes = 0;
  let firstAt = 0;
  let cpu0 = 0;
  messaging.on('message', (_connId, _ident, message) => {
    if (count === 0) firstAt = now();
    bytes += message.data.length;
    if (++count === expected) report({ t: 'done', t1: now(), count, bytes, firstAt, cpuMs: cpuMs() - cpu0 });
  });
  const url = await link.addListener('tcp://127.0.0.1:0');
  report({ t: 'listening', url });
  onCommand(async (cmd) => {
    if (cmd.t === 'expect') {
      expected = cmd.n;
      cpu0 = cpuMs();
      count = 0;
      bytes = 0;
      report({ t: 'armed' });
    } else if (cmd.t === 'exit') {
      await shutdown();
    }
  });
} else if (role === 'sender') {
  const url = process.argv[3]!;
  link.addConnector(url, { reconnectDelay: () => 50 });
  const payloads = new Map<number, Buffer>();

  const sendOptions = { persistent };
  async function sendRound(n: number, size: number): Promise<void> {
    let payload = payloads.get(size);
    if (payload === undefined) payloads.set(size, (payload = makePayload(size)));
    const cpu0 = cpuMs();
    let last: Delivery | undefined;
    const t0 = now();
    if (mode === 'all') {
      for (let i = 0; i < n; i++) last = messaging.send('alice', new Message(payload, sendOptions));
    } else {
      const chunk = Math.max(1, Math.min(CHUNK_MESSAGES, Math.floor(CHUNK_BYTES / size)));
      const boundBytes = QUEUE_BOUND_BYTES ?? Math.max(2 * 1024 * 1024, 16 * size);
      const bound = Math.max(chunk, Math.floor(boundBytes / size));
      // The last Delivery of each chunk sent, oldest first: when the queue is
      // at its bound, wait for the oldest chunk to be delivered (no polling).
      const chunks: Delivery[] = [];
      let left = n;
      while (left > 0) {
        while (messaging.queueLength('alice') >= bound && chunks.length > 0) await chunks.shift()!.delivered();
        const k = Math.min(chunk, left);
        if (mode === 'bytes') for (let i = 0; i < k; i++) last = messaging.send('alice', payload);
        else for (let i = 0; i < k; i++) last = messaging.send('alice', new Message(payload, sendOptions));
        chunks.push(last!);
        left -= k;
        if (left > 0) await turn();
      }
    }
    const tQueued = now();
    await last!.delivered();
    if (persistent) await last!.persisted();
    report({ t: 'finished', t0, tQueued, tDrained: now(), cpuMs: cpuMs() - cpu0 });
  }

  onCommand(async (cmd) => {
    if (cmd.t === 'send') await sendRound(cmd.n, cmd.size);
    else if (cmd.t === 'exit') {
      await shutdown();
    }
  });
} else {
  throw new Error('usage: snakemq-peer.ts receiver [ack|noack] | sender <url> [ack|noack] [chunked|all|bytes]');
}
