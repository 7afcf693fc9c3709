/**
 * Messages in flight kept as their written frames only ("detached": see
 * QueueEntry.detach): what the caller's Delivery reports, and re-sends made
 * from the kept bytes after a reconnect.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Message } from '../../lib/messaging/index.js';
import { ClosedError, QueueFullError } from '../../lib/errors.js';
import { closeAllPeers, createPeer, waitEvent, type TestPeer } from '../helpers/peers.js';
import { PlainPeer } from '../helpers/plain-peer.js';

const EXT_ACK = Buffer.from([1, 0, 0, 0, 1]);
const plainPeers: PlainPeer[] = [];
afterEach(async () => {
  for (const p of plainPeers.splice(0)) p.close();
  await closeAllPeers();
});

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** bob listens; a plain peer 'alice' that announces acknowledgements connects. */
async function plainAlice(bob: TestPeer, url: string): Promise<PlainPeer> {
  const peer = await PlainPeer.connect(Number(new URL(url).port), 'alice');
  plainPeers.push(peer);
  peer.sendFrame(16, EXT_ACK);
  await waitEvent(bob.messaging, 'connect');
  return peer;
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('Messaging: messages in flight kept as frames', () => {
  it('a Delivery asked after its message was written still learns of the ACK (state and promises)', async () => {
    const bob = createPeer('bob');
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const alice = await plainAlice(bob, url);
    const ds = Array.from({ length: 5 }, (_, i) => bob.messaging.send('alice', Buffer.from(`m${i}`)));
    await alice.until(() => alice.messages.length === 5);
    await ds[4]!.written();
    expect(ds.map((d) => d.state)).toEqual(Array(5).fill('written'));
    const second = ds[1]!.delivered();
    alice.sendFrame(17, u32(2));
    await second;
    expect(ds.map((d) => d.state)).toEqual(['acknowledged', 'acknowledged', 'written', 'written', 'written']);
    expect(bob.messaging.queueLength('alice')).toBe(3);
    // Waited for out of order: each settles when its own ACK comes.
    let lastDone = false;
    const last = ds[4]!.delivered().then(() => (lastDone = true));
    const third = ds[2]!.delivered();
    alice.sendFrame(17, u32(1));
    await third;
    await settle();
    expect(lastDone).toBe(false);
    alice.sendFrame(17, u32(2));
    await last;
    expect(ds.map((d) => d.state)).toEqual(Array(5).fill('acknowledged'));
    expect(bob.messaging.queueLength('alice')).toBe(0);
  });

  it('re-sends thousands of kept frames intact after a reconnect, though the packeter wrote much to another peer meanwhile', async () => {
    const bob = createPeer('bob');
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const first = await plainAlice(bob, url);
    const carol = await PlainPeer.connect(Number(new URL(url).port), 'carol');
    plainPeers.push(carol);
    carol.sendFrame(16, EXT_ACK);
    await waitEvent(bob.messaging, 'connect');
    const n = 6000;
    // Some bare data, some Messages with flags; distinct contents, so that reused batch bytes would show.
    const ds = Array.from({ length: n }, (_, i) =>
      i % 3 === 0
        ? bob.messaging.send('alice', new Message(`message ${i}`, { flags: i }))
        : bob.messaging.send('alice', `data ${i}`.padEnd(20 + (i % 50), '.')),
    );
    await first.until(() => first.messages.length === n);
    const sent = first.messages.map((m) => ({ ...m, data: m.data.toString() }));
    // The first 1000 acknowledged: their batch bytes may be reused from now on.
    first.sendFrame(17, u32(1000));
    await ds[999]!.delivered();
    expect(ds[1000]!.state).toBe('written');
    // Much traffic to another peer through the same packeter while alice's frames are kept.
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 3000; i++) bob.messaging.send('carol', Buffer.alloc(100, 0x5a));
      await carol.until(() => carol.messages.length === 3000 * (round + 1));
      carol.sendFrame(17, u32(3000));
    }
    first.close();
    await waitEvent(bob.messaging, 'disconnect');
    expect(bob.messaging.queueLength('alice')).toBe(n - 1000);
    const second = await plainAlice(bob, url);
    await second.until(() => second.messages.length === n - 1000);
    expect(second.messages.map((m) => ({ ...m, data: m.data.toString() }))).toEqual(
      sent.slice(1000).map((m) => ({ ...m, flags: (m.flags | 0x80000000) >>> 0 })),
    );
    expect(second.messages[0]!.uuid).toBe(ds[1000]!.message.id);
    // Acknowledged on the second connection: the Deliveries of the first learn it.
    let done = 0;
    for (const d of ds.slice(1000)) void d.delivered().then(() => done++);
    second.sendFrame(17, u32(n - 1000));
    await ds[n - 1]!.delivered();
    await settle();
    expect(done).toBe(n - 1000);
    expect(bob.messaging.queueLength('alice')).toBe(0);
  });

  it('a kept message dropped after a reconnect rejects its Delivery; the drop event tells its uuid and data', async () => {
    const bob = createPeer('bob', { maxQueueMessages: 3, overflow: 'drop-oldest' });
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const first = await plainAlice(bob, url);
    const ds = ['a', 'b', 'c'].map((t) => bob.messaging.send('alice', t));
    await first.until(() => first.messages.length === 3);
    first.close();
    await waitEvent(bob.messaging, 'disconnect');
    const dropped: [string, string][] = [];
    bob.messaging.on('drop', (_ident, message) => dropped.push([message.id, message.data.toString()]));
    const pending = ds[0]!.delivered();
    // A fourth message pushes the oldest out of the full queue.
    const d = bob.messaging.send('alice', 'd');
    await expect(pending).rejects.toBeInstanceOf(QueueFullError);
    expect(ds[0]!.state).toBe('dropped');
    await expect(ds[0]!.written()).rejects.toBeInstanceOf(QueueFullError);
    expect(dropped).toEqual([[ds[0]!.message.id, 'a']]);
    const second = await plainAlice(bob, url);
    await second.until(() => second.messages.length === 3);
    expect(second.messages.map((m) => m.data.toString())).toEqual(['b', 'c', 'd']);
    second.sendFrame(17, u32(3));
    await Promise.all([ds[1]!.delivered(), ds[2]!.delivered(), d.delivered()]);
    expect(ds[0]!.state).toBe('dropped');
  });

  it('thousands of waiting Deliveries of kept messages settle in order: the dropped ones reject, the others resolve', async () => {
    const bob = createPeer('bob', { maxQueueMessages: 3000, overflow: 'drop-oldest' });
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const first = await plainAlice(bob, url);
    const ds = Array.from({ length: 2000 }, (_, i) => bob.messaging.send('alice', `old ${i}`));
    await first.until(() => first.messages.length === 2000);
    const outcomes: string[] = new Array(2000);
    const settled = Promise.all(
      ds.map((d, i) =>
        d.delivered().then(
          () => (outcomes[i] = 'delivered'),
          (error: Error) => (outcomes[i] = error.name),
        ),
      ),
    );
    first.close();
    await waitEvent(bob.messaging, 'disconnect');
    // 1500 more overflow the queue of 3000: the 500 oldest (kept frames, made again into entries) are dropped.
    const fresh = Array.from({ length: 1500 }, (_, i) => bob.messaging.send('alice', `new ${i}`));
    const second = await plainAlice(bob, url);
    await second.until(() => second.messages.length === 3000);
    expect(second.messages[0]!.data.toString()).toBe('old 500');
    expect(second.messages[2999]!.data.toString()).toBe('new 1499');
    second.sendFrame(17, u32(3000));
    await settled;
    await fresh[1499]!.delivered();
    expect(outcomes.slice(0, 500)).toEqual(Array(500).fill('QueueFullError'));
    expect(outcomes.slice(500)).toEqual(Array(1500).fill('delivered'));
    expect(ds.map((d) => d.state).filter((s) => s === 'dropped')).toHaveLength(500);
    expect(bob.messaging.queueLength('alice')).toBe(0);
  });

  it('Deliveries waited for in reverse order each settle with their own ACK', async () => {
    const bob = createPeer('bob');
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const alice = await plainAlice(bob, url);
    const n = 3000;
    const ds = Array.from({ length: n }, (_, i) => bob.messaging.send('alice', `m${i}`));
    await alice.until(() => alice.messages.length === n);
    const done: boolean[] = new Array(n).fill(false);
    for (let i = n - 1; i >= 0; i--) void ds[i]!.delivered().then(() => (done[i] = true));
    alice.sendFrame(17, u32(1000));
    await ds[999]!.delivered();
    await settle();
    expect(done.indexOf(false)).toBe(1000);
    expect(done.lastIndexOf(true)).toBe(999);
    alice.sendFrame(17, u32(n - 1000));
    await ds[0]!.delivered();
    await ds[n - 1]!.delivered();
    await settle();
    expect(done.every(Boolean)).toBe(true);
  });

  it('close() rejects the Deliveries of kept messages not yet acknowledged', async () => {
    const bob = createPeer('bob');
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const alice = await plainAlice(bob, url);
    const ds = ['a', 'b'].map((t) => bob.messaging.send('alice', t));
    await alice.until(() => alice.messages.length === 2);
    alice.sendFrame(17, u32(1));
    await ds[0]!.delivered();
    const pending = ds[1]!.delivered();
    await bob.messaging.close();
    await expect(pending).rejects.toBeInstanceOf(ClosedError);
    expect(ds.map((d) => d.state)).toEqual(['acknowledged', 'dropped']);
  });

  it('an acknowledged listener added while kept messages are in flight hears of each, with its uuid and data', async () => {
    const bob = createPeer('bob');
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const alice = await plainAlice(bob, url);
    const ds = ['x', 'y', 'z'].map((t) => bob.messaging.send('alice', new Message(t, { flags: 7 })));
    await alice.until(() => alice.messages.length === 3);
    const acked: [string, string, number][] = [];
    bob.messaging.on('acknowledged', (_ident, m) => acked.push([m.id, m.data.toString(), m.flags]));
    alice.sendFrame(17, u32(2));
    await ds[1]!.delivered();
    alice.sendFrame(17, u32(1));
    await ds[2]!.delivered();
    expect(acked).toEqual(ds.map((d) => [d.message.id, d.message.data.toString(), 7]));
  });

  it('an ACK for more messages than are in flight is a protocol error, counted in messages', async () => {
    const bob = createPeer('bob');
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const alice = await plainAlice(bob, url);
    for (const t of ['a', 'b', 'c']) bob.messaging.send('alice', t);
    await alice.until(() => alice.messages.length === 3);
    const error = waitEvent(bob.messaging, 'protocolError');
    alice.sendFrame(17, u32(4));
    const [, err] = (await error) as [number, Error];
    expect(err.message).toContain('only 3 in flight');
  });
});
