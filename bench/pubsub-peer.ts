/**
 * Processes of the fan-out benchmark (bench/pubsub.ts). Each process hosts
 * the three implementations side by side (only the one being measured is
 * busy), so that all three use the same processes, the same subscriber
 * topology and the same messages.
 *
 *   pubsub-peer.ts pub <zmq-hwm>
 *   pubsub-peer.ts sub <snakemq-url> <zeromq-url> <zeromq-nodrop-url> <raw-port> <first> <count> <zmq-hwm>
 *
 * - `pub`: one publisher of each kind: snakemq-ts (a Peer `pub` listening on
 *   tcp://127.0.0.1:0 and a {@link Publisher} on its messaging, defaults),
 *   zeromq.js (a PUB socket bound to tcp://127.0.0.1:*; for
 *   `zeromq-nodrop` an XPUB socket with ZMQ_XPUB_NODROP), raw (a `net`
 *   server; each accepted socket is a subscriber).
 * - `sub`: `count` subscribers of each kind, numbered from `first`:
 *   snakemq-ts (a Peer `sub<i>` of its own — Link, Packeter, Messaging —
 *   connecting to the publisher, a {@link Subscriber} with the topic
 *   `/bench`), zeromq.js (a SUB socket subscribed to `/bench` for each of
 *   the two zeromq publishers), raw (a `net`
 *   socket, frames counted by an incremental 4-byte-length parser).
 *
 * Publishing (`publish {impl, n, batch}`), 100-byte messages on `/bench/x`,
 * paced so that nothing needs dropping:
 * - snakemq: `publisher.publish('/bench/x', 'info', data)` in a loop; every
 *   `batch` messages, `messaging.drained(ident)` for every subscriber whose
 *   queue is above its high-water mark, then one loop turn (as raw); the
 *   last Publication is awaited at the end. Drops are counted from the
 *   subscribers' `dropped` counters and the `slowSubscriber` events.
 * - zeromq: `await pub.send(['/bench/x', data])` for each message (zeromq.js
 *   allows one send in progress at a time); every `batch` messages, one turn
 *   of the event loop. PUB drops at its high-water mark without telling:
 *   the subscribers' counts show it. `zeromq-nodrop`: the same loop on the
 *   XPUB socket (ZMQ_XPUB_NODROP), whose send() fails with EAGAIN at the
 *   high-water mark instead of dropping: then wait 1 ms and send again.
 * - raw: each message's frame (4-byte length + 100 bytes) is copied into
 *   every socket's 64 KiB write batch (written when full); every `batch`
 *   messages, every batch is written, then `drain` awaited for each socket
 *   whose `write()` returned false, then one turn of the event loop.
 * @module
 */
import { once } from 'node:events';
import net from 'node:net';
import { Publisher as ZmqPublisher, Subscriber as ZmqSubscriber, XPublisher as ZmqXPublisher } from 'zeromq';
import { createPeer, Publisher, Subscriber, type Peer } from '../lib/index.js';
import { cpuMs, makePayload, now, turn } from './lib/ipc.js';
import { onCommand, report, type Msg } from './lib/proc.js';
import { FrameReader } from './lib/wire.js';

export type Impl = 'raw' | 'zeromq' | 'zeromq-nodrop' | 'snakemq';
export const SUBJECT = '/bench/x';
export const TOPIC = '/bench';
export const SIZE = 100;
const BATCH_BYTES = 64 * 1024;
/** As the Link's default and bench/lib/raw-peer.ts. */
const SOCKET_HIGH_WATER_MARK = 1024 * 1024;

const payload = makePayload(SIZE);
/** Diagnostics: BENCH_PUBSUB_ACK=0 runs every snakemq-ts peer with `acknowledgements: false` (to see what they cost). */
const messagingOptions = process.env.BENCH_PUBSUB_ACK === '0' ? { messaging: { acknowledgements: false } } : {};

// --- publisher ---------------------------------------------------------------

