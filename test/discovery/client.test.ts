import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeAnnouncement, type Announcement } from '../../lib/discovery/announcement.js';
import { NameserverClient } from '../../lib/discovery/client.js';
import { Nameserver, type NameserverOptions } from '../../lib/discovery/nameserver.js';
import { AbortedError, AnnouncementError, ClosedError, InvalidOptionsError, NameserverError } from '../../lib/errors.js';
import { createPeer, type Peer } from '../../lib/peer/index.js';

const fast = { reconnectDelay: () => 50 };
const cleanup: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function ann(identity: string, services: string[] = ['radar'], endpoints = ['tcp://127.0.0.1:4000']): Announcement {
  return { identity, endpoints, services, version: 'v1.2' };
}

async function peer(identity: string, listen = true): Promise<Peer> {
  const p = await createPeer(listen ? { identity, listen: 'tcp://127.0.0.1:0' } : { identity });
  cleanup.push(() => p.close());
  return p;
}

async function nameserver(identity: string, options: NameserverOptions = {}): Promise<{ peer: Peer; ns: Nameserver; url: string }> {
  const p = await peer(identity);
  const ns = await Nameserver.start(p, { udp: { host: '127.0.0.1', port: 0, multicast: false }, ...options });
  cleanup.push(() => ns.close());
  return { peer: p, ns, url: p.listening[0]! };
}

async function sender(): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  cleanup.push(() => new Promise<void>((resolve) => s.close(() => resolve())));
  return s;
}

async function announce(s: Socket, ns: Nameserver, a: Announcement): Promise<void> {
  const registered = new Promise<void>((resolve) => ns.once('registered', () => resolve()));
  await new Promise<void>((resolve, reject) => s.send(encodeAnnouncement(a), ns.udpAddress!.port, '127.0.0.1', (e) => (e ? reject(e) : resolve())));
  await registered;
}

function client(p: Peer, nameservers: string[], timeout?: number, registerInterval?: number): NameserverClient {
  const c = new NameserverClient(p, { nameservers, timeout, registerInterval, connect: fast });
  cleanup.push(() => c.close());
  return c;
}

/** Resolves once `c` knows the identity of every nameserver. */
function learnt(c: NameserverClient, n: number): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (c.nameservers().filter((x) => x.identity !== undefined).length >= n) resolve();
    };
    c.on('nameserver', check);
    check();
  });
}

