import { afterEach, describe, expect, it, vi } from 'vitest';
import { createPeer, type Peer, type PeerOptions } from '../../lib/peer/index.js';
import { CloseReason, Control, encodeHello, encodeRelayHead, FRAME_RELAY, FRAME_RELAY_CONTROL, HELLO_FORWARDS } from '../../lib/relay/frames.js';
import { PlainPeer } from '../helpers/plain-peer.js';

const open: Peer[] = [];
const raws: PlainPeer[] = [];
afterEach(async () => {
  for (const r of raws.splice(0)) r.close();
  await Promise.all(open.splice(0).map((p) => p.close()));
});
async function peer(options: PeerOptions): Promise<Peer> {
  const p = await createPeer(options);
  open.push(p);
  return p;
}
function portOf(url: string): number {
  return Number(url.slice(url.lastIndexOf(':') + 1));
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
/** A relay-speaking raw peer: PROTOCOL_VERSION, IDENTIFICATION, EXTENSIONS (ack), HELLO. */
async function rawRelayPeer(port: number, ident: string, hello: number): Promise<PlainPeer> {
  const p = await PlainPeer.connect(port, ident);
  raws.push(p);
  p.sendFrame(16, Buffer.concat([Buffer.from([1]), u32(1)]));
  p.sendRaw(packet(encodeHello(hello)));
  return p;
}
function packet(payload: Buffer): Buffer {
  return Buffer.concat([u32(payload.length), payload]);
}
function relay(hops: number, src: string, dst: string, inner: Buffer): Buffer {
  return packet(Buffer.concat([encodeRelayHead(hops, src, dst), u32(inner.length), inner]));
}
const PV = Buffer.concat([Buffer.from([0]), u32(1)]);
const ident = (name: string) => Buffer.concat([Buffer.from([2]), Buffer.from(name)]);
const message = (data: Buffer | string) => Buffer.concat([Buffer.from([3]), Buffer.alloc(16, 7), u32(0xffffffff), u32(0), Buffer.from(data)]);
const closes = (p: PlainPeer) => p.frames.filter((f) => f.type === FRAME_RELAY_CONTROL && f.body[0] === Control.CLOSE).map((f) => f.body[1]);

describe('relay: hostile neighbours', () => {
  it('a relayed stream whose inner IDENTIFICATION is not the source the relay named is closed before anything of it is delivered', async () => {
    const carol = await peer({ identity: 'carol', listen: 'tcp://127.0.0.1:0', relay: { trust: () => true } });
    const connects: string[] = [];
    const got: string[] = [];
    carol.on('connect', (_c, who) => connects.push(who));
    carol.on('message', (_c, who, m) => got.push(`${who}:${m.data.toString()}`));
    const mallory = await rawRelayPeer(portOf(carol.listening[0]!), 'hub', HELLO_FORWARDS);
    await vi.waitFor(() => expect(connects).toEqual(['hub']));
    mallory.sendRaw(Buffer.concat([relay(1, 'alice', 'carol', PV), relay(1, 'alice', 'carol', ident('mallory')), relay(1, 'alice', 'carol', message('evil'))]));
    await vi.waitFor(() => expect(carol.messaging.relay!.stats().forged).toBe(1));
    await mallory.until(() => closes(mallory).length > 0);
    expect(connects).toEqual(['hub']);
    expect(got).toEqual([]);
    // The connection to the neighbour itself goes on.
    expect(carol.isConnected('hub')).toBe(true);
  });

  it('by default a peer does not believe relayed streams from a neighbour that connected to it', async () => {
    const carol = await peer({ identity: 'carol', listen: 'tcp://127.0.0.1:0', relay: {} });
    const mallory = await rawRelayPeer(portOf(carol.listening[0]!), 'hub', HELLO_FORWARDS);
    await vi.waitFor(() => expect(carol.isConnected('hub')).toBe(true));
    mallory.sendRaw(Buffer.concat([relay(1, 'alice', 'carol', PV), relay(1, 'alice', 'carol', ident('alice'))]));
    await mallory.until(() => closes(mallory).includes(CloseReason.REFUSED));
    expect(carol.isConnected('alice')).toBe(false);
    expect(carol.messaging.relay!.relayedConnections()).toEqual([]);
  });

  it('malformed relay frames and relay frames before identification are counted and dropped; the connection goes on', async () => {
    const carol = await peer({ identity: 'carol', listen: 'tcp://127.0.0.1:0', relay: { trust: () => true } });
    const port = portOf(carol.listening[0]!);
    const early = await PlainPeer.connect(port, 'early', { handshake: false });
    raws.push(early);
    early.sendRaw(Buffer.concat([relay(1, 'alice', 'carol', PV), packet(Buffer.from([FRAME_RELAY_CONTROL, Control.QUERY, 1, 2]))]));
    const m = await rawRelayPeer(port, 'hub', HELLO_FORWARDS);
    await vi.waitFor(() => expect(carol.isConnected('hub')).toBe(true));
    const bad = [
      packet(Buffer.from([FRAME_RELAY])),
      packet(Buffer.from([FRAME_RELAY, 1, 200, 1, 2, 3])),
      packet(Buffer.concat([encodeRelayHead(1, 'alice', 'carol'), u32(99), PV])),
      packet(Buffer.from([FRAME_RELAY_CONTROL, 77, 1])),
      packet(Buffer.from([FRAME_RELAY_CONTROL, Control.CREDIT, 1])),
    ];
    m.sendRaw(Buffer.concat(bad));
    await vi.waitFor(() => expect(carol.messaging.relay!.stats().malformed).toBeGreaterThanOrEqual(bad.length + 1));
    expect(carol.isConnected('hub')).toBe(true);
    // A well-formed stream after the garbage still works.
    m.sendRaw(Buffer.concat([relay(1, 'alice', 'carol', PV), relay(1, 'alice', 'carol', ident('alice')), relay(1, 'alice', 'carol', message('hi'))]));
    await vi.waitFor(() => expect(carol.isConnected('alice')).toBe(true));
  });
});

describe('relay: bounds at the relay', () => {
  it('a sender that ignores the credit is cut off once the relay holds maxHeldPerRoute for a destination that does not read', async () => {
    const maxHeldPerRoute = 64 * 1024;
    const hub = await peer({ identity: 'hub', listen: 'tcp://127.0.0.1:0', relay: { forward: true, allow: () => true, maxHeldPerRoute } });
    const port = portOf(hub.listening[0]!);
    const carol = await rawRelayPeer(port, 'carol', 0);
    carol.socket.pause();
    const mallory = await rawRelayPeer(port, 'mallory', 0);
    await vi.waitFor(() => expect(hub.connectedPeers().sort()).toEqual(['carol', 'mallory']));
    mallory.sendRaw(relay(0, 'mallory', 'carol', PV));
    const chunk = relay(0, 'mallory', 'carol', message(Buffer.alloc(16 * 1024, 1)));
    let sent = 0;
    let maxHeld = 0;
    // Blast until the hub gives up on the stream; watch that it never held more than the bound plus one packet.
    while (hub.messaging.relay!.stats().overflow === 0 && sent < 64 * 1024 * 1024) {
      mallory.sendRaw(Buffer.concat(Array.from({ length: 16 }, () => chunk)));
      sent += 16 * chunk.length;
      await new Promise<void>((resolve) => setImmediate(resolve));
      for (const r of hub.messaging.relay!.routes()) maxHeld = Math.max(maxHeld, r.held);
    }
    expect(hub.messaging.relay!.stats().overflow).toBe(1);
    expect(maxHeld).toBeLessThanOrEqual(maxHeldPerRoute + 16 * 1024 + 64);
    await mallory.until(() => closes(mallory).includes(CloseReason.OVERFLOW));
    expect(hub.messaging.relay!.routes()).toEqual([]);
    expect(hub.isConnected('mallory')).toBe(true);
  });

  it('maxRoutesPerPeer, the allow-list, the source check and the hop limit each refuse a stream', async () => {
    const hub = await peer({
      identity: 'hub',
      listen: 'tcp://127.0.0.1:0',
      relay: { forward: true, allow: (who) => who !== 'eve', maxRoutesPerPeer: 2, trust: (who) => who === 'mallory' },
    });
    const url = hub.listening[0]!;
    const ds = await Promise.all(['d1', 'd2', 'd3', 'eve'].map((id) => peer({ identity: id, connect: url, relay: {} })));
    const mallory = await rawRelayPeer(portOf(url), 'mallory', 0);
    await vi.waitFor(() => expect(hub.connectedPeers()).toHaveLength(5));
    await vi.waitFor(() => expect(ds.every((d) => d.messaging.relay!.relays().length === (d.messaging.identity === 'eve' ? 0 : 1))).toBe(true));
    mallory.sendRaw(Buffer.concat(['d1', 'd2', 'd3'].map((d) => relay(0, 'mallory', d, PV))));
    await mallory.until(() => closes(mallory).length >= 1);
    expect(hub.messaging.relay!.routes().filter((r) => r.source === 'mallory')).toHaveLength(2);
    mallory.sendRaw(relay(0, 'mallory', 'eve', PV));
    mallory.sendRaw(relay(0, 'someone', 'd1', PV));
    mallory.sendRaw(relay(4, 'far', 'd2', PV));
    await mallory.until(() => closes(mallory).length >= 4);
    expect(closes(mallory)).toEqual([CloseReason.REFUSED, CloseReason.REFUSED, CloseReason.REFUSED, CloseReason.HOP_LIMIT]);
    const stats = hub.messaging.relay!.stats();
    expect(stats.refused).toBe(3);
    expect(stats.hopLimit).toBe(1);
    expect(hub.messaging.relay!.routes().filter((r) => r.source === 'mallory')).toHaveLength(2);
  });
});
