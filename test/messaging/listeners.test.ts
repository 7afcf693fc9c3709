/**
 * Listener bookkeeping without eventemitter3's private `_events`: the
 * `on`/`once`/`off`/`removeAllListeners` overrides keep dispatch's caches
 * right (one plain listener called directly, several one by one, `once`,
 * context), and the Packeter's `packet` event follows its listeners.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { HandlerError } from '../../lib/errors.js';
import type { Message } from '../../lib/messaging/index.js';
import { closeAllPeers, connectPair, createPeer } from '../helpers/peers.js';

afterEach(async () => {
  await closeAllPeers();
});

describe('Messaging listeners', () => {
  it('once, several, a throwing one, context, off and removeAllListeners', async () => {
    const alice = createPeer('alice');
    const bob = createPeer('bob');
    const b = bob.messaging;
    await connectPair(bob, alice);
    const plain: string[] = [];
    const onced: string[] = [];
    const errors: HandlerError[] = [];
    const ctx = { name: 'ctx', seen: [] as string[] };
    b.on('handlerError', (e) => errors.push(e));
    const onPlain = (_c: number, _i: string, m: Message) => plain.push(m.data.toString());
    b.on('message', onPlain);
    b.once('message', (_c, _i, m) => onced.push(m.data.toString()));
    b.on('message', () => {
      throw new Error('boom');
    });
    b.on(
      'message',
      function (this: typeof ctx, _c: number, _i: string, m: Message) {
        this.seen.push(m.data.toString());
      },
      ctx,
    );
    alice.messaging.send('bob', '1');
    alice.messaging.send('bob', '2');
    await vi.waitFor(() => expect(plain).toEqual(['1', '2']), { timeout: 10_000 });
    expect(onced).toEqual(['1']);
    expect(ctx.seen).toEqual(['1', '2']);
    expect(errors).toHaveLength(2);
    b.removeAllListeners('message');
    b.on('message', onPlain); // one plain listener again: the direct call
    alice.messaging.send('bob', '3');
    await vi.waitFor(() => expect(plain).toEqual(['1', '2', '3']), { timeout: 10_000 });
    b.off('message', onPlain);
    const it = b.messages();
    alice.messaging.send('bob', '4');
    const next = await it.next();
    expect(next.done ? null : next.value.message.data.toString()).toBe('4');
    expect(plain).toEqual(['1', '2', '3']);
    expect(ctx.seen).toEqual(['1', '2']);
  });

  it('sent/acknowledged listeners get each message object; the packet event follows its listeners', async () => {
    const alice = createPeer('alice');
    const bob = createPeer('bob');
    await connectPair(bob, alice);
    const a = alice.messaging;
    const acked: string[] = [];
    const onAck = (_i: string, m: Message) => acked.push(m.data.toString());
    a.on('acknowledged', onAck);
    let packets = 0;
    const onPacket = () => packets++;
    bob.packeter.on('packet', onPacket);
    a.send('bob', 'x');
    await vi.waitFor(() => expect(acked).toEqual(['x']), { timeout: 10_000 });
    expect(packets).toBeGreaterThan(0);
    bob.packeter.off('packet', onPacket);
    a.off('acknowledged', onAck);
    const seen = packets;
    await a.send('bob', 'y').delivered();
    expect(acked).toEqual(['x']);
    expect(packets).toBe(seen);
  });
});
