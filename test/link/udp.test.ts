import { Buffer } from 'node:buffer';
import dgram from 'node:dgram';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ClosedError, DatagramTooLargeError, ErrorCode, InvalidArgumentError, InvalidEndpointError, InvalidOptionsError } from '../../lib/errors.js';
import { DEFAULT_MAX_DATAGRAM_SIZE, Link, parseEndpoint, type ConnectionInfo } from '../../lib/link/index.js';
import { Throttle } from '../../lib/throttle/index.js';
import { announcedEndpoints } from '../../lib/discovery/endpoints.js';

const open: { close(): Promise<unknown> }[] = [];
const sockets: dgram.Socket[] = [];

afterEach(async () => {
  await Promise.all(open.splice(0).map((o) => o.close()));
  await Promise.all(sockets.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
});

function newLink(): Link {
  const link = new Link();
  open.push(link);
  return link;
}

/** A raw socket bound on loopback, collecting what it receives. */
async function rawSocket(host = '127.0.0.1'): Promise<{ socket: dgram.Socket; port: number; got: Buffer[] }> {
  const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  sockets.push(socket);
  const got: Buffer[] = [];
  socket.on('message', (m) => got.push(m));
  await new Promise<void>((r) => socket.bind(0, host, () => r()));
  return { socket, port: socket.address().port, got };
}

function portOf(url: string): number {
  return Number(/:(\d+)$/.exec(url)![1]);
}

function udpCount(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'UDPWrap').length;
}

/** Whether this machine has IPv6 loopback (tested on ::1 then, else on 127.0.0.1 only). */
async function hasIPv6(): Promise<boolean> {
  const s = dgram.createSocket('udp6');
  try {
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(0, '::1', () => resolve());
    });
    return true;
  } catch {
    return false;
  } finally {
    s.close();
  }
}

describe('udp:// endpoints: parsing', () => {
  it('parses udp URLs with the tcp host and port rules', () => {
    expect(parseEndpoint('udp://127.0.0.1:9000')).toEqual({ transport: 'udp', tls: false, host: '127.0.0.1', port: 9000, url: 'udp://127.0.0.1:9000' });
    expect(parseEndpoint('UDP://LocalHost:5')).toMatchObject({ transport: 'udp', host: 'localhost', url: 'udp://localhost:5' });
    expect(parseEndpoint('udp://[::1]:0')).toMatchObject({ transport: 'udp', host: '::1', port: 0, url: 'udp://[::1]:0' });
    for (const bad of ['udp://127.0.0.1', 'udp://:5', 'udp://::1:5', 'udp://host:99999', 'udp://h:5/x']) {
      expect(() => parseEndpoint(bad), bad).toThrow(InvalidEndpointError);
    }
  });

  it('are not announced to discovery (a udp listener takes no connections)', () => {
    expect(announcedEndpoints(['udp://0.0.0.0:5', 'tcp://127.0.0.1:1', 'udp://[::1]:6'], {})).toEqual(['tcp://127.0.0.1:1']);
  });
});

