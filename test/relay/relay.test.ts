import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { RelayError } from '../../lib/errors.js';
import { ManagementClient } from '../../lib/management/index.js';
import { Message } from '../../lib/messaging/index.js';
import { createPeer, type Peer, type PeerOptions } from '../../lib/peer/index.js';
import { Publisher, Subscriber } from '../../lib/pubsub/index.js';
import { Child } from '../helpers/child.js';

const open: Peer[] = [];
const children: Child[] = [];
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smq-relay-'));
});
afterEach(async () => {
  await Promise.all(children.splice(0).map((c) => c.kill()));
  await Promise.all(open.splice(0).map((p) => p.close()));
  await rm(dir, { recursive: true, force: true });
});

async function peer(options: PeerOptions): Promise<Peer> {
  const p = await createPeer(options);
  open.push(p);
  return p;
}
async function closePeer(p: Peer): Promise<void> {
  open.splice(open.indexOf(p), 1);
  await p.close();
}

const fast = { reconnectDelay: () => 50 };
const relayed = { retryInterval: 200 };

/** hub relays for alice and carol; both connect to it and to nothing else. */
async function triangle(extra: { alice?: Partial<PeerOptions>; carol?: Partial<PeerOptions>; hub?: Partial<PeerOptions> } = {}) {
  const hub = await peer({ identity: 'hub', listen: 'tcp://127.0.0.1:0', relay: { forward: true, allow: ['alice', 'carol'] }, ...extra.hub });
  const url = hub.listening[0]!;
  const alice = await peer({ identity: 'alice', connect: { url, options: fast }, relay: relayed, ...extra.alice });
  const carol = await peer({ identity: 'carol', connect: { url, options: fast }, relay: relayed, ...extra.carol });
  await vi.waitFor(() => expect(hub.connectedPeers().sort()).toEqual(['alice', 'carol']));
  return { hub, alice, carol, url };
}

function texts(p: Peer, from?: string): string[] {
  const got: string[] = [];
  p.on('message', (_c, ident, m) => {
    if (from === undefined || ident === from) got.push(m.data.toString());
  });
  return got;
}

function expectOnceInOrder(got: string[], n: number): void {
  expect(got.length).toBe(n);
  for (let i = 0; i < n; i++) if (got[i] !== `m${i}`) throw new Error(`at ${i}: ${got[i]}`);
}

