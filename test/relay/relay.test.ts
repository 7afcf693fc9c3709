import { afterEach, describe, expect, it, vi } from 'vitest';
import { Message } from '../../lib/messaging/index.js';
import { createPeer, type Peer, type PeerOptions } from '../../lib/peer/index.js';

const open: Peer[] = [];
async function peer(options: PeerOptions): Promise<Peer> {
  const p = await createPeer(options);
  open.push(p);
  return p;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((p) => p.close()));
});

const fast = { reconnectDelay: () => 50 };

/** hub relays for alice and carol; both connect to it and to nothing else. */
async function triangle(extra: { alice?: Partial<PeerOptions>; carol?: Partial<PeerOptions>; hub?: Partial<PeerOptions> } = {}) {
  const hub = await peer({ identity: 'hub', listen: 'tcp://127.0.0.1:0', relay: { forward: true, allow: ['alice', 'carol'] }, ...extra.hub });
  const url = hub.listening[0]!;
  const alice = await peer({ identity: 'alice', connect: { url, options: fast }, relay: {}, ...extra.alice });
  const carol = await peer({ identity: 'carol', connect: { url, options: fast }, relay: {}, ...extra.carol });
  await vi.waitFor(() => expect(hub.connectedPeers().sort()).toEqual(['alice', 'carol']));
  return { hub, alice, carol, url };
}

describe('relay: alice -> hub -> carol', () => {
  it('delivers a message to a peer reachable only through the relay, acknowledged end to end', async () => {
    const { alice, carol, hub } = await triangle();
    const got: string[] = [];
    carol.on('message', (_c, ident, m) => got.push(`${ident}:${m.data.toString()}`));
    const d = alice.send('carol', new Message('hello carol'));
    await d.delivered();
    expect(got).toEqual(['alice:hello carol']);
    expect(alice.isConnected('carol')).toBe(true);
    expect(
      hub.messaging
        .relay!.routes()
        .map((r) => `${r.source}>${r.destination}`)
        .sort(),
    ).toEqual(['alice>carol', 'carol>alice']);
    expect(alice.messaging.relay!.relayedConnections()[0]).toMatchObject({ peer: 'carol', via: 'hub', side: 'connector' });
  });
});
