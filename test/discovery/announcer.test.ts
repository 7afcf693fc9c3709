import { createSocket, type Socket } from 'node:dgram';
import type { NetworkInterfaceInfo } from 'node:os';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { decodeAnnouncement, MAX_ENDPOINTS, SUPPORTED_MESSAGE_VERSION, type Announcement } from '../../lib/discovery/announcement.js';
import { Announcer, BROADCAST_ADDRESS, type AnnouncedPeer, type AnnouncerOptions, type AnnouncerSocket } from '../../lib/discovery/announcer.js';
import { discoveryConfig } from '../../lib/discovery/config.js';
import { announcedEndpoints, type NetworkInterfaces } from '../../lib/discovery/endpoints.js';
import { AnnouncementError, ConfigError, ConnectionError, InvalidOptionsError } from '../../lib/errors.js';
import { createPeer } from '../../lib/peer/index.js';

/** Records what the announcer does with its socket; never sends anything. */
class FakeSocket implements AnnouncerSocket {
  readonly calls: unknown[][] = [];
  readonly sends: { port: number; address: string; data: Uint8Array }[] = [];
  sendError: Error | null = null;
  sendThrows: Error | null = null;
  bindError: Error | null = null;
  interfaceError: Error | null = null;
  closed = false;
  #onError: ((e: Error) => void)[] = [];
  constructor(readonly type: 'udp4' | 'udp6') {}
  bind(port: number, callback: () => void): void {
    this.calls.push(['bind', port]);
    queueMicrotask(() => (this.bindError ? this.emitError(this.bindError) : callback()));
  }
  setMulticastTTL(ttl: number): void {
    this.calls.push(['setMulticastTTL', ttl]);
  }
  setMulticastInterface(address: string): void {
    this.calls.push(['setMulticastInterface', address]);
    if (this.interfaceError) throw this.interfaceError;
  }
  setMulticastLoopback(flag: boolean): void {
    this.calls.push(['setMulticastLoopback', flag]);
  }
  setBroadcast(flag: boolean): void {
    this.calls.push(['setBroadcast', flag]);
  }
  send(data: Uint8Array, port: number, address: string, callback: (error: Error | null) => void): void {
    if (this.closed) throw new Error('Not running');
    if (this.sendThrows) throw this.sendThrows;
    this.sends.push({ port, address, data });
    const err = this.sendError;
    queueMicrotask(() => callback(err));
  }
  close(callback?: () => void): void {
    if (this.closed) throw new Error('Not running');
    this.closed = true;
    this.calls.push(['close']);
    queueMicrotask(() => callback?.());
  }
  unref(): void {
    this.calls.push(['unref']);
  }
  on(_event: 'error', listener: (error: Error) => void): void {
    this.#onError.push(listener);
  }
  emitError(e: Error): void {
    for (const l of this.#onError) l(e);
  }
  /** The calls that set socket options. */
  get options(): unknown[][] {
    return this.calls.filter((c) => c[0] !== 'bind' && c[0] !== 'unref' && c[0] !== 'close');
  }
}

function fakes(): { sockets: FakeSocket[]; createSocket: (type: 'udp4' | 'udp6') => FakeSocket } {
  const sockets: FakeSocket[] = [];
  return {
    sockets,
    createSocket: (type) => {
      const s = new FakeSocket(type);
      sockets.push(s);
      return s;
    },
  };
}

function fakePeer(listening = ['tcp://192.0.2.7:4000']): AnnouncedPeer & { listening: string[]; closed: boolean } {
  return { listening, closed: false, messaging: { identity: 'radar-1' } };
}

const config = discoveryConfig({}, {});
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));
const open: Announcer[] = [];

async function start(peer: AnnouncedPeer, options: AnnouncerOptions): Promise<Announcer> {
  const a = await Announcer.start(peer, { config, ...options });
  open.push(a);
  return a;
}

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(open.splice(0).map((a) => a.close()));
});