describe('relay: alice -> hub -> carol', () => {
  it('delivers to a peer reachable only through the relay, acknowledged end to end by the receiver', async () => {
    const { alice, carol, hub } = await triangle();
    const got: string[] = [];
    carol.on('message', (_c, ident, m) => got.push(`${ident}:${m.data.toString()}`));
    const d = alice.send('carol', new Message('hello carol'));
    await d.delivered();
    expect(got).toEqual(['alice:hello carol']);
    expect(alice.isConnected('carol')).toBe(true);
    expect(carol.isConnected('alice')).toBe(true);
    expect(
      hub.messaging
        .relay!.routes()
        .map((r) => `${r.source}>${r.destination}`)
        .sort(),
    ).toEqual(['alice>carol', 'carol>alice']);
    expect(alice.messaging.relay!.relayedConnections()[0]).toMatchObject({ peer: 'carol', via: 'hub', side: 'connector' });
    expect(carol.messaging.relay!.relayedConnections()[0]).toMatchObject({ peer: 'alice', via: 'hub', side: 'listener' });
    // The relay holds nothing: it is not a receiver of the message.
    expect(hub.queueLength('carol')).toBe(0);
  });

  it('carries many messages both ways in order, within the flow-control window', async () => {
    const window = 8 * 1024;
    const { alice, carol, hub } = await triangle({
      alice: { relay: { ...relayed, window } },
      carol: { relay: { ...relayed, window } },
      hub: { relay: { forward: true, allow: ['alice', 'carol'], maxHeldPerRoute: 4 * window } },
    });
    const atCarol = texts(carol, 'alice');
    const atAlice = texts(alice, 'carol');
    const n = 3000;
    const data = 'x'.repeat(500);
    let maxHeld = 0;
    carol.on('message', () => {
      for (const r of hub.messaging.relay!.routes()) maxHeld = Math.max(maxHeld, r.held);
    });
    for (let i = 0; i < n; i++) {
      alice.send('carol', `m${i}`);
      carol.send('alice', `m${i}`);
      if (i % 100 === 0) alice.send('carol', new Message(data));
    }
    await vi.waitFor(() => expect(atCarol.filter((t) => t !== data).length).toBe(n), { timeout: 20_000 });
    await vi.waitFor(() => expect(atAlice.length).toBe(n), { timeout: 20_000 });
    expectOnceInOrder(
      atCarol.filter((t) => t !== data),
      n,
    );
    expectOnceInOrder(atAlice, n);
    expect(maxHeld).toBeLessThanOrEqual(4 * window);
    expect(hub.messaging.relay!.stats().overflow).toBe(0);
    await vi.waitFor(() => expect(alice.queueLength('carol')).toBe(0));
  });

  it('carol restarting: what was sent while she was away and in flight arrives, nothing twice', async () => {
    const { alice, carol, url } = await triangle();
    const first = texts(carol, 'alice');
    const n = 2000;
    for (let i = 0; i < n / 2; i++) alice.send('carol', `m${i}`);
    await vi.waitFor(() => expect(first.length).toBeGreaterThan(100), { timeout: 10_000 });
    await closePeer(carol);
    for (let i = n / 2; i < n; i++) alice.send('carol', `m${i}`);
    await vi.waitFor(() => expect(alice.isConnected('carol')).toBe(false));
    const carol2 = await peer({ identity: 'carol', connect: { url, options: fast }, relay: relayed });
    const second = texts(carol2, 'alice');
    await vi.waitFor(() => expect(alice.queueLength('carol')).toBe(0), { timeout: 20_000 });
    expectOnceInOrder([...first, ...second], n);
  });

  it('the sender keeps persistent messages across its own restart until the receiver, reached through the relay, has them', async () => {
    const hub = await peer({ identity: 'hub', listen: 'tcp://127.0.0.1:0', relay: { forward: true, allow: ['alice', 'carol'] } });
    const url = hub.listening[0]!;
    const storage = join(dir, 'alice.sqlite');
    const alice = await peer({ identity: 'alice', storage, connect: { url, options: fast }, relay: relayed });
    const n = 200;
    const ds = [];
    for (let i = 0; i < n; i++) ds.push(alice.send('carol', new Message(`m${i}`, { persistent: true })));
    await Promise.all(ds.map((d) => d.persisted()));
    await closePeer(alice);
    const alice2 = await peer({ identity: 'alice', storage, connect: { url, options: fast }, relay: relayed });
    expect(alice2.queueLength('carol')).toBe(n);
    const carol = await peer({ identity: 'carol', connect: { url, options: fast }, relay: relayed });
    const got = texts(carol, 'alice');
    await vi.waitFor(() => expect(got.length).toBe(n), { timeout: 20_000 });
    expectOnceInOrder(got, n);
    await vi.waitFor(() => expect(alice2.queueLength('carol')).toBe(0));
  });

  it("the relay's management status lists its routes; a peer reached through it can read it", async () => {
    const { alice } = await triangle({ hub: { management: { allow: ['alice'] } }, carol: { management: { allow: ['alice'] } } });
    await alice.send('carol', 'hi').delivered();
    const status = await new ManagementClient(alice, 'hub').status();
    expect(status.relayRoutes.map((r) => `${r.source}>${r.destination} via ${r.next}`).sort()).toEqual(['alice>carol via carol', 'carol>alice via alice']);
    // carol's management, called through the relay: her connection with alice runs over the hub.
    const atCarol = await new ManagementClient(alice, 'carol').status();
    expect(atCarol.relayRoutes).toEqual([]);
    expect(JSON.stringify(atCarol)).toContain('relay://hub/alice');
  });

  it('RPC works through the relay unchanged, both ways', async () => {
    const { alice, carol } = await triangle();
    carol.rpc.serve('calc', { add: (a: number, b: number) => a + b });
    alice.rpc.serve('who', { name: () => 'alice' });
    await expect(alice.rpc.call('carol', 'calc', 'add', [2, 3])).resolves.toBe(5);
    await expect(carol.rpc.call('alice', 'who', 'name')).resolves.toBe('alice');
  });

  it('publish/subscribe works through the relay unchanged', async () => {
    const { alice, carol } = await triangle();
    const pub = new Publisher(carol.messaging);
    const sub = new Subscriber(alice.messaging, { publishers: ['carol'], topics: ['/weather'] });
    const got: string[] = [];
    sub.on('message', (m) => got.push(`${m.subject} ${String(m.data)}`));
    await sub.ready;
    await pub.publish('/weather/oslo', 'file', 'rain');
    await pub.publish('/traffic', 'file', 'jam');
    await pub.publish('/weather/bergen', 'file', 'more rain');
    await vi.waitFor(() => expect(got).toEqual(['/weather/oslo rain', '/weather/bergen more rain']));
    await sub.close();
    await pub.close();
  });
});

