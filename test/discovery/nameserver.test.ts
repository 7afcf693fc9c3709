import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { encodeAnnouncement, type Announcement } from '../../lib/discovery/announcement.js';
import { expiryCheckInterval, Nameserver, type NameserverOptions, type NameserverSocket, type ServiceEntry } from '../../lib/discovery/nameserver.js';
import { SourceFilter } from '../../lib/discovery/source-filter.js';
import { AnnouncementError, InvalidOptionsError, RpcRemoteError } from '../../lib/errors.js';
import { createPeer, type Peer } from '../../lib/peer/index.js';
import { Subscriber, type ReceivedPubMessage } from '../../lib/pubsub/index.js';

const LOCAL_UDP = { host: '127.0.0.1', port: 0, multicast: false } as const;
const fast = { reconnectDelay: () => 50 };

const cleanup: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function ann(identity: string, services: string[] = ['radar', 'weather'], endpoints = ['tcp://127.0.0.1:4000']): Announcement {
  return { identity, endpoints, services, version: 'v1.2' };
}

async function sender(address = '127.0.0.1'): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, address, resolve));
  cleanup.push(() => new Promise<void>((resolve) => s.close(() => resolve())));
  return s;
}

function send(s: Socket, ns: Nameserver, data: Uint8Array | Announcement): Promise<void> {
  const bytes = data instanceof Uint8Array ? data : encodeAnnouncement(data);
  return new Promise((resolve, reject) => s.send(bytes, ns.udpAddress!.port, '127.0.0.1', (e) => (e ? reject(e) : resolve())));
}

async function nsPeer(identity = 'nameserver'): Promise<Peer> {
  const peer = await createPeer({ identity, listen: 'tcp://127.0.0.1:0' });
  cleanup.push(() => peer.close());
  return peer;
}

async function start(options: NameserverOptions = {}, peer?: Peer): Promise<Nameserver> {
  const ns = await Nameserver.start(peer ?? (await nsPeer()), { udp: LOCAL_UDP, ...options });
  cleanup.push(() => ns.close());
  return ns;
}

/** Resolves with the next `n` results of `event`. */
function next<E extends 'registered' | 'refused' | 'expired' | 'unregistered'>(ns: Nameserver, event: E, n = 1): Promise<unknown[][]> {
  const got: unknown[][] = [];
  return new Promise((resolve) => {
    const f = (...args: unknown[]): void => {
      got.push(args);
      if (got.length === n) {
        ns.off(event, f as never);
        resolve(got);
      }
    };
    ns.on(event, f as never);
  });
}

async function client(nsp: Peer, identity = 'alice'): Promise<Peer> {
  const peer = await createPeer({ identity });
  cleanup.push(() => peer.close());
  const up = new Promise<void>((resolve) => peer.on('connect', (_c, ident) => ident === nsp.identity && resolve()));
  peer.connect(nsp.listening[0]!, fast);
  await up;
  return peer;
}