async function publisherProcess(zmqHwm: number): Promise<void> {
  const peer = await createPeer({ identity: 'pub', listen: 'tcp://127.0.0.1:0', ...messagingOptions });
  const messaging = peer.messaging;
  const publisher = new Publisher(messaging);
  let slowEvents = 0;
  publisher.on('slowSubscriber', () => slowEvents++);

  const zpub = new ZmqPublisher({ sendHighWaterMark: zmqHwm, linger: 0 });
  await zpub.bind('tcp://127.0.0.1:*');
  // The same with XPUB and ZMQ_XPUB_NODROP: at the high-water mark, send() waits instead of dropping.
  const zxpub = new ZmqXPublisher({ sendHighWaterMark: zmqHwm, noDrop: true, linger: 0 });
  await zxpub.bind('tcp://127.0.0.1:*');
  const zTopic = Buffer.from(SUBJECT);

  interface Out {
    sock: net.Socket;
    batch: Buffer;
    off: number;
    blocked: boolean;
  }
  const outs: Out[] = [];
  const server = net.createServer({ highWaterMark: SOCKET_HIGH_WATER_MARK, noDelay: true }, (sock) => {
    sock.on('error', () => undefined);
    sock.on('data', () => undefined);
    const out: Out = { sock, batch: Buffer.allocUnsafe(BATCH_BYTES), off: 0, blocked: false };
    outs.push(out);
    sock.on('close', () => outs.splice(outs.indexOf(out), 1));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const rawPort = (server.address() as net.AddressInfo).port;

  report({ t: 'listening', snakemq: peer.listening[0]!, zeromq: zpub.lastEndpoint!, zeromqNodrop: zxpub.lastEndpoint!, raw: rawPort });

  let probe: NodeJS.Timeout | null = null;

  async function publishSnakemq(n: number, batch: number): Promise<Msg> {
    const idents = publisher.subscribers();
    const droppedBefore = idents.reduce((s, id) => s + (publisher.subscriber(id)?.dropped ?? 0), 0);
    const slowBefore = slowEvents;
    let drainWaits = 0;
    const cpu0 = cpuMs();
    const t0 = now();
    let last = publisher.publish(SUBJECT, 'info', payload);
    for (let i = 1; i < n; i++) {
      if (i % batch === 0) {
        // As the raw fan-out: wait only for subscribers over their high-water mark, then give the loop a turn.
        for (const id of idents) {
          if (!messaging.writable(id)) {
            drainWaits++;
            await messaging.drained(id);
          }
        }
        await turn();
      }
      last = publisher.publish(SUBJECT, 'info', payload);
    }
    const tQueued = now();
    const result = await last;
    const tEnd = now();
    const droppedAfter = idents.reduce((s, id) => s + (publisher.subscriber(id)?.dropped ?? 0), 0);
    return {
      t: 'finished',
      t0,
      tQueued,
      tEnd,
      cpuMs: cpuMs() - cpu0,
      dropped: droppedAfter - droppedBefore,
      slowEvents: slowEvents - slowBefore,
      drainWaits,
      lastWritten: result.written,
      lastDropped: result.dropped.length,
    };
  }

  async function publishZeromq(sock: ZmqPublisher | ZmqXPublisher, n: number, batch: number): Promise<Msg> {
    let waits = 0;
    const cpu0 = cpuMs();
    const t0 = now();
    for (let i = 0; i < n; i++) {
      try {
        await sock.send([zTopic, payload]);
      } catch (error) {
        // XPUB with ZMQ_XPUB_NODROP at its high-water mark: send() fails with EAGAIN (the socket still polls
        // writable, so zeromq.js does not wait): wait a millisecond and send the same message again.
        if ((error as { code?: string }).code !== 'EAGAIN') throw error;
        waits++;
        await new Promise((r) => setTimeout(r, 1));
        i--;
        continue;
      }
      if ((i + 1) % batch === 0) await turn();
    }
    const tEnd = now();
    return { t: 'finished', t0, tQueued: tEnd, tEnd, cpuMs: cpuMs() - cpu0, drainWaits: waits };
  }

  function flush(o: Out, done?: () => void): void {
    if (o.off === 0) {
      done?.();
      return;
    }
    const ok = o.sock.write(o.batch.subarray(0, o.off), done && (() => done()));
    o.batch = Buffer.allocUnsafe(BATCH_BYTES);
    o.off = 0;
    if (!ok) o.blocked = true;
  }

  async function publishRaw(n: number, batch: number): Promise<Msg> {
    const frame = SIZE + 4;
    let drainWaits = 0;
    const cpu0 = cpuMs();
    const t0 = now();
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < outs.length; k++) {
        const o = outs[k]!;
        if (o.off + frame > BATCH_BYTES) flush(o);
        o.batch.writeUInt32BE(SIZE, o.off);
        payload.copy(o.batch, o.off + 4);
        o.off += frame;
      }
      if ((i + 1) % batch === 0 && i + 1 < n) {
        for (const o of outs) flush(o);
        for (const o of outs) {
          if (o.blocked) {
            drainWaits++;
            o.blocked = false;
            if (o.sock.writableNeedDrain) await once(o.sock, 'drain');
          }
        }
        await turn();
      }
    }
    const tQueued = now();
    await Promise.all(outs.map((o) => new Promise<void>((resolve) => flush(o, resolve))));
    for (const o of outs) o.blocked = false;
    const tEnd = now();
    return { t: 'finished', t0, tQueued, tEnd, cpuMs: cpuMs() - cpu0, drainWaits };
  }

  onCommand(async (m: Msg) => {
    if (m.t === 'count') {
      report({ t: 'count', snakemq: publisher.subscriberCount, snakemqConnected: publisher.connectedCount, raw: outs.length });
    } else if (m.t === 'probe') {
      // zeromq's subscriptions reach the PUB socket some time after connect: publish a message every 5 ms until every SUB got one.
      if (m.on === true) {
        probe ??= setInterval(() => {
          void zpub.send([zTopic, payload]).catch(() => undefined);
          void zxpub.send([zTopic, payload]).catch(() => undefined);
        }, 5);
      } else if (probe !== null) {
        clearInterval(probe);
        probe = null;
      }
      report({ t: 'probed' });
    } else if (m.t === 'publish') {
      const n = Number(m.n);
      const batch = Number(m.batch);
      const impl = m.impl as Impl;
      const r =
        impl === 'snakemq'
          ? await publishSnakemq(n, batch)
          : impl === 'zeromq'
            ? await publishZeromq(zpub, n, batch)
            : impl === 'zeromq-nodrop'
              ? await publishZeromq(zxpub, n, batch)
              : await publishRaw(n, batch);
      report(r);
    } else if (m.t === 'exit') {
      for (const o of outs) o.sock.destroy();
      server.close();
      zpub.close();
      zxpub.close();
      await Promise.race([publisher.close().then(() => peer.close()), new Promise((r) => setTimeout(r, 1000))]);
      process.exit(0);
    }
  });
}

