import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { ClosedError, ConnectionError, InvalidOptionsError, RpcUnknownObjectError, StorageLockedError } from '../../lib/errors.js';
import { Link } from '../../lib/link/index.js';
import { Message, type ReceivedMessage } from '../../lib/messaging/index.js';
import { MemoryQueuesStorage } from '../../lib/storage/memory.js';
import { Throttle } from '../../lib/throttle/index.js';
import { createPeer, type Peer, type PeerOptions } from '../../lib/peer/index.js';

const ROOT = join(import.meta.dirname, '..', '..');
const pem = (name: string) => readFileSync(join(ROOT, 'test', 'fixtures', 'tls', name));
const tlsOf = (name: string) => ({ key: pem(`${name}-key.pem`), cert: pem(`${name}.pem`), ca: pem('ca.pem') });
const fast = { reconnectDelay: () => 50 };

const open = new Set<Peer>();
/** createPeer, closed after each test whatever happens. */
async function peer(options: PeerOptions): Promise<Peer> {
  const p = await createPeer(options);
  open.add(p);
  return p;
}
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all([...open].map((p) => p.close()));
  open.clear();
});

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'smq-peer-'));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** The next message `p` receives, as `from: data`. */
function nextMessage(p: Peer): Promise<string> {
  return new Promise((resolve) => p.once('message', (_connId, from, message) => resolve(`${from}: ${message.data.toString()}`)));
}

/** Whether something accepts TCP connections on `url` (tcp://host:port). */
function accepts(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = netConnect(Number(port), hostname);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('createPeer: a working pair', () => {
  it('binds its listeners before resolving and exchanges messages both ways over TCP', async () => {
    const bob = await peer({ identity: 'bob', listen: 'tcp://127.0.0.1:0' });
    expect(bob.listening).toHaveLength(1);
    expect(bob.listening[0]).toMatch(/^tcp:\/\/127\.0\.0\.1:[1-9]\d*$/);
    expect(await accepts(bob.listening[0]!)).toBe(true);
    const alice = await peer({ identity: 'alice', connect: { url: bob.listening[0]!, options: fast } });
    expect(alice.identity).toBe('alice');
    expect(alice.listening).toEqual([]);

    const atBob = nextMessage(bob);
    const delivery = alice.send('bob', 'hi bob'); // queued until connected
    expect(await atBob).toBe('alice: hi bob');
    await delivery.delivered();
    expect(bob.isConnected('alice')).toBe(true);
    expect(alice.connectedPeers()).toEqual(['bob']);

    const atAlice = nextMessage(alice);
    await bob.send('alice', new Message('hi alice')).delivered(); // the listener sends too
    expect(await atAlice).toBe('bob: hi alice');
    expect(alice.queueLength('bob')).toBe(0);
  });

  it('listens and connects over mutual TLS with one tls option per peer', async () => {
    const bob = await peer({ identity: 'bob', listen: 'tls://127.0.0.1:0', tls: { ...tlsOf('bob'), requestCert: true } });
    expect(bob.listening[0]).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);
    const alice = await peer({ identity: 'alice', connect: { url: bob.listening[0]!, options: fast }, tls: tlsOf('alice') });
    const connected = new Promise<string>((resolve) =>
      bob.on('connect', (connId) => resolve(String(bob.link.connection(connId)?.tls?.peerCertificate?.subject?.CN))),
    );
    const atBob = nextMessage(bob);
    alice.send('bob', 'over TLS');
    expect(await atBob).toBe('alice: over TLS');
    expect(await connected).toBe('alice');
  });

  it('listens on a Unix socket, and adds listeners and connectors later', async () => {
    const path = join(tempDir(), 'bob.sock');
    const bob = await peer({ identity: 'bob', listen: [`unix://${path}`] });
    expect(bob.listening).toEqual([`unix://${path}`]);
    const second = await bob.listen('tcp://127.0.0.1:0');
    expect(bob.listening).toEqual([`unix://${path}`, second]);

    const alice = await peer({ identity: 'alice' });
    const atBob = nextMessage(bob);
    alice.connect(`unix://${path}`, fast);
    alice.send('bob', 'over a unix socket');
    expect(await atBob).toBe('alice: over a unix socket');
  });

  it('builds a Throttle between link and packeter when asked', async () => {
    const plain = await peer({ identity: 'plain' });
    expect(plain.throttle).toBeNull();
    const bob = await peer({ identity: 'bob', throttle: { bytesPerSecond: 1_000_000 }, link: { highWaterMark: 65_536 } });
    expect(bob.throttle).toBeInstanceOf(Throttle);
  });
});

