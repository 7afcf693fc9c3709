import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  ClosedError,
  ConnectionError,
  InvalidArgumentError,
  InvalidEndpointError,
  InvalidOptionsError,
  ProtocolError,
  TlsError,
  UnknownConnectionError,
  type SnakeMQError,
} from '../../lib/errors.js';
import { Link } from '../../lib/link/index.js';
import type { ConnectorOptions, LinkOptions, ListenerOptions } from '../../lib/link/index.js';
import type { ConnectionInfo, Endpoint } from '../../lib/link/types.js';
import { setLogger } from '../../lib/util/log.js';
import { Recorder, Sink, certs, nextEvent, resourceCounts, waitUntil } from './helpers.js';

let links: Link[] = [];
let extra: (() => Promise<void> | void)[] = [];
let tmp: string;

function newLink(options?: LinkOptions): Link {
  const link = new Link(options);
  links.push(link);
  return link;
}

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'smq-link-'));
});

afterEach(async () => {
  await Promise.all(links.map((l) => l.close()));
  for (const fn of extra) await fn();
  links = [];
  extra = [];
  await rm(tmp, { recursive: true, force: true });
});

const abstractName = () => `unix://@snakemq-test-${randomBytes(8).toString('hex')}`;

/** A TCP port nobody listens on (bound then released). */
async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/**
 * Lets a link's pending short timers run out without a fixed sleep: a sentinel
 * connector to a dead port with a fixed 10 ms interval must fail `rounds`
 * times. Timers of the same or shorter delay set before it fire before its
 * own, so anything `link` scheduled 10 ms or less ahead has happened by then.
 */
async function quietPeriod(link: Link, rounds = 3): Promise<void> {
  const key = link.addConnector(`tcp://127.0.0.1:${await freePort()}`, { reconnectInterval: 10 });
  let failed = 0;
  const count = (endpoint: string) => {
    if (endpoint === key) failed++;
  };
  link.on('connectFailed', count);
  try {
    await waitUntil(() => failed >= rounds, 10_000, 'sentinel failures');
  } finally {
    link.off('connectFailed', count);
    await link.removeConnector(key);
  }
}

interface Pair {
  server: Link;
  client: Link;
  url: string;
  key: string;
  sInfo: ConnectionInfo;
  cInfo: ConnectionInfo;
}

async function pair(endpoint: Endpoint, opts: { listener?: ListenerOptions; connector?: ConnectorOptions; link?: LinkOptions } = {}): Promise<Pair> {
  const server = newLink(opts.link);
  const client = newLink(opts.link);
  const url = await server.addListener(endpoint, opts.listener);
  const sConn = nextEvent(server, 'connect');
  const cConn = nextEvent(client, 'connect');
  const key = client.addConnector(url, opts.connector);
  const [[sInfo], [cInfo]] = await Promise.all([sConn, cConn]);
  return { server, client, url, key, sInfo, cInfo };
}

async function exchange(p: Pair): Promise<void> {
  const sSink = new Sink(p.server);
  const cSink = new Sink(p.client);
  const up = randomBytes(100_000);
  const down = randomBytes(70_000);
  expect(p.client.send(p.cInfo.id, up)).toBe(true);
  expect(p.server.send(p.sInfo.id, down)).toBe(true);
  await waitUntil(() => sSink.length(p.sInfo.id) === up.length && cSink.length(p.cInfo.id) === down.length);
  expect(sSink.bytes(p.sInfo.id).equals(up)).toBe(true);
  expect(cSink.bytes(p.cInfo.id).equals(down)).toBe(true);
}

const mutualTls = () => ({
  listener: { tls: { ...certs.bob(), requestCert: true } },
  connector: { tls: certs.alice(), reconnectDelay: () => 20 },
});