// --- subscribers ---------------------------------------------------------------

/** Counts of one implementation's subscribers in this process, for the round in progress. */
class Tally {
  readonly counts: Uint32Array;
  total = 0;
  target = -1;
  round = -1;
  cpu0 = 0;
  tLast = 0;
  done = false;

  constructor(
    readonly impl: Impl,
    n: number,
  ) {
    this.counts = new Uint32Array(n);
  }

  arm(round: number, perSubscriber: number): void {
    this.counts.fill(0);
    this.total = 0;
    this.target = perSubscriber * this.counts.length;
    this.round = round;
    this.done = false;
    this.tLast = 0;
    this.cpu0 = cpuMs();
  }

  /** One message for subscriber `i`. */
  hit(i: number): void {
    this.counts[i]!++;
    const t = ++this.total;
    if ((t & 255) === 0) this.tLast = now();
    if (t === this.target) {
      this.tLast = now();
      this.done = true;
      report({ ...this.summary(), t: `done:${this.round}`, impl: this.impl });
    }
  }

  summary(): Msg {
    let min = Infinity;
    let max = 0;
    for (const c of this.counts) {
      if (c < min) min = c;
      if (c > max) max = c;
    }
    return { t: 'summary', count: this.total, min, max, tLast: this.tLast, cpuMs: cpuMs() - this.cpu0 };
  }
}

