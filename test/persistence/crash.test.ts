import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Message } from '../../lib/messaging/index.js';
import { Child } from '../helpers/child.js';
import { closeAllPeers, createPeer, type TestPeer } from '../helpers/peers.js';
import { PlainPeer } from '../helpers/plain-peer.js';

const childScript = join(import.meta.dirname, 'child-peer.ts');
let dir: string;
const children: Child[] = [];
const plain: PlainPeer[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smq-crash-'));
});
afterEach(async () => {
  await Promise.all(children.splice(0).map((c) => c.kill()));
  for (const p of plain.splice(0)) p.close();
  await closeAllPeers();
  await rm(dir, { recursive: true, force: true });
});

function child(config: object): Child {
  const c = new Child(childScript, [JSON.stringify(config)]);
  children.push(c);
  return c;
}

/** Indices of `m<i>` messages received by a peer, in arrival order. */
function track(peer: TestPeer): number[] {
  const got: number[] = [];
  peer.messaging.on('message', (_c, _i, m) => got.push(Number(m.data.toString().slice(1))));
  return got;
}

function indices(c: Child, kind: string): number[] {
  return c.lines.filter((l) => l.startsWith(`${kind} `)).map((l) => Number(l.split(' ')[1]));
}

async function until(cond: () => boolean, timeoutMs = 30_000, what = 'condition'): Promise<void> {
  await vi.waitFor(
    () => {
      if (!cond()) throw new Error(`timed out waiting for ${what}`);
    },
    { timeout: timeoutMs, interval: 20 },
  );
}

/**
 * SIGKILLs a child and waits until its stdout is closed: 'exit' can come
 * before the last lines were read, and a line the child wrote (a message it
 * received and acknowledged) must not be taken for one that never came.
 */
async function killHard(c: Child): Promise<void> {
  const closed = new Promise<void>((resolve) => {
    if (c.proc.exitCode !== null || c.proc.signalCode !== null) {
      if (c.proc.stdout!.closed) return resolve();
      c.proc.stdout!.once('close', () => resolve());
    } else c.proc.once('close', () => resolve());
  });
  await c.kill('SIGKILL');
  await closed;
}

function expectStrictlyIncreasing(got: number[]): void {
  for (let i = 1; i < got.length; i++) {
    if (got[i]! <= got[i - 1]!) throw new Error(`out of order or duplicate at ${i}: ${got[i - 1]} then ${got[i]}`);
  }
}

describe('persistent delivery across crashes (child processes, SQLite files)', () => {
  it('sender killed with SIGKILL mid-stream and restarted: every persisted message arrives once, in order', async () => {
    const receiver = createPeer('receiver');
    const got = track(receiver);
    const url = await receiver.link.addListener('tcp://127.0.0.1:0');
    const storage = join(dir, 'sender.sqlite');
    const n = 10_000;
    const first = child({ ident: 'sender', storage, connect: url, sendTo: 'receiver', count: n });
    const killAt = 500 + Math.floor(Math.random() * 5000);
    await until(() => indices(first, 'persisted').length >= killAt || first.lines.includes('drained'), 60_000, 'persisted lines');
    await killHard(first);
    const persisted = indices(first, 'persisted');
    const arrivedBeforeRestart = got.length;

    const second = child({ ident: 'sender', storage, connect: url, sendTo: 'receiver', count: 0 });
    await second.line((l) => l === 'drained', 60_000);
    expectStrictlyIncreasing(got);
    const received = new Set(got);
    for (const i of persisted) expect(received.has(i), `persisted message ${i} arrived`).toBe(true);
    expect(persisted.length).toBeGreaterThan(0);
    expect(got.length).toBeGreaterThanOrEqual(arrivedBeforeRestart);
  }, 120_000);

  it('receiver killed with SIGKILL mid-stream and restarted: every message arrives, none twice while it lives', async () => {
    const receiverStorage = join(dir, 'receiver.sqlite');
    const r1 = child({ ident: 'receiver', storage: receiverStorage, listen: 'tcp://127.0.0.1:0' });
    const url = (await r1.line((l) => l.startsWith('url '))).slice(4);
    const sender = createPeer('sender');
    const n = 5_000;
    sender.link.addConnector(url, { reconnectDelay: () => 50 });
    for (let i = 0; i < n; i++) sender.messaging.send('receiver', new Message(`m${i}`));
    const recv = (c: Child) => c.lines.filter((l) => l.startsWith('recv ')).map((l) => Number(l.split(' ')[2]!.slice(1)));
    await until(() => recv(r1).length >= 1000, 60_000, 'first messages');
    await killHard(r1);
    const firstRun = recv(r1);
    const r2 = child({ ident: 'receiver', storage: receiverStorage, listen: url });
    await until(() => sender.messaging.queueLength('receiver') === 0, 60_000, 'sender queue to drain');
    await until(() => new Set([...firstRun, ...recv(r2)]).size === n, 30_000, 'every message in one run or the other');
    const secondRun = recv(r2);
    for (const run of [firstRun, secondRun]) {
      expectStrictlyIncreasing(run);
    }
    const all = new Set([...firstRun, ...secondRun]);
    for (let i = 0; i < n; i++) expect(all.has(i), `message ${i} arrived`).toBe(true);
  }, 120_000);

  it('sender restarted while the receiver is away: everything arrives once the receiver connects', async () => {
    const storage = join(dir, 'sender.sqlite');
    const receiver = createPeer('receiver');
    const url = await receiver.link.addListener('tcp://127.0.0.1:0');
    await receiver.close();
    const n = 2_000;
    const first = child({ ident: 'sender', storage, connect: url, sendTo: 'receiver', count: n });
    await until(() => indices(first, 'persisted').length === n, 60_000, 'all persisted');
    await killHard(first);

    const second = child({ ident: 'sender', storage, connect: url, sendTo: 'receiver', count: 0 });
    await second.line((l) => l === 'ready');
    const receiver2 = createPeer('receiver');
    const got = track(receiver2);
    await receiver2.link.addListener(url);
    await second.line((l) => l === 'drained', 60_000);
    await until(() => got.length === n, 10_000, 'all messages');
    expect(got).toEqual(Array.from({ length: n }, (_, i) => i));
  }, 120_000);

  it('against a plain protocol-1 peer: everything arrives; a message leaves the queue once written', async () => {
    const storage = join(dir, 'sender.sqlite');
    const { createServer } = await import('node:net');
    const peers: PlainPeer[] = [];
    const server = createServer((socket) => {
      const p = new PlainPeer(socket, 'python');
      peers.push(p);
      plain.push(p);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      const n = 3_000;
      const sender = child({ ident: 'sender', storage, connect: `tcp://127.0.0.1:${port}`, sendTo: 'python', count: n });
      await sender.line((l) => l === 'drained', 60_000);
      await until(() => peers.reduce((s, p) => s + p.messages.length, 0) === n, 10_000, 'plain peer messages');
      const texts = peers.flatMap((p) => p.messages.map((m) => m.data.toString()));
      expect(texts).toEqual(Array.from({ length: n }, (_, i) => `m${i}`));
      expect(indices(sender, 'delivered').length).toBe(n);
      // No ACK frame was ever sent to the plain peer.
      expect(peers.some((p) => p.frames.some((f) => f.type === 17))).toBe(false);
    } finally {
      for (const p of peers) p.close();
      await new Promise((r) => server.close(r));
    }
  }, 120_000);
});
