/**
 * Backpressure for senders over real sockets: writable() at the per-peer
 * high-water mark, `drain` at the low-water mark, the streaming loop of the
 * README, drained()/sendWhenReady()/messages() with an AbortSignal, and
 * close() settling what waits.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AbortedError, ClosedError, InvalidOptionsError } from '../../lib/errors.js';
import { DEFAULT_PEER_HIGH_WATER_MARK, DEFAULT_PEER_HIGH_WATER_MARK_BYTES, Messaging, type ReceivedMessage } from '../../lib/messaging/index.js';
import { Packeter } from '../../lib/packeter/index.js';
import { Link } from '../../lib/link/index.js';
import { closeAllPeers, collect, connectPair, createPeer, waitEvent } from '../helpers/peers.js';

afterEach(async () => {
  await closeAllPeers();
});

/** Rejection reason of `p` (fails the test if it resolves). */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('Messaging backpressure', () => {
  it('has documented defaults and validates the marks', async () => {
    const { messaging } = createPeer('alice');
    expect(messaging.options.highWaterMark).toBe(DEFAULT_PEER_HIGH_WATER_MARK);
    expect(messaging.options.highWaterMarkBytes).toBe(DEFAULT_PEER_HIGH_WATER_MARK_BYTES);
    const link = new Link();
    try {
      expect(() => new Messaging('x', new Packeter(link), { highWaterMark: 0 })).toThrow(InvalidOptionsError);
      expect(() => new Messaging('y', new Packeter(link), { highWaterMarkBytes: -1 })).toThrow(InvalidOptionsError);
    } finally {
      await link.close();
    }
  });

  it('writable() goes false at the mark while the peer is away, and true with one drain once it connected and acknowledged', async () => {
    const alice = createPeer('alice', { highWaterMark: 10 });
    const a = alice.messaging;
    const drains: string[] = [];
    a.on('drain', (ident) => drains.push(ident));
    expect(a.writable('bob')).toBe(true); // nothing queued yet
    for (let i = 0; i < 9; i++) a.send('bob', `m${i}`);
    expect(a.writable('bob')).toBe(true);
    a.send('bob', 'm9');
    expect(a.queueLength('bob')).toBe(10);
    expect(a.writable('bob')).toBe(false);
    expect(a.writable('carol')).toBe(true); // per identity
    const bob = createPeer('bob');
    const got = collect(bob.messaging, 10);
    const drained = a.drained('bob');
    await connectPair(bob, alice);
    await got;
    await drained;
    expect(a.writable('bob')).toBe(true);
    expect(a.queueLength('bob')).toBeLessThanOrEqual(5);
    expect(drains).toEqual(['bob']);
  });

  it('writable() stays false while a connected peer does not acknowledge (its reading is paused), true again when it reads', async () => {
    const alice = createPeer('alice', { highWaterMark: 8 });
    const bob = createPeer('bob', { streamHighWaterMark: 2 });
    const it = bob.messaging.messages();
    await connectPair(bob, alice);
    const a = alice.messaging;
    // The first read fills bob's iterator and pauses reading there: what follows is neither read nor acknowledged.
    for (let i = 0; i < 4; i++) a.send('bob', `first${i}`);
    await vi.waitFor(() => expect(a.queueLength('bob')).toBe(0), { timeout: 10_000 });
    let sent = 0;
    while (a.writable('bob') && sent < 100) a.send('bob', `m${sent++}`);
    expect(sent).toBe(8);
    expect(a.writable('bob')).toBe(false);
    const drain = waitEvent<[string]>(a, 'drain');
    let read = 0;
    for await (const item of it as AsyncIterable<ReceivedMessage>) {
      expect(item.ident).toBe('alice');
      if (++read === 12) break;
    }
    expect(await drain).toEqual(['bob']);
    expect(a.writable('bob')).toBe(true);
  });

  it('the streaming loop sends many times the mark with the queue never above it', async () => {
    const mark = 64;
    const n = mark * 20;
    const alice = createPeer('alice', { highWaterMark: mark });
    const bob = createPeer('bob');
    await connectPair(bob, alice);
    const a = alice.messaging;
    const got = collect(bob.messaging, n);
    let waits = 0;
    let highest = 0;
    for (let i = 0; i < n; i++) {
      if (!a.writable('bob')) {
        waits++;
        await a.drained('bob');
      }
      a.send('bob', `m${i}`);
      highest = Math.max(highest, a.queueLength('bob'));
    }
    const received = await got;
    expect(received.map((m) => m.data)).toEqual(Array.from({ length: n }, (_, i) => `m${i}`));
    expect(highest).toBe(mark);
    expect(waits).toBeGreaterThanOrEqual(n / mark - 1);
  });

  it('sendWhenReady() sends at once when writable, else after the drain; the bytes mark counts too', async () => {
    const alice = createPeer('alice', { highWaterMark: 1000, highWaterMarkBytes: 4 * (1000 + 128) });
    const a = alice.messaging;
    const big = Buffer.alloc(1000, 1);
    for (let i = 0; i < 4; i++) await a.sendWhenReady('bob', big);
    expect(a.queueLength('bob')).toBe(4);
    expect(a.writable('bob')).toBe(false);
    const later = a.sendWhenReady('bob', big);
    let settled = false;
    void later.then(() => (settled = true));
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(false);
    expect(a.queueLength('bob')).toBe(4);
    const bob = createPeer('bob');
    const got = collect(bob.messaging, 5);
    await connectPair(bob, alice);
    const delivery = await later;
    expect(delivery.ident).toBe('bob');
    await got;
  });

  it('an aborted signal rejects drained() and sendWhenReady() with AbortedError (cause: the reason) and sends nothing', async () => {
    const a = createPeer('alice', { highWaterMark: 2 }).messaging;
    a.send('bob', '1');
    a.send('bob', '2');
    expect(a.writable('bob')).toBe(false);
    const ac = new AbortController();
    const waiting = a.drained('bob', { signal: ac.signal });
    const sending = a.sendWhenReady('bob', '3', { signal: ac.signal });
    const reason = new Error('user gave up');
    ac.abort(reason);
    for (const p of [waiting, sending]) {
      const error = await rejection(p);
      expect(error).toBeInstanceOf(AbortedError);
      expect((error as AbortedError).code).toBe('SMQ_ERR_ABORTED');
      expect((error as AbortedError).cause).toBe(reason);
    }
    expect(a.queueLength('bob')).toBe(2);
    // Already aborted: rejected at once, even when writable.
    expect(await rejection(a.drained('bob', { signal: ac.signal }))).toBeInstanceOf(AbortedError);
    expect(await rejection(a.sendWhenReady('carol', 'x', { signal: ac.signal }))).toBeInstanceOf(AbortedError);
    expect(a.queueLength('carol')).toBe(0);
  });

  it('close() rejects waiting drained() and sendWhenReady() with ClosedError; writable() is false after it', async () => {
    const a = createPeer('alice', { highWaterMark: 1 }).messaging;
    a.send('bob', '1');
    const ac = new AbortController();
    const waiting = a.drained('bob', { signal: ac.signal });
    const sending = a.sendWhenReady('bob', '2');
    const closing = a.close();
    expect(await rejection(waiting)).toBeInstanceOf(ClosedError);
    expect(await rejection(sending)).toBeInstanceOf(ClosedError);
    await closing;
    ac.abort(); // its listener is gone: nothing happens
    expect(a.writable('bob')).toBe(false);
    expect(await rejection(a.drained('carol'))).toBeInstanceOf(ClosedError);
  });
});