describe('Nameserver over UDP', () => {
  it('registers a datagram and finds it by name, by alias and with "" (nothing known: [])', async () => {
    const ns = await start();
    expect(ns.lookup('radar')).toEqual([]);
    expect(ns.lookup('')).toEqual([]);
    expect(ns.expiryTimerRunning).toBe(false);
    const s = await sender();
    const registered = next(ns, 'registered', 2);
    await send(s, ns, ann('radar-1'));
    await send(s, ns, ann('sat-1', ['satellite']));
    const events = await registered;
    expect(events.map(([e, isNew]) => [(e as ServiceEntry).identity, isNew])).toEqual([
      ['radar-1', true],
      ['sat-1', true],
    ]);
    const [radar] = ns.lookup('radar');
    expect(radar).toMatchObject({ identity: 'radar-1', services: ['radar', 'weather'], endpoints: ['tcp://127.0.0.1:4000'], version: 'v1.2' });
    expect(radar!.source).toBe(`udp:127.0.0.1:${s.address().port}`);
    expect(ns.lookup('weather').map((e) => e.identity)).toEqual(['radar-1']);
    expect(
      ns
        .lookup('')
        .map((e) => e.identity)
        .sort(),
    ).toEqual(['radar-1', 'sat-1']);
    expect(ns.entries()).toHaveLength(2);
    expect(ns.lookup('nothing')).toEqual([]);
    expect(ns.expiryTimerRunning).toBe(true);

    // Refresh: isNew false
    const again = next(ns, 'registered');
    await send(s, ns, ann('radar-1'));
    expect((await again)[0]![1]).toBe(false);
    expect(ns.size).toBe(2);
  });

  it('answers lookups by RPC', async () => {
    const nsp = await nsPeer();
    const ns = await start({}, nsp);
    const alice = await client(nsp);
    expect(await alice.rpc.call('nameserver', 'nameserver', 'lookup', ['radar'])).toEqual([]);
    const s = await sender();
    const registered = next(ns, 'registered');
    await send(s, ns, ann('radar-1'));
    await registered;
    const found = await alice.rpc.call<ServiceEntry[]>('nameserver', 'nameserver', 'lookup', ['weather']);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ identity: 'radar-1', services: ['radar', 'weather'], endpoints: ['tcp://127.0.0.1:4000'] });
    expect(typeof found[0]!.receivedAt).toBe('number');
  });

  it('expires entries after maxAge (the timer runs only while entries exist) and publishes status false', async () => {
    let now = 1_000_000;
    const nsp = await nsPeer();
    const ns = await start({ maxAge: 100, clock: () => now }, nsp);
    const subPeer = await client(nsp, 'watcher');
    const sub = new Subscriber(subPeer.messaging, { publishers: ['nameserver'], topics: ['/address/'] });
    cleanup.push(() => sub.close());
    await sub.ready;
    const messages: ReceivedPubMessage[] = [];
    sub.on('message', (m) => messages.push(m));

    expect(ns.expiryTimerRunning).toBe(false);
    const s = await sender();
    const registered = next(ns, 'registered');
    await send(s, ns, ann('radar-1'));
    await registered;
    expect(ns.expiryTimerRunning).toBe(true);
    await vi.waitFor(() => expect(messages).toHaveLength(2));
    expect(messages.map((m) => m.subject).sort()).toEqual(['/address/radar', '/address/weather']);
    expect(messages[0]!.type).toBe('info');
    expect(messages[0]!.data).toMatchObject({
      status: true,
      identity: 'radar-1',
      URI: 'tcp://127.0.0.1:4000',
      service: ['radar', 'weather'],
      endpoints: ['tcp://127.0.0.1:4000'],
      supported_message_version: 'v1.2',
      receive_time: new Date(1_000_000).toISOString(),
    });

    now += 100; // not older than maxAge yet
    expect(ns.expire()).toEqual([]);
    const expired = next(ns, 'expired');
    now += 1;
    expect(ns.lookup('radar')).toEqual([]); // never returned once too old, even before the sweep
    const [[entry]] = await expired; // the timer sweeps
    expect((entry as ServiceEntry).identity).toBe('radar-1');
    expect(ns.size).toBe(0);
    expect(ns.expiryTimerRunning).toBe(false);
    expect(ns.stats.expired).toBe(1);
    await vi.waitFor(() => expect(messages).toHaveLength(4));
    expect(messages.slice(2).every((m) => (m.data as { status: boolean }).status === false)).toBe(true);
    expect(
      messages
        .slice(2)
        .map((m) => m.subject)
        .sort(),
    ).toEqual(['/address/radar', '/address/weather']);
  });

  it('checks expiry every quarter of maxAge, at most every 30 s', () => {
    expect(expiryCheckInterval(100)).toBe(25);
    expect(expiryCheckInterval(10 * 60_000)).toBe(30_000);
    expect(expiryCheckInterval(1)).toBe(1);
  });

  it('refuses a source outside allowNetworks, before decoding', async () => {
    const ns = await start({ allowNetworks: ['10.0.0.0/8', '2001:db8::/32'] });
    const s = await sender();
    const refused = next(ns, 'refused');
    await send(s, ns, new Uint8Array([1, 2, 3])); // garbage: refused for its source, not decoded
    const [[source, error]] = await refused;
    expect(source).toBe(`udp:127.0.0.1:${s.address().port}`);
    expect(error).toBeInstanceOf(AnnouncementError);
    expect((error as Error).message).toMatch(/allowNetworks/);
    expect(ns.stats).toMatchObject({ datagrams: 1, refusedSource: 1, malformed: 0, accepted: 0 });
    expect(ns.lookup('')).toEqual([]);
  });

  it('accepts a source inside allowNetworks', async () => {
    const ns = await start({ allowNetworks: ['127.0.0.0/8'] });
    const s = await sender();
    const registered = next(ns, 'registered');
    await send(s, ns, ann('radar-1'));
    await registered;
    expect(ns.lookup('radar')).toHaveLength(1);
  });

  it('localOnly accepts loopback and refuses an address that is not the machine’s', async () => {
    const ok = await start({ localOnly: true });
    const s = await sender();
    const registered = next(ok, 'registered');
    await send(s, ok, ann('radar-1'));
    await registered;

    // The machine's address list injected without loopback: 127.0.0.1 is then a foreign source.
    const strict = await start({ localOnly: true, localAddresses: () => ['192.0.2.1'] }, await nsPeer('ns2'));
    const refused = next(strict, 'refused');
    await send(s, strict, ann('forged'));
    const [[, error]] = await refused;
    expect((error as Error).message).toMatch(/not a local address/);
    expect(strict.lookup('')).toEqual([]);
  });

  it('SourceFilter: networks (IPv4, IPv6, mapped), local addresses, bounded sources', () => {
    const f = new SourceFilter({ allowNetworks: ['192.0.2.0/24', '2001:db8::/32', '198.51.100.7'], rate: false });
    expect(f.check('192.0.2.55')).toBeNull();
    expect(f.check('::ffff:192.0.2.55')).toBeNull();
    expect(f.check('2001:db8::1')).toBeNull();
    expect(f.check('198.51.100.7')).toBeNull();
    expect(f.check('198.51.100.8')?.reason).toBe('source');
    expect(f.check('2001:db9::1')?.reason).toBe('source');
    expect(() => new SourceFilter({ allowNetworks: ['10.0.0.0/33'] })).toThrow(InvalidOptionsError);
    expect(() => new SourceFilter({ allowNetworks: ['nonsense'] })).toThrow(InvalidOptionsError);

    const local = new SourceFilter({ localOnly: true, rate: false });
    expect(local.check('127.0.0.1')).toBeNull();
    expect(local.check('::1')).toBeNull();
    expect(local.check('203.0.113.5')?.reason).toBe('source');

    const bounded = new SourceFilter({ rate: { perSecond: 1, burst: 1 }, maxSources: 2, clock: () => 0 });
    expect(bounded.check('192.0.2.1')).toBeNull();
    expect(bounded.check('192.0.2.2')).toBeNull();
    expect(bounded.check('192.0.2.3')).toBeNull();
    expect(bounded.sources).toBe(2);
    expect(bounded.check('192.0.2.3')?.reason).toBe('rate');
  });

  it('rate-limits each source (token bucket on the clock)', async () => {
    let now = 5_000;
    const ns = await start({ rate: { perSecond: 1, burst: 2 }, clock: () => now });
    const s = await sender();
    const settled = new Promise<void>((resolve) => {
      let n = 0;
      const done = (): void => void (++n === 3 && resolve());
      ns.on('registered', done);
      ns.on('refused', done);
    });
    for (const id of ['a', 'b', 'c']) await send(s, ns, ann(id));
    await settled;
    expect(ns.stats).toMatchObject({ accepted: 2, rateLimited: 1 });
    expect(ns.lookup('').map((e) => e.identity)).toEqual(['a', 'b']);
    now += 1000; // one token back
    const registered = next(ns, 'registered');
    await send(s, ns, ann('c'));
    await registered;
    expect(ns.size).toBe(3);
  });

  it('refuses a new identity beyond maxEntries (refreshes still accepted)', async () => {
    const ns = await start({ maxEntries: 1 });
    const s = await sender();
    const registered = next(ns, 'registered');
    await send(s, ns, ann('a'));
    await registered;
    const refused = next(ns, 'refused');
    await send(s, ns, ann('b'));
    expect(((await refused)[0]![1] as Error).message).toMatch(/maxEntries/);
    const again = next(ns, 'registered');
    await send(s, ns, ann('a'));
    await again;
    expect(ns.stats).toMatchObject({ full: 1, accepted: 2 });
    expect(ns.lookup('').map((e) => e.identity)).toEqual(['a']);
  });

  it('refuses a datagram over maxAnnouncementBytes and garbage, and goes on', async () => {
    const ns = await start({ maxAnnouncementBytes: 300 });
    const s = await sender();
    const refused = next(ns, 'refused', 2);
    await send(s, ns, new Uint8Array(400).fill(0x61));
    await send(s, ns, Buffer.from('pytroll://address/x info garbage'));
    const errors = (await refused).map(([, e]) => (e as Error).message);
    expect(errors[0]).toMatch(/over 300/);
    const registered = next(ns, 'registered');
    await send(s, ns, encodeAnnouncement(ann('ok', ['x'], ['tcp://127.0.0.1:1']), { maxBytes: 300 }));
    await registered;
    expect(ns.stats).toMatchObject({ datagrams: 3, malformed: 2, accepted: 1 });
    expect(ns.lookup('x')).toHaveLength(1);
  });
});