const info = (address: string, family: 'IPv4' | 'IPv6', internal = false): NetworkInterfaceInfo =>
  ({ address, family, internal, netmask: '', mac: '00:00:00:00:00:00', cidr: null, scopeid: 0 }) as NetworkInterfaceInfo;

describe('announcedEndpoints', () => {
  const interfaces: NetworkInterfaces = {
    lo: [info('127.0.0.1', 'IPv4', true), info('::1', 'IPv6', true)],
    eth0: [info('192.168.1.7', 'IPv4'), info('fe80::1', 'IPv6'), info('2001:db8::7', 'IPv6')],
    wlan0: [info('10.0.0.5', 'IPv4')],
  };

  it('replaces 0.0.0.0 with every non-loopback IPv4 address, :: with IPv4 then IPv6 ones (no link-local)', () => {
    expect(announcedEndpoints(['tcp://0.0.0.0:4000'], interfaces)).toEqual(['tcp://192.168.1.7:4000', 'tcp://10.0.0.5:4000']);
    expect(announcedEndpoints(['tls://[::]:4001'], interfaces)).toEqual(['tls://192.168.1.7:4001', 'tls://10.0.0.5:4001', 'tls://[2001:db8::7]:4001']);
  });

  it('keeps hosts and unix:// endpoints, in order, without duplicates', () => {
    expect(announcedEndpoints(['tcp://127.0.0.1:1', 'unix:///tmp/radar.sock', 'tcp://0.0.0.0:2', 'tcp://10.0.0.5:2', 'tcp://[::1]:3'], interfaces)).toEqual([
      'tcp://127.0.0.1:1',
      'unix:///tmp/radar.sock',
      'tcp://192.168.1.7:2',
      'tcp://10.0.0.5:2',
      'tcp://[::1]:3',
    ]);
  });

  it('falls back to the loopback addresses on a machine without network', () => {
    const lo = { lo: interfaces.lo! };
    expect(announcedEndpoints(['tcp://0.0.0.0:4000'], lo)).toEqual(['tcp://127.0.0.1:4000']);
    expect(announcedEndpoints(['tcp://[::]:4000'], lo)).toEqual(['tcp://127.0.0.1:4000', 'tcp://[::1]:4000']);
    expect(announcedEndpoints(['tcp://0.0.0.0:4000'], {})).toEqual([]);
  });

  it(`is cut at MAX_ENDPOINTS (${MAX_ENDPOINTS})`, () => {
    const many: NetworkInterfaces = { eth0: Array.from({ length: 20 }, (_, i) => info(`10.0.0.${i + 1}`, 'IPv4')) };
    const out = announcedEndpoints(['tcp://0.0.0.0:1'], many);
    expect(out).toHaveLength(MAX_ENDPOINTS);
    expect(out[0]).toBe('tcp://10.0.0.1:1');
  });

  it('reads os.networkInterfaces() by default', () => {
    const out = announcedEndpoints(['tcp://0.0.0.0:1']);
    expect(out.length).toBeGreaterThan(0);
    for (const e of out) expect(e).not.toContain('0.0.0.0');
  });
});

