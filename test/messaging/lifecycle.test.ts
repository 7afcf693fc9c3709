import { afterEach, describe, expect, it, vi } from 'vitest';
import { Link } from '../../lib/link/index.js';
import { Throttle } from '../../lib/throttle/index.js';
import { Packeter } from '../../lib/packeter/index.js';
import { Messaging, Message } from '../../lib/messaging/index.js';
import { ClosedError } from '../../lib/errors.js';
import { closeAllPeers, collect, connectPair, createPeer, waitEvent } from '../helpers/peers.js';
import { resourceCounts } from '../link/helpers.js';

afterEach(closeAllPeers);

describe('Messaging lifecycle', () => {
  it('runs over a Throttle placed between Link and Packeter, at the throttled rate', async () => {
    const link = new Link();
    const throttle = new Throttle(link, { bytesPerSecond: 100_000 });
    const slow = new Messaging('slow', new Packeter(throttle));
    const fast = createPeer('fast');
    try {
      const url = await fast.link.addListener('tcp://127.0.0.1:0');
      const up = waitEvent(slow, 'connect');
      link.addConnector(url, { reconnectDelay: () => 50 });
      await up;
      const got = collect(fast.messaging, 20);
      const start = Date.now();
      for (let i = 0; i < 20; i++) slow.send('fast', new Message(Buffer.alloc(10_000, i)));
      const msgs = await got;
      // 200 kB at 100 kB/s, with a burst of 10 kB: at least 1.5 s (lower bound only).
      expect(Date.now() - start).toBeGreaterThanOrEqual(1500);
      expect(msgs.map((m) => m.data.charCodeAt(0))).toEqual(Array.from({ length: 20 }, (_, i) => i));
    } finally {
      await slow.close();
    }
  });

  it('close() settles every pending delivery, ends iterators, is idempotent and leaves no handles', async () => {
    await closeAllPeers();
    const before = resourceCounts();
    const bob = createPeer('bob', { keepaliveInterval: 1000 });
    const alice = createPeer('alice', { keepaliveInterval: 1000 });
    await connectPair(bob, alice);
    const iterator = bob.messaging.messages();
    const next = iterator.next();
    const pending = alice.messaging.send('carol', new Message('never delivered'));
    const delivered = pending.delivered();
    await Promise.all([bob.close(), alice.close(), bob.close()]);
    await expect(delivered).rejects.toBeInstanceOf(ClosedError);
    expect(await next).toEqual({ value: undefined, done: true });
    expect(() => alice.messaging.send('bob', new Message('late'))).toThrow(ClosedError);
    // Handles left by earlier tests may still go away meanwhile: none may be added.
    await vi.waitFor(() => {
      const now = resourceCounts();
      for (const [k, n] of Object.entries(now)) expect(n, k).toBeLessThanOrEqual(before[k]!);
    });
  });

  it('a message sent from a message handler goes out in the same order (no re-entrancy surprises)', async () => {
    const bob = createPeer('bob');
    const alice = createPeer('alice');
    await connectPair(bob, alice);
    bob.messaging.on('message', (_c, from, m) => bob.messaging.send(from, new Message(`echo ${m.data.toString()}`)));
    const got = collect(alice.messaging, 50);
    for (let i = 0; i < 50; i++) alice.messaging.send('bob', new Message(`${i}`));
    expect((await got).map((m) => m.data)).toEqual(Array.from({ length: 50 }, (_, i) => `echo ${i}`));
  });

  it('follows a message through its stages: persisted, written, delivered (acknowledged)', async () => {
    const bob = createPeer('bob');
    const alice = createPeer('alice');
    await connectPair(bob, alice);
    const stages: string[] = [];
    alice.messaging.on('sent', () => stages.push('sent-event'));
    alice.messaging.on('acknowledged', () => stages.push('ack-event'));
    const d = alice.messaging.send('bob', new Message('x'));
    await d.persisted();
    stages.push('persisted');
    await d.written();
    stages.push('written');
    await d.delivered();
    stages.push('delivered');
    expect(d.state).toBe('acknowledged');
    expect(stages).toEqual(['persisted', 'sent-event', 'written', 'ack-event', 'delivered']);
  });
});
