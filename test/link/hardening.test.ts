import net from 'node:net';
import tls from 'node:tls';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConnectionLimitError, TlsError } from '../../lib/errors.js';
import { Link, exponentialBackoff } from '../../lib/link/index.js';
import type { LinkOptions } from '../../lib/link/index.js';
import { Recorder, certs, closed, nextEvent, waitUntil } from './helpers.js';

let cleanup: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  vi.useRealTimers();
  for (const fn of cleanup.reverse()) await fn();
  cleanup = [];
});

function newLink(options?: LinkOptions): Link {
  const link = new Link(options);
  cleanup.push(() => link.close());
  return link;
}

/** A raw TCP client; destroyed at the end of the test. */
async function rawClient(url: string): Promise<net.Socket> {
  const port = Number(url.split(':').pop());
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  cleanup.push(() => {
    s.destroy();
    return closed(s);
  });
  await new Promise((r) => s.once('connect', r));
  return s;
}

/** A plain TCP server that accepts and at once destroys every connection (not a snakeMQ peer). */
async function droppingServer(): Promise<string> {
  const srv = net.createServer((s) => {
    s.on('error', () => undefined);
    s.destroy();
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise<void>((r) => srv.close(() => r())));
  return `tcp://127.0.0.1:${(srv.address() as net.AddressInfo).port}`;
}

describe('Link maxConnections', () => {
  it('refuses accepted sockets over the limit (acceptFailed, closed by us, never connect); a slot frees on close', async () => {
    const server = newLink({ maxConnections: 3 });
    const rec = new Recorder(server);
    const url = await server.addListener('tcp://127.0.0.1:0');
    // This Link's own outgoing connection does not count against its limit.
    const other = newLink();
    const otherUrl = await other.addListener('tcp://127.0.0.1:0');
    const out = nextEvent(server, 'connect', (info) => info.side === 'connector');
    server.addConnector(otherUrl, { reconnectInterval: 10_000 });
    await out;

    const clients = await Promise.all(Array.from({ length: 5 }, () => rawClient(url)));
    await waitUntil(
      () => rec.of('connect').filter(([i]) => i.side === 'listener').length === 3 && rec.of('acceptFailed').length === 2,
      10_000,
      '3 accepted and 2 refused',
    );
    for (const [endpoint, error] of rec.of('acceptFailed')) {
      expect(endpoint).toBe(url);
      expect(error).toBeInstanceOf(ConnectionLimitError);
      expect(error.code).toBe('SMQ_ERR_CONNECTION_LIMIT');
      expect(error.name).toBe('ConnectionLimitError');
      expect((error as ConnectionLimitError).limit).toBe(3);
    }
    const accepted = new Set(
      rec
        .of('connect')
        .filter(([i]) => i.side === 'listener')
        .map(([i]) => i.remotePort),
    );
    const refused = clients.filter((c) => !accepted.has(c.localPort));
    expect(refused).toHaveLength(2);
    await Promise.all(refused.map((c) => closed(c)));
    const kept = clients.filter((c) => accepted.has(c.localPort));
    expect(kept.every((c) => !c.closed)).toBe(true);

    // One accepted client leaves: its slot is free again.
    const gone = nextEvent(server, 'disconnect');
    kept[0]!.destroy();
    await gone;
    const again = nextEvent(server, 'connect', (info) => info.side === 'listener');
    const late = await rawClient(url);
    const [info] = await again;
    expect(info.remotePort).toBe(late.localPort);
    expect(rec.of('acceptFailed')).toHaveLength(2);
    // The refused sockets never showed up as connections.
    const ports = rec.of('connect').map(([i]) => i.remotePort);
    for (const c of refused) expect(ports).not.toContain(c.localPort);
  });

  it('counts TLS handshakes in progress; a stalled handshake is destroyed after handshakeTimeout and frees its slot', async () => {
    const server = newLink({ maxConnections: 2 });
    const rec = new Recorder(server);
    const url = await server.addListener('tls://127.0.0.1:0', { tls: { ...certs.bob(), handshakeTimeout: 200 } });
    // One client sends nothing, the other half a ClientHello (a record header announcing 512 bytes, then 1 byte).
    const silent = await rawClient(url);
    const half = await rawClient(url);
    half.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
    // Both are handshaking, so a third socket is over the limit.
    const over = nextEvent(server, 'acceptFailed');
    const third = await rawClient(url);
    const [, overError] = await over;
    expect(overError).toBeInstanceOf(ConnectionLimitError);
    await closed(third);

    // Node's handshake timeout fires: the listener reports it and closes both sockets.
    await Promise.all([closed(silent), closed(half)]);
    await waitUntil(() => rec.of('acceptFailed').filter(([, e]) => e instanceof TlsError).length === 2, 10_000, 'timeouts reported');
    for (const [endpoint, error] of rec.of('acceptFailed').filter(([, e]) => e instanceof TlsError)) {
      expect(endpoint).toBe(url);
      expect((error.cause as NodeJS.ErrnoException).code).toBe('ERR_TLS_HANDSHAKE_TIMEOUT');
    }
    // The handshaking sockets no longer count: two real TLS clients get in.
    const client = newLink();
    const connected = nextEvent(server, 'connect');
    const clientConnected = nextEvent(client, 'connect');
    client.addConnector(url, { tls: { ca: certs.bob().ca }, reconnectInterval: 10_000 });
    await Promise.all([connected, clientConnected]);
    expect(rec.of('acceptFailed').filter(([, e]) => e instanceof ConnectionLimitError)).toHaveLength(1);
    expect(rec.of('connect')).toHaveLength(1);
  });
});

describe('Link TLS renegotiation', () => {
  it('a client forcing TLS 1.2 renegotiations is disconnected with a TlsError (ERR_TLS_SESSION_ATTACK)', async () => {
    const server = newLink();
    const url = await server.addListener('tls://127.0.0.1:0', { tls: certs.bob() });
    const connected = nextEvent(server, 'connect');
    const disconnected = nextEvent(server, 'disconnect');
    const port = Number(url.split(':').pop());
    const socket = tls.connect({ port, host: '127.0.0.1', ca: certs.bob().ca, maxVersion: 'TLSv1.2' });
    socket.on('error', () => undefined);
    cleanup.push(() => {
      socket.destroy();
      return closed(socket);
    });
    await new Promise((r) => socket.once('secureConnect', r));
    expect(socket.getProtocol()).toBe('TLSv1.2');
    const [info] = await connected;
    // tls.CLIENT_RENEG_LIMIT (3) renegotiations per tls.CLIENT_RENEG_WINDOW (600 s) are allowed; 20 is an attack.
    let renegotiations = 0;
    for (let i = 0; i < 20 && !socket.destroyed; i++) {
      // A renegotiation cut short by the close never calls back: the close settles it too.
      const err = await new Promise<Error | null>((resolve) => {
        const onClose = () => resolve(new Error('closed'));
        socket.once('close', onClose);
        const started = socket.renegotiate({}, (e) => {
          socket.off('close', onClose);
          resolve(e);
        });
        if (!started) resolve(new Error('renegotiate refused'));
      });
      if (err) break;
      renegotiations++;
    }
    expect(renegotiations).toBeGreaterThanOrEqual(tls.CLIENT_RENEG_LIMIT);
    // The listener ended the connection, the client did not.
    const [id, reason] = await disconnected;
    expect(id).toBe(info.id);
    expect(reason.by).toBe('error');
    expect(reason.error).toBeInstanceOf(TlsError);
    expect((reason.error!.cause as NodeJS.ErrnoException).code).toBe('ERR_TLS_SESSION_ATTACK');
    await closed(socket);
  });
});

describe('Link reconnect backoff', () => {
  it('a peer that accepts and drops at once: attempt numbers keep growing and delays follow the policy', async () => {
    const url = await droppingServer();
    const client = newLink();
    const rec = new Recorder(client);
    const policy = exponentialBackoff({ initial: 5, factor: 2, max: 40, jitter: 0 });
    client.addConnector(url, { reconnectDelay: policy });
    await waitUntil(() => rec.of('reconnect').length >= 6, 10_000, '6 reconnects');
    await client.close();
    const reconnects = rec.of('reconnect').slice(0, 6);
    expect(reconnects.map(([, attempt]) => attempt)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(reconnects.map(([, , delay]) => delay)).toEqual([5, 10, 20, 40, 40, 40]);
    // They were connections (TCP connected, then dropped), not refused attempts.
    expect(rec.of('connect').length).toBeGreaterThanOrEqual(1);
    expect(rec.of('disconnect').length).toBe(rec.of('connect').length);
  });

  it('restarts the backoff once a connection lived stableAfter ms, or at markEstablished()', async () => {
    // Only performance.now() is faked: sockets and reconnect timers stay real.
    // (No vi.waitFor here: with fake timers it advances the clock itself.)
    vi.useFakeTimers({ toFake: ['performance'] });
    const server = newLink();
    const url = await server.addListener('tcp://127.0.0.1:0');
    const client = newLink();
    const attempts: number[] = [];
    client.on('reconnect', (_key, attempt) => attempts.push(attempt));
    let next = Promise.all([nextEvent(client, 'connect'), nextEvent(server, 'connect')]);
    client.addConnector(url, { reconnectDelay: () => 5, stableAfter: 1000 });

    /** Waits for the client's connection, lets `before` run, drops it from the listener; the reconnect attempt number. */
    const cycle = async (before: (clientConnId: number) => void = () => undefined): Promise<number> => {
      const [[info], [serverInfo]] = await next;
      before(info.id);
      next = Promise.all([nextEvent(client, 'connect'), nextEvent(server, 'connect')]);
      const scheduled = nextEvent(client, 'reconnect');
      await server.close(serverInfo.id);
      return (await scheduled)[1];
    };
    expect(await cycle()).toBe(1);
    expect(await cycle()).toBe(2);
    expect(await cycle(() => vi.advanceTimersByTime(999))).toBe(3);
    expect(await cycle(() => vi.advanceTimersByTime(1000))).toBe(1);
    expect(await cycle()).toBe(2);
    expect(await cycle()).toBe(3);
    expect(
      await cycle((id) => {
        // No-ops: unknown ids and the listener's side of a connection.
        client.markEstablished(9999);
        server.markEstablished(server.connectionIds()[0]!);
        client.markEstablished(id);
      }),
    ).toBe(1);
    // markEstablished on the listener side changed nothing there.
    expect(await cycle((id) => server.markEstablished(id))).toBe(2);
    expect(attempts).toEqual([1, 2, 3, 1, 2, 3, 1, 2]);
  });
});
