import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import {
  ErrorCode,
  InvalidOptionsError,
  ManagementUnauthorizedError,
  MessageDroppedError,
  RpcRemoteError,
  RpcUnknownObjectError,
  type SnakeMQError,
} from '../../lib/errors.js';
import { ManagementClient, serveManagement, type ManagementStatus } from '../../lib/management/index.js';
import { Message, FLAG_PERSISTENT } from '../../lib/messaging/index.js';
import { createPeer, type Peer, type PeerOptions } from '../../lib/peer/index.js';
import { MemoryQueuesStorage } from '../../lib/storage/index.js';

const open = new Set<Peer>();
const dirs: string[] = [];
const fast = { reconnectDelay: () => 50 };

async function peer(options: PeerOptions): Promise<Peer> {
  const p = await createPeer(options);
  open.add(p);
  return p;
}

afterEach(async () => {
  await Promise.all([...open].map((p) => p.close()));
  open.clear();
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tls(name: string): { key: Buffer; cert: Buffer; ca: Buffer } {
  const read = (f: string) => readFileSync(new URL(`../fixtures/tls/${f}`, import.meta.url));
  return { key: read(`${name}-key.pem`), cert: read(`${name}.pem`), ca: read('ca.pem') };
}

/** `ident` connected to `target` (its listener), both sides identified. */
async function connected(target: Peer, ident: string, extra: Partial<PeerOptions> = {}): Promise<Peer> {
  const p = await peer({ identity: ident, connect: { url: target.listening[0]!, options: fast }, ...extra });
  await vi.waitFor(() => expect(target.isConnected(ident) && p.isConnected(target.identity)).toBe(true));
  return p;
}

/** A port nobody listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function peerOf(status: ManagementStatus, ident: string) {
  return status.peers.find((p) => p.ident === ident);
}

describe('management over RPC', () => {
  it('serves the status to an allowed identity: listeners, connectors with their state, connections with addresses, queues', async () => {
    const bob = await peer({ identity: 'bob', listen: 'tcp://127.0.0.1:0', management: { allow: ['ops'] } });
    const port = await closedPort();
    const key = bob.connect(`tcp://127.0.0.1:${port}`, fast);
    const ops = await connected(bob, 'ops');
    await vi.waitFor(() => expect(bob.link.endpoints().connectors[0]!.attempts).toBeGreaterThanOrEqual(1));

    const status = await new ManagementClient(ops, 'bob').status();
    expect(status.version).toBe(1);
    expect(status.identity).toBe('bob');
    expect(status.listeners).toEqual([{ url: bob.listening[0], tls: false, connections: 1 }]);
    expect(status.connectors).toHaveLength(1);
    const connector = status.connectors[0]!;
    expect(connector.endpoint).toBe(key);
    expect(['connecting', 'waiting']).toContain(connector.state);
    expect(connector.attempts).toBeGreaterThanOrEqual(1);
    expect(connector.lastError?.code).toBe(ErrorCode.CONNECTION);
    expect(connector.connId).toBeNull();

    const opsConn = ops.link.connection(ops.link.connectionIds()[0]!)!;
    expect(status.connections).toHaveLength(1);
    const conn = status.connections[0]!;
    expect(conn).toMatchObject({
      ident: 'ops',
      side: 'listener',
      endpoint: bob.listening[0],
      remoteAddress: '127.0.0.1',
      remotePort: opsConn.localPort,
      localPort: opsConn.remotePort,
      tls: null,
    });
    expect(conn.bytesRead).toBeGreaterThan(0);
    expect(conn.bytesWritten).toBeGreaterThan(0);
    expect(peerOf(status, 'ops')).toMatchObject({ connected: true, connId: conn.connId, queued: 0, inFlight: 0, oldestAgeMs: null, awaySince: null });
    expect(status.totals.connections).toBe(1);
    expect(status.storage).toBeNull();
    expect(status.relayRoutes).toEqual([]);
    expect(status.relayRoutesTruncated).toBe(false);
    expect(bob.management!.counters.calls).toBe(1);
    // The other side: a connected connector, through the same accessor the status uses.
    expect(ops.link.endpoints().connectors).toEqual([
      { endpoint: bob.listening[0], state: 'connected', attempts: 0, lastError: null, connId: ops.link.connectionIds()[0] },
    ]);
  });

  it('refuses an identity not allowed with ManagementUnauthorizedError (RpcRemoteError with its code for a bare call)', async () => {
    const bob = await peer({ identity: 'bob', listen: 'tcp://127.0.0.1:0', management: { allow: (ident) => ident.startsWith('ops-') } });
    const eve = await connected(bob, 'eve');
    const opsA = await connected(bob, 'ops-a');
    await expect(new ManagementClient(eve, 'bob').status()).rejects.toBeInstanceOf(ManagementUnauthorizedError);
    const bare = await eve.rpc.call('bob', 'management', 'status').catch((e: unknown) => e);
    expect(bare).toBeInstanceOf(RpcRemoteError);
    expect((bare as RpcRemoteError).remoteCode).toBe(ErrorCode.MANAGEMENT_UNAUTHORIZED);
    expect((await new ManagementClient(opsA, 'bob').status()).identity).toBe('bob');
    expect(bob.management!.counters).toEqual({ calls: 1, refused: 2 });
  });

  it('counts bytes and messages per connection and in total, and they grow', async () => {
    const bob = await peer({ identity: 'bob', listen: 'tcp://127.0.0.1:0', management: { allow: ['ops'] } });
    const ops = await connected(bob, 'ops');
    const client = new ManagementClient(ops, 'bob');
    const before = await client.status();
    const payload = Buffer.alloc(10_000, 7);
    for (let i = 0; i < 3; i++) await ops.send('bob', payload).delivered();
    await bob.send('ops', 'back').delivered();
    const after = await client.status();
    const a = before.connections[0]!;
    const b = after.connections[0]!;
    expect(b.connId).toBe(a.connId);
    expect(b.bytesRead - a.bytesRead).toBeGreaterThanOrEqual(30_000);
    expect(b.bytesWritten).toBeGreaterThan(a.bytesWritten);
    // The status calls themselves are messages too: at least the 3 sent.
    expect(b.messagesIn - a.messagesIn).toBeGreaterThanOrEqual(3);
    expect(b.messagesOut - a.messagesOut).toBeGreaterThanOrEqual(1);
    expect(after.totals.bytesRead - before.totals.bytesRead).toBeGreaterThanOrEqual(30_000);
    expect(after.totals.messagesIn - before.totals.messagesIn).toBeGreaterThanOrEqual(3);
    expect(peerOf(after, 'ops')!.messagesIn).toBe(b.messagesIn);
  });

  it('keeps the totals of connections that ended', async () => {
    const bob = await peer({ identity: 'bob', listen: 'tcp://127.0.0.1:0', management: { allow: ['ops'] } });
    const alice = await connected(bob, 'alice');
    for (let i = 0; i < 4; i++) await alice.send('bob', 'hello').delivered();
    const live = bob.messaging.stats();
    expect(live.messagesIn).toBe(4);
    const read = bob.link.totalBytes().bytesRead;
    const gone = new Promise((resolve) => bob.once('disconnect', resolve));
    await alice.close();
    await gone;
    expect(bob.messaging.stats().messagesIn).toBe(4);
    expect(bob.link.totalBytes().bytesRead).toBeGreaterThanOrEqual(read);
  });

  it('shows a queue for an away peer: its length, bytes and the age of its oldest message', async () => {
    const bob = await peer({ identity: 'bob', listen: 'tcp://127.0.0.1:0', management: { allow: ['ops'] } });
    const ops = await connected(bob, 'ops');
    const t0 = Date.now();
    for (let i = 0; i < 5; i++)
      bob
        .send('carol', `m${i}`)
        .delivered()
        .catch(() => undefined);
    const client = new ManagementClient(ops, 'bob');
    let carol;
    await vi.waitFor(async () => {
      carol = peerOf(await client.status(), 'carol');
      expect(carol!.oldestAgeMs).toBeGreaterThanOrEqual(30);
    });
    const elapsed = Date.now() - t0;
    expect(carol).toMatchObject({ connected: false, connId: null, queued: 5, inFlight: 0, messagesIn: 0, messagesOut: 0 });
    expect(carol!.queuedBytes).toBeGreaterThan(5 * 2);
    expect(carol!.oldestAgeMs).toBeLessThanOrEqual(elapsed);
    expect(carol!.awaySince).toBeLessThanOrEqual(Date.now());
    expect((await client.status()).totals.queued).toBe(5);
  });

  it('reports the TLS peer over real TLS: verified, subject CN and SANs, not the certificate', async () => {
    const bob = await peer({
      identity: 'bob',
      listen: 'tls://127.0.0.1:0',
      tls: { ...tls('bob'), requestCert: true },
      management: { allow: ['ops'] },
    });
    const ops = await connected(bob, 'ops', { tls: tls('alice') });
    const status = await new ManagementClient(ops, 'bob').status();
    expect(status.listeners[0]!.tls).toBe(true);
    const t = status.connections[0]!.tls!;
    expect(t.authorized).toBe(true);
    expect(t.authorizationError).toBeNull();
    expect(t.subjectCN).toBe('alice');
    expect(t.subjectAltNames).toEqual(['DNS:localhost', 'IP Address:127.0.0.1', 'IP Address:0:0:0:0:0:0:0:1']);
    expect(t.protocol).toMatch(/^TLSv1\.[23]$/);
    expect(Object.keys(t).sort()).toEqual(['authorizationError', 'authorized', 'protocol', 'subjectAltNames', 'subjectCN']);
  });

  it('reports the size of an SQLite storage (file size and message count) and of a memory one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'smq-mgmt-'));
    dirs.push(dir);
    const bob = await peer({ identity: 'bob', listen: 'tcp://127.0.0.1:0', storage: join(dir, 'bob.sqlite'), management: { allow: ['ops'] } });
    const ops = await connected(bob, 'ops');
    const stored = [];
    for (let i = 0; i < 7; i++) stored.push(bob.send('carol', new Message(`kept ${i}`, { flags: FLAG_PERSISTENT })).persisted());
    await Promise.all(stored);
    const status = await new ManagementClient(ops, 'bob').status();
    expect(status.storage).toMatchObject({ kind: 'sqlite', durable: true, messages: 7, bytes: null, error: null });
    expect(status.storage!.fileBytes).toBeGreaterThan(0);

    const memory = new MemoryQueuesStorage();
    const alice = await peer({ identity: 'alice', storage: memory, management: { allow: [] } });
    await Promise.all([
      alice.send('carol', new Message('abc', { flags: FLAG_PERSISTENT })).persisted(),
      alice.send('dave', new Message('defg', { flags: FLAG_PERSISTENT })).persisted(),
    ]);
    expect((await alice.management!.status()).storage).toEqual({ kind: 'memory', durable: false, messages: 2, bytes: 7, fileBytes: null, error: null });
  });

  it('bounds the lists (maxPeers) and says so', async () => {
    const bob = await peer({ identity: 'bob', management: { allow: [], maxPeers: 2 } });
    for (const ident of ['p1', 'p2', 'p3', 'p4', 'p5'])
      bob
        .send(ident, 'x')
        .delivered()
        .catch(() => undefined);
    const status = await bob.management!.status();
    expect(status.peers.map((p) => p.ident)).toEqual(['p1', 'p2']);
    expect(status.peersTruncated).toBe(true);
    expect(status.identities).toBe(5);
    expect(status.totals.queued).toBe(5);
  });

  it('shows the relay routes of the provider, copied field by field and bounded', async () => {
    const route = {
      source: 'a',
      destination: 'b',
      previous: 'a',
      next: 'r2',
      hops: 2,
      packetsForwarded: 9,
      bytesForwarded: 1234,
      held: 3,
      secret: 'not shown',
    };
    const bob = await peer({ identity: 'bob', management: { allow: [], maxPeers: 2, relayRoutes: () => [route, route, route] } });
    const status = await bob.management!.status();
    const shown = { source: 'a', destination: 'b', previous: 'a', next: 'r2', hops: 2, packetsForwarded: 9, bytesForwarded: 1234, held: 3 };
    expect(status.relayRoutes).toEqual([shown, shown]);
    expect(status.relayRoutesTruncated).toBe(true);
  });
});

describe('management actions', () => {
  it('refuses actions to an identity allowed to read only, and to others', async () => {
    const bob = await peer({ identity: 'bob', listen: 'tcp://127.0.0.1:0', management: { allow: ['ops', 'admin'], actions: { allow: ['admin'] } } });
    const ops = await connected(bob, 'ops');
    bob
      .send('carol', 'waits')
      .delivered()
      .catch(() => undefined);
    const client = new ManagementClient(ops, 'bob');
    await expect(client.dropQueue('carol')).rejects.toBeInstanceOf(ManagementUnauthorizedError);
    await expect(client.disconnect('ops')).rejects.toBeInstanceOf(ManagementUnauthorizedError);
    expect(bob.queueLength('carol')).toBe(1);
    expect(bob.isConnected('ops')).toBe(true);
    // Without `actions`, nobody may act.
    const alice = await peer({ identity: 'alice', listen: 'tcp://127.0.0.1:0', management: { allow: ['admin'] } });
    const admin = await connected(alice, 'admin');
    await expect(new ManagementClient(admin, 'alice').dropQueue('x')).rejects.toBeInstanceOf(ManagementUnauthorizedError);
  });

  it('drops a queue for an allowed identity: drop events fire, the deliveries reject, the storage forgets them', async () => {
    const storage = new MemoryQueuesStorage();
    const bob = await peer({ identity: 'bob', listen: 'tcp://127.0.0.1:0', storage, management: { allow: [], actions: { allow: ['admin'] } } });
    const admin = await connected(bob, 'admin');
    const drops: SnakeMQError[] = [];
    bob.on('drop', (ident, _m, reason) => {
      if (ident === 'carol') drops.push(reason);
    });
    const deliveries = [];
    for (let i = 0; i < 4; i++) deliveries.push(bob.send('carol', new Message(`m${i}`, { flags: FLAG_PERSISTENT })));
    await Promise.all(deliveries.map((d) => d.persisted()));
    expect((await storage.size()).messages).toBe(4);
    expect(await new ManagementClient(admin, 'bob').dropQueue('carol')).toBe(4);
    expect(drops).toHaveLength(4);
    expect(drops[0]).toBeInstanceOf(MessageDroppedError);
    for (const d of deliveries) await expect(d.delivered()).rejects.toBeInstanceOf(MessageDroppedError);
    expect(bob.queueLength('carol')).toBe(0);
    await vi.waitFor(async () => expect((await storage.size()).messages).toBe(0));
    expect(await new ManagementClient(admin, 'bob').dropQueue('nobody')).toBe(0);
    // What is sent afterwards is queued as usual.
    bob
      .send('carol', 'later')
      .delivered()
      .catch(() => undefined);
    expect(bob.queueLength('carol')).toBe(1);
  });

  it('disconnects a peer for an allowed identity (it reconnects on its own, as after any disconnect)', async () => {
    const bob = await peer({ identity: 'bob', listen: 'tcp://127.0.0.1:0', management: { allow: [], actions: { allow: ['admin'] } } });
    const admin = await connected(bob, 'admin');
    const ops = await connected(bob, 'ops');
    const firstConn = bob.messaging.peerStats('ops')!.connId;
    const gone = new Promise<string>((resolve) => bob.on('disconnect', (_c, ident) => resolve(ident)));
    const opsGone = new Promise<string>((resolve) => ops.on('disconnect', (_c, ident) => resolve(ident)));
    expect(await new ManagementClient(admin, 'bob').disconnect('ops')).toBe(true);
    expect(await gone).toBe('ops');
    expect(await opsGone).toBe('bob');
    await vi.waitFor(() => expect(bob.messaging.peerStats('ops')?.connId ?? firstConn).not.toBe(firstConn));
    expect(await new ManagementClient(admin, 'bob').disconnect('nobody')).toBe(false);
  });
});

describe('serveManagement', () => {
  it('serves standalone and close() stops serving', async () => {
    const bob = await peer({ identity: 'bob', listen: 'tcp://127.0.0.1:0' });
    expect(bob.management).toBeNull();
    const m = serveManagement(bob, { allow: ['ops'], name: 'mgmt' });
    const ops = await connected(bob, 'ops');
    const client = new ManagementClient(ops, 'bob', { name: 'mgmt' });
    expect((await client.status()).identity).toBe('bob');
    await m.close();
    await m.close();
    expect(m.closed).toBe(true);
    await expect(client.status()).rejects.toBeInstanceOf(RpcUnknownObjectError);
    const withPeer = await peer({ identity: 'carl', management: { allow: [] } });
    expect(withPeer.management!.closed).toBe(false);
    await withPeer.close();
    expect(withPeer.management!.closed).toBe(true);
    await withPeer.management!.close();
  });

  it('checks its options: allow required, unknown keys refused, in createPeer too', async () => {
    const bob = await peer({ identity: 'bob' });
    expect(() => serveManagement(bob, {} as never)).toThrow(InvalidOptionsError);
    expect(() => serveManagement(bob, { allow: ['a'], alow: 1 } as never)).toThrow(/unknown option 'alow'/);
    expect(() => serveManagement(bob, { allow: 'ops' } as never)).toThrow(InvalidOptionsError);
    expect(() => serveManagement(bob, { allow: [], actions: { allow: [], x: 1 } } as never)).toThrow(InvalidOptionsError);
    expect(() => serveManagement(bob, { allow: [], maxPeers: 0 })).toThrow(InvalidOptionsError);
    await expect(createPeer({ identity: 'x', management: { allow: [], bogus: true } as never })).rejects.toThrow(InvalidOptionsError);
  });
});
