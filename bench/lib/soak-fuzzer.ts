/**
 * The hostile side of bench/soak.ts's first phase: connection churn and
 * broken input against one listener on loopback, from raw sockets.
 *
 *   soak-fuzzer.ts <port> <seconds> <seed> <concurrency> <maxConnections>
 *
 * `concurrency` workers each run one scenario after another (picked at
 * random, weights below) until `seconds` passed or `maxConnections`
 * connections were made; every connection is destroyed after 5 s at the
 * latest. Scenarios:
 *
 * - `storm`: connect and destroy at once (or end at once);
 * - `idle`: connect, send nothing, leave after up to 2 s;
 * - `random`: up to 4 KiB of random bytes, then end;
 * - `oversized`: a length above 64 MiB (up to 2^32 − 1) and some bytes;
 * - `big-partial`: before identifying, a length between 4 KiB and 64 MiB
 *   and up to 64 KiB of it, held up to 1.5 s;
 * - `trickle`: a valid handshake one byte every 100 ms, up to 1.5 s;
 * - `truncated`: a valid handshake, then a MESSAGE cut short, then end;
 * - `mutated`: a valid stream (handshake, messages, PONG, ACK, unknown
 *   frames) with 1–8 mutations (bit flips, random bytes, insertions,
 *   deletions, a random length), written in 1–4 pieces;
 * - `bad-frames`: a valid handshake, then well-framed nonsense (ACK of a
 *   huge count, short MESSAGE, empty packet, PROTOCOL_VERSION 2, a second
 *   IDENTIFICATION, garbage EXTENSIONS, unknown types);
 * - `legit`: a valid peer: handshake, one message, wait for its ACK, end.
 *
 * Every identity is fresh (`fz-<n>`), as a hostile peer's would be. No
 * message data starts with `echo:`, so the listener never queues anything
 * for these identities. Reports `progress` every 5 s and `finished` with
 * the counts per scenario.
 * @module
 */
import net from 'node:net';
import { report } from './proc.js';
import { FrameReader, handshake, packet, PONG_PACKET, T_ACK, T_EXTENSIONS, T_IDENTIFICATION, T_MESSAGE, T_PING, T_PROTOCOL_VERSION } from './wire.js';

const port = Number(process.argv[2]);
const seconds = Number(process.argv[3]);
let seed = Number(process.argv[4]) >>> 0 || 1;
const concurrency = Number(process.argv[5]);
const maxConnections = Number(process.argv[6]);
const deadline = performance.now() + seconds * 1000;

/** xorshift32: the run's mix of scenarios and bytes follows the seed. */
function rand(): number {
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed / 0x100000000;
}
const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
function bytes(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (rand() * 256) | 0;
  return b;
}
const u32 = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let identSeq = 0;
const freshIdent = (): string => `fz-${identSeq++}`;
const message = (n: number): Buffer => packet(T_MESSAGE, Buffer.concat([bytes(16), u32(0xffffffff), u32(0), Buffer.from('fz'), bytes(n)]));

/** A connection under a scenario: its socket, whether it closed, what arrived. */
interface Conn {
  socket: net.Socket;
  closed: Promise<void>;
  isClosed: () => boolean;
  acked: Promise<void>;
}

function connect(answerPing: boolean): Promise<Conn | null> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
    let closed = false;
    let ackResolve!: () => void;
    const acked = new Promise<void>((r) => (ackResolve = r));
    const closedP = new Promise<void>((r) =>
      socket.on('close', () => {
        closed = true;
        r();
      }),
    );
    const reader = new FrameReader((frame) => {
      if (frame[0] === T_PING && answerPing) socket.write(PONG_PACKET);
      else if (frame[0] === T_ACK) ackResolve();
    });
    socket.on('data', (chunk: Buffer) => reader.push(chunk));
    socket.on('error', () => undefined);
    // Never held longer than 5 s, whatever the scenario does.
    const watchdog = setTimeout(() => socket.destroy(), 5000);
    socket.on('close', () => clearTimeout(watchdog));
    socket.once('connect', () => resolve({ socket, closed: closedP, isClosed: () => closed, acked }));
    socket.once('close', () => resolve(null));
  });
}

/** Waits until the socket closed or `ms` passed. */
const closedOr = (c: Conn, ms: number): Promise<void> => Promise.race([c.closed, sleep(ms)]);

function mutate(stream: Buffer): Buffer {
  let b = Buffer.from(stream);
  const k = int(1, 8);
  for (let i = 0; i < k; i++) {
    const at = int(0, Math.max(0, b.length - 1));
    switch (int(0, 4)) {
      case 0:
        b[at] = b[at]! ^ (1 << int(0, 7));
        break;
      case 1:
        b[at] = int(0, 255);
        break;
      case 2:
        b = Buffer.concat([b.subarray(0, at), bytes(int(1, 32)), b.subarray(at)]);
        break;
      case 3:
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + int(1, 16)))]);
        break;
      default:
        if (at + 4 <= b.length) b.writeUInt32BE(int(0, 1) ? int(0, 70_000) : (rand() * 0x100000000) >>> 0, at);
    }
  }
  return b;
}

/** Writes `data` in `pieces` writes. */
function writePieces(socket: net.Socket, data: Buffer, pieces: number): void {
  let off = 0;
  for (let i = 0; i < pieces && off < data.length; i++) {
    const end = i === pieces - 1 ? data.length : Math.min(data.length, off + int(1, Math.max(1, data.length - off)));
    socket.write(data.subarray(off, end));
    off = end;
  }
}

