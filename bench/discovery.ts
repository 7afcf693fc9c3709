/**
 * Discovery benchmark: `npx tsx bench/discovery.ts` (or `npm run bench --
 * discovery`). One process, everything on loopback; one JSON line per figure:
 *
 * - `discovery-first-message`: a subscriber is already waiting
 *   (ServiceSubscriber on service `radar`, nameserver known by URL); a
 *   publisher peer is created, starts announcing (Announcer, UDP unicast to
 *   the nameserver, default 2 s interval) and publishes every 5 ms; the time
 *   from the publisher's `createPeer` call to the first message at the
 *   subscriber. Target: under one announce interval + 100 ms. Also with
 *   registration by RPC (`NameserverClient.register`) instead of UDP.
 * - `discovery-lookup`: `NameserverClient.lookup('radar')` with 1 and with
 *   1,000 registered entries: latency of one lookup at a time (median, p99)
 *   and lookups/s with 64 in flight; baseline in the same run: an RPC call
 *   of a method returning `[]` on the same connection (`rpc_*` fields).
 * - `discovery-memory`: heap per registered entry, for 10,000 entries
 *   announced by UDP (heap after a full GC, before and after),
 *   beside the size of one announcement datagram.
 * @module
 */
import { createSocket } from 'node:dgram';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Announcer } from '../lib/discovery/announcer.js';
import { encodeAnnouncement } from '../lib/discovery/announcement.js';
import { NameserverClient } from '../lib/discovery/client.js';
import { Nameserver } from '../lib/discovery/nameserver.js';
import { ServiceSubscriber } from '../lib/discovery/service-subscriber.js';
import { createPeer, type Peer } from '../lib/peer/index.js';
import { Publisher } from '../lib/pubsub/index.js';

