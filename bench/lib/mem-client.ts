/**
 * Client process of bench/connections.ts and bench/identities.ts: many
 * snakeMQ peers on raw sockets, written by hand (bench/lib/wire.ts), so
 * that 10,000 of them fit in one light process. Each connection writes, in
 * one write, what a snakemq-ts peer writes (PROTOCOL_VERSION,
 * IDENTIFICATION, with acknowledgements EXTENSIONS and PING) followed by one
 * 100-byte MESSAGE; it answers PING with PONG, and counts as done when the
 * listener acknowledged the message (ACK frame) or, in plain mode, when the
 * listener's IDENTIFICATION arrived.
 *
 * Commands (IPC):
 * - `hold {port, n, concurrency, ack, prefix}`: open n connections (at most
 *   `concurrency` not yet done at a time), identities `<prefix><i>`, keep
 *   them; answers `held`.
 * - `release`: close them all, answers `released` once every socket closed.
 * - `churn {port, n, concurrency, ack, prefix}`: n connections, each with a
 *   fresh identity, `concurrency` at a time; each closes once done (the
 *   peer connects once, sends one message and leaves). Answers `churned`;
 *   `progress` every 10 %.
 *
 * A connection that fails before it is done (refused, reset, closed,
 * 30 s without an answer) is retried with the same identity, up to 5 times;
 * the counts are in the answer.
 * @module
 */
import net from 'node:net';
import { onCommand, report, type Msg } from './proc.js';
import { FrameReader, handshake, messagePacket, PONG_PACKET, T_ACK, T_IDENTIFICATION, T_PING } from './wire.js';

const DATA = Buffer.alloc(100, 0x61);
const ATTEMPTS = 5;
const DONE_TIMEOUT_MS = 30_000;

interface Job {
  port: number;
  ack: boolean;
}

/** Opens one peer connection; resolves with the socket once done (see the header), rejects on failure. */
function peer(job: Job, ident: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port: job.port, host: '127.0.0.1', noDelay: true });
    let done = false;
    const timer = setTimeout(() => fail(new Error('no answer')), DONE_TIMEOUT_MS);
    const fail = (error: Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    const reader = new FrameReader((frame) => {
      const type = frame[0];
      if (type === T_PING) socket.write(PONG_PACKET);
      else if (!done && (job.ack ? type === T_ACK : type === T_IDENTIFICATION)) {
        done = true;
        clearTimeout(timer);
        resolve(socket);
      }
    });
    socket.on('connect', () => socket.write(Buffer.concat([handshake(ident, job.ack), messagePacket(DATA)])));
    socket.on('data', (chunk: Buffer) => reader.push(chunk));
    socket.on('error', (error) => fail(error));
    socket.on('close', () => fail(new Error('closed before done')));
  });
}

const stats = { errors: 0, retries: 0, codes: {} as Record<string, number> };

async function peerWithRetries(job: Job, ident: string): Promise<net.Socket> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await peer(job, ident);
    } catch (error) {
      stats.errors++;
      const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      stats.codes[code] = (stats.codes[code] ?? 0) + 1;
      if (attempt >= ATTEMPTS) throw new Error(`${ident}: ${attempt} attempts failed, last: ${code}`, { cause: error });
      stats.retries++;
      await new Promise((r) => setTimeout(r, 20 * attempt));
    }
  }
}

/** Runs `count` tasks, `concurrency` at a time. */
async function pool(count: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

const held: net.Socket[] = [];

function closeAll(sockets: net.Socket[]): Promise<void> {
  return Promise.all(
    sockets.map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.destroyed) return resolve();
          s.once('close', () => resolve());
          s.end();
          // A peer that does not close its side within a second is cut off.
          setTimeout(() => s.destroy(), 1000).unref();
        }),
    ),
  ).then(() => undefined);
}

onCommand(async (m: Msg) => {
  if (m.t === 'hold' || m.t === 'churn') {
    const job: Job = { port: Number(m.port), ack: m.ack !== false };
    const n = Number(m.n);
    const prefix = String(m.prefix);
    stats.errors = 0;
    stats.retries = 0;
    stats.codes = {};
    const t0 = performance.now();
    let finished = 0;
    const step = Math.max(1, Math.floor(n / 10));
    await pool(n, Number(m.concurrency), async (i) => {
      const socket = await peerWithRetries(job, `${prefix}${i}`);
      if (m.t === 'hold') held.push(socket);
      else await closeAll([socket]);
      if (++finished % step === 0) report({ t: 'progress', done: finished, n, ms: Math.round(performance.now() - t0) });
    });
    report({ t: m.t === 'hold' ? 'held' : 'churned', n, ms: Math.round(performance.now() - t0), ...stats });
  } else if (m.t === 'release') {
    await closeAll(held.splice(0));
    report({ t: 'released' });
  } else if (m.t === 'exit') {
    for (const s of held) s.destroy();
    process.exit(0);
  }
});
report({ t: 'ready' });