type Scenario = (c: Conn) => Promise<void>;
const scenarios: Record<string, { weight: number; answerPing: boolean; run: Scenario }> = {
  storm: {
    weight: 12,
    answerPing: false,
    run: async (c) => {
      if (rand() < 0.5) c.socket.destroy();
      else c.socket.end();
    },
  },
  idle: { weight: 3, answerPing: false, run: (c) => closedOr(c, int(100, 2000)) },
  random: {
    weight: 10,
    answerPing: false,
    run: async (c) => {
      writePieces(c.socket, bytes(int(1, 4096)), int(1, 3));
      await closedOr(c, 200);
      c.socket.end();
    },
  },
  oversized: {
    weight: 8,
    answerPing: false,
    run: async (c) => {
      const pre = rand() < 0.5 ? handshake(freshIdent(), true) : Buffer.alloc(0);
      c.socket.write(Buffer.concat([pre, u32(int(64 * 1024 * 1024 + 1, 0xffffffff)), bytes(int(0, 512))]));
      await closedOr(c, 1000);
    },
  },
  'big-partial': {
    weight: 4,
    answerPing: false,
    run: async (c) => {
      c.socket.write(Buffer.concat([u32(int(4097, 64 * 1024 * 1024)), bytes(int(1, 64 * 1024))]));
      await closedOr(c, int(200, 1500));
    },
  },
  trickle: {
    weight: 3,
    answerPing: false,
    run: async (c) => {
      const hs = handshake(freshIdent(), true);
      for (let i = 0; i < Math.min(hs.length, 15) && !c.isClosed(); i++) {
        c.socket.write(hs.subarray(i, i + 1));
        await sleep(100);
      }
    },
  },
  truncated: {
    weight: 8,
    answerPing: true,
    run: async (c) => {
      const m = message(int(0, 2000));
      c.socket.write(Buffer.concat([handshake(freshIdent(), rand() < 0.7), m.subarray(0, int(1, m.length - 1))]));
      await closedOr(c, int(0, 300));
      c.socket.end();
    },
  },
  mutated: {
    weight: 24,
    answerPing: true,
    run: async (c) => {
      const parts = [handshake(freshIdent(), rand() < 0.8)];
      for (let i = int(0, 5); i > 0; i--) parts.push(message(int(0, 300)));
      if (rand() < 0.5) parts.push(PONG_PACKET, packet(T_ACK, u32(int(0, 3))));
      if (rand() < 0.3) parts.push(packet(int(6, 255), bytes(int(0, 64))));
      writePieces(c.socket, mutate(Buffer.concat(parts)), int(1, 4));
      await closedOr(c, int(0, 300));
      c.socket.end();
    },
  },
  'bad-frames': {
    weight: 12,
    answerPing: true,
    run: async (c) => {
      const options = [
        () => packet(T_ACK, u32(int(1, 0xffffffff))),
        () => packet(T_MESSAGE, bytes(int(0, 23))),
        () => Buffer.from([0, 0, 0, 0]),
        () => packet(T_PROTOCOL_VERSION, u32(int(2, 0xffffffff))),
        () => packet(T_IDENTIFICATION, Buffer.from(freshIdent())),
        () => packet(T_EXTENSIONS, bytes(int(0, 12))),
        () => packet(int(6, 255), bytes(int(0, 256))),
        () => packet(T_PING),
        () => message(int(0, 100)),
      ];
      const parts = [handshake(freshIdent(), rand() < 0.8)];
      for (let i = int(1, 6); i > 0; i--) parts.push(options[int(0, options.length - 1)]!());
      writePieces(c.socket, Buffer.concat(parts), int(1, 3));
      await closedOr(c, int(0, 300));
      c.socket.end();
    },
  },
  legit: {
    weight: 12,
    answerPing: true,
    run: async (c) => {
      c.socket.write(Buffer.concat([handshake(freshIdent(), true), message(int(0, 200))]));
      await Promise.race([c.acked, c.closed, sleep(3000)]);
      c.socket.end();
    },
  },
};
const names = Object.keys(scenarios);
const totalWeight = names.reduce((s, n) => s + scenarios[n]!.weight, 0);
function pick(): string {
  let x = rand() * totalWeight;
  for (const n of names) if ((x -= scenarios[n]!.weight) < 0) return n;
  return names[names.length - 1]!;
}

const byKind: Record<string, number> = Object.fromEntries(names.map((n) => [n, 0]));
/** Milliseconds spent per scenario, connect to close (for the report: what the workers' time went to). */
const msByKind: Record<string, number> = Object.fromEntries(names.map((n) => [n, 0]));
let connections = 0;
let refused = 0;
const t0 = performance.now();
const progress = setInterval(() => report({ t: 'progress', connections, refused, secs: Math.round((performance.now() - t0) / 1000) }), 5000);

async function worker(): Promise<void> {
  while (performance.now() < deadline && connections < maxConnections) {
    const name = pick();
    const s = scenarios[name]!;
    connections++;
    const started = performance.now();
    const c = await connect(s.answerPing);
    if (c === null) {
      refused++;
      await sleep(10);
      continue;
    }
    byKind[name]!++;
    await s.run(c);
    // Leave (if the scenario has not), wait a little for the listener's side of the close, then let go.
    if (!c.isClosed()) {
      c.socket.end();
      await Promise.race([c.closed, sleep(1000)]);
    }
    c.socket.destroy();
    msByKind[name]! += performance.now() - started;
  }
}

await Promise.all(Array.from({ length: concurrency }, worker));
clearInterval(progress);
report({
  t: 'finished',
  connections,
  refused,
  identities: identSeq,
  by_kind: byKind,
  avg_ms_by_kind: Object.fromEntries(names.map((n) => [n, Math.round(msByKind[n]! / Math.max(1, byKind[n]!))])),
  secs: Math.round((performance.now() - t0) / 1000),
});
process.on('disconnect', () => process.exit(0));