const out = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');
const percentile = (xs: number[], p: number) => xs.toSorted((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;
const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

async function nameserver(options: Parameters<typeof Nameserver.start>[1] = {}) {
  const peer = await createPeer({ identity: 'nameserver', listen: ['tcp://127.0.0.1:0'] });
  const ns = await Nameserver.start(peer, { udp: { host: '127.0.0.1', port: 0, multicast: false }, ...options });
  return { peer, ns, url: peer.listening[0]!, udpPort: ns.udpAddress!.port };
}

/** Announces `datagrams` to the nameserver until it holds `entries` (UDP may drop a burst: what is missing is sent again). */
async function fill(ns: Nameserver, udpPort: number, datagrams: Buffer[], entries: number): Promise<void> {
  const udp = createSocket('udp4');
  while (ns.size < entries) {
    for (let i = 0; i < datagrams.length; i++) {
      udp.send(datagrams[i]!, udpPort, '127.0.0.1');
      if (i % 20 === 19) await new Promise((r) => setTimeout(r, 1));
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  udp.close();
}

async function firstMessage(trials: number, mode: 'udp' | 'rpc'): Promise<void> {
  const { peer: nsPeer, ns, url, udpPort } = await nameserver();
  const times: number[] = [];
  for (let t = 0; t < trials; t++) {
    const alice = await createPeer({ identity: `alice-${t}` });
    const sub = await ServiceSubscriber.start(alice, { services: [`radar-${t}`], topics: ['/t'], nameservers: [url], lookupTimeout: 1000 });
    const got = new Promise<number>((resolve) => sub.once('message', () => resolve(performance.now())));
    const start = performance.now();
    const radar = await createPeer({ identity: `radar-${t}`, listen: ['tcp://127.0.0.1:0'] });
    const pub = new Publisher(radar.messaging);
    let announcer: Announcer | null = null;
    let client: NameserverClient | null = null;
    if (mode === 'udp') announcer = await Announcer.start(radar, { services: [`radar-${t}`], targets: [{ host: '127.0.0.1', port: udpPort }] });
    else {
      client = new NameserverClient(radar, { nameservers: [url] });
      void client.register({ identity: radar.messaging.identity, endpoints: radar.listening, services: [`radar-${t}`], version: 'v1.2' });
    }
    const timer = setInterval(() => {
      void pub.publish('/t', 'info', 'x');
    }, 5);
    times.push((await got) - start);
    clearInterval(timer);
    await sub.close();
    await announcer?.close();
    await client?.close();
    await Promise.all([alice.close(), radar.close()]);
  }
  await ns.close();
  await nsPeer.close();
  out({
    bench: 'discovery-first-message',
    mode,
    trials,
    announce_interval_ms: 2000,
    median_ms: round(percentile(times, 0.5)),
    max_ms: round(Math.max(...times)),
    target_ms: 2100,
  });
}

async function lookups(entries: number): Promise<void> {
  const { peer: nsPeer, ns, url, udpPort } = await nameserver({ rate: false, maxEntries: entries + 10 });
  nsPeer.rpc.serve('baseline', { empty: () => [] });
  const datagrams = Array.from({ length: entries }, (_, i) =>
    encodeAnnouncement({
      identity: `pub-${i}`,
      endpoints: [`tcp://127.0.0.1:${10000 + (i % 50000)}`],
      services: i === 0 ? ['radar'] : [`svc-${i}`],
      version: 'v1.2',
    }),
  );
  await fill(ns, udpPort, datagrams, entries);
  const alice: Peer = await createPeer({ identity: 'alice' });
  const client = new NameserverClient(alice, { nameservers: [url] });
  await client.lookup('radar');
  const timeOne = async (f: () => Promise<unknown>, n: number) => {
    const xs: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await f();
      xs.push((performance.now() - t0) * 1000);
    }
    return xs;
  };
  const rate = async (f: () => Promise<unknown>, ms: number, inFlight: number) => {
    let n = 0;
    const end = performance.now() + ms;
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (performance.now() < end) {
          await f();
          n++;
        }
      }),
    );
    return n / (ms / 1000);
  };
  const lookup = () => client.lookup('radar');
  const baseline = () => alice.rpc.call('nameserver', 'baseline', 'empty');
  const lat = await timeOne(lookup, 2000);
  const rpcLat = await timeOne(baseline, 2000);
  const perS = await rate(lookup, 2000, 64);
  const rpcPerS = await rate(baseline, 2000, 64);
  out({
    bench: 'discovery-lookup',
    entries,
    median_us: round(percentile(lat, 0.5), 1),
    p99_us: round(percentile(lat, 0.99), 1),
    lookups_per_s: Math.round(perS),
    rpc_median_us: round(percentile(rpcLat, 0.5), 1),
    rpc_calls_per_s: Math.round(rpcPerS),
    ratio_to_rpc: round(perS / rpcPerS, 3),
  });
  await client.close();
  await alice.close();
  await ns.close();
  await nsPeer.close();
}

async function memory(entries: number): Promise<void> {
  // The collector, without having to start node with --expose-gc.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const { peer: nsPeer, ns, udpPort } = await nameserver({ rate: false, maxEntries: entries + 10 });
  const datagram = encodeAnnouncement({
    identity: 'pub-00000',
    endpoints: ['tcp://192.0.2.10:40000'],
    services: ['svc-00000', 'alias-00000'],
    version: 'v1.2',
  });
  gc();
  gc();
  const before = process.memoryUsage().heapUsed;
  await fill(
    ns,
    udpPort,
    Array.from({ length: entries }, (_, i) => {
      const n = String(i).padStart(5, '0');
      return encodeAnnouncement({
        identity: `pub-${n}`,
        endpoints: [`tcp://192.0.2.10:${40000 + (i % 20000)}`],
        services: [`svc-${n}`, `alias-${n}`],
        version: 'v1.2',
      });
    }),
    entries,
  );
  await new Promise((r) => setTimeout(r, 50));
  gc();
  gc();
  const after = process.memoryUsage().heapUsed;
  out({ bench: 'discovery-memory', entries, bytes_per_entry: Math.round((after - before) / entries), announcement_bytes: datagram.length });
  await ns.close();
  await nsPeer.close();
}

await firstMessage(10, 'udp');
await firstMessage(10, 'rpc');
await lookups(1);
await lookups(1000);
await memory(10_000);
