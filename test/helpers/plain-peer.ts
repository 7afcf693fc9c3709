import net from 'node:net';
import { randomBytes } from 'node:crypto';

/**
 * A plain snakeMQ protocol-1 peer on a raw socket, written from the reference
 * only (no extension, no code of the library): it stands for a Python
 * snakeMQ 1.6 peer in tests.
 */
export class PlainPeer {
  readonly frames: { type: number; body: Buffer }[] = [];
  readonly messages: { uuid: string; ttl: number; flags: number; data: Buffer }[] = [];
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;

  constructor(
    readonly socket: net.Socket,
    readonly ident: string,
    readonly options: { answerPing?: boolean; handshake?: boolean } = {},
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk) => this.onData(chunk));
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
    if (options.handshake !== false) {
      this.sendFrame(0, u32(1));
      this.sendFrame(2, Buffer.from(ident, 'utf8'));
    }
  }

  static connect(port: number, ident: string, options?: PlainPeer['options']): Promise<PlainPeer> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new PlainPeer(socket, ident, options));
      });
    });
  }

  sendRaw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  sendFrame(type: number, body: Buffer = Buffer.alloc(0)): void {
    const header = Buffer.alloc(4);
    header.writeUInt32BE(body.length + 1);
    this.socket.write(Buffer.concat([header, Buffer.from([type]), body]));
  }

  sendMessage(data: Buffer | string, opts: { ttl?: number; flags?: number; uuid?: Buffer } = {}): Buffer {
    const uuid = opts.uuid ?? randomBytes(16);
    this.sendFrame(3, Buffer.concat([uuid, u32(opts.ttl ?? 0xffffffff), u32(opts.flags ?? 0), Buffer.from(data)]));
    return uuid;
  }

  /** Waits until `cond` holds (checked after each received frame or close). */
  async until(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error('PlainPeer.until timed out');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private onData(chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    while (this.buf.length >= 4) {
      const len = this.buf.readUInt32BE(0);
      if (this.buf.length < 4 + len) break;
      const payload = this.buf.subarray(4, 4 + len);
      this.buf = this.buf.subarray(4 + len);
      const type = payload[0]!;
      const body = Buffer.from(payload.subarray(1));
      this.frames.push({ type, body });
      if (type === 4 && this.options.answerPing !== false) this.sendFrame(5);
      if (type === 3) {
        this.messages.push({
          uuid: body.subarray(0, 16).toString('hex'),
          ttl: body.readUInt32BE(16),
          flags: body.readUInt32BE(20),
          data: body.subarray(24),
        });
      }
    }
    this.wake();
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}
