/**
 * DeliveryTracker (what Deliveries of messages let go of once written learn
 * their fate from) and the per-queue count of pending written() promises.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterEach, describe, expect, it } from 'vitest';
import { DeliveryTracker } from '../../lib/messaging/delivery-tracker.js';
import { QueueEntry } from '../../lib/messaging/delivery.js';
import { ClosedError, MessageExpiredError, QueueFullError, type SnakeMQError } from '../../lib/errors.js';
import { closeAllPeers, createPeer, waitEvent, type TestPeer } from '../helpers/peers.js';
import { PlainPeer } from '../helpers/plain-peer.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
/** Collects garbage, across turns: a WeakRef's target is kept until the job that last dereferenced it ended. */
async function collect(): Promise<void> {
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    gc();
  }
}

/** A detached entry numbered `seq`, as Messaging makes them (written, then let go with its tracker). */
function detached(tracker: DeliveryTracker, seq: number): QueueEntry {
  const e = QueueEntry.ofData('peer', Buffer.from(`m${seq}`), tracker);
  e.detach(tracker, seq);
  return e;
}

const reasons = [() => new QueueFullError('full'), () => new MessageExpiredError('expired'), () => new ClosedError('closed')];

describe('DeliveryTracker drops', () => {
  it('answers every lookup right for many drops made in random order, of several kinds', () => {
    const tracker = new DeliveryTracker();
    const n = 20_000;
    // Held by "the application": every number may still be asked about.
    const entries = Array.from({ length: n }, (_, i) => detached(tracker, i + 1));
    const truth = new Map<number, string>();
    // Disjoint ranges of 1-5 numbers with gaps, dropped in a shuffled order.
    const ranges: [number, number, number][] = [];
    let seed = 7;
    const rand = (k: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) % k;
    for (let seq = 1; seq <= n;) {
      const len = 1 + rand(5);
      if (rand(3) > 0) ranges.push([seq, Math.min(n, seq + len - 1), rand(reasons.length)]);
      seq += len;
    }
    for (let i = ranges.length - 1; i > 0; i--) {
      const j = rand(i + 1);
      [ranges[i], ranges[j]] = [ranges[j]!, ranges[i]!];
    }
    for (const [from, to, kind] of ranges) {
      const reason = reasons[kind]!();
      tracker.dropped(from, to, reason);
      for (let s = from; s <= to; s++) truth.set(s, reason.name);
    }
    for (let seq = 0; seq <= n + 10; seq++) {
      expect(tracker.dropReasonOf(seq)?.name ?? null, `seq ${seq}`).toBe(truth.get(seq) ?? null);
    }
    tracker.acked(n);
    for (const e of entries) expect(e.state, `seq ${e.seq}`).toBe(truth.has(e.seq) ? 'dropped' : 'acknowledged');
    expect(tracker.dropRanges).toBeLessThanOrEqual(ranges.length);
  });

  it('a run of one kind is one range, in whatever order its numbers are dropped', () => {
    const tracker = new DeliveryTracker();
    const held = Array.from({ length: 5001 }, (_, i) => detached(tracker, i + 1));
    const order = Array.from({ length: 5000 }, (_, i) => i + 1).sort((a, b) => ((a * 7919) % 5003) - ((b * 7919) % 5003));
    for (const seq of order) tracker.dropped(seq, seq, new QueueFullError('full'));
    expect(tracker.dropRanges).toBe(1);
    expect(tracker.dropReasonOf(1)).toBeInstanceOf(QueueFullError);
    expect(tracker.dropReasonOf(5000)).toBeInstanceOf(QueueFullError);
    expect(tracker.dropReasonOf(5001)).toBeNull();
    // Another kind in the middle of nothing: its own range; a different kind next to it does not merge.
    tracker.dropped(5001, 5001, new ClosedError());
    expect(tracker.dropRanges).toBe(2);
    expect(held.every((e) => e.state === 'dropped')).toBe(true);
  });

  it('watched Deliveries in a dropped range settle at once, also when the range comes before others', async () => {
    const tracker = new DeliveryTracker();
    const entries = Array.from({ length: 100 }, (_, i) => detached(tracker, i + 1));
    const outcomes = entries.map((e) =>
      e.delivered().then(
        () => 'delivered',
        (r: SnakeMQError) => r.name,
      ),
    );
    tracker.dropped(51, 100, new QueueFullError('full'));
    tracker.dropped(1, 10, new ClosedError());
    tracker.acked(50);
    const got = await Promise.all(outcomes);
    expect(got.slice(0, 10)).toEqual(Array(10).fill('ClosedError'));
    expect(got.slice(10, 50)).toEqual(Array(40).fill('delivered'));
    expect(got.slice(50)).toEqual(Array(50).fill('QueueFullError'));
  });

  it('forgets drops no Delivery can ask about any more; a Delivery still held keeps its answer; memory stays bounded', async () => {
    const tracker = new DeliveryTracker();
    // One Delivery the application keeps, dropped early: its record must survive everything below.
    const kept = detached(tracker, 1);
    tracker.dropped(1, 1, new MessageExpiredError('kept one'));
    let seq = 2;
    let maxRanges = 0;
    for (let round = 0; round < 40; round++) {
      // 5,000 messages detached and let go by the application; every other one dropped, kinds alternating (no merging).
      for (let i = 0; i < 5000; i++) detached(tracker, seq++);
      for (let s = seq - 5000; s < seq; s += 2) tracker.dropped(s, s, reasons[s % 2]!());
      tracker.acked(seq - 1);
      if (round % 10 === 9) {
        await collect();
        tracker.prune();
        maxRanges = Math.max(maxRanges, tracker.dropRanges);
      }
    }
    await collect();
    tracker.prune();
    // 100,000 drops in 40 rounds: only the held Delivery's record (and what the current epoch may still ask) remains.
    expect(tracker.dropRanges).toBeLessThanOrEqual(1 + 2 * 1024);
    expect(maxRanges).toBeLessThanOrEqual(1 + 2 * 1024);
    expect(tracker.dropReasonOf(1)).toBeInstanceOf(MessageExpiredError);
    expect(kept.state).toBe('dropped');
    await expect(kept.delivered()).rejects.toBeInstanceOf(MessageExpiredError);
  });

  it('records of Deliveries still held stay exact among pruned ones', async () => {
    const tracker = new DeliveryTracker();
    const held: QueueEntry[] = [];
    let seq = 1;
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 3000; i++) {
        const e = detached(tracker, seq);
        if (i === 1500) held.push(e); // one Delivery of each round kept
        seq++;
      }
      for (let s = seq - 3000; s < seq; s += 3) tracker.dropped(s, s, reasons[round % 3]!());
      tracker.acked(seq - 1);
      await collect();
      tracker.prune();
    }
    for (const [round, e] of held.entries()) {
      const droppedOne = (e.seq - 1) % 3 === 0;
      expect(e.state, `round ${round}`).toBe(droppedOne ? 'dropped' : 'acknowledged');
      if (droppedOne) await expect(e.delivered()).rejects.toBeInstanceOf(reasons[round % 3]!().constructor);
    }
  });
});