describe('createPeer: storage', () => {
  it('opens an SQLite file from a path, waits for its queues, and delivers what it held after a restart', async () => {
    const file = join(tempDir(), 'bob.sqlite');
    const first = await peer({ identity: 'bob', storage: file });
    await first.send('alice', new Message('kept on disk', { persistent: true })).persisted();
    await first.close();
    expect(first.closed).toBe(true);

    const bob = await peer({ identity: 'bob', storage: file, listen: 'tcp://127.0.0.1:0' });
    expect(bob.queueLength('alice')).toBe(1); // loaded before createPeer resolved
    const alice = await peer({ identity: 'alice' });
    const atAlice = nextMessage(alice);
    alice.connect(bob.listening[0]!, fast);
    expect(await atAlice).toBe('bob: kept on disk');
    await vi.waitFor(() => expect(bob.queueLength('alice')).toBe(0));
  });

  it('disconnect(url) stops the connector: the connection ends and is not made again', async () => {
    const bob = await peer({ identity: 'bob', listen: 'tcp://127.0.0.1:0' });
    const alice = await peer({ identity: 'alice' });
    const up = new Promise((resolve) => bob.once('connect', resolve));
    const url = alice.connect(bob.listening[0]!, fast);
    await up;
    const down = new Promise((resolve) => bob.once('disconnect', resolve));
    await alice.disconnect(url);
    await down;
    expect(alice.isConnected('bob')).toBe(false);
    expect(alice.link.connectionIds()).toEqual([]);
  });

  it('rejects with StorageLockedError when the file is held by another peer, and that peer goes on', async () => {
    const file = join(tempDir(), 'bob.sqlite');
    const bob = await peer({ identity: 'bob', storage: file });
    const close = vi.spyOn(Link.prototype, 'close');
    await expect(createPeer({ identity: 'bob', storage: file, listen: 'tcp://127.0.0.1:0' })).rejects.toBeInstanceOf(StorageLockedError);
    expect(close).toHaveBeenCalledTimes(1); // the second peer's link, never bob's
    await bob.send('alice', new Message('still fine', { persistent: true })).persisted();
  });

  it('closes a storage it was given, on close and when it fails', async () => {
    const storage = new MemoryQueuesStorage();
    const p = await peer({ identity: 'bob', storage });
    expect(p.storage).toBe(storage);
    await p.close();
    await expect(storage.load()).rejects.toBeInstanceOf(ClosedError);

    const other = new MemoryQueuesStorage();
    await expect(createPeer({ identity: 'bob', storage: other, messaging: { maxQueueMessages: 0 } })).rejects.toBeInstanceOf(InvalidOptionsError);
    await expect(other.load()).rejects.toBeInstanceOf(ClosedError);
  });
});

