/**
 * Baseline peer: a plain `net` socket with the same framing as snakeMQ's
 * packeter (4-byte big-endian length, then the payload), written the way a
 * careful engineer would:
 *
 * - sender: small frames are copied into 64 KiB batch buffers, one
 *   `socket.write` per batch; large frames go out as header + payload in one
 *   corked write (no copy of the payload); `write()` returning false means
 *   waiting for `drain`;
 * - receiver: frames are parsed incrementally; a frame inside one chunk is a
 *   view of it (no copy), a frame split over chunks is joined once.
 *
 * Usage (forked by bench/messaging.ts): `raw-peer.ts receiver` or
 * `raw-peer.ts sender <port>`; commands and reports go over IPC.
 * @module
 */
import { once } from 'node:events';
import net from 'node:net';
import { cpuMs, makePayload, now, onCommand, report } from './ipc.js';

const BATCH = 64 * 1024;
const HEADER = 4;
/** Same high-water mark as the Link's default, so both sides buffer alike. */
const HIGH_WATER_MARK = 1024 * 1024;

/** Incremental frame parser (linear: each byte copied at most once). */
class FrameReader {
  private readonly header = Buffer.alloc(HEADER);
  private headerFilled = 0;
  private expected = -1;
  private parts: Buffer[] = [];
  private partsBytes = 0;

  constructor(private readonly onFrame: (frame: Buffer) => void) {}

  push(chunk: Buffer): void {
    const len = chunk.length;
    let off = 0;
    while (off < len) {
      if (this.expected >= 0) {
        const need = this.expected - this.partsBytes;
        if (len - off < need) {
          this.parts.push(off === 0 ? chunk : chunk.subarray(off));
          this.partsBytes += len - off;
          return;
        }
        this.parts.push(chunk.subarray(off, off + need));
        off += need;
        const frame = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.expected);
        this.parts = [];
        this.partsBytes = 0;
        this.expected = -1;
        this.onFrame(frame);
        continue;
      }
      let size: number;
      if (this.headerFilled === 0 && len - off >= HEADER) {
        size = chunk.readUInt32BE(off);
        off += HEADER;
      } else {
        while (this.headerFilled < HEADER && off < len) this.header[this.headerFilled++] = chunk[off++]!;
        if (this.headerFilled < HEADER) return;
        this.headerFilled = 0;
        size = this.header.readUInt32BE(0);
      }
      if (len - off >= size) {
        this.onFrame(chunk.subarray(off, off + size));
        off += size;
      } else {
        this.expected = size;
        this.parts.push(chunk.subarray(off));
        this.partsBytes = len - off;
        return;
      }
    }
  }
}

function configure(sock: net.Socket): void {
  sock.setNoDelay(true);
}

async function receiver(): Promise<void> {
  let expected = 0;
  let count = 0;
  let bytes = 0;
  let firstAt = 0;
  let cpu0 = 0;
  let sock: net.Socket | null = null;
  const reader = new FrameReader((frame) => {
    if (count === 0) firstAt = now();
    bytes += frame.length;
    if (++count === expected) {
      report({ t: 'done', t1: now(), count, bytes, firstAt, cpuMs: cpuMs() - cpu0 });
    }
  });
  const server = net.createServer({ highWaterMark: HIGH_WATER_MARK }, (s) => {
    configure(s);
    sock = s;
    s.on('data', (chunk: Buffer) => reader.push(chunk));
    s.on('error', () => undefined);
    report({ t: 'connected' });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  report({ t: 'listening', url: String(port) });
  onCommand(async (cmd) => {
    if (cmd.t === 'expect') {
      expected = cmd.n;
      cpu0 = cpuMs();
      count = 0;
      bytes = 0;
      report({ t: 'armed' });
    } else if (cmd.t === 'exit') {
      sock?.destroy();
      server.close();
      process.exit(0);
    }
  });
}

async function sender(port: number): Promise<void> {
  const sock = net.connect({ port, host: '127.0.0.1', writableHighWaterMark: HIGH_WATER_MARK } as net.NetConnectOpts);
  configure(sock);
  await once(sock, 'connect');
  sock.on('data', () => undefined);
  report({ t: 'connected' });
  const payloads = new Map<number, Buffer>();

  async function sendRound(n: number, size: number): Promise<void> {
    let payload = payloads.get(size);
    if (payload === undefined) payloads.set(size, (payload = makePayload(size)));
    const cpu0 = cpuMs();
    const t0 = now();
    let last: Promise<void>;
    if (size + HEADER <= BATCH) {
      let batch = Buffer.allocUnsafe(BATCH);
      let off = 0;
      for (let i = 0; i < n; i++) {
        if (off + HEADER + size > BATCH) {
          const ok = sock.write(batch.subarray(0, off));
          batch = Buffer.allocUnsafe(BATCH);
          off = 0;
          if (!ok) await once(sock, 'drain');
        }
        batch.writeUInt32BE(size, off);
        payload.copy(batch, off + HEADER);
        off += HEADER + size;
      }
      const tail = batch.subarray(0, off);
      last = new Promise((resolve) => sock.write(tail, () => resolve()));
    } else {
      let ok = true;
      for (let i = 0; i < n - 1; i++) {
        if (!ok) await once(sock, 'drain');
        const header = Buffer.allocUnsafe(HEADER);
        header.writeUInt32BE(size, 0);
        sock.cork();
        sock.write(header);
        ok = sock.write(payload);
        sock.uncork();
      }
      if (!ok) await once(sock, 'drain');
      const header = Buffer.allocUnsafe(HEADER);
      header.writeUInt32BE(size, 0);
      sock.cork();
      sock.write(header);
      last = new Promise((resolve) => sock.write(payload, () => resolve()));
      sock.uncork();
    }
    const tQueued = now();
    await last;
    report({ t: 'finished', t0, tQueued, tDrained: now(), cpuMs: cpuMs() - cpu0 });
  }

  onCommand(async (cmd) => {
    if (cmd.t === 'send') await sendRound(cmd.n, cmd.size);
    else if (cmd.t === 'exit') {
      sock.end();
      process.exit(0);
    }
  });
}

const role = process.argv[2];
if (role === 'receiver') await receiver();
else if (role === 'sender') await sender(Number(process.argv[3]));
else throw new Error(`usage: raw-peer.ts receiver | sender <port>`);