describe('Announcer socket options (fake socket: nothing is sent)', () => {
  it('multicast: udp4, TTL, loopback on, to the config’s group and port', async () => {
    const f = fakes();
    const a = await start(fakePeer(), { services: ['radar'], createSocket: f.createSocket });
    expect(f.sockets.map((s) => s.type)).toEqual(['udp4']);
    const s = f.sockets[0]!;
    expect(s.calls.slice(0, 2)).toEqual([['bind', 0], ['unref']]);
    expect(s.options).toEqual([
      ['setMulticastTTL', 31],
      ['setMulticastLoopback', true],
    ]);
    expect(s.sends.map((x) => [x.address, x.port])).toEqual([['225.0.0.212', 21200]]);
    expect(a.multicast).toBe(true);
    expect(a.targets).toEqual([{ host: '225.0.0.212', port: 21200 }]);
  });

  it('multicast options win over the config; the config’s interface is used', async () => {
    const f = fakes();
    await start(fakePeer(), {
      services: ['radar'],
      createSocket: f.createSocket,
      multicast: { group: '239.1.2.3', port: 30000, ttl: 1, interface: '192.168.1.7', loopback: false },
    });
    expect(f.sockets[0]!.options).toEqual([
      ['setMulticastTTL', 1],
      ['setMulticastInterface', '192.168.1.7'],
      ['setMulticastLoopback', false],
    ]);
    expect(f.sockets[0]!.sends.map((x) => [x.address, x.port])).toEqual([['239.1.2.3', 30000]]);

    const g = fakes();
    const cfg = discoveryConfig({}, { SNAKEMQ_MC_INTERFACE: '10.0.0.5', SNAKEMQ_MC_TTL: '4', SNAKEMQ_MC_PORT: '21300' });
    await start(fakePeer(), { services: ['radar'], createSocket: g.createSocket, config: cfg });
    expect(g.sockets[0]!.options).toEqual([
      ['setMulticastTTL', 4],
      ['setMulticastInterface', '10.0.0.5'],
      ['setMulticastLoopback', true],
    ]);
    expect(g.sockets[0]!.sends[0]!.port).toBe(21300);
  });

  it('a broadcast group (0.0.0.0 or 255.255.255.255) sends to 255.255.255.255 with SO_BROADCAST', async () => {
    for (const group of ['0.0.0.0', '255.255.255.255']) {
      const f = fakes();
      await start(fakePeer(), { services: ['radar'], createSocket: f.createSocket, multicast: { group } });
      expect(f.sockets[0]!.options).toEqual([['setBroadcast', true]]);
      expect(f.sockets[0]!.sends.map((x) => [x.address, x.port])).toEqual([[BROADCAST_ADDRESS, 21200]]);
    }
  });

  it('targets: unicast to each, no multicast option set, a udp6 socket for IPv6 targets', async () => {
    const f = fakes();
    const a = await start(fakePeer(), {
      services: ['radar'],
      createSocket: f.createSocket,
      targets: [
        { host: '192.0.2.1', port: 21200 },
        { host: 'ns.example', port: 21201 },
        { host: '2001:db8::1', port: 21202 },
      ],
    });
    expect(a.multicast).toBe(false);
    expect(f.sockets.map((s) => s.type)).toEqual(['udp4', 'udp6']);
    for (const s of f.sockets) expect(s.options).toEqual([]);
    expect(f.sockets[0]!.sends.map((x) => [x.address, x.port])).toEqual([
      ['192.0.2.1', 21200],
      ['ns.example', 21201],
    ]);
    expect(f.sockets[1]!.sends.map((x) => [x.address, x.port])).toEqual([['2001:db8::1', 21202]]);
  });

  it('a real dgram socket takes these options once bound (its send replaced: nothing goes out)', async () => {
    const real: Socket[] = [];
    const wrap = (type: 'udp4' | 'udp6'): AnnouncerSocket => {
      const s = createSocket(type);
      real.push(s);
      return {
        bind: (port, cb) => s.bind(port, cb),
        setMulticastTTL: (ttl) => s.setMulticastTTL(ttl),
        setMulticastInterface: (address) => s.setMulticastInterface(address),
        setMulticastLoopback: (flag) => s.setMulticastLoopback(flag),
        setBroadcast: (flag) => s.setBroadcast(flag),
        send: (_data, _port, _address, cb) => queueMicrotask(() => cb(null)),
        close: (cb) => s.close(cb),
        unref: () => s.unref(),
        on: (event, listener) => s.on(event, listener),
      };
    };
    const a = await start(fakePeer(), { services: ['radar'], createSocket: wrap, multicast: { ttl: 0, interface: '127.0.0.1' } });
    expect(real).toHaveLength(1);
    await a.close();
    expect(() => real[0]!.address()).toThrow(); // closed
  });

  it('a multicast interface that cannot be used: ConfigError, socket closed', async () => {
    const f = fakes();
    const createSocket = (type: 'udp4' | 'udp6') => {
      const s = f.createSocket(type);
      s.interfaceError = Object.assign(new Error('setMulticastInterface EADDRNOTAVAIL'), { code: 'EADDRNOTAVAIL' });
      return s;
    };
    await expect(start(fakePeer(), { services: ['radar'], createSocket, multicast: { interface: '10.9.9.9' } })).rejects.toThrow(ConfigError);
    expect(f.sockets[0]!.closed).toBe(true);
    expect(f.sockets[0]!.sends).toEqual([]);
  });

  it('a socket that cannot bind: ConnectionError', async () => {
    const f = fakes();
    const createSocket = (type: 'udp4' | 'udp6') => {
      const s = f.createSocket(type);
      s.bindError = new Error('bind EACCES');
      return s;
    };
    await expect(start(fakePeer(), { services: ['radar'], createSocket })).rejects.toThrow(ConnectionError);
    await flush();
    expect(f.sockets[0]!.closed).toBe(true);
  });
});

