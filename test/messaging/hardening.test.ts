import { afterEach, describe, expect, it, vi } from 'vitest';
import net from 'node:net';
import tls from 'node:tls';
import { randomBytes } from 'node:crypto';
import { MemoryQueuesStorage } from '../../lib/storage/index.js';
import { RpcClient } from '../../lib/rpc/index.js';
import {
  DuplicateIdentityError,
  HandlerError,
  IdentificationTimeoutError,
  InvalidArgumentError,
  NotSnakeMQPeerError,
  PacketTooLargeError,
  QueueFullError,
  TlsError,
  UnauthorizedError,
  type SnakeMQError,
} from '../../lib/errors.js';
import { closeAllPeers, collect, connectPair, createPeer, fastReconnect, waitEvent } from '../helpers/peers.js';
import { PlainPeer } from '../helpers/plain-peer.js';

const plainPeers: PlainPeer[] = [];
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const p of plainPeers.splice(0)) p.close();
  for (const s of sockets.splice(0)) s.destroy();
  await closeAllPeers();
});

function portOf(url: string): number {
  return Number(new URL(url).port);
}

async function plain(port: number, ident: string, options?: PlainPeer['options']): Promise<PlainPeer> {
  const p = await PlainPeer.connect(port, ident, options);
  plainPeers.push(p);
  return p;
}