describe('NameserverClient', () => {
  it('asks every nameserver and merges by identity, the newest receivedAt winning', async () => {
    const a = await nameserver('ns-a', { clock: () => 1000 });
    const b = await nameserver('ns-b', { clock: () => 2000 });
    const s = await sender();
    await announce(s, a.ns, ann('radar-1', ['radar'], ['tcp://127.0.0.1:1111']));
    await announce(s, a.ns, ann('radar-2'));
    await announce(s, b.ns, ann('radar-1', ['radar'], ['tcp://127.0.0.1:2222']));
    await announce(s, b.ns, ann('sat-1', ['satellite']));

    const viewer = await peer('viewer', false);
    const c = client(viewer, [a.url, b.url]);
    const events: [string, string][] = [];
    c.on('nameserver', (url, id) => events.push([url, id]));
    expect(c.nameservers()).toEqual([
      { url: a.url, identity: undefined },
      { url: b.url, identity: undefined },
    ]);
    await learnt(c, 2); // lookup alone would answer as soon as the first is connected
    const radars = await c.lookup('radar');
    expect(radars.map((e) => [e.identity, e.endpoints[0]]).sort()).toEqual([
      ['radar-1', 'tcp://127.0.0.1:2222'],
      ['radar-2', 'tcp://127.0.0.1:4000'],
    ]);
    expect((await c.lookup('')).map((e) => e.identity).sort()).toEqual(['radar-1', 'radar-2', 'sat-1']);
    expect(await c.lookup('nothing')).toEqual([]);
    expect(c.nameservers()).toEqual([
      { url: a.url, identity: 'ns-a' },
      { url: b.url, identity: 'ns-b' },
    ]);
    expect(events).toHaveLength(2);
    expect(events).toEqual(
      expect.arrayContaining([
        [a.url, 'ns-a'],
        [b.url, 'ns-b'],
      ]),
    );
  });

  it('answers with one nameserver down', async () => {
    const a = await nameserver('ns-a');
    const b = await nameserver('ns-b');
    const s = await sender();
    await announce(s, a.ns, ann('radar-1'));
    const viewer = await peer('viewer', false);
    const c = client(viewer, [a.url, b.url], 2000);
    await learnt(c, 2);
    const lost = new Promise<void>((resolve) => viewer.on('disconnect', (_c, id) => id === 'ns-b' && resolve()));
    await b.peer.close();
    await lost;
    const t0 = Date.now();
    expect((await c.lookup('radar')).map((e) => e.identity)).toEqual(['radar-1']);
    expect(Date.now() - t0).toBeLessThan(1500);
  });

  it('waits for a nameserver to connect, within the timeout', async () => {
    const a = await nameserver('ns-a');
    const viewer = await peer('viewer', false);
    const c = client(viewer, [a.url]);
    expect(await c.lookup('radar')).toEqual([]); // made at once: waits for the connection
  });

  it('rejects with NameserverError when none answers within the timeout', async () => {
    const gone = await peer('gone');
    const url = gone.listening[0]!;
    await gone.close();
    const viewer = await peer('viewer', false);
    const c = client(viewer, [url], 300);
    const t0 = Date.now();
    await expect(c.lookup('radar')).rejects.toBeInstanceOf(NameserverError);
    expect(Date.now() - t0).toBeLessThan(2000);
    await expect(c.register(ann('viewer'), { timeout: 100 })).rejects.toBeInstanceOf(NameserverError);
    const ac = new AbortController();
    const p = c.lookup('radar', { signal: ac.signal });
    ac.abort();
    await expect(p).rejects.toBeInstanceOf(AbortedError);
  });

  it('registers on every nameserver (its own identity only), unregisters', async () => {
    const a = await nameserver('ns-a', { udp: false });
    const b = await nameserver('ns-b', { udp: false });
    const web = await peer('web-1', false);
    const c = client(web, [a.url, b.url]);
    await learnt(c, 2);
    await expect(c.register(ann('someone-else'))).rejects.toBeInstanceOf(NameserverError);
    await expect(c.register({ identity: 'web-1' } as never)).rejects.toBeInstanceOf(AnnouncementError);
    expect(await c.register(ann('web-1', ['web']))).toBe(2);
    expect(a.ns.lookup('web')).toMatchObject([{ identity: 'web-1', source: 'rpc:web-1' }]);
    expect(b.ns.lookup('web')).toHaveLength(1);
    expect((await c.lookup('web')).map((e) => e.identity)).toEqual(['web-1']);

    expect(await c.unregister()).toBe(2);
    expect(b.ns.lookup('web')).toEqual([]);
    expect(a.ns.lookup('web')).toEqual([]);
  });

  it('renews a registration every registerInterval (a restarted nameserver learns it again)', async () => {
    const a = await nameserver('ns-a', { udp: false });
    const web = await peer('web-1', false);
    const c = client(web, [a.url], undefined, 50);
    expect(await c.register(ann('web-1', ['web']))).toBe(1);
    await a.ns.close(); // forgets everything
    const again = await Nameserver.start(a.peer, { udp: false });
    cleanup.push(() => again.close());
    const [entry, isNew] = await new Promise<unknown[]>((resolve) => again.once('registered', (...args) => resolve(args)));
    expect(entry).toMatchObject({ identity: 'web-1', source: 'rpc:web-1' });
    expect(isNew).toBe(true);
    await c.unregister();
    expect(again.size).toBe(0);
  });

  it('refuses bad options; close() removes the connectors and is idempotent', async () => {
    const viewer = await peer('viewer', false);
    expect(() => new NameserverClient(viewer, { nameservers: [] })).toThrow(InvalidOptionsError);
    expect(() => new NameserverClient(viewer, { nameservers: ['tcp://127.0.0.1:1'], nope: 1 } as never)).toThrow(InvalidOptionsError);

    const a = await nameserver('ns-a');
    const c = new NameserverClient(viewer, { nameservers: [a.url], connect: fast });
    await learnt(c, 1);
    const gone = new Promise<void>((resolve) => a.peer.on('disconnect', (_c, id) => id === 'viewer' && resolve()));
    const closing = c.close();
    expect(c.close()).toBe(closing);
    await closing;
    await gone;
    expect(viewer.connectedPeers()).toEqual([]);
    await expect(c.lookup('x')).rejects.toBeInstanceOf(ClosedError);
    expect(viewer.closed).toBe(false);
  });
});