describe('createPeer: options and failures', () => {
  it('refuses unknown keys and bad values with InvalidOptionsError, before opening anything', async () => {
    const close = vi.spyOn(Link.prototype, 'close');
    const bad: [unknown, RegExp][] = [
      [{ identity: 'bob', listne: 'tcp://127.0.0.1:0' }, /unknown option 'listne'/],
      [{ listen: 'tcp://127.0.0.1:0' }, /'identity' is required/],
      [{ identity: 42 }, /'identity' must be a string/],
      [{ identity: 'bob', listen: 'tcp://127.0.0.1' }, /option 'listen' has an invalid endpoint/],
      [{ identity: 'bob', connect: [{ url: 'tcp://127.0.0.1:1', option: {} }] }, /unknown key 'option'/],
      [{ identity: 'bob', connect: [42] }, /option 'connect' must be a URL/],
      [{ identity: 'bob', storage: '' }, /option 'storage' must be a QueuesStorage or the path/],
      [{ identity: 'bob', messaging: { storage: null } }, /must not hold 'storage'/],
      [{ identity: 'bob', rpc: { sever: {} } }, /unknown option 'sever'/],
      [null, /options must be an object/],
      [{ identity: 'bob', tls: { rejectUnauthorised: false } }, /unknown option 'rejectUnauthorised'/],
      [{ identity: 'bob', listen: 'tls://127.0.0.1:0', tls: { ca: 'x' } }, /TLS listeners need 'key' and 'cert'/],
      [{ identity: 'bob', listen: 'tls://127.0.0.1:0' }, /a TLS endpoint needs the 'tls' option/],
      [{ identity: 'bob', connect: { url: 'tcp://127.0.0.1:1', options: { connectTimeout: 0 } } }, /connectTimeout/],
    ];
    for (const [options, message] of bad) {
      const error = await createPeer(options as PeerOptions).catch((e: unknown) => e);
      expect(error, String(message)).toBeInstanceOf(InvalidOptionsError);
      expect((error as Error).message).toMatch(message);
    }
    expect(close).not.toHaveBeenCalled();
  });

  it('passes each layer its options, which it checks itself', async () => {
    const cases: [PeerOptions, RegExp][] = [
      [{ identity: 'bob', link: { highWaterMrak: 1 } as never }, /Link.*unknown option 'highWaterMrak'/],
      [{ identity: 'bob', packeter: { maxPacketSize: -1 } }, /maxPacketSize/],
      [{ identity: 'bob', messaging: { keepaliveInterval: 0 } }, /Messaging.*keepaliveInterval/],
      [{ identity: 'bob', throttle: { bytesPerSecond: 0 } }, /bytesPerSecond/],
      [{ identity: 'bob', rpc: { client: { timeout: -5 } } }, /RpcClient.*timeout/],
    ];
    for (const [options, message] of cases) {
      const error = await createPeer(options).catch((e: unknown) => e);
      expect(error, String(message)).toBeInstanceOf(InvalidOptionsError);
      expect((error as Error).message).toMatch(message);
    }
    const bob = await peer({ identity: 'bob', messaging: { keepaliveInterval: 1000 }, rpc: { client: { timeout: 1234 } } });
    expect(bob.messaging.options.keepaliveInterval).toBe(1000);
  });

  it('a listener that cannot bind rejects with ConnectionError and closes what it had opened (no leaked listener)', async () => {
    const bob = await peer({ identity: 'bob', listen: 'tcp://127.0.0.1:0' });
    const busy = bob.listening[0]!;
    const path = join(tempDir(), 'first.sock');
    const storage = new MemoryQueuesStorage();
    const close = vi.spyOn(Link.prototype, 'close');
    const error = await createPeer({ identity: 'bob2', listen: [`unix://${path}`, busy], storage }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as ConnectionError).message).toMatch(/EADDRINUSE|in use/i);
    expect(close).toHaveBeenCalledTimes(1);
    expect(existsSync(path), 'the listener bound first is closed again').toBe(false);
    await expect(storage.load()).rejects.toBeInstanceOf(ClosedError);
    expect(await accepts(busy)).toBe(true); // bob's own listener is untouched
  });
});

describe('Peer: close', () => {
  it('close() is idempotent and returns the same promise; later sends throw ClosedError', async () => {
    const bob = await createPeer({ identity: 'bob', listen: 'tcp://127.0.0.1:0' });
    const url = bob.listening[0]!;
    const first = bob.close();
    expect(bob.close()).toBe(first);
    await first;
    expect(bob.closed).toBe(true);
    expect(bob.link.closed).toBe(true);
    expect(await accepts(url)).toBe(false);
    expect(() => bob.send('alice', 'late')).toThrow(ClosedError);
    expect(() => bob.rpc.serve('x', {})).toThrow(ClosedError);
  });

  it('await using closes the peer at the end of the scope, the whole stack with it', async () => {
    let kept: Peer;
    let url: string;
    {
      await using bob = await createPeer({ identity: 'bob', listen: 'tcp://127.0.0.1:0', storage: join(tempDir(), 'b.sqlite') });
      kept = bob;
      url = bob.listening[0]!;
      expect(await accepts(url)).toBe(true);
    }
    expect(kept.closed).toBe(true);
    expect(kept.link.closed).toBe(true);
    expect(await accepts(url)).toBe(false);
    await expect(kept.storage!.load()).rejects.toBeInstanceOf(ClosedError);
  });

  it('backpressure: writable/drained/sendWhenReady follow the high-water mark given in messaging options', async () => {
    const alice = await peer({ identity: 'alice', messaging: { highWaterMark: 4 } });
    for (let i = 0; i < 3; i++) alice.send('bob', `m${i}`);
    expect(alice.writable('bob')).toBe(true);
    alice.send('bob', 'm3');
    expect(alice.writable('bob')).toBe(false);
    let drained = false;
    const waiting = alice.drained('bob').then(() => (drained = true));
    const queued = alice.sendWhenReady('bob', 'after');
    const controller = new AbortController();
    const aborted = alice.sendWhenReady('bob', 'never', { signal: controller.signal });
    controller.abort();
    await expect(aborted).rejects.toMatchObject({ code: 'SMQ_ERR_ABORTED' });
    expect(drained).toBe(false);

    const bob = await peer({ identity: 'bob', listen: 'tcp://127.0.0.1:0' });
    const got: string[] = [];
    bob.on('message', (_c, _from, m) => got.push(m.data.toString()));
    alice.connect(bob.listening[0]!, fast);
    await waiting;
    await (await queued).delivered();
    await vi.waitFor(() => expect(got).toEqual(['m0', 'm1', 'm2', 'm3', 'after']));
    expect(alice.writable('bob')).toBe(true);
  });

  it('messages() ends when the peer closes', async () => {
    const bob = await createPeer({ identity: 'bob' });
    const it = bob.messages();
    const next = it.next();
    await bob.close();
    expect(await next).toEqual({ done: true, value: undefined } satisfies IteratorResult<ReceivedMessage>);
  });
});