function rawSocket(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    sockets.push(s);
    s.on('error', () => undefined);
    s.resume(); // read, so that the listener's close is seen
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

function closed(s: net.Socket): Promise<void> {
  return s.destroyed && s.closed ? Promise.resolve() : new Promise((r) => s.once('close', () => r()));
}

function frame(type: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(5);
  h.writeUInt32BE(body.length + 1);
  h[4] = type;
  return Buffer.concat([h, body]);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

function messageFrame(data: string): Buffer {
  return frame(3, Buffer.concat([randomBytes(16), u32(0xffffffff), u32(0), Buffer.from(data)]));
}

describe('connections that never identify', () => {
  it('are closed after identifyTimeout, with IdentificationTimeoutError on handshakeFailed', async () => {
    const bob = createPeer('bob', { identifyTimeout: 150 });
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const failed = waitEvent<[number, string, SnakeMQError]>(bob.messaging, 'handshakeFailed');
    const silent = await rawSocket(portOf(url));
    const trickle = await rawSocket(portOf(url));
    trickle.write(Buffer.from([0]));
    await Promise.all([closed(silent), closed(trickle)]);
    const [, endpoint, error] = await failed;
    expect(error).toBeInstanceOf(IdentificationTimeoutError);
    expect(endpoint).toBe(url);
    await vi.waitFor(() => expect(bob.link.connectionIds()).toEqual([]));
  });

  it('the timeout closes only connections still unidentified when it fires', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const bob = createPeer('bob', { identifyTimeout: 100 });
      const alice = createPeer('alice');
      const url = await connectPair(bob, alice);
      const silent = await rawSocket(portOf(url));
      await vi.waitFor(() => expect(bob.link.connectionIds()).toHaveLength(2));
      vi.advanceTimersByTime(1000);
      await closed(silent);
      expect(bob.messaging.connectedPeers()).toEqual(['alice']);
      const got = collect(bob.messaging, 1);
      alice.messaging.send('bob', 'still connected');
      expect((await got)[0]!.data).toBe('still connected');
    } finally {
      vi.useRealTimers();
    }
  });

  it('accept only small packets before IDENTIFICATION: a 64 MiB announcement closes at once', async () => {
    const bob = createPeer('bob');
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const failed = waitEvent<[number, string, SnakeMQError]>(bob.messaging, 'handshakeFailed');
    const s = await rawSocket(portOf(url));
    s.write(Buffer.concat([u32(64 * 1024 * 1024), Buffer.alloc(16 * 1024, 7)]));
    await closed(s);
    const [, , error] = await failed;
    expect(error).toBeInstanceOf(NotSnakeMQPeerError);
    expect((error as SnakeMQError).cause).toBeInstanceOf(PacketTooLargeError);
  });

  it('after IDENTIFICATION the same peer may send big messages', async () => {
    const bob = createPeer('bob');
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const p = await plain(portOf(url), 'alice');
    const got = collect(bob.messaging, 1);
    p.sendMessage(Buffer.alloc(200_000, 'x'));
    expect((await got)[0]!.data.length).toBe(200_000);
  });

  it('tells a TLS client on a plain listener apart (TlsError) from an HTTP client (NotSnakeMQPeerError)', async () => {
    const bob = createPeer('bob');
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const errors: SnakeMQError[] = [];
    bob.messaging.on('handshakeFailed', (_c, _e, error) => errors.push(error));
    const t = tls.connect({ host: '127.0.0.1', port: portOf(url), rejectUnauthorized: false });
    t.on('error', () => undefined);
    const http = await rawSocket(portOf(url));
    http.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await vi.waitFor(() => expect(errors).toHaveLength(2), { timeout: 10_000 });
    t.destroy();
    expect(errors.some((e) => e instanceof TlsError)).toBe(true);
    expect(errors.some((e) => e instanceof NotSnakeMQPeerError)).toBe(true);
  });

  it('a connector to something that is not snakeMQ hears why on handshakeFailed', async () => {
    const accepted = new Set<net.Socket>();
    const server = net.createServer((s) => {
      accepted.add(s);
      s.on('close', () => accepted.delete(s));
      s.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const alice = createPeer('alice');
      const failed = waitEvent<[number, string, SnakeMQError]>(alice.messaging, 'handshakeFailed');
      const port = (server.address() as net.AddressInfo).port;
      alice.link.addConnector(`tcp://127.0.0.1:${port}`, fastReconnect);
      const [, endpoint, error] = await failed;
      expect(endpoint).toBe(`tcp://127.0.0.1:${port}`);
      expect(error).toBeInstanceOf(NotSnakeMQPeerError);
    } finally {
      await closeAllPeers();
      for (const a of accepted) a.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe('identity claims', () => {
  it('a new connection takes over an identity whose old connection does not answer a PING', async () => {
    const bob = createPeer('bob', { keepaliveWait: 150 });
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const connects: number[] = [];
    const disconnects: number[] = [];
    bob.messaging.on('connect', (c) => connects.push(c));
    bob.messaging.on('disconnect', (c) => disconnects.push(c));
    const stale = await plain(portOf(url), 'alice', { answerPing: false });
    stale.sendFrame(16, Buffer.from([1, 0, 0, 0, 1])); // acknowledged mode, and it never acknowledges
    await vi.waitFor(() => expect(connects).toHaveLength(1));
    // Sent to the stale connection and lost with it: must be re-sent on the new one.
    bob.messaging.send('alice', 'queued for alice');
    await stale.until(() => stale.messages.length === 1);
    const got = collect(bob.messaging, 1);
    const fresh = await plain(portOf(url), 'alice', { handshake: false });
    // Its handshake and a message in one write: the message must not be lost while the claim is checked.
    fresh.sendRaw(Buffer.concat([frame(0, u32(1)), frame(2, Buffer.from('alice')), messageFrame('from the new connection')]));
    const [{ ident, data }] = await got;
    expect({ ident, data }).toEqual({ ident: 'alice', data: 'from the new connection' });
    expect(connects).toHaveLength(2);
    expect(disconnects).toEqual([connects[0]]);
    await fresh.until(() => fresh.messages.some((m) => m.data.toString() === 'queued for alice'));
    await stale.until(() => stale.closed);
  });

  it('an old connection that answers keeps its identity; the claimant hears DuplicateIdentityError', async () => {
    const bob = createPeer('bob', { keepaliveWait: 2000 });
    const alice = createPeer('alice');
    const url = await connectPair(bob, alice);
    const twin = createPeer('alice');
    const bobSide = waitEvent<[number, string, SnakeMQError]>(bob.messaging, 'handshakeFailed');
    const twinSide = waitEvent<[number, string, SnakeMQError]>(twin.messaging, 'handshakeFailed');
    twin.link.addConnector(url, { reconnectDelay: () => 60_000 });
    const [, , atBob] = await bobSide;
    const [, , atTwin] = await twinSide;
    expect(atBob).toBeInstanceOf(DuplicateIdentityError);
    expect(atTwin).toBeInstanceOf(DuplicateIdentityError);
    expect(atTwin.message).toContain('bob refused');
    expect(bob.messaging.connectedPeers()).toEqual(['alice']);
    const got = collect(bob.messaging, 1);
    alice.messaging.send('bob', 'still here');
    expect((await got)[0]!.data).toBe('still here');
  });
});

describe('authorize', () => {
  it('is decided at IDENTIFICATION: no frame sent in the same write is delivered', async () => {
    const authorize = vi.fn((identity: string) => identity !== 'bob-impostor');
    const bob = createPeer('bob', { authorize });
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const delivered: string[] = [];
    bob.messaging.on('message', (_c, ident, m) => delivered.push(`${ident}:${m.data.toString()}`));
    const refused = waitEvent<[number, SnakeMQError]>(bob.messaging, 'protocolError');
    const p = await plain(portOf(url), 'x', { handshake: false });
    p.sendRaw(Buffer.concat([frame(0, u32(1)), frame(2, Buffer.from('bob-impostor')), messageFrame('one'), messageFrame('two')]));
    const [, error] = await refused;
    expect(error).toBeInstanceOf(UnauthorizedError);
    await p.until(() => p.closed);
    expect(p.frames.some((f) => f.type === 18)).toBe(true);
    const ok = await plain(portOf(url), 'carol');
    const got = collect(bob.messaging, 1);
    ok.sendMessage('three');
    await got;
    expect(delivered).toEqual(['carol:three']);
    expect(authorize).toHaveBeenCalledWith('bob-impostor', expect.objectContaining({ side: 'listener' }));
  });

  it('a policy that throws refuses too', async () => {
    const bob = createPeer('bob', {
      authorize: () => {
        throw new Error('database down');
      },
    });
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const refused = waitEvent<[number, SnakeMQError]>(bob.messaging, 'protocolError');
    await plain(portOf(url), 'alice');
    const [, error] = await refused;
    expect(error).toBeInstanceOf(UnauthorizedError);
    expect((error.cause as Error).message).toBe('database down');
  });
});

describe('handlers that throw', () => {
  it('a throwing message listener is reported and the connection keeps flowing', async () => {
    const bob = createPeer('bob');
    const alice = createPeer('alice');
    await connectPair(bob, alice);
    let calls = 0;
    const errors: HandlerError[] = [];
    bob.messaging.on('handlerError', (e) => errors.push(e));
    bob.messaging.on('message', () => {
      if (++calls % 10 === 0) throw new Error(`boom ${calls}`);
    });
    const deliveries = [];
    for (let i = 0; i < 2000; i++) deliveries.push(alice.messaging.send('bob', `m${i}`));
    await Promise.all(deliveries.map((d) => d.delivered()));
    expect(calls).toBe(2000);
    expect(errors).toHaveLength(200);
    expect(errors[0]).toBeInstanceOf(HandlerError);
    expect((errors[0]!.cause as Error).message).toBe('boom 10');
  });

  it('with several listeners, one that throws does not keep the message from the others; hooks are isolated too', async () => {
    const bob = createPeer('bob');
    const alice = createPeer('alice');
    await connectPair(bob, alice);
    const errors: HandlerError[] = [];
    bob.messaging.on('handlerError', (e) => errors.push(e));
    const seen: string[] = [];
    bob.messaging.on('message', () => {
      throw new Error('first');
    });
    bob.messaging.on('message', (_c, _i, m) => seen.push(m.data.toString()));
    bob.messaging.addReceiveHook('hook:', () => {
      throw new Error('hook');
    });
    bob.messaging.on('connect', () => {
      throw new Error('connect listener');
    });
    const ds = ['a', 'hook:x', 'b'].map((d) => alice.messaging.send('bob', d));
    await Promise.all(ds.map((d) => d.delivered()));
    expect(seen).toEqual(['a', 'b']);
    expect(errors.map((e) => (e.cause as Error).message)).toEqual(['first', 'hook', 'first']);
  });
});

describe('send() and a peer state', () => {
  it('never throws because the peer broke its connection, and the queue counts stay exact', async () => {
    const bob = createPeer('bob');
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const p = await plain(portOf(url), 'alice');
    await vi.waitFor(() => expect(bob.messaging.isConnected('alice')).toBe(true));
    const thrown: unknown[] = [];
    const broke = new Promise<void>((resolve) =>
      bob.messaging.once('protocolError', () => {
        for (let i = 0; i < 5; i++) {
          try {
            bob.messaging.send('alice', `after ${i}`);
          } catch (error) {
            thrown.push(error);
          }
        }
        resolve();
      }),
    );
    p.sendRaw(u32(0xfffffff0));
    await broke;
    expect(thrown).toEqual([]);
    expect(bob.messaging.queueLength('alice')).toBe(5);
    await vi.waitFor(() => expect(bob.messaging.isConnected('alice')).toBe(false));
    expect(bob.messaging.queueLength('alice')).toBe(5);
    const again = await plain(portOf(url), 'alice');
    await again.until(() => again.messages.length === 5);
    await vi.waitFor(() => expect(bob.messaging.queueLength('alice')).toBe(0));
  });

  it('refuses destinations no peer can have: longer than 50 characters, or its own identity', () => {
    const bob = createPeer('bob');
    expect(() => bob.messaging.send('x'.repeat(51), 'hi')).toThrow(InvalidArgumentError);
    expect(() => bob.messaging.send('bob', 'hi')).toThrow(InvalidArgumentError);
    expect(() => bob.messaging.send('x'.repeat(50), 'hi')).not.toThrow();
    expect(() => bob.messaging.send('\ud800bob', 'hi')).toThrow(InvalidArgumentError);
    expect(bob.messaging.queueLength('x'.repeat(51))).toBe(0);
  });

  it('RPC calls to such destinations reject at once instead of waiting out their timeout', async () => {
    const bob = createPeer('bob');
    const client = new RpcClient(bob.messaging, { timeout: 60_000 });
    await expect(client.call('x'.repeat(51), 'calc', 'add', [1, 2])).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(client.call('bob', 'calc', 'add', [1, 2])).rejects.toBeInstanceOf(InvalidArgumentError);
    expect(() => client.proxy('x'.repeat(51), 'calc')).toThrow(InvalidArgumentError);
  });
});

describe('state per identity', () => {
  it('frees the queue and de-duplication state of identities that left with nothing queued, after the grace period', async () => {
    const storage = new MemoryQueuesStorage();
    const forget = vi.spyOn(storage, 'forget');
    const bob = createPeer('bob', { idleIdentityGrace: 100, storage });
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const got = collect(bob.messaging, 20);
    for (let i = 0; i < 20; i++) {
      const p = await plain(portOf(url), `peer-${i}`);
      p.sendMessage(`hello ${i}`);
    }
    await got;
    for (const p of plainPeers.splice(0)) p.close();
    await vi.waitFor(() => expect(bob.messaging.connectedPeers()).toEqual([]));
    await vi.waitFor(() => expect(bob.messaging.identityCount).toBe(0));
    expect(forget).toHaveBeenCalledTimes(20);
  });

  it('keeps an identity with messages queued, and at most maxIdleIdentities idle ones', async () => {
    const bob = createPeer('bob', { maxIdleIdentities: 5 });
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    bob.messaging.send('absent', 'waits');
    for (let i = 0; i < 12; i++) {
      const p = await plain(portOf(url), `peer-${i}`);
      await vi.waitFor(() => expect(bob.messaging.isConnected(`peer-${i}`)).toBe(true));
      p.close();
      await vi.waitFor(() => expect(bob.messaging.isConnected(`peer-${i}`)).toBe(false));
    }
    expect(bob.messaging.identityCount).toBe(6); // 5 idle + the one with a message queued
    expect(bob.messaging.queueLength('absent')).toBe(1);
  });

  it('applies the queue limits to what storage loads', async () => {
    const storage = new MemoryQueuesStorage();
    const stored = [];
    for (let i = 0; i < 10; i++) stored.push({ uuid: randomBytes(16), data: Buffer.from(`s${i}`), flags: 1, ttl: null });
    await storage.push('alice', stored);
    const bob = createPeer('bob', { storage, maxQueueMessages: 4, overflow: 'drop-oldest' });
    const drops: string[] = [];
    bob.messaging.on('drop', (_i, m, reason) => {
      expect(reason).toBeInstanceOf(QueueFullError);
      drops.push(m.data.toString());
    });
    await bob.messaging.ready;
    expect(bob.messaging.queueLength('alice')).toBe(4);
    expect(drops).toEqual(['s0', 's1', 's2', 's3', 's4', 's5']);
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const p = await plain(portOf(url), 'alice');
    await p.until(() => p.messages.length === 4);
    expect(p.messages.map((m) => m.data.toString())).toEqual(['s6', 's7', 's8', 's9']);
  });
});

describe('a full iterator', () => {
  it('pauses only the peers whose messages it holds: others are still read (their ACKs and RPC replies)', async () => {
    const bob = createPeer('bob', { streamHighWaterMark: 10 });
    const alice = createPeer('alice');
    const carol = createPeer('carol');
    const url = await connectPair(bob, alice);
    const carolUp = waitEvent(bob.messaging, 'connect', (_c: number, i: string) => i === 'carol');
    carol.link.addConnector(url, fastReconnect);
    await carolUp;
    const it = bob.messaging.messages();
    // More than 1,024: the old check (every 1,024 messages) paused every peer at that point.
    for (let i = 0; i < 3000; i++) alice.messaging.send('bob', `a${i}`);
    await vi.waitFor(() => expect((it as unknown as { buffered: number }).buffered).toBeGreaterThanOrEqual(10));
    // carol only acknowledges what bob sends her: those ACKs must still be read.
    const ds = [];
    for (let i = 0; i < 50; i++) ds.push(bob.messaging.send('carol', `c${i}`));
    await Promise.all(ds.map((d) => d.delivered()));
    // alice is paused at the mark: the iterator holds at most the rest of that socket read (64 KiB, under 2,300 of these frames), not all 3,000.
    expect((it as unknown as { buffered: number }).buffered).toBeLessThan(2300);
    const first = await it.next();
    expect(first.value?.message.data.toString()).toBe('a0');
    let n = 1;
    for await (const _m of it) if (++n === 3000) break;
    expect(n).toBe(3000);
  });
});
