import { afterEach, describe, expect, it, vi } from 'vitest';
import { Announcer } from '../../lib/discovery/announcer.js';
import { startHeartbeat, type Heartbeat } from '../../lib/discovery/heartbeat.js';
import { Nameserver, type NameserverOptions } from '../../lib/discovery/nameserver.js';
import { ServiceSubscriber, type ServiceSubscriberOptions } from '../../lib/discovery/service-subscriber.js';
import { createPeer, type Peer } from '../../lib/peer/index.js';
import { Publisher, type ReceivedPubMessage } from '../../lib/pubsub/index.js';

const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function peer(identity: string, listen = true): Promise<Peer> {
  const p = await createPeer({ identity, listen: listen ? ['tcp://127.0.0.1:0'] : [], link: {} });
  cleanup.push(() => p.close());
  return p;
}

async function nameserver(identity = 'nameserver', options: NameserverOptions = {}) {
  const p = await peer(identity);
  const ns = await Nameserver.start(p, { udp: { host: '127.0.0.1', port: 0, multicast: false }, ...options });
  cleanup.push(() => ns.close());
  return { peer: p, ns, url: p.listening[0]!, udp: ns.udpAddress! };
}

/** A publisher peer announcing `services` to the nameservers' UDP ports every 50 ms. */
async function publisher(identity: string, services: string[], udpTargets: { port: number }[]) {
  const p = await peer(identity);
  const pub = new Publisher(p.messaging);
  const announcer = await Announcer.start(p, { services, interval: 50, targets: udpTargets.map((t) => ({ host: '127.0.0.1', port: t.port })) });
  const stop = async () => {
    await announcer.close();
    await p.close();
  };
  cleanup.push(stop);
  return { peer: p, pub, announcer, stop };
}

async function subscriber(options: Partial<ServiceSubscriberOptions> & Pick<ServiceSubscriberOptions, 'services' | 'nameservers'>) {
  const p = await peer('alice', false);
  const sub = await ServiceSubscriber.start(p, { topics: ['/t'], lookupTimeout: 2000, connector: { reconnectDelay: () => 50 }, ...options });
  cleanup.push(() => sub.close());
  const got: ReceivedPubMessage[] = [];
  sub.on('message', (m) => got.push(m));
  return { peer: p, sub, got };
}

const found = (sub: ServiceSubscriber, identity: string) =>
  new Promise<void>((resolve) => sub.on('publisherFound', (e) => e.identity === identity && resolve()));
const subscribed = (sub: ServiceSubscriber, identity: string) => new Promise<void>((resolve) => sub.on('subscribed', (p) => p === identity && resolve()));

describe('subscribing by service name', () => {
  it('a publisher started after the subscriber is found, connected to and subscribed at', async () => {
    const { url, udp } = await nameserver();
    const alice = await subscriber({ services: ['radar'], nameservers: [url] });
    expect(alice.sub.publishers).toEqual([]);
    const isFound = found(alice.sub, 'radar-1');
    const isSubscribed = subscribed(alice.sub, 'radar-1');
    const radar = await publisher('radar-1', ['radar'], [udp]);
    await isFound;
    await isSubscribed;
    await radar.pub.publish('/t', 'info', 'hello');
    await vi.waitFor(() => expect(alice.got.map((m) => [m.from, m.data])).toEqual([['radar-1', 'hello']]));
  });

  it('a publisher already registered is found by the first lookup, by alias', async () => {
    const { ns, url, udp } = await nameserver();
    const radar = await publisher('radar-2', ['radar', 'weather-radar'], [udp]);
    await vi.waitFor(() => expect(ns.lookup('weather-radar')).toHaveLength(1));
    const alice = await subscriber({ services: ['weather-radar'], nameservers: [url] });
    expect(alice.sub.publishers).toEqual(['radar-2']);
    await alice.sub.ready;
    await vi.waitFor(async () => expect((await radar.pub.publish('/t', 'info', 1)).written).toBe(1));
    await vi.waitFor(() => expect(alice.got.length).toBeGreaterThan(0));
  });

  it('a killed publisher expires at the nameserver and is dropped by the subscriber', async () => {
    const { url, udp } = await nameserver('nameserver', { maxAge: 300 });
    const alice = await subscriber({ services: ['radar'], nameservers: [url] });
    const isFound = found(alice.sub, 'radar-3');
    const radar = await publisher('radar-3', ['radar'], [udp]);
    await isFound;
    const expired = new Promise<string>((resolve) => alice.sub.on('publisherExpired', resolve));
    await radar.stop();
    expect(await expired).toBe('radar-3');
    expect(alice.sub.publishers).toEqual([]);
  });

  it('two nameservers: a publisher known to either one is found', async () => {
    const one = await nameserver('ns-1');
    const two = await nameserver('ns-2');
    const alice = await subscriber({ services: ['radar'], nameservers: [one.url, two.url] });
    const a = found(alice.sub, 'radar-a');
    const b = found(alice.sub, 'radar-b');
    await publisher('radar-a', ['radar'], [one.udp]);
    await publisher('radar-b', ['radar'], [two.udp]);
    await Promise.all([a, b]);
    expect(alice.sub.publishers.toSorted()).toEqual(['radar-a', 'radar-b']);
  });

  it('heartbeats: a publisher that stops beating is reported silent, and alive when it beats again', async () => {
    const { url, udp } = await nameserver();
    const alice = await subscriber({ services: ['radar'], nameservers: [url], heartbeatInterval: 40, heartbeatMultiple: 3 });
    const isSubscribed = subscribed(alice.sub, 'radar-h');
    const radar = await publisher('radar-h', ['radar'], [udp]);
    await isSubscribed;
    let hb: Heartbeat = startHeartbeat(radar.pub, 'radar', 40);
    const silent = new Promise<string>((resolve) => alice.sub.on('publisherSilent', resolve));
    const alive = new Promise<string>((resolve) => alice.sub.on('publisherAlive', resolve));
    await vi.waitFor(() => expect(hb.count).toBeGreaterThan(2));
    hb.stop();
    expect(await silent).toBe('radar-h');
    hb = startHeartbeat(radar.pub, 'radar', 40);
    expect(await alive).toBe('radar-h');
    hb.stop();
    expect(alice.got.filter((m) => m.type === 'beat')).toEqual([]);
  });

  it('maxPublishers bounds what nameservers can make it follow', async () => {
    const { url, udp } = await nameserver();
    const alice = await subscriber({ services: ['radar'], nameservers: [url], maxPublishers: 1 });
    const refused = new Promise<string>((resolve) => alice.sub.on('publisherRefused', (_e, reason) => resolve(reason)));
    const first = found(alice.sub, 'radar-m1');
    await publisher('radar-m1', ['radar'], [udp]);
    await first;
    await publisher('radar-m2', ['radar'], [udp]);
    expect(await refused).toMatch(/maxPublishers/);
    expect(alice.sub.publishers).toEqual(['radar-m1']);
  });

  it('no nameserver answering: start still resolves, with lookupError', async () => {
    const p = await peer('alice', false);
    const sub = await ServiceSubscriber.start(p, { services: ['radar'], nameservers: ['tcp://127.0.0.1:9'], lookupTimeout: 200 });
    cleanup.push(() => sub.close());
    expect(sub.lookupError?.code).toBe('SMQ_ERR_NAMESERVER');
    await sub.close();
    await sub.close();
    expect(sub.closed).toBe(true);
    await expect(ServiceSubscriber.start(p, { services: [], nameservers: ['tcp://127.0.0.1:9'] })).rejects.toThrow(/at least one service/);
  });
});