describe('Announcer', () => {
  it('announces identity, endpoints and services at once and every interval (one unref’d timer), until close', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'setTimeout', 'clearTimeout', 'Date'] });
    const f = fakes();
    const a = await start(fakePeer(), { services: ['radar', 'weather'], interval: 5000, createSocket: f.createSocket });
    const s = f.sockets[0]!;
    expect(s.sends).toHaveLength(1);
    const got = decodeAnnouncement(s.sends[0]!.data);
    expect(got).toEqual({ identity: 'radar-1', endpoints: ['tcp://192.0.2.7:4000'], services: ['radar', 'weather'], version: SUPPORTED_MESSAGE_VERSION });
    expect(a.announcement).toEqual(got);
    expect(a.bytes).toBe(s.sends[0]!.data.byteLength);
    vi.advanceTimersByTime(4999);
    expect(s.sends).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(s.sends).toHaveLength(2);
    vi.advanceTimersByTime(10_000);
    expect(s.sends).toHaveLength(4);
    await flush();
    expect(a.datagramsSent).toBe(4);
    expect(vi.getTimerCount()).toBe(1);
    await a.close();
    await a.close();
    expect(s.closed).toBe(true);
    vi.advanceTimersByTime(20_000);
    expect(s.sends).toHaveLength(4);
    expect(vi.getTimerCount()).toBe(0);
    expect(a.closed).toBe(true);
  });

  it('uses the config’s interval by default, and the identity / endpoints / version given', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const f = fakes();
    const cfg = discoveryConfig({}, { SNAKEMQ_ANNOUNCE_INTERVAL: '0.5' });
    const a = await start(fakePeer(), {
      services: ['radar'],
      identity: 'other',
      endpoints: ['tcp://192.0.2.9:1'],
      version: 'v1.01',
      config: cfg,
      createSocket: f.createSocket,
    });
    expect(a.interval).toBe(500);
    vi.advanceTimersByTime(1000);
    expect(f.sockets[0]!.sends).toHaveLength(3);
    expect(decodeAnnouncement(f.sockets[0]!.sends[2]!.data)).toEqual({
      identity: 'other',
      endpoints: ['tcp://192.0.2.9:1'],
      services: ['radar'],
      version: 'v1.01',
    });
  });

  it('re-encodes when the peer’s listeners change; refresh() on demand', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const f = fakes();
    const peer = fakePeer();
    const a = await start(peer, { services: ['radar'], interval: 1000, createSocket: f.createSocket });
    const refreshed: Announcement[] = [];
    a.on('refreshed', (x) => refreshed.push(x));
    peer.listening = [...peer.listening, 'tcp://192.0.2.7:4001'];
    vi.advanceTimersByTime(1000);
    const s = f.sockets[0]!;
    expect(decodeAnnouncement(s.sends[1]!.data).endpoints).toEqual(['tcp://192.0.2.7:4000', 'tcp://192.0.2.7:4001']);
    expect(refreshed).toHaveLength(1);
    vi.advanceTimersByTime(1000);
    expect(refreshed).toHaveLength(1); // unchanged: not encoded again
    expect(a.refresh().endpoints).toEqual(['tcp://192.0.2.7:4000', 'tcp://192.0.2.7:4001']);
    expect(refreshed).toHaveLength(2);

    // A change the announcement cannot take: refreshFailed, the previous one goes on.
    const failed: Error[] = [];
    a.on('refreshFailed', (e) => failed.push(e));
    peer.listening = [];
    vi.advanceTimersByTime(2000);
    expect(failed).toHaveLength(1);
    expect(failed[0]).toBeInstanceOf(AnnouncementError);
    expect(decodeAnnouncement(s.sends.at(-1)!.data).endpoints).toHaveLength(2);
    expect(() => a.refresh()).toThrow(AnnouncementError);
  });

  it('stops by itself when the peer closes', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const f = fakes();
    const peer = fakePeer();
    const a = await start(peer, { services: ['radar'], interval: 1000, createSocket: f.createSocket });
    const closed = new Promise<void>((resolve) => a.once('close', resolve));
    peer.closed = true;
    vi.advanceTimersByTime(1000);
    await closed;
    expect(a.closed).toBe(true);
    expect(f.sockets[0]!.closed).toBe(true);
    expect(f.sockets[0]!.sends).toHaveLength(1);
  });

  it('send errors are counted events, never throws; no error event', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const f = fakes();
    const a = await start(fakePeer(), { services: ['radar'], interval: 1000, createSocket: f.createSocket, targets: [{ host: '192.0.2.1', port: 9 }] });
    const errors: [Error, unknown][] = [];
    a.on('sendError', (e, t) => errors.push([e, t]));
    const s = f.sockets[0]!;
    s.sendError = Object.assign(new Error('send ENETUNREACH'), { code: 'ENETUNREACH' });
    vi.advanceTimersByTime(1000);
    await flush();
    s.sendError = null;
    s.sendThrows = new Error('bad argument');
    vi.advanceTimersByTime(1000);
    s.emitError(new Error('socket trouble'));
    s.sendThrows = null;
    vi.advanceTimersByTime(1000);
    await flush();
    expect(errors.map(([e, t]) => [e.message, t])).toEqual([
      ['send ENETUNREACH', { host: '192.0.2.1', port: 9 }],
      ['bad argument', { host: '192.0.2.1', port: 9 }],
      ['socket trouble', null],
    ]);
    expect(a.sendErrors).toBe(3);
    expect(a.datagramsSent).toBe(2);
    expect(a.listenerCount('error' as never)).toBe(0);
  });

  it('refuses at the call: a too-long announcement (AnnouncementError, no socket opened), bad or unknown options', async () => {
    const f = fakes();
    const peer = fakePeer();
    const aliases = Array.from({ length: 10 }, (_, i) => `alias-${i}-${'x'.repeat(80)}`);
    await expect(Announcer.start(peer, { services: ['radar', ...aliases], config, createSocket: f.createSocket })).rejects.toThrow(AnnouncementError);
    await expect(Announcer.start(peer, { services: ['radar', ...aliases], config, createSocket: f.createSocket })).rejects.toThrow(/over the 1024/);
    // A larger maxBytes lets it through.
    open.push(await Announcer.start(peer, { services: ['radar', ...aliases], maxBytes: 4096, config, createSocket: f.createSocket }));
    expect(f.sockets).toHaveLength(1);
    await expect(Announcer.start(fakePeer([]), { services: ['radar'], config, createSocket: f.createSocket })).rejects.toThrow(AnnouncementError);
    await expect(Announcer.start(peer, { services: ['has space'], config, createSocket: f.createSocket })).rejects.toThrow(AnnouncementError);
    await expect(Announcer.start(peer, { services: ['radar'], intervall: 5 } as never)).rejects.toThrow(InvalidOptionsError);
    await expect(Announcer.start(peer, {} as never)).rejects.toThrow(/'services'.*required/);
    await expect(Announcer.start(peer, { services: ['radar'], interval: 1, config })).rejects.toThrow(InvalidOptionsError);
    await expect(Announcer.start(peer, { services: ['radar'], targets: [{ host: 'x', port: 0 }], config })).rejects.toThrow(InvalidOptionsError);
    await expect(Announcer.start(peer, { services: ['radar'], multicast: { group: '10.0.0.1' }, config })).rejects.toThrow(InvalidOptionsError);
    await expect(Announcer.start(peer, { services: ['radar'], targets: [], config })).rejects.toThrow(/non-empty/);
    await expect(Announcer.start(peer, { services: ['radar'], targets: [{ host: '192.0.2.1', port: 1 }], multicast: {}, config })).rejects.toThrow(/exclusive/);
    await expect(Announcer.start(peer, { services: ['radar'], multicast: { ttl: 1, tll: 2 } as never, config })).rejects.toThrow(/unknown option 'tll'/);
    await expect(Announcer.start(peer, { services: ['radar'], config: { multicastPort: 0 } })).rejects.toThrow(/multicastPort/);
    expect(f.sockets).toHaveLength(1);
  });

  it('a partial config is completed with the defaults', async () => {
    const f = fakes();
    await start(fakePeer(), { services: ['radar'], config: { multicastPort: 21300 }, createSocket: f.createSocket });
    expect(f.sockets[0]!.sends.map((x) => [x.address, x.port])).toEqual([['225.0.0.212', 21300]]);
  });

  it('the default config comes from the environment: a malformed variable rejects with ConfigError', async () => {
    const saved = process.env.SNAKEMQ_MC_PORT;
    process.env.SNAKEMQ_MC_PORT = 'x';
    try {
      await expect(Announcer.start(fakePeer(), { services: ['radar'], createSocket: fakes().createSocket })).rejects.toThrow(/SNAKEMQ_MC_PORT/);
    } finally {
      if (saved === undefined) delete process.env.SNAKEMQ_MC_PORT;
      else process.env.SNAKEMQ_MC_PORT = saved;
    }
  });
});

