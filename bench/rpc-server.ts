/**
 * Server process of bench/rpc.ts (spawned by it, never run by hand):
 *
 * - an RpcServer (Link + Packeter + Messaging, identity `server`, default
 *   options: acknowledged delivery on) serving `calc.add(a, b)`, and the
 *   same on a second port with acknowledgements off (`snakemq-noack`); both
 *   also send every message starting with `echo` straight back
 *   (`messaging-echo`);
 * - the baseline: a raw `net` echo server with the packeter's framing
 *   (4-byte big-endian length, then the payload) that sends every frame back
 *   as it is, the writes of one received chunk corked into one.
 *
 * Talks to the parent over the IPC channel: reports `{ t: 'ready', rpcUrl,
 * rpcNoAckUrl, rawPort }`, answers `{ t: 'cpu' }` with its CPU time so far, and exits on
 * `{ t: 'exit' }` or when the parent goes away.
 * @module
 */
import { once } from 'node:events';
import net from 'node:net';
import { Link } from '../lib/link/index.js';
import { Message, Messaging } from '../lib/messaging/index.js';
import { Packeter } from '../lib/packeter/index.js';
import { RpcServer } from '../lib/rpc/index.js';

type Command = { t: 'cpu' } | { t: 'exit' };

function send(msg: Record<string, unknown>): void {
  process.send?.(msg);
}

if (process.send === undefined) {
  process.stderr.write('bench/rpc-server.ts is started by bench/rpc.ts (it needs an IPC channel)\n');
  process.exit(2);
}

// --- snakeMQ RPC server ------------------------------------------------------

const calc = {
  add(a: number, b: number): number {
    return a + b;
  },
};

/** A messaging instance (on its own port) serving `calc`. */
async function serve(acknowledgements: boolean): Promise<{ url: string; rpcServer: RpcServer; messaging: Messaging }> {
  const link = new Link();
  const messaging = new Messaging('server', new Packeter(link), { acknowledgements });
  const rpcServer = new RpcServer(messaging);
  rpcServer.register('calc', calc);
  // `messaging-echo` (the floor under RPC): messages starting with `echo` go straight back.
  messaging.addReceiveHook('echo', (_connId, ident, message) => {
    messaging.send(ident, new Message(message.data, { ttl: 0 }));
  });
  return { url: await link.addListener('tcp://127.0.0.1:0'), rpcServer, messaging };
}
const stacks = [await serve(true), await serve(false)];

// --- raw echo server (baseline) ---------------------------------------------

const sockets = new Set<net.Socket>();
const rawServer = net.createServer((sock) => {
  sock.setNoDelay(true);
  sockets.add(sock);
  sock.on('close', () => sockets.delete(sock));
  sock.on('error', () => undefined);
  let pending: Buffer | null = null;
  sock.on('data', (chunk: Buffer) => {
    let buf = pending === null ? chunk : Buffer.concat([pending, chunk]);
    pending = null;
    let off = 0;
    sock.cork();
    while (buf.length - off >= 4) {
      const end = off + 4 + buf.readUInt32BE(off);
      if (end > buf.length) break;
      // Echo the frame (header included) as it came.
      sock.write(buf.subarray(off, end));
      off = end;
    }
    sock.uncork();
    if (off < buf.length) pending = Buffer.from(buf.subarray(off));
    // eslint-disable-next-line no-useless-assignment -- drops the reference to a joined buffer before the next chunk
    buf = chunk;
  });
});
rawServer.listen(0, '127.0.0.1');
await once(rawServer, 'listening');
const rawPort = (rawServer.address() as net.AddressInfo).port;

// --- control -------------------------------------------------------------------

let exiting = false;
async function exit(): Promise<void> {
  if (exiting) return;
  exiting = true;
  for (const s of stacks) void s.rpcServer.close();
  for (const s of sockets) s.destroy();
  rawServer.close();
  // Give the stacks a second to close cleanly; exit regardless.
  await Promise.race([Promise.all(stacks.map((s) => s.messaging.close())), new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
  process.exit(0);
}

process.on('message', (cmd: Command) => {
  if (cmd.t === 'cpu') {
    const u = process.cpuUsage();
    send({ t: 'cpu', us: u.user + u.system });
  } else if (cmd.t === 'exit') void exit();
});
// The parent died or closed the channel: nothing left to do.
process.on('disconnect', () => void exit());

send({ t: 'ready', rpcUrl: stacks[0]!.url, rpcNoAckUrl: stacks[1]!.url, rawPort });