describe('Nameserver registration by RPC', () => {
  it('registers the caller’s own identity, refuses another, unregisters', async () => {
    const nsp = await nsPeer();
    const ns = await start({ udp: false }, nsp);
    expect(ns.udpAddress).toBeNull();
    const alice = await client(nsp);
    expect(await alice.rpc.call('nameserver', 'nameserver', 'register', [ann('alice', ['svc'])])).toBe(true);
    expect(ns.lookup('svc')).toMatchObject([{ identity: 'alice', source: 'rpc:alice' }]);

    const refused = next(ns, 'refused');
    await expect(alice.rpc.call('nameserver', 'nameserver', 'register', [ann('bob', ['svc'])])).rejects.toBeInstanceOf(RpcRemoteError);
    expect((await refused)[0]![0]).toBe('rpc:alice');
    await expect(alice.rpc.call('nameserver', 'nameserver', 'register', [{ identity: 'alice' }])).rejects.toMatchObject({
      remoteName: 'AnnouncementError',
    });
    expect(ns.lookup('svc').map((e) => e.identity)).toEqual(['alice']);

    const sub = new Subscriber(alice.messaging, { publishers: ['nameserver'], topics: ['/address/svc'] });
    cleanup.push(() => sub.close());
    await sub.ready;
    const gone = new Promise<ReceivedPubMessage>((resolve) => sub.once('message', resolve));
    const unregistered = next(ns, 'unregistered');
    expect(await alice.rpc.call('nameserver', 'nameserver', 'unregister', [])).toBe(true);
    await unregistered;
    expect((await gone).data).toMatchObject({ status: false, identity: 'alice', service: ['svc'] });
    expect(await alice.rpc.call('nameserver', 'nameserver', 'unregister', [])).toBe(false);
    expect(ns.size).toBe(0);
    expect(ns.expiryTimerRunning).toBe(false);
  });

  it('a datagram does not take over an identity registered by RPC', async () => {
    const nsp = await nsPeer();
    const ns = await start({}, nsp);
    const alice = await client(nsp);
    await alice.rpc.call('nameserver', 'nameserver', 'register', [ann('alice', ['svc'])]);
    const s = await sender();
    const refused = next(ns, 'refused');
    await send(s, ns, ann('alice', ['svc'], ['tcp://127.0.0.1:6666']));
    await refused;
    expect(ns.lookup('svc')[0]!.endpoints).toEqual(['tcp://127.0.0.1:4000']);
  });

  it('refuses registration when it is off, or when the function says no', async () => {
    const nsp = await nsPeer();
    await start({ udp: false, registration: false }, nsp);
    const alice = await client(nsp);
    await expect(alice.rpc.call('nameserver', 'nameserver', 'register', [ann('alice')])).rejects.toThrow(/may not register/);
    await expect(alice.rpc.call('nameserver', 'nameserver', 'unregister', [])).rejects.toBeInstanceOf(RpcRemoteError);
    expect(await alice.rpc.call('nameserver', 'nameserver', 'lookup', [''])).toEqual([]);

    const nsp2 = await nsPeer('ns2');
    const ns2 = await start({ udp: false, registration: (ident) => ident.startsWith('trusted-') }, nsp2);
    const bob = await client(nsp2, 'bob');
    const trusted = await client(nsp2, 'trusted-1');
    await expect(bob.rpc.call('ns2', 'nameserver', 'register', [ann('bob')])).rejects.toBeInstanceOf(RpcRemoteError);
    expect(await trusted.rpc.call('ns2', 'nameserver', 'register', [ann('trusted-1')])).toBe(true);
    expect(ns2.lookup('').map((e) => e.identity)).toEqual(['trusted-1']);
    expect(ns2.stats.refusedRegistrations).toBe(1);
  });
});