describe('pending written() counted per queue', () => {
  const plainPeers: PlainPeer[] = [];
  afterEach(async () => {
    for (const p of plainPeers.splice(0)) p.close();
    await closeAllPeers();
  });

  /** bob listens; a plain peer 'alice' that announces acknowledgements connects. */
  async function ackAlice(bob: TestPeer): Promise<PlainPeer> {
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const peer = await PlainPeer.connect(Number(new URL(url).port), 'alice');
    plainPeers.push(peer);
    peer.sendFrame(16, Buffer.from([1, 0, 0, 0, 1]));
    await waitEvent(bob.messaging, 'connect');
    return peer;
  }

  it("one Messaging's pending written() does not keep another's messages in flight as objects", async () => {
    const other = createPeer('other');
    // Never written: nobody called 'nobody' connects.
    const pending = other.messaging.send('nobody', 'waits for ever').written();
    pending.catch(() => undefined);
    const bob = createPeer('bob');
    const alice = await ackAlice(bob);
    const ds = Array.from({ length: 20 }, (_, i) => bob.messaging.send('alice', `m${i}`) as QueueEntry);
    await alice.until(() => alice.messages.length === 20);
    // Let go once written: a detached entry has its sequence number in the queue.
    expect(ds.map((d) => d.seq > 0)).toEqual(Array(20).fill(true));
    expect(ds[0]!.tracker.writtenWaiters).toBe(0);
    expect((other.messaging.send('nobody', 'x') as QueueEntry).tracker.writtenWaiters).toBe(1);
  });

  it("within one Messaging, a pending written() for one peer leaves another peer's queue as it is", async () => {
    const bob = createPeer('bob');
    bob.messaging
      .send('carol', 'waits')
      .written()
      .catch(() => undefined);
    const alice = await ackAlice(bob);
    const ds = Array.from({ length: 20 }, (_, i) => bob.messaging.send('alice', `m${i}`) as QueueEntry);
    await alice.until(() => alice.messages.length === 20);
    expect(ds.map((d) => d.seq > 0)).toEqual(Array(20).fill(true));
    // And where someone waits, writes are still tracked one by one: the waited one settles written.
    const d = bob.messaging.send('alice', 'watched');
    await d.written();
    expect(d.state).toBe('written');
  });
});