describe('messages() with an AbortSignal', () => {
  it('a waiting next() rejects with AbortedError, later ones are done', async () => {
    const bob = createPeer('bob').messaging;
    const ac = new AbortController();
    const it = bob.messages({ signal: ac.signal });
    const pending = it.next();
    ac.abort('stop');
    const error = await rejection(pending);
    expect(error).toBeInstanceOf(AbortedError);
    expect((error as AbortedError).cause).toBe('stop');
    expect(await it.next()).toEqual({ value: undefined, done: true });
    // Already aborted: the first next() rejects.
    const again = bob.messages({ signal: ac.signal });
    expect(await rejection(again.next())).toBeInstanceOf(AbortedError);
  });

  it('ends a for-await loop with AbortedError and releases the iterator: reading paused by it resumes', async () => {
    const alice = createPeer('alice');
    const bob = createPeer('bob', { streamHighWaterMark: 2 });
    const ac = new AbortController();
    const it = bob.messaging.messages({ signal: ac.signal });
    let heard = 0;
    bob.messaging.on('message', () => heard++);
    await connectPair(bob, alice);
    alice.messaging.send('bob', 'a');
    alice.messaging.send('bob', 'b');
    alice.messaging.send('bob', 'c');
    await vi.waitFor(() => expect(heard).toBe(3), { timeout: 10_000 });
    // bob's iterator is full (nobody reads it): reading from alice is paused, so these wait.
    for (let i = 0; i < 5; i++) alice.messaging.send('bob', `later${i}`);
    const loop = (async () => {
      const seen: string[] = [];
      for await (const item of it) {
        seen.push(item.message.data.toString());
        if (seen.length === 1) ac.abort(new Error('enough'));
      }
      return seen;
    })();
    const error = await rejection(loop);
    expect(error).toBeInstanceOf(AbortedError);
    // Released: reading resumes, the rest arrives.
    await vi.waitFor(() => expect(heard).toBe(8), { timeout: 10_000 });
  });

  it('close() ends an iterator with a signal (waiting next() is done)', async () => {
    const bob = createPeer('bob').messaging;
    const ac = new AbortController();
    const it = bob.messages({ signal: ac.signal });
    const pending = it.next();
    await bob.close();
    expect(await pending).toEqual({ value: undefined, done: true });
    ac.abort();
    expect(await it.next()).toEqual({ value: undefined, done: true });
  });
});