async function subscriberProcess(
  snakemqUrl: string,
  zmqUrls: Record<'zeromq' | 'zeromq-nodrop', string>,
  rawPort: number,
  first: number,
  count: number,
  zmqHwm: number,
): Promise<void> {
  const tallies: Record<Impl, Tally> = {
    raw: new Tally('raw', count),
    zeromq: new Tally('zeromq', count),
    'zeromq-nodrop': new Tally('zeromq-nodrop', count),
    snakemq: new Tally('snakemq', count),
  };

  const peers: Peer[] = [];
  const subs: Subscriber[] = [];
  const zsubs: ZmqSubscriber[] = [];
  const raws: net.Socket[] = [];
  /** Per zeromq subscriber socket: got a message yet. */
  const zGot: Uint8Array[] = [];

  for (let i = 0; i < count; i++) {
    // snakemq-ts: a peer of its own per subscriber.
    const peer = await createPeer({ identity: `sub${first + i}`, connect: { url: snakemqUrl, options: { reconnectDelay: () => 50 } }, ...messagingOptions });
    peers.push(peer);
    const sub = new Subscriber(peer.messaging, { publishers: ['pub'], topics: [TOPIC] });
    const tally = tallies.snakemq;
    sub.on('message', () => tally.hit(i));
    subs.push(sub);

    // zeromq.js, one SUB socket for the PUB publisher and one for the XPUB (no drop) one.
    for (const impl of ['zeromq', 'zeromq-nodrop'] as const) {
      const z = new ZmqSubscriber({ receiveHighWaterMark: zmqHwm, linger: 0 });
      z.connect(zmqUrls[impl]);
      z.subscribe(TOPIC);
      zsubs.push(z);
      const zt = tallies[impl];
      const got = new Uint8Array(1);
      zGot.push(got);
      void (async () => {
        try {
          for await (const _ of z) {
            got[0] = 1;
            zt.hit(i);
          }
        } catch {
          // closed
        }
      })();
    }

    // raw net
    const sock = net.connect({ port: rawPort, host: '127.0.0.1', noDelay: true });
    const rt = tallies.raw;
    const reader = new FrameReader(() => rt.hit(i));
    sock.on('data', (chunk: Buffer) => reader.push(chunk));
    sock.on('error', (e) => report({ t: 'error', message: `raw subscriber ${first + i}: ${e.message}` }));
    raws.push(sock);
  }
  await Promise.all(subs.map((s) => s.ready));
  await Promise.all(raws.map((s) => (s.readyState === 'open' ? undefined : once(s, 'connect'))));
  report({ t: 'ready' });

  onCommand(async (m: Msg) => {
    if (m.t === 'zjoined') {
      // Every zeromq subscriber received at least one (probe) message.
      while (!zGot.every((x) => x[0] === 1)) await new Promise((r) => setTimeout(r, 5));
      report({ t: 'zjoined' });
    } else if (m.t === 'expect') {
      tallies[m.impl as Impl].arm(Number(m.round), Number(m.n));
      report({ t: 'armed' });
    } else if (m.t === 'collect') {
      const tally = tallies[m.impl as Impl];
      report({ ...tally.summary(), t: `collected:${tally.round}` });
    } else if (m.t === 'exit') {
      for (const s of raws) s.destroy();
      for (const z of zsubs) z.close();
      await Promise.race([Promise.all(peers.map((p) => p.close())), new Promise((r) => setTimeout(r, 1000))]);
      process.exit(0);
    }
  });
}

const role = process.argv[2];
if (role === 'pub') await publisherProcess(Number(process.argv[3]));
else if (role === 'sub') {
  const [url, zurl, zxurl, port, first, count, hwm] = process.argv.slice(3);
  await subscriberProcess(url!, { zeromq: zurl!, 'zeromq-nodrop': zxurl! }, Number(port), Number(first), Number(count), Number(hwm));
} else {
  throw new Error('usage: pubsub-peer.ts pub <zmq-hwm> | sub <snakemq-url> <zeromq-url> <zeromq-nodrop-url> <raw-port> <first> <count> <zmq-hwm>');
}