describe('Link transports', () => {
  it('tcp: connects, reports addresses and exchanges data both ways', async () => {
    const p = await pair('tcp://127.0.0.1:0');
    expect(p.url).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    expect(p.url).not.toBe('tcp://127.0.0.1:0');
    expect(p.key).toBe(p.url);
    const port = Number(p.url.split(':').pop());
    expect(p.sInfo).toMatchObject({ side: 'listener', endpoint: p.url, localAddress: '127.0.0.1', localPort: port, remoteAddress: '127.0.0.1' });
    expect(p.cInfo).toMatchObject({ side: 'connector', endpoint: p.key, remoteAddress: '127.0.0.1', remotePort: port, localAddress: '127.0.0.1' });
    expect(p.cInfo.localPort).toBe(p.sInfo.remotePort);
    expect(p.sInfo.tls).toBeUndefined();
    expect(p.server.connection(p.sInfo.id)).toBe(p.sInfo);
    expect(p.server.connectionIds()).toEqual([p.sInfo.id]);
    await exchange(p);
  });

  it('tls: mutual TLS with verified peer certificates', async () => {
    const p = await pair('tls://127.0.0.1:0', mutualTls());
    expect(p.url).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);
    for (const [info, peer] of [
      [p.cInfo, 'bob'],
      [p.sInfo, 'alice'],
    ] as const) {
      expect(info.tls).toBeDefined();
      expect(info.tls!.authorized).toBe(true);
      expect(info.tls!.authorizationError).toBeUndefined();
      expect(info.tls!.protocol).toMatch(/^TLSv1\.[23]$/);
      expect(info.tls!.cipher).not.toBe('');
      expect((info.tls!.peerCertificate as { subject: { CN: string } }).subject.CN).toBe(peer);
    }
    await exchange(p);
  });

  it('tls: TLS 1.2 works too', async () => {
    const opts = mutualTls();
    const p = await pair('tls://127.0.0.1:0', { ...opts, connector: { ...opts.connector, tls: { ...opts.connector.tls, maxVersion: 'TLSv1.2' } } });
    expect(p.cInfo.tls!.protocol).toBe('TLSv1.2');
    expect(p.sInfo.tls!.authorized).toBe(true);
    await exchange(p);
  });

  it('tls: a listener without requestCert sees no client certificate', async () => {
    const p = await pair('tls://127.0.0.1:0', { listener: { tls: certs.bob() }, connector: { tls: { ca: certs.bob().ca } } });
    expect(p.sInfo.tls!.peerCertificate).toEqual({});
    expect(p.cInfo.tls!.authorized).toBe(true);
    await exchange(p);
  });

  it('unix: absolute path in a temp dir; the socket file is removed afterwards', async () => {
    const path = join(tmp, 'peer.sock');
    const p = await pair(`unix://${path}`);
    expect(p.url).toBe(`unix://${path}`);
    expect(p.sInfo).toMatchObject({ side: 'listener', endpoint: p.url });
    expect(p.cInfo).toMatchObject({ side: 'connector', endpoint: p.url });
    expect(p.sInfo.remotePort).toBeUndefined();
    expect(existsSync(path)).toBe(true);
    await exchange(p);
    await p.client.removeConnector(p.key);
    await p.server.removeListener(p.url);
    expect(existsSync(path)).toBe(false);
  });

  it('unix: abstract namespace', async () => {
    const url = abstractName();
    const p = await pair(url);
    expect(p.url).toBe(url);
    await exchange(p);
  });

  it('unix+tls: mutual TLS over a Unix socket', async () => {
    const path = join(tmp, 'tls.sock');
    const p = await pair(`unix+tls://${path}`, mutualTls());
    expect(p.url).toBe(`unix+tls://${path}`);
    expect(p.cInfo.tls!.authorized).toBe(true);
    expect((p.sInfo.tls!.peerCertificate as { subject: { CN: string } }).subject.CN).toBe('alice');
    await exchange(p);
  });

  it('object endpoints work like URLs', async () => {
    const server = newLink();
    const client = newLink();
    const url = await server.addListener({ host: '127.0.0.1', port: 0 });
    const port = Number(url.split(':').pop());
    const connected = nextEvent(client, 'connect');
    expect(client.addConnector({ host: '127.0.0.1', port })).toBe(url);
    await connected;
    await client.removeConnector({ host: '127.0.0.1', port });
  });

  it('connection ids are unique and increasing across listeners and connectors', async () => {
    const server = newLink();
    const client = newLink();
    const urls = [await server.addListener('tcp://127.0.0.1:0'), await server.addListener(abstractName())];
    const ids: number[] = [];
    server.on('connect', (info) => ids.push(info.id));
    client.on('connect', (info) => ids.push(info.id + 1000));
    for (const url of urls) client.addConnector(url);
    await waitUntil(() => ids.length === 4);
    const serverIds = ids.filter((i) => i < 1000);
    const clientIds = ids.filter((i) => i > 1000).map((i) => i - 1000);
    expect(serverIds).toEqual([1, 2]);
    expect(clientIds).toEqual([1, 2]);
    // Reconnects get fresh ids.
    const again = nextEvent(client, 'connect');
    await client.close(1);
    const [info] = await again;
    expect(info.id).toBe(3);
  });
});