/** Records the calls; never touches the network. */
class FakeSocket implements NameserverSocket {
  readonly calls: unknown[][] = [];
  closed = false;
  bind(port: number, address: string, callback: () => void): void {
    this.calls.push(['bind', port, address]);
    queueMicrotask(callback);
  }
  addMembership(group: string, iface?: string): void {
    this.calls.push(['addMembership', group, iface]);
  }
  address(): { address: string; port: number } {
    return { address: '0.0.0.0', port: 21200 };
  }
  close(callback?: () => void): void {
    this.closed = true;
    queueMicrotask(() => callback?.());
  }
  on(): this {
    return this;
  }
  off(): this {
    return this;
  }
}

describe('Nameserver options and lifecycle', () => {
  it('joins the multicast group on the interface given (fake socket: nothing is joined)', async () => {
    const peer = await nsPeer();
    const fake = new FakeSocket();
    const ns = await Nameserver.start(peer, { udp: { interface: '192.0.2.10' }, createSocket: () => fake });
    expect(fake.calls).toEqual([
      ['bind', 21200, '0.0.0.0'],
      ['addMembership', '225.0.0.212', '192.0.2.10'],
    ]);
    expect(ns.udpAddress).toEqual({ address: '0.0.0.0', port: 21200 });
    await ns.close();
    expect(fake.closed).toBe(true);

    const fake2 = new FakeSocket();
    await (await Nameserver.start(peer, { udp: { group: '239.1.2.3', port: 9999 }, createSocket: () => fake2 })).close();
    expect(fake2.calls).toEqual([
      ['bind', 9999, '0.0.0.0'],
      ['addMembership', '239.1.2.3', undefined],
    ]);
    const fake4 = new FakeSocket();
    const config = { multicastPort: 9000, multicastGroup: '239.9.9.9' };
    await (await Nameserver.start(peer, { config, createSocket: () => fake4 })).close();
    expect(fake4.calls).toEqual([
      ['bind', 9000, '0.0.0.0'],
      ['addMembership', '239.9.9.9', undefined],
    ]);
    const fake5 = new FakeSocket();
    await (await Nameserver.start(peer, { udp: { group: '255.255.255.255' }, createSocket: () => fake5 })).close();
    expect(fake5.calls).toEqual([['bind', 21200, '0.0.0.0']]); // broadcast: no group to join
    const fake3 = new FakeSocket();
    await (await Nameserver.start(peer, { udp: { multicast: false }, createSocket: () => fake3 })).close();
    expect(fake3.calls).toEqual([['bind', 21200, '0.0.0.0']]);
  });

  it('refuses bad options fail-fast', async () => {
    const peer = await nsPeer();
    const bad: unknown[] = [
      { nope: 1 },
      { udp: { port: 70000 } },
      { udp: { group: '10.0.0.1' } },
      { udp: { extra: true } },
      { maxAge: 0 },
      { allowNetworks: [] },
      { allowNetworks: ['300.0.0.0/8'] },
      { rate: { perSecond: 0, burst: 1 } },
      { maxAnnouncementBytes: 10_000 },
      { registration: 'yes' },
    ];
    for (const o of bad) await expect(Nameserver.start(peer, o as NameserverOptions), JSON.stringify(o)).rejects.toBeInstanceOf(InvalidOptionsError);
    // nothing was left served: a valid start still works
    await (await Nameserver.start(peer, { udp: false })).close();
  });

  it('close() closes the socket, the timer and the RPC object, is idempotent, and leaves the peer open', async () => {
    const peer = await nsPeer();
    const ns = await Nameserver.start(peer, { udp: LOCAL_UDP });
    const s = await sender();
    const registered = next(ns, 'registered');
    await send(s, ns, ann('radar-1'));
    await registered;
    expect(ns.expiryTimerRunning).toBe(true);
    const udpBefore = process.getActiveResourcesInfo().filter((r) => r === 'UDPWrap').length;
    const closing = ns.close();
    expect(ns.close()).toBe(closing);
    await closing;
    await vi.waitFor(() => expect(process.getActiveResourcesInfo().filter((r) => r === 'UDPWrap').length).toBe(udpBefore - 1));
    expect(ns.expiryTimerRunning).toBe(false);
    expect(ns.udpAddress).toBeNull();
    expect(peer.rpc.server.objectNames).not.toContain('nameserver');
    expect(peer.closed).toBe(false);
    // served again by a new one; a second one on the same peer is refused without disturbing the first
    const first = await Nameserver.start(peer, { udp: false });
    await expect(Nameserver.start(peer, { udp: false })).rejects.toThrow(/nameserver/);
    expect(peer.rpc.server.objectNames).toContain('nameserver');
    await first.close();
  });
});