describe('Peer: rpc', () => {
  class Calc {
    add(a: number, b: number): number {
      return a + b;
    }
    async whoAmI(): Promise<string> {
      return 'calc';
    }
  }

  it('serves and calls both ways; the listener calls the peer that connected out (NAT direction)', async () => {
    const hub = await peer({ identity: 'hub', listen: 'tcp://127.0.0.1:0', rpc: { client: { timeout: 10_000 } } });
    // The call is made before the agent exists: it waits for the agent to connect.
    const described = hub.rpc.proxy<Calc>('agent', 'calc').add(2, 40);
    const agent = await peer({ identity: 'agent', connect: { url: hub.listening[0]!, options: fast } });
    agent.rpc.serve('calc', new Calc());
    expect(await described).toBe(42);
    expect(await hub.rpc.call('agent', 'calc', 'whoAmI')).toBe('calc');

    hub.rpc.serve('hubcalc', new Calc());
    expect(await agent.rpc.proxy<Calc>('hub', 'hubcalc').add(1, 2)).toBe(3);

    expect(agent.rpc.unserve('calc')).toBe(true);
    expect(agent.rpc.unserve('calc')).toBe(false);
    await expect(hub.rpc.call('agent', 'calc', 'add', [1, 1])).rejects.toBeInstanceOf(RpcUnknownObjectError);
  });

  it('makes no RPC server until something is served: RPC-looking messages stay messages', async () => {
    const bob = await peer({ identity: 'bob', listen: 'tcp://127.0.0.1:0' });
    const alice = await peer({ identity: 'alice', connect: { url: bob.listening[0]!, options: fast } });
    const atBob = nextMessage(bob);
    // A peer that serves nothing must not swallow messages that happen to start like an RPC request.
    alice.send('bob', Buffer.from('rpcreq plain text'));
    expect(await atBob).toBe('alice: rpcreq plain text');
  });

  it('closing the peer rejects pending calls with ClosedError', async () => {
    const bob = await createPeer({ identity: 'bob' });
    const pending = bob.rpc.call('nobody', 'calc', 'add', [1, 2]);
    await bob.close();
    await expect(pending).rejects.toBeInstanceOf(ClosedError);
  });
});

describe('createPeer: packaging', () => {
  it('loads sqlite3 only for a storage path', async () => {
    // A child process: the test process has loaded sqlite3 already.
    const script = `
      const loaded = () => process.moduleLoadList.some((m) => m.includes('sqlite')) || dl.some((f) => f.includes('sqlite'));
      const dl = []; const orig = process.dlopen; process.dlopen = (m, f, ...r) => { dl.push(f); return orig(m, f, ...r); };
      const { createPeer } = await import(${JSON.stringify(join(ROOT, 'lib', 'peer', 'index.ts'))});
      const a = await createPeer({ identity: 'a', listen: 'tcp://127.0.0.1:0' }); await a.close();
      const before = loaded();
      const b = await createPeer({ identity: 'b', storage: ${JSON.stringify(join(tempDir(), 'p.sqlite'))} }); await b.close();
      console.log(JSON.stringify({ before, after: loaded() }));`;
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`exit ${code}: ${stderr}`))));
    });
    expect(JSON.parse(out)).toEqual({ before: false, after: true });
  });
});