describe('relay: who may use it, and whom to believe', () => {
  it('a relay forwards nothing to or from a peer not on its allow-list', async () => {
    const { alice, carol, hub } = await triangle({ hub: { relay: { forward: true, allow: ['carol'] } } });
    const atCarol = texts(carol);
    const atAlice = texts(alice);
    // carol may use the hub, alice may not: the hub says so in its HELLO, and alice does not even ask.
    await vi.waitFor(() => expect(carol.messaging.relay!.relays()).toEqual(['hub']));
    expect(alice.messaging.relay!.relays()).toEqual([]);
    alice.send('carol', 'from alice');
    const errors: unknown[] = [];
    carol.messaging.on('protocolError', (_c, e) => errors.push(e));
    // carol asks, the hub answers (alice is connected to it) but refuses the stream: alice is not allowed.
    carol.send('alice', 'from carol');
    await vi.waitFor(() => expect(hub.messaging.relay!.stats().refused).toBeGreaterThan(0));
    await vi.waitFor(() => expect(errors.some((e) => e instanceof RelayError && e.reason === 'refused')).toBe(true));
    expect(hub.messaging.relay!.routes()).toEqual([]);
    expect(hub.messaging.relay!.stats().forwardedPackets).toBe(0);
    expect(atCarol).toEqual([]);
    expect(atAlice).toEqual([]);
    expect(alice.queueLength('carol')).toBe(1);
    expect(carol.queueLength('alice')).toBe(1);
  });

  it('a peer does not believe a relay it did not choose (default trust: relays it connected to)', async () => {
    // carol listens and the "hub" connects to her: she does not trust what it relays.
    const carol = await peer({ identity: 'carol', listen: 'tcp://127.0.0.1:0', relay: relayed });
    const hub = await peer({
      identity: 'hub',
      listen: 'tcp://127.0.0.1:0',
      connect: { url: carol.listening[0]!, options: fast },
      relay: { forward: true, allow: () => true },
    });
    const alice = await peer({ identity: 'alice', connect: { url: hub.listening[0]!, options: fast }, relay: relayed });
    await vi.waitFor(() => expect(hub.connectedPeers().sort()).toEqual(['alice', 'carol']));
    const errors: unknown[] = [];
    alice.messaging.on('protocolError', (_c, e) => errors.push(e));
    alice.send('carol', 'hi');
    await vi.waitFor(() => expect(errors.some((e) => e instanceof RelayError && e.reason === 'refused')).toBe(true), { timeout: 10_000 });
    expect(carol.messaging.relay!.stats().refused).toBeGreaterThan(0);
    expect(alice.queueLength('carol')).toBe(1);
  });
});