describe('Link reconnects', () => {
  for (const kind of ['tcp', 'unix'] as const) {
    it(`${kind}: the connector reconnects when the listener goes away and comes back`, async () => {
      const server = newLink();
      const client = newLink();
      const rec = new Recorder(client);
      const url = await server.addListener(kind === 'tcp' ? 'tcp://127.0.0.1:0' : `unix://${join(tmp, 'r.sock')}`);
      const first = nextEvent(client, 'connect');
      client.addConnector(url, { reconnectDelay: () => 25, stableAfter: 0 });
      await first;

      const dropped = nextEvent(client, 'disconnect');
      await server.removeListener(url);
      const [, reason] = await dropped;
      expect(reason.by).toBe('remote');
      await waitUntil(() => rec.of('connectFailed').length >= 2, 10_000, 'failed reconnects');

      const back = nextEvent(client, 'connect');
      expect(await server.addListener(url)).toBe(url);
      await back;

      const attempts = rec.of('reconnect').map(([, attempt]) => attempt);
      expect(attempts.slice(0, 3)).toEqual([1, 2, 3]);
      for (let i = 1; i < attempts.length; i++) expect(attempts[i]).toBe(attempts[i - 1]! + 1);
      expect(rec.of('reconnect').every(([key, , delay]) => key === url && delay === 25)).toBe(true);
      for (const [key, error] of rec.of('connectFailed')) {
        expect(key).toBe(url);
        expect(error).toBeInstanceOf(ConnectionError);
        expect(['ECONNREFUSED', 'ENOENT']).toContain((error.cause as NodeJS.ErrnoException).code);
      }

      // After a stable connection (stableAfter 0: any) the count starts again at 1.
      const n = rec.of('reconnect').length;
      await waitUntil(() => server.connectionIds().length === 1);
      await server.close(server.connectionIds()[0]);
      await waitUntil(() => rec.of('reconnect').length > n);
      expect(rec.of('reconnect')[n]![1]).toBe(1);
    });
  }

  it('reports a refused connection as ConnectionError with the Node error as cause', async () => {
    const port = await freePort();
    const client = newLink();
    const delays: number[] = [];
    const failed = nextEvent(client, 'connectFailed');
    const scheduled = nextEvent(client, 'reconnect');
    client.addConnector(`tcp://127.0.0.1:${port}`, {
      reconnectDelay: (n) => {
        delays.push(n);
        return 5000;
      },
    });
    const [key, error] = await failed;
    expect(key).toBe(`tcp://127.0.0.1:${port}`);
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error.code).toBe('SMQ_ERR_CONNECTION');
    expect(error.cause).toBeInstanceOf(Error);
    expect((error.cause as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
    expect(await scheduled).toEqual([key, 1, 5000]);
    expect(delays).toEqual([1]);
  });

  it('removeConnector stops reconnecting', async () => {
    const port = await freePort();
    const client = newLink();
    const rec = new Recorder(client);
    const key = client.addConnector(`tcp://127.0.0.1:${port}`, { reconnectInterval: 10 });
    await waitUntil(() => rec.of('connectFailed').length >= 2);
    await client.removeConnector(key);
    const failures = rec.of('connectFailed').filter(([k]) => k === key).length;
    const reconnects = rec.of('reconnect').filter(([k]) => k === key).length;
    await quietPeriod(client);
    expect(rec.of('connectFailed').filter(([k]) => k === key).length).toBe(failures);
    expect(rec.of('reconnect').filter(([k]) => k === key).length).toBe(reconnects);
    await expect(client.removeConnector(key)).rejects.toBeInstanceOf(InvalidArgumentError);
    // The same endpoint can be added again.
    client.addConnector(key, { reconnectInterval: 10 });
    await client.removeConnector(`tcp://127.0.0.1:${port}`);
  });

  it('removeConnector closes its established connection', async () => {
    const p = await pair('tcp://127.0.0.1:0', { connector: { reconnectDelay: () => 10 } });
    const rec = new Recorder(p.client);
    const remoteGone = nextEvent(p.server, 'disconnect');
    await p.client.removeConnector(p.key);
    expect(rec.of('disconnect')).toEqual([[p.cInfo.id, { by: 'local' }]]);
    expect((await remoteGone)[1].by).toBe('remote');
    await quietPeriod(p.client);
    expect(rec.of('reconnect').filter(([k]) => k === p.key)).toEqual([]);
    expect(rec.of('connect')).toEqual([]);
  });

  it('a TLS handshake that times out fails with TlsError', async () => {
    // Accepts TCP but never speaks TLS.
    const mute = net.createServer((s) => s.on('error', () => undefined));
    const sockets = new Set<net.Socket>();
    mute.on('connection', (s) => sockets.add(s));
    await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
    extra.push(
      () =>
        new Promise<void>((r) => {
          for (const s of sockets) s.destroy();
          mute.close(() => r());
        }),
    );
    const { port } = mute.address() as net.AddressInfo;
    const client = newLink();
    const failed = nextEvent(client, 'connectFailed');
    client.addConnector(`tls://127.0.0.1:${port}`, { tls: certs.alice(), connectTimeout: 150, reconnectInterval: 10_000 });
    const [, error] = await failed;
    expect(error).toBeInstanceOf(TlsError);
    expect((error.cause as NodeJS.ErrnoException).code).toBe('ETIMEDOUT');
  });
});

describe('Link TLS failures', () => {
  it('a client from another PKI: connector gets TlsError, listener never connects', async () => {
    const server = newLink();
    const client = newLink();
    const srec = new Recorder(server);
    const url = await server.addListener('tls://127.0.0.1:0', { tls: { ...certs.bob(), requestCert: true } });
    const failed = nextEvent(client, 'connectFailed');
    // The listener's side of the attempt ends too (the client's alert), and nothing connects after that.
    const rejected = nextEvent(server, 'acceptFailed');
    client.addConnector(url, { tls: certs.eve(), reconnectInterval: 10_000 });
    const [key, error] = await failed;
    expect(key).toBe(url);
    expect(error).toBeInstanceOf(TlsError);
    expect(error.code).toBe('SMQ_ERR_TLS');
    expect(error.cause).toBeInstanceOf(Error);
    await rejected;
    expect(srec.of('connect')).toEqual([]);
    for (const [endpoint, err] of srec.of('acceptFailed')) {
      expect(endpoint).toBe(url);
      expect(err).toBeInstanceOf(TlsError);
    }
  });

  it.each([
    ['TLS 1.2', { maxVersion: 'TLSv1.2' as const }, /client certificate rejected/],
    ['TLS 1.3', { minVersion: 'TLSv1.3' as const }, /UNABLE_TO_VERIFY_LEAF_SIGNATURE/],
  ])('a client certificate from an unknown CA is refused by the listener (%s: connector sees TlsError)', async (_v, version, serverMessage) => {
    const server = newLink();
    const client = newLink();
    const srec = new Recorder(server);
    const crec = new Recorder(client);
    const url = await server.addListener('tls://127.0.0.1:0', { tls: { ...certs.bob(), requestCert: true } });
    const rejected = nextEvent(server, 'acceptFailed');
    const failed = nextEvent(client, 'connectFailed');
    // Eve trusts bob's CA, but bob does not trust eve's.
    client.addConnector(url, { tls: { ...certs.eve(), ca: certs.bob().ca, ...version }, reconnectInterval: 10_000 });
    const [endpoint, error] = await rejected;
    expect(endpoint).toBe(url);
    expect(error).toBeInstanceOf(TlsError);
    expect(error.message).toMatch(serverMessage);
    const [, clientError] = await failed;
    expect(clientError).toBeInstanceOf(TlsError);
    expect(clientError.cause).toBeInstanceOf(Error);
    expect(srec.of('connect')).toEqual([]);
    expect(crec.of('connect')).toEqual([]);
  });

  it('a listener requiring a client certificate refuses a connector without one', async () => {
    const server = newLink();
    const client = newLink();
    const srec = new Recorder(server);
    const url = await server.addListener('tls://127.0.0.1:0', { tls: { ...certs.bob(), requestCert: true } });
    const failed = nextEvent(client, 'connectFailed');
    const rejected = nextEvent(server, 'acceptFailed');
    client.addConnector(url, { tls: { ca: certs.bob().ca }, reconnectInterval: 10_000 });
    expect((await failed)[1]).toBeInstanceOf(TlsError);
    expect((await rejected)[1]).toBeInstanceOf(TlsError);
    expect(srec.of('connect')).toEqual([]);
  });

  it('TLS 1.3 data sent by the listener at once is delivered after connect', async () => {
    const server = newLink();
    const client = newLink();
    const url = await server.addListener('tls://127.0.0.1:0', { tls: { ...certs.bob(), requestCert: true } });
    server.on('connect', (info) => server.send(info.id, Buffer.from('hello')));
    const order: string[] = [];
    client.on('connect', () => order.push('connect'));
    client.on('data', (_id, chunk) => order.push(chunk.toString()));
    client.addConnector(url, { tls: certs.alice() });
    await waitUntil(() => order.length === 2);
    expect(order).toEqual(['connect', 'hello']);
  });

  it('a connector rejects a server certificate it cannot verify', async () => {
    const server = newLink();
    const client = newLink();
    const url = await server.addListener('tls://127.0.0.1:0', { tls: certs.bob() });
    const failed = nextEvent(client, 'connectFailed');
    client.addConnector(url, { tls: { ca: certs.eve().ca }, reconnectInterval: 10_000 });
    const [, error] = await failed;
    expect(error).toBeInstanceOf(TlsError);
    expect(error.message).toMatch(/TLS handshake/);
  });

  it('rejectUnauthorized: false connects and reports the verification failure', async () => {
    const p = await pair('tls://127.0.0.1:0', {
      listener: { tls: certs.bob() },
      connector: { tls: { ca: certs.eve().ca, rejectUnauthorized: false } },
    });
    expect(p.cInfo.tls!.authorized).toBe(false);
    expect(p.cInfo.tls!.authorizationError).toMatch(/[A-Z_]+/);
  });
});

describe('Link flow control', () => {
  it('sendv hands several buffers over in order, with one callback; on an unknown connection it reports the error', async () => {
    const server = newLink();
    const client = newLink();
    const url = await server.addListener('tcp://127.0.0.1:0');
    const chunks: Buffer[] = [];
    server.on('data', (_id, chunk) => chunks.push(chunk));
    const connected = nextEvent(client, 'connect');
    client.addConnector(url);
    const [info] = await connected;
    const big = Buffer.alloc(300_000, 9);
    const written = new Promise<SnakeMQError | undefined>((resolve) => client.sendv(info.id, [Buffer.from('head:'), big], resolve));
    client.send(info.id, Buffer.from(':after'));
    expect(await written).toBeUndefined();
    const total = 5 + big.length + 6;
    await waitUntil(() => chunks.reduce((n, c) => n + c.length, 0) >= total, 10_000, 'all bytes');
    const got = Buffer.concat(chunks);
    expect(got.length).toBe(total);
    expect(got.subarray(0, 5).toString()).toBe('head:');
    expect(got.subarray(5, 5 + big.length).equals(big)).toBe(true);
    expect(got.subarray(5 + big.length).toString()).toBe(':after');
    const failed = new Promise<SnakeMQError | undefined>((resolve) => client.sendv(999, [Buffer.from('a'), Buffer.from('b')], resolve));
    expect(await failed).toBeInstanceOf(UnknownConnectionError);
    expect(() => client.sendv(info.id, [])).toThrow(InvalidArgumentError);
  });

  it('send returns false above highWaterMark and drain follows once the peer reads again', async () => {
    const hwm = 64 * 1024;
    const server = newLink({ highWaterMark: hwm });
    const client = newLink({ highWaterMark: hwm });
    const url = await server.addListener('tcp://127.0.0.1:0');
    server.on('connect', (info) => server.pause(info.id));
    let received = 0;
    server.on('data', (_id, chunk) => (received += chunk.length));
    const connected = nextEvent(client, 'connect');
    client.addConnector(url);
    const [info] = await connected;
    const drains: number[] = [];
    client.on('drain', (id) => drains.push(id));

    // The same 64 KiB buffer queued 2,048 times: 128 MiB on the wire, far more
    // than the kernel buffers of a paused reader take (tcp_wmem + tcp_rmem
    // maxima, 4 + 32 MiB here), so no drain can come before resume().
    const chunk = Buffer.alloc(64 * 1024, 7);
    const total = 2048;
    let written = 0;
    const onWritten = (err?: SnakeMQError) => {
      expect(err).toBeUndefined();
      written++;
    };
    let firstFalse = -1;
    for (let sent = 0; sent < total; sent++) {
      if (!client.send(info.id, chunk, onWritten) && firstFalse < 0) firstFalse = sent;
    }
    expect(firstFalse).toBeGreaterThanOrEqual(0);
    expect(firstFalse).toBeLessThan(total - 1);
    expect(client.isWritable(info.id)).toBe(false);
    await waitUntil(() => written > 0, 10_000, 'the kernel taking some data');
    expect(written).toBeLessThan(total);
    expect(drains).toEqual([]);
    expect(client.isWritable(info.id)).toBe(false);

    const drained = nextEvent(client, 'drain');
    const [sid] = server.connectionIds();
    server.resume(sid!);
    expect((await drained)[0]).toBe(info.id);
    expect(client.isWritable(info.id)).toBe(true);
    await waitUntil(() => written === total && received === total * chunk.length, 20_000, 'all bytes');
  });

  it('onWritten reports unknown connections and never runs synchronously', async () => {
    const link = newLink();
    let sync = true;
    const called = new Promise<{ err: SnakeMQError | undefined; sync: boolean }>((resolve) => {
      expect(link.send(42, Buffer.from('x'), (err) => resolve({ err, sync }))).toBe(false);
    });
    sync = false;
    const { err, sync: wasSync } = await called;
    expect(wasSync).toBe(false);
    expect(err).toBeInstanceOf(UnknownConnectionError);
    expect(link.isWritable(42)).toBe(false);
    expect(link.connection(42)).toBeUndefined();
    expect(() => link.send(1, 'text' as unknown as Buffer)).toThrow(InvalidArgumentError);
  });
});

describe('Link close', () => {
  it('close(connId) disconnects with by:local here and by:remote there', async () => {
    const p = await pair('tcp://127.0.0.1:0', { connector: { reconnectInterval: 10_000 } });
    const here = nextEvent(p.server, 'disconnect');
    const there = nextEvent(p.client, 'disconnect');
    const reason = new ProtocolError('bad frame');
    await p.server.close(p.sInfo.id, reason);
    expect(await here).toEqual([p.sInfo.id, { by: 'local', error: reason }]);
    expect(await there).toEqual([p.cInfo.id, { by: 'remote' }]);
    expect(p.server.connection(p.sInfo.id)).toBeUndefined();
    // Idempotent, and unknown ids resolve.
    await p.server.close(p.sInfo.id);
    await p.server.close(999);
    // Sending on it now fails.
    const err = await new Promise<SnakeMQError | undefined>((r) => p.server.send(p.sInfo.id, Buffer.from('x'), r));
    expect(err).toBeInstanceOf(UnknownConnectionError);
  });

  it('flushes what was sent before a local close', async () => {
    const p = await pair('tcp://127.0.0.1:0', { connector: { reconnectInterval: 10_000 } });
    const sink = new Sink(p.server);
    const payload = randomBytes(3 * 1024 * 1024);
    let written: SnakeMQError | undefined | 'no' = 'no';
    p.client.send(p.cInfo.id, payload, (e) => (written = e));
    const gone = nextEvent(p.server, 'disconnect');
    await p.client.close(p.cInfo.id);
    await gone;
    expect(written).toBeUndefined();
    expect(sink.bytes(p.sInfo.id).equals(payload)).toBe(true);
  });

  it('disconnect is emitted exactly once per connect', async () => {
    const p = await pair('tcp://127.0.0.1:0', { connector: { reconnectInterval: 10_000 } });
    const srec = new Recorder(p.server);
    const crec = new Recorder(p.client);
    await Promise.all([p.server.close(p.sInfo.id), p.client.close(p.cInfo.id), p.server.close(p.sInfo.id)]);
    await Promise.all([quietPeriod(p.server), quietPeriod(p.client)]);
    expect(srec.of('disconnect').length).toBe(1);
    expect(crec.of('disconnect').length).toBe(1);
  });

  it('close() closes everything, is idempotent and leaves no handles behind', async () => {
    const before = resourceCounts();
    const server = new Link();
    const client = new Link();
    const port = await freePort();
    const srec = new Recorder(server);
    const crec = new Recorder(client);
    const tcpUrl = await server.addListener('tcp://127.0.0.1:0');
    const tlsUrl = await server.addListener('tls://127.0.0.1:0', { tls: { ...certs.bob(), requestCert: true } });
    const unixUrl = await server.addListener(`unix://${join(tmp, 'c.sock')}`);
    const absUrl = await server.addListener(abstractName());
    client.addConnector(tcpUrl);
    client.addConnector(tlsUrl, { tls: certs.alice() });
    client.addConnector(unixUrl);
    client.addConnector(absUrl);
    client.addConnector(`tcp://127.0.0.1:${port}`, { reconnectInterval: 60_000 });
    await waitUntil(() => crec.of('connect').length === 4 && srec.of('connect').length === 4 && crec.of('reconnect').length === 1);
    // A TLS handshake that never finishes, pending on the listener.
    const stuck = net.connect(Number(tlsUrl.split(':').pop()), '127.0.0.1');
    stuck.on('error', () => undefined);
    await new Promise((r) => stuck.once('connect', r));
    expect(resourceCounts().TCPSocketWrap).toBeGreaterThan(before.TCPSocketWrap!);

    const closing = client.close();
    expect(client.close()).toBe(closing);
    await Promise.all([closing, server.close()]);
    await server.close();
    if (!stuck.closed) await new Promise((r) => stuck.once('close', r));
    expect(crec.of('disconnect').every(([, reason]) => reason.by === 'local')).toBe(true);
    expect(crec.of('disconnect').length).toBe(4);
    expect(srec.of('disconnect').length).toBe(4);
    expect(existsSync(join(tmp, 'c.sock'))).toBe(false);
    expect(client.closed).toBe(true);

    const after = resourceCounts();
    for (const [name, count] of Object.entries(after)) {
      expect(`${name}: ${count}`).toBe(`${name}: ${Math.min(count, before[name]!)}`);
    }
  });

  it('after close(): addListener/addConnector fail with ClosedError, send returns false', async () => {
    const link = newLink();
    await link.close();
    await expect(link.addListener('tcp://127.0.0.1:0')).rejects.toBeInstanceOf(ClosedError);
    expect(() => link.addConnector('tcp://127.0.0.1:1')).toThrow(ClosedError);
    const err = await new Promise<SnakeMQError | undefined>((r) => expect(link.send(1, Buffer.from('x'), r)).toBe(false));
    expect(err).toBeInstanceOf(ClosedError);
    await link.close();
  });

  it('close() during addListener closes the new server too', async () => {
    const link = newLink();
    const adding = link.addListener('tcp://127.0.0.1:0');
    await link.close();
    await expect(adding).rejects.toBeInstanceOf(ClosedError);
  });
});

describe('Link listeners', () => {
  it('EADDRINUSE is wrapped in ConnectionError', async () => {
    const a = newLink();
    const b = newLink();
    const url = await a.addListener('tcp://127.0.0.1:0');
    const err = await b.addListener(url).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as ConnectionError).cause).toMatchObject({ code: 'EADDRINUSE' });
    // A live Unix socket is not taken over either.
    const path = `unix://${join(tmp, 'live.sock')}`;
    await a.addListener(path);
    await expect(b.addListener(path)).rejects.toBeInstanceOf(ConnectionError);
  });

  it('replaces a stale Unix socket file but not other files', async () => {
    // A socket file nobody listens on: a hard link to a socket whose server is gone.
    const original = join(tmp, 'orig.sock');
    const stale = join(tmp, 'stale.sock');
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(original, r));
    linkSync(original, stale);
    await new Promise<void>((r) => srv.close(() => r()));
    expect(existsSync(stale)).toBe(true);

    const link = newLink();
    const url = await link.addListener(`unix://${stale}`);
    const client = newLink();
    const connected = nextEvent(client, 'connect');
    client.addConnector(url);
    await connected;

    const regular = join(tmp, 'file.sock');
    writeFileSync(regular, 'not a socket');
    await expect(link.addListener(`unix://${regular}`)).rejects.toBeInstanceOf(ConnectionError);
    expect(existsSync(regular)).toBe(true);
  });

  it('removeListener closes accepted connections and stops accepting', async () => {
    const p = await pair('tcp://127.0.0.1:0', { connector: { reconnectDelay: () => 20 } });
    const srec = new Recorder(p.server);
    const gone = nextEvent(p.client, 'disconnect');
    await p.server.removeListener(p.url);
    expect(srec.of('disconnect')).toEqual([[p.sInfo.id, { by: 'local' }]]);
    await gone;
    await nextEvent(p.client, 'connectFailed');
    expect(srec.of('connect')).toEqual([]);
    await expect(p.server.removeListener(p.url)).rejects.toBeInstanceOf(InvalidArgumentError);
  });

  it('removeListener accepts the endpoint as passed to addListener', async () => {
    const link = newLink();
    const path = `unix://${join(tmp, 'x.sock')}`;
    await link.addListener(path);
    await link.addListener('tcp://127.0.0.1:0');
    await link.addListener('tcp://127.0.0.1:0');
    await link.removeListener({ path: join(tmp, 'x.sock') });
    await expect(link.removeListener('tcp://127.0.0.1:0')).rejects.toThrow(/several listeners/);
  });
});