describe('udp:// listeners', () => {
  it('binds port 0 and returns the bound URL; datagrams arrive as `datagram` events with their source', async () => {
    const link = newLink();
    const url = await link.addListener('udp://127.0.0.1:0');
    expect(url).toMatch(/^udp:\/\/127\.0\.0\.1:\d+$/);
    expect(portOf(url)).toBeGreaterThan(0);
    const seen: [number, string, string, number][] = [];
    link.on('datagram', (id, d, address, port) => seen.push([id, d.toString(), address, port]));
    const raw = await rawSocket();
    raw.socket.send('one', portOf(url), '127.0.0.1');
    raw.socket.send('two', portOf(url), '127.0.0.1');
    await vi.waitFor(() => expect(seen).toHaveLength(2));
    const id = seen[0]![0];
    expect(id).toBeLessThan(0);
    expect(seen.map((s) => s[1]).sort()).toEqual(['one', 'two']);
    expect(seen[0]!.slice(2)).toEqual(['127.0.0.1', raw.port]);
    expect(link.connection(id)).toMatchObject({ id, side: 'listener', endpoint: url, datagram: true });
    expect(link.datagramCounters.received).toBe(2);
  });

  it('drops (and counts) datagrams over maxDatagramSize and from sources allowSource refuses or throws on', async () => {
    const link = newLink();
    const raw = await rawSocket();
    const other = await rawSocket();
    const url = await link.addListener('udp://127.0.0.1:0', {
      maxDatagramSize: 10,
      allowSource: (address, port) => {
        if (port === other.port) throw new Error('policy bug');
        return address === '127.0.0.1' && port === raw.port;
      },
    });
    const seen: string[] = [];
    link.on('datagram', (_id, d) => seen.push(d.toString()));
    const port = portOf(url);
    other.socket.send('from-other', port, '127.0.0.1');
    raw.socket.send('x'.repeat(11), port, '127.0.0.1');
    raw.socket.send('x'.repeat(10), port, '127.0.0.1');
    await vi.waitFor(() => expect(link.datagramCounters).toMatchObject({ received: 1, oversize: 1, refused: 1 }));
    expect(seen).toEqual(['x'.repeat(10)]);
  });

  it('validates listener options (fail fast) and refuses datagram options on stream endpoints', async () => {
    const link = newLink();
    await expect(link.addListener('udp://127.0.0.1:0', { maxDatagramSize: 0 })).rejects.toThrow(InvalidOptionsError);
    await expect(link.addListener('udp://127.0.0.1:0', { maxDatagramSize: DEFAULT_MAX_DATAGRAM_SIZE + 1 })).rejects.toThrow(InvalidOptionsError);
    await expect(link.addListener('udp://127.0.0.1:0', { backlog: 5 })).rejects.toThrow(/unknown option 'backlog'/);
    await expect(link.addListener('tcp://127.0.0.1:0', { maxDatagramSize: 100 })).rejects.toThrow(/only for udp/);
    expect(() => link.addConnector('tcp://127.0.0.1:1', { identity: 'bob' })).toThrow(/only for udp/);
  });

  it('removeListener and close() close the dgram sockets (no handle left)', async () => {
    // Sockets of the tests before are gone once libuv called their close callbacks.
    await vi.waitFor(() => expect(udpCount()).toBe(0));
    const before = 0;
    const link = new Link();
    const a = await link.addListener('udp://127.0.0.1:0');
    await link.addListener('udp://127.0.0.1:0');
    link.addConnector(a, { identity: 'bob' });
    expect(udpCount()).toBe(before + 3);
    await link.removeListener(a);
    // The handle goes at libuv's close callback, just after the socket's `close`.
    await vi.waitFor(() => expect(udpCount()).toBe(before + 2));
    await expect(link.removeListener(a)).rejects.toThrow(InvalidArgumentError);
    await link.close();
    await link.close();
    await vi.waitFor(() => expect(udpCount()).toBe(before));
    await expect(link.addListener('udp://127.0.0.1:0')).rejects.toThrow(ClosedError);
  });
});

