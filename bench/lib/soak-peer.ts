/**
 * A peer of bench/soak.ts's second phase, run with `--expose-gc`: the full
 * stack (Link, Packeter, Messaging with acknowledgements) through the public
 * API. `a` listens, `b` connects; both send to each other at full speed.
 *
 *   soak-peer.ts a          → reports `listening {url}`
 *   soak-peer.ts b <url>
 *
 * Sending: chunks of 2,000 messages per event-loop turn while fewer than
 * 20,000 are queued for the other peer, else wait for the oldest chunk's
 * `delivered()` (no polling). Each message's first 4 bytes are its sequence
 * number; sizes are 100 bytes, every 1,000th 16 KiB, every 100,000th
 * 1 MiB. The receiver checks the numbers arrive in order, each once.
 *
 * Commands: `start`; `sample` → `sample {mem, counters}` (after a full
 * collection); `stop` → stops sending, waits until everything sent was
 * delivered (acknowledged) and answers `stopped {counters}`; `exit`.
 * @module
 */
import { Link, Message, Messaging, Packeter, type Delivery } from '../../lib/index.js';
import { gcMemory, onCommand, report, type Msg } from './proc.js';

gcMemory(); // refuses to run without --expose-gc
const role = process.argv[2];
if (role !== 'a' && role !== 'b') throw new Error('usage: soak-peer.ts a | b <url>');
const other = role === 'a' ? 'b' : 'a';
const CHUNK = 2000;
const BOUND = 20_000;

const link = new Link();
const messaging = new Messaging(role, new Packeter(link));
const counters = { sent: 0, received: 0, bytes_in: 0, out_of_order: 0, connects: 0, disconnects: 0, drops: 0, protocol_errors: 0 };
let expected = 0;
messaging.on('message', (_connId, _from, message) => {
  const seq = message.data.readUInt32BE(0);
  if (seq !== expected) counters.out_of_order++;
  expected = seq + 1;
  counters.received++;
  counters.bytes_in += message.data.length;
});
messaging.on('connect', () => {
  counters.connects++;
  if (counters.connects === 1) report({ t: 'connected' });
});
messaging.on('disconnect', () => counters.disconnects++);
messaging.on('drop', () => counters.drops++);
messaging.on('protocolError', () => counters.protocol_errors++);

const sizeOf = (seq: number): number => (seq % 100_000 === 99_999 ? 1024 * 1024 : seq % 1000 === 999 ? 16 * 1024 : 100);

let running = false;
let loop: Promise<void> = Promise.resolve();
async function sendLoop(): Promise<void> {
  const chunks: Delivery[] = [];
  let last: Delivery | null = null;
  while (running) {
    while (messaging.queueLength(other) >= BOUND && chunks.length > 0) await chunks.shift()!.delivered();
    for (let i = 0; i < CHUNK; i++) {
      const data = Buffer.allocUnsafe(sizeOf(counters.sent));
      data.writeUInt32BE(counters.sent, 0);
      last = messaging.send(other, new Message(data));
      counters.sent++;
    }
    chunks.push(last!);
    await new Promise((r) => setImmediate(r));
  }
  if (last !== null) await last.delivered();
}

if (role === 'a') {
  const url = await link.addListener('tcp://127.0.0.1:0');
  report({ t: 'listening', url });
} else {
  link.addConnector(process.argv[3]!, { reconnectDelay: () => 100 });
}

onCommand(async (m: Msg) => {
  if (m.t === 'start') {
    running = true;
    loop = sendLoop();
    loop.catch((error: unknown) => report({ t: 'error', message: `send loop: ${String(error)}` }));
  } else if (m.t === 'sample') {
    report({ t: 'sample', mem: gcMemory(), counters: { ...counters } });
  } else if (m.t === 'stop') {
    running = false;
    await loop;
    report({ t: 'stopped', counters: { ...counters } });
  } else if (m.t === 'counters') {
    report({ t: 'counters', counters: { ...counters } });
  } else if (m.t === 'exit') {
    await Promise.race([messaging.close(), new Promise((r) => setTimeout(r, 3000))]);
    process.exit(0);
  }
});