describe('Link validation', () => {
  it('rejects unknown TLS options at addListener and addConnector', async () => {
    const link = newLink();
    await expect(link.addListener('tls://127.0.0.1:0', { tls: { ...certs.bob(), rejectUnauthorised: false } as never })).rejects.toBeInstanceOf(
      InvalidOptionsError,
    );
    expect(() => link.addConnector('tls://127.0.0.1:1', { tls: { rejectUnauthorised: false } as never })).toThrow(InvalidOptionsError);
    expect(() => link.addConnector('tls://127.0.0.1:1')).toThrow(/needs the 'tls' option/);
    await expect(link.addListener('tcp://127.0.0.1:0', { tls: certs.bob() })).rejects.toThrow(/non-TLS endpoint/);
    expect(() => new Link({ highWaterMark: -1 })).toThrow(InvalidOptionsError);
    expect(() => new Link({ nodelay: true } as never)).toThrow(InvalidOptionsError);
  });

  it('rejects unusable key material up front', async () => {
    const link = newLink();
    await expect(link.addListener('tls://127.0.0.1:0', { tls: { key: 'junk', cert: 'junk' } })).rejects.toBeInstanceOf(InvalidOptionsError);
    expect(() => link.addConnector('tls://127.0.0.1:1', { tls: { key: 'junk', cert: 'junk' } })).toThrow(InvalidOptionsError);
  });

  it('rejects bad endpoints, port 0 and duplicate connectors', async () => {
    const link = newLink();
    await expect(link.addListener('tcp://nope')).rejects.toBeInstanceOf(InvalidEndpointError);
    expect(() => link.addConnector('tcp://127.0.0.1:0')).toThrow(InvalidEndpointError);
    const port = await freePort();
    link.addConnector(`tcp://127.0.0.1:${port}`, { reconnectInterval: 60_000 });
    expect(() => link.addConnector({ host: '127.0.0.1', port }, { reconnectInterval: 60_000 })).toThrow(InvalidArgumentError);
  });
});

describe('Link debug logging', () => {
  it('logs connects, disconnects and reconnects under snakemq:link', async () => {
    const lines: string[] = [];
    setLogger((ns, msg) => lines.push(`${ns} ${msg}`), 'snakemq:link');
    try {
      const p = await pair('tcp://127.0.0.1:0', { connector: { reconnectDelay: () => 5000 } });
      p.client.send(p.cInfo.id, Buffer.from('secret-payload'));
      const reconnect = nextEvent(p.client, 'reconnect');
      await p.server.close(p.sInfo.id);
      await reconnect;
    } finally {
      setLogger(null, process.env.DEBUG ?? '');
    }
    expect(lines.some((l) => /^snakemq:link connect #1/.test(l))).toBe(true);
    expect(lines.some((l) => /disconnect #1 .* by local/.test(l))).toBe(true);
    expect(lines.some((l) => /reconnect to tcp:\/\/127\.0\.0\.1:\d+: attempt 1/.test(l))).toBe(true);
    expect(lines.join('\n')).not.toMatch(/secret-payload/);
  });
});