describe('udp:// connectors', () => {
  it('need a valid identity; no TLS, no port 0, no second connector to the same URL', () => {
    const link = newLink();
    expect(() => link.addConnector('udp://127.0.0.1:9')).toThrow(InvalidOptionsError);
    expect(() => link.addConnector('udp://127.0.0.1:9', {})).toThrow(/need 'identity'/);
    expect(() => link.addConnector('udp://127.0.0.1:9', { identity: '' })).toThrow(InvalidOptionsError);
    expect(() => link.addConnector('udp://127.0.0.1:9', { identity: 'x'.repeat(51) })).toThrow(InvalidOptionsError);
    expect(() => link.addConnector('udp://127.0.0.1:9', { identity: '\ud800' })).toThrow(InvalidOptionsError);
    expect(() => link.addConnector('udp://127.0.0.1:9', { identity: 'bob', tls: {} })).toThrow(/unknown option 'tls'/);
    expect(() => link.addConnector('udp://127.0.0.1:0', { identity: 'bob' })).toThrow(InvalidArgumentError);
    expect(link.addConnector('udp://127.0.0.1:9', { identity: 'bob' })).toBe('udp://127.0.0.1:9');
    expect(() => link.addConnector('udp://127.0.0.1:9', { identity: 'carol' })).toThrow(/already exists/);
  });

  it('is a connection at once (connect event in the call), sends each datagram whole, and ends with disconnect when removed', async () => {
    const link = newLink();
    const raw = await rawSocket();
    const infos: ConnectionInfo[] = [];
    const ended: number[] = [];
    link.on('connect', (info) => infos.push(info));
    link.on('disconnect', (id, reason) => {
      expect(reason.by).toBe('local');
      ended.push(id);
    });
    const url = `udp://127.0.0.1:${raw.port}`;
    link.addConnector(url, { identity: 'bob', maxDatagramSize: 100 });
    expect(infos).toHaveLength(1);
    const info = infos[0]!;
    expect(info).toMatchObject({ side: 'connector', endpoint: url, datagram: true, identity: 'bob', maxDatagramSize: 100, remotePort: raw.port });
    expect(info.id).toBeLessThan(0);
    expect(link.connection(info.id)).toBe(info);

    const written: (Error | undefined)[] = [];
    link.sendDatagram(info.id, Buffer.alloc(100, 7), (e) => written.push(e));
    expect(() => link.sendDatagram(info.id, Buffer.alloc(101))).toThrow(DatagramTooLargeError);
    try {
      link.sendDatagram(info.id, Buffer.alloc(101));
    } catch (error) {
      expect(error).toMatchObject({ code: ErrorCode.DATAGRAM_TOO_LARGE, size: 101, limit: 100 });
    }
    await vi.waitFor(() => expect(raw.got).toHaveLength(1));
    expect(raw.got[0]).toEqual(Buffer.alloc(100, 7));
    expect(written).toEqual([undefined]);
    expect(link.datagramCounters.sent).toBe(1);

    await link.removeConnector(url);
    expect(ended).toEqual([info.id]);
    const late = await new Promise<Error | undefined>((r) => link.sendDatagram(info.id, Buffer.from('late'), r));
    expect(late?.name).toBe('UnknownConnectionError');
  });

  it('close() waits for datagrams handed to the socket', async () => {
    const link = new Link();
    const raw = await rawSocket();
    let id = 0;
    link.on('connect', (info) => (id = info.id));
    link.addConnector(`udp://127.0.0.1:${raw.port}`, { identity: 'bob' });
    let written = 0;
    for (let i = 0; i < 50; i++) link.sendDatagram(id, Buffer.from(`m${i}`), (e) => e === undefined && written++);
    await link.close();
    expect(written).toBe(50);
    await vi.waitFor(() => expect(raw.got).toHaveLength(50));
    const after = await new Promise<Error | undefined>((r) => link.sendDatagram(id, Buffer.from('x'), r));
    expect(after).toBeInstanceOf(Error);
  });

  it('goes through a Throttle both ways', async () => {
    const link = new Link();
    const throttle = new Throttle(link, { bytesPerSecond: 1_000_000 });
    open.push(throttle);
    const url = await throttle.addListener('udp://127.0.0.1:0');
    const seen: string[] = [];
    throttle.on('datagram', (_id, d) => seen.push(d.toString()));
    let id = 0;
    throttle.on('connect', (info) => (id = info.id));
    throttle.addConnector(url, { identity: 'bob' });
    throttle.sendDatagram(id, Buffer.from('through'));
    await vi.waitFor(() => expect(seen).toEqual(['through']));
  });

  it('works on IPv6 loopback (::1) when the machine has it, else on 127.0.0.1', async () => {
    const host = (await hasIPv6()) ? '::1' : '127.0.0.1';
    const shown = host.includes(':') ? `[${host}]` : host;
    const link = newLink();
    const url = await link.addListener(`udp://${shown}:0`);
    expect(url).toBe(`udp://${shown}:${portOf(url)}`);
    const seen: [string, string][] = [];
    link.on('datagram', (_id, d, address) => seen.push([d.toString(), address]));
    let id = 0;
    link.on('connect', (info) => (id = info.id));
    link.addConnector(url, { identity: 'bob' });
    link.sendDatagram(id, Buffer.from('hi'));
    await vi.waitFor(() => expect(seen).toEqual([['hi', host]]));
  });
});