describe('Announcer over real UDP (unicast to 127.0.0.1)', () => {
  it('a peer’s announcements reach a UDP socket, every interval, and stop on close', async () => {
    const receiver: Socket = createSocket('udp4');
    await new Promise<void>((resolve) => receiver.bind(0, '127.0.0.1', resolve));
    const { port } = receiver.address();
    const received: Announcement[] = [];
    const arrivals: number[] = [];
    let waiter: { n: number; resolve: () => void } | null = null;
    let sentinel: (() => void) | null = null;
    receiver.on('message', (msg) => {
      if (msg.toString() === 'sentinel') return sentinel?.();
      received.push(decodeAnnouncement(msg));
      arrivals.push(performance.now());
      if (waiter && received.length >= waiter.n) waiter.resolve();
    });
    const nth = (n: number) => new Promise<void>((resolve) => (received.length >= n ? resolve() : (waiter = { n, resolve })));

    await using peer = await createPeer({ identity: 'radar-1', listen: 'tcp://127.0.0.1:0' });
    try {
      const a = await Announcer.start(peer, { services: ['radar', 'weather'], interval: 40, targets: [{ host: '127.0.0.1', port }], config });
      await nth(3);
      expect(received[0]).toEqual({ identity: 'radar-1', endpoints: peer.listening, services: ['radar', 'weather'], version: SUPPORTED_MESSAGE_VERSION });
      expect(peer.listening[0]).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
      // The first at once, then one per interval (timers fire no earlier than their time).
      expect(arrivals[2]! - arrivals[0]!).toBeGreaterThanOrEqual(2 * 40 - 5);

      await a.close();
      const sent = a.datagramsSent;
      expect(sent).toBeGreaterThanOrEqual(3);
      // Whatever was sent before close arrives before a later datagram on loopback: nothing after it.
      const sender = createSocket('udp4');
      await new Promise<void>((resolve) => {
        sentinel = resolve;
        sender.send('sentinel', port, '127.0.0.1');
      });
      sender.close();
      expect(received.length).toBeLessThanOrEqual(sent);
      expect(a.datagramsSent).toBe(sent);
    } finally {
      receiver.close();
    }
  });
});
