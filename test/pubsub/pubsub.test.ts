import { afterEach, describe, expect, it } from 'vitest';
import { Publisher, Subscriber, type ReceivedPubMessage } from '../../lib/pubsub/index.js';
import { closeAllPeers, connectPair, createPeer, waitEvent } from '../helpers/peers.js';

afterEach(closeAllPeers);

describe('smoke', () => {
  it('one publisher, one subscriber', async () => {
    const bob = createPeer('bob');
    const alice = createPeer('alice');
    await connectPair(bob, alice);
    const pub = new Publisher(bob.messaging);
    const sub = new Subscriber(alice.messaging, { publishers: ['bob'], topics: ['/counter'] });
    await sub.ready;
    const got: ReceivedPubMessage[] = [];
    sub.on('message', (m) => got.push(m));
    const r = await pub.publish('/counter', 'info', { n: 1 });
    expect(r.written).toBe(1);
    await pub.publish('/other', 'info', 'x');
    await pub.publish('/counter/x', 'info', 'hello');
    await pub.publish('/counter', 'info', new Uint8Array([1, 2, 3]));
    await waitEvent(sub, 'message', (m: ReceivedPubMessage) => m.binary);
    expect(got.map((m) => [m.subject, m.data, m.from])).toEqual([
      ['/counter', { n: 1 }, 'bob'],
      ['/counter/x', 'hello', 'bob'],
      ['/counter', Buffer.from([1, 2, 3]), 'bob'],
    ]);
    await sub.close();
    await pub.close();
  });
});