describe('relay: several relays', () => {
  /** r1, r2, r3 connected in a ring, all relaying for everyone and trusting each other. */
  async function ring() {
    const opts = (id: string): PeerOptions => ({
      identity: id,
      listen: 'tcp://127.0.0.1:0',
      relay: { forward: true, allow: () => true, trust: () => true, retryInterval: 200 },
    });
    const r1 = await peer(opts('r1'));
    const r2 = await peer(opts('r2'));
    const r3 = await peer(opts('r3'));
    r1.connect(r2.listening[0]!, fast);
    r2.connect(r3.listening[0]!, fast);
    r3.connect(r1.listening[0]!, fast);
    await vi.waitFor(() => {
      for (const r of [r1, r2, r3]) expect(r.connectedPeers()).toHaveLength(2);
    });
    return [r1, r2, r3] as const;
  }

  it('a loop of three relays: queries are not passed on twice, every message arrives once', async () => {
    const [r1, r2, r3] = await ring();
    const alice = await peer({ identity: 'alice', connect: { url: r1.listening[0]!, options: fast }, relay: relayed });
    const carol = await peer({ identity: 'carol', connect: { url: r3.listening[0]!, options: fast }, relay: relayed });
    await vi.waitFor(() => expect(r3.isConnected('carol') && r1.isConnected('alice')).toBe(true));
    const got = texts(carol, 'alice');
    const n = 1000;
    for (let i = 0; i < n; i++) alice.send('carol', `m${i}`);
    await vi.waitFor(() => expect(got.length).toBe(n), { timeout: 20_000 });
    await vi.waitFor(() => expect(alice.queueLength('carol')).toBe(0));
    expectOnceInOrder(got, n);
    const stats = [r1, r2, r3].map((r) => r.messaging.relay!.stats());
    expect(stats.reduce((a, s) => a + s.routes, 0)).toBeGreaterThan(0);
    // Every relay on the path forwards along one route per direction; none forwards the same stream twice.
    for (const r of [r1, r2, r3]) {
      const keys = r.messaging.relay!.routes().map((x) => `${x.source}>${x.destination}`);
      expect(new Set(keys).size).toBe(keys.length);
    }
  });

  it('two relays in a row (alice - r1 - r2 - carol), within the hop limit; not beyond it', async () => {
    const mk = (id: string, hopLimit?: number): PeerOptions => ({
      identity: id,
      listen: 'tcp://127.0.0.1:0',
      relay: { forward: true, allow: () => true, trust: () => true, retryInterval: 200, ...(hopLimit === undefined ? {} : { hopLimit }) },
    });
    const r1 = await peer(mk('r1', 1));
    const r2 = await peer(mk('r2', 1));
    r1.connect(r2.listening[0]!, fast);
    const alice = await peer({ identity: 'alice', connect: { url: r1.listening[0]!, options: fast }, relay: relayed });
    const carol = await peer({ identity: 'carol', connect: { url: r2.listening[0]!, options: fast }, relay: relayed });
    await vi.waitFor(() => expect(r1.isConnected('r2') && r1.isConnected('alice') && r2.isConnected('carol')).toBe(true));
    const got = texts(carol, 'alice');
    alice.send('carol', 'm0');
    // hopLimit 1: r1 does not ask further; alice keeps the message.
    await vi.waitFor(() => expect(alice.messaging.relay!.stats().wanted).toBe(1));
    expect(got).toEqual([]);

    const s1 = await peer(mk('s1'));
    const s2 = await peer(mk('s2'));
    s1.connect(s2.listening[0]!, fast);
    const bob = await peer({ identity: 'bob', connect: { url: s1.listening[0]!, options: fast }, relay: relayed });
    const dave = await peer({ identity: 'dave', connect: { url: s2.listening[0]!, options: fast }, relay: relayed });
    await vi.waitFor(() => expect(s1.isConnected('s2') && s1.isConnected('bob') && s2.isConnected('dave')).toBe(true));
    const atDave = texts(dave, 'bob');
    await bob.send('dave', 'm0').delivered();
    await dave.rpc.serve('echo', { echo: (x: string) => x });
    await expect(bob.rpc.call('dave', 'echo', 'echo', ['far'])).resolves.toBe('far');
    expect(atDave).toEqual(['m0']);
    expect(s1.messaging.relay!.routes().find((r) => r.source === 'bob')).toMatchObject({ next: 's2', hops: 0 });
    expect(s2.messaging.relay!.routes().find((r) => r.source === 'bob')).toMatchObject({ next: 'dave', hops: 1 });
  });
});

describe('relay: a restart in a child process', () => {
  it('carol killed with SIGKILL mid-stream and restarted: every message arrives, none twice while she lives', async () => {
    const hub = await peer({ identity: 'hub', listen: 'tcp://127.0.0.1:0', relay: { forward: true, allow: ['alice', 'carol'] } });
    const url = hub.listening[0]!;
    const script = join(import.meta.dirname, '..', 'persistence', 'child-peer.ts');
    const spawn = () => {
      const c = new Child(script, [JSON.stringify({ ident: 'carol', connect: url, relay: { retryInterval: 200 } })]);
      children.push(c);
      return c;
    };
    const recv = (c: Child) => c.lines.filter((l) => l.startsWith('recv alice ')).map((l) => Number(l.split(' ')[2]!.slice(1)));
    const c1 = spawn();
    await vi.waitFor(() => expect(hub.isConnected('carol')).toBe(true), { timeout: 20_000 });
    const alice = await peer({ identity: 'alice', connect: { url, options: fast }, relay: relayed });
    const n = 3000;
    for (let i = 0; i < n; i++) alice.send('carol', `m${i}`);
    await vi.waitFor(() => expect(recv(c1).length).toBeGreaterThan(500), { timeout: 30_000 });
    await c1.kill('SIGKILL');
    const firstRun = recv(c1);
    const c2 = spawn();
    await vi.waitFor(() => expect(alice.queueLength('carol')).toBe(0), { timeout: 60_000 });
    await vi.waitFor(() => expect(new Set([...firstRun, ...recv(c2)]).size).toBe(n), { timeout: 30_000 });
    for (const run of [firstRun, recv(c2)]) for (let i = 1; i < run.length; i++) expect(run[i]!).toBeGreaterThan(run[i - 1]!);
  }, 120_000);
});
