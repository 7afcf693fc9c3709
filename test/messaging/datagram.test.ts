import { Buffer } from 'node:buffer';
import dgram from 'node:dgram';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DatagramPersistentError, DatagramTooLargeError, ErrorCode } from '../../lib/errors.js';
import type { ConnectionInfo } from '../../lib/link/index.js';
import { IdentCache, MIN_DATAGRAM_SIZE, parseDatagram } from '../../lib/messaging/datagram.js';
import { certificateIdentity } from '../../lib/messaging/authorize.js';
import { Message } from '../../lib/messaging/index.js';
import { createPeer, type Peer, type PeerOptions } from '../../lib/peer/index.js';

const peers: Peer[] = [];
const sockets: dgram.Socket[] = [];

afterEach(async () => {
  await Promise.all(peers.splice(0).map((p) => p.close()));
  await Promise.all(sockets.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
});

async function peer(options: PeerOptions): Promise<Peer> {
  const p = await createPeer(options);
  peers.push(p);
  return p;
}

/** bob listens on udp://127.0.0.1:0; alice sends to him through a udp connector. */
async function pair(bobOptions: Partial<PeerOptions> = {}, maxDatagramSize?: number): Promise<{ alice: Peer; bob: Peer; url: string; port: number }> {
  const bob = await peer({ identity: 'bob', listen: 'udp://127.0.0.1:0', ...bobOptions });
  const url = bob.listening[0]!;
  const alice = await peer({ identity: 'alice' });
  alice.connect(url, { identity: 'bob', ...(maxDatagramSize === undefined ? {} : { maxDatagramSize }) });
  return { alice, bob, url, port: Number(/:(\d+)$/.exec(url)![1]) };
}

async function rawSocket(): Promise<dgram.Socket> {
  const socket = dgram.createSocket('udp4');
  sockets.push(socket);
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  return socket;
}

/** `[u32 len][frame]` */
function packet(frame: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(frame.length);
  return Buffer.concat([head, frame]);
}

function identFrame(ident: string | Buffer): Buffer {
  return Buffer.concat([Buffer.from([2]), typeof ident === 'string' ? Buffer.from(ident, 'utf8') : ident]);
}

function messageFrame(data: string, uuidByte = 1): Buffer {
  const head = Buffer.alloc(25);
  head[0] = 3;
  head.fill(uuidByte, 1, 17);
  head.writeUInt32BE(0xffffffff, 17);
  return Buffer.concat([head, Buffer.from(data)]);
}

function datagram(ident: string | Buffer, data: string): Buffer {
  return Buffer.concat([packet(identFrame(ident)), packet(messageFrame(data))]);
}

describe('datagram messaging over udp://', () => {
  it('delivers a message with the sender identity to `message`, receive hooks and iterators; delivered() settles once written', async () => {
    const { alice, bob } = await pair();
    const seen: [number, string, string][] = [];
    bob.on('message', (connId, ident, m) => seen.push([connId, ident, m.data.toString()]));
    const hooked: [string, string][] = [];
    bob.messaging.addReceiveHook('hook:', (_connId, ident, m) => hooked.push([ident, m.data.toString()]));
    const iterator = bob.messaging.messages();
    const sent: string[] = [];
    alice.on('sent', (ident, m) => sent.push(`${ident}:${m.data.toString()}`));

    const message = new Message('plain', { ttl: 30, flags: 0x10 });
    const delivery = alice.send('bob', message);
    expect(delivery.message).toBe(message);
    await delivery.delivered();
    expect(delivery.state).toBe('written');
    await delivery.persisted();
    alice.send('bob', Buffer.from('hook:taken'));

    await vi.waitFor(() => expect(seen).toHaveLength(1));
    await vi.waitFor(() => expect(hooked).toEqual([['alice', 'hook:taken']]));
    const [connId, ident, data] = seen[0]!;
    expect([ident, data]).toEqual(['alice', 'plain']);
    expect(connId).toBeLessThan(0);
    expect(bob.link.connection(connId)).toMatchObject({ side: 'listener', datagram: true });
    const first = await iterator.next();
    expect(first.value).toMatchObject({ ident: 'alice', connId });
    expect(first.value!.message.data.toString()).toBe('plain');
    expect(first.value!.message.uuid).toEqual(message.uuid);
    expect(first.value!.message.ttl).toBe(30);
    expect(first.value!.message.flags).toBe(0x10);
    await iterator.return!();
    await vi.waitFor(() => expect(sent).toEqual(['bob:plain', 'bob:hook:taken']));
    expect(bob.messaging.datagramCounters).toMatchObject({ received: 2, delivered: 2, malformed: 0 });
    expect(alice.messaging.datagramCounters).toMatchObject({ sent: 2, sendFailed: 0 });
  });

  it('keeps no queue and no connection for a udp-only identity (isConnected is false)', async () => {
    const { alice } = await pair();
    alice.send('bob', 'x');
    expect(alice.isConnected('bob')).toBe(false);
    expect(alice.messaging.connectedPeers()).toEqual([]);
    expect(alice.messaging.queueLength('bob')).toBe(0);
    expect(alice.messaging.identityCount).toBe(0);
  });

  it('refuses persistent messages with DatagramPersistentError (nothing sent)', async () => {
    const { alice, bob } = await pair();
    expect(() => alice.send('bob', new Message('keep me', { persistent: true }))).toThrow(DatagramPersistentError);
    try {
      alice.send('bob', new Message('keep me', { persistent: true }));
    } catch (error) {
      expect((error as DatagramPersistentError).code).toBe(ErrorCode.DATAGRAM_PERSISTENT);
    }
    await alice.send('bob', 'after').delivered();
    await vi.waitFor(() => expect(bob.messaging.datagramCounters.delivered).toBe(1));
    expect(alice.messaging.datagramCounters.sent).toBe(1);
  });

  it('refuses an oversize message at the call (DatagramTooLargeError); one at the limit arrives whole', async () => {
    const limit = 300;
    const { alice, bob } = await pair({}, limit);
    const got: Buffer[] = [];
    bob.on('message', (_c, _i, m) => got.push(Buffer.from(m.data)));
    // The datagram: [4][2 + 'alice'][4][25 + data].
    const room = limit - (4 + 6 + 4 + 25);
    expect(() => alice.send('bob', Buffer.alloc(room + 1, 1))).toThrow(DatagramTooLargeError);
    try {
      alice.send('bob', Buffer.alloc(room + 1, 1));
    } catch (error) {
      expect(error).toMatchObject({ code: ErrorCode.DATAGRAM_TOO_LARGE, size: limit + 1, limit });
    }
    // The default limit too: 65,507 bytes.
    const other = await peer({ identity: 'carol' });
    other.connect(bob.listening[0]!, { identity: 'bob' });
    expect(() => other.send('bob', Buffer.alloc(65_507))).toThrow(DatagramTooLargeError);
    await alice.send('bob', Buffer.alloc(room, 2)).delivered();
    await vi.waitFor(() => expect(got).toHaveLength(1));
    expect(got[0]).toEqual(Buffer.alloc(room, 2));
    expect(bob.messaging.datagramCounters).toMatchObject({ received: 1, delivered: 1 });
    expect(bob.link.datagramCounters.oversize).toBe(0);
  });

  it('drops the datagrams a listener with a smaller maxDatagramSize gets (counted), never a cut one', async () => {
    const bob = await peer({ identity: 'bob' });
    const url = await bob.listen('udp://127.0.0.1:0', { maxDatagramSize: 100 });
    const alice = await peer({ identity: 'alice' });
    alice.connect(url, { identity: 'bob' });
    const got: number[] = [];
    bob.on('message', (_c, _i, m) => got.push(m.data.length));
    alice.send('bob', Buffer.alloc(200));
    alice.send('bob', Buffer.alloc(10));
    await vi.waitFor(() => expect(got).toEqual([10]));
    expect(bob.link.datagramCounters.oversize).toBe(1);
  });

  it('counts and drops bad datagrams of every kind from a raw socket; good ones still arrive, nothing else happens', async () => {
    const { bob, port } = await pair();
    const events: string[] = [];
    bob.on('protocolError', () => events.push('protocolError'));
    bob.on('handlerError', () => events.push('handlerError'));
    bob.on('connect', () => events.push('connect'));
    const got: [string, string][] = [];
    bob.on('message', (_c, ident, m) => got.push([ident, m.data.toString()]));
    const good = datagram('mallory', 'good');
    const longIdent = packet(identFrame('x'.repeat(51)));
    const malformed: Buffer[] = [
      Buffer.alloc(0),
      Buffer.from([0, 0, 0]),
      good.subarray(0, MIN_DATAGRAM_SIZE - 1),
      good.subarray(0, good.length - 1),
      Buffer.concat([good, Buffer.from([0])]),
      Buffer.concat([good, packet(messageFrame('third'))]),
      Buffer.concat([packet(messageFrame('a')), packet(identFrame('mallory'))]),
      Buffer.concat([packet(Buffer.from([2])), packet(messageFrame('empty ident'))]),
      Buffer.concat([packet(Buffer.concat([Buffer.from([5]), Buffer.from('mallory')])), packet(messageFrame('not ident'))]),
      Buffer.concat([packet(identFrame('mallory')), packet(Buffer.concat([Buffer.from([4]), Buffer.alloc(24), Buffer.from('x')]))]),
      Buffer.concat([packet(identFrame('mallory')), packet(messageFrame('').subarray(0, 24))]),
      Buffer.concat([packet(identFrame('x'.repeat(201))), packet(messageFrame('big ident'))]),
      Buffer.from([0xff, 0xff, 0xff, 0xff, ...good.subarray(4)]),
      (() => {
        const b = Buffer.from(good);
        b.writeUInt32BE(0xffffffff, 4 + 8);
        return b;
      })(),
      (() => {
        const b = Buffer.from(good);
        b.writeUInt32BE(26, 4 + 8);
        return b;
      })(),
    ];
    const badIdentity: Buffer[] = [
      datagram(Buffer.from([0xc3, 0x28]), 'bad utf8'),
      datagram(Buffer.from([0xed, 0xa0, 0x80]), 'surrogate'),
      Buffer.concat([longIdent, packet(messageFrame('51 chars'))]),
      datagram('bob', 'my own identity'),
    ];
    const raw = await rawSocket();
    for (const d of [...malformed, ...badIdentity]) raw.send(d, port, '127.0.0.1');
    raw.send(good, port, '127.0.0.1');
    await vi.waitFor(() => expect(got).toEqual([['mallory', 'good']]));
    await vi.waitFor(() => expect(bob.messaging.datagramCounters.received).toBe(malformed.length + badIdentity.length + 1));
    expect(bob.messaging.datagramCounters).toMatchObject({ malformed: malformed.length, badIdentity: badIdentity.length, delivered: 1 });
    expect(events).toEqual([]);
    // The listener goes on.
    raw.send(datagram('trent', 'still here'), port, '127.0.0.1');
    await vi.waitFor(() => expect(got).toContainEqual(['trent', 'still here']));
  });

  it('parseDatagram refuses the datagram truncated at every offset, and both halves split at every offset', () => {
    const good = datagram('alice', 'hello, world');
    expect(parseDatagram(good)).toEqual({ ident: 'alice', start: 4 + 6 + 4 });
    for (let i = 0; i < good.length; i++) {
      const head = good.subarray(0, i);
      const tail = good.subarray(i);
      expect(parseDatagram(head), `prefix ${i}`).toBe('malformed');
      if (i > 0) expect(parseDatagram(tail), `suffix ${i}`).toBe('malformed');
    }
    // The identity cache (one sender's datagrams in a row) never lets another identity or bad bytes through.
    const cache = new IdentCache();
    expect(parseDatagram(good, cache)).toMatchObject({ ident: 'alice' });
    expect(parseDatagram(good, cache)).toMatchObject({ ident: 'alice' });
    expect(parseDatagram(datagram('alicf', 'x'), cache)).toMatchObject({ ident: 'alicf' });
    expect(parseDatagram(datagram('alic', 'x'), cache)).toMatchObject({ ident: 'alic' });
    expect(parseDatagram(datagram(Buffer.from([0x61, 0x6c, 0x69, 0xc3]), 'x'), cache)).toBe('identity');
    expect(parseDatagram(good, cache)).toMatchObject({ ident: 'alice' });
    // Every single length byte changed breaks the framing.
    for (const at of [0, 1, 2, 3, 10, 11, 12, 13]) {
      const b = Buffer.from(good);
      b[at]! ^= 0x01;
      expect(parseDatagram(b), `byte ${at}`).toBe('malformed');
    }
  });

  it('gives authorize each datagram’s source as a datagram ConnectionInfo; refused ones are counted and dropped', async () => {
    const seen: [string, ConnectionInfo][] = [];
    const { alice, bob, port } = await pair({
      messaging: {
        authorize: (ident, info) => {
          seen.push([ident, info]);
          if (ident === 'thrower') throw new Error('policy bug');
          return ident === 'alice';
        },
      },
    });
    const got: string[] = [];
    bob.on('message', (_c, ident) => got.push(ident));
    const raw = await rawSocket();
    raw.send(datagram('mallory', 'x'), port, '127.0.0.1');
    raw.send(datagram('thrower', 'x'), port, '127.0.0.1');
    await vi.waitFor(() => expect(bob.messaging.datagramCounters.unauthorized).toBe(2));
    alice.send('bob', 'ok');
    await vi.waitFor(() => expect(got).toEqual(['alice']));
    const info = seen.find(([ident]) => ident === 'mallory')![1];
    expect(info).toMatchObject({ side: 'listener', datagram: true, remoteAddress: '127.0.0.1', remotePort: raw.address().port, endpoint: bob.listening[0] });
    expect(info.tls).toBeUndefined();
  });

  it('certificateIdentity() refuses every datagram (an identity in a datagram is an unauthenticated claim)', async () => {
    const { alice, bob } = await pair({ messaging: { authorize: certificateIdentity() } });
    const got: string[] = [];
    bob.on('message', (_c, ident) => got.push(ident));
    await alice.send('bob', 'claim').delivered();
    await vi.waitFor(() => expect(bob.messaging.datagramCounters.unauthorized).toBe(1));
    expect(got).toEqual([]);
  });

  it('a datagram claiming an identity connected over a stream keeps its own (datagram) connection id', async () => {
    const bob = await peer({ identity: 'bob', listen: ['tcp://127.0.0.1:0', 'udp://127.0.0.1:0'] });
    const [tcpUrl, udpUrl] = bob.listening;
    const alice = await peer({ identity: 'alice', connect: tcpUrl! });
    await vi.waitFor(() => expect(bob.isConnected('alice')).toBe(true));
    const got: [number, string][] = [];
    bob.on('message', (connId, _ident, m) => got.push([connId, m.data.toString()]));
    alice.send('bob', 'stream');
    await vi.waitFor(() => expect(got).toHaveLength(1));
    const raw = await rawSocket();
    raw.send(datagram('alice', 'forged'), Number(/:(\d+)$/.exec(udpUrl!)![1]), '127.0.0.1');
    await vi.waitFor(() => expect(got).toHaveLength(2));
    const [stream, forged] = got;
    expect(stream![1]).toBe('stream');
    expect(forged![1]).toBe('forged');
    expect(forged![0]).not.toBe(stream![0]);
    expect(bob.link.connection(forged![0])?.datagram).toBe(true);
    expect(bob.link.connection(stream![0])?.datagram).toBeUndefined();
  });

  it('removing the udp connector ends the datagram route (messages queue for a stream connection again)', async () => {
    const { alice, url } = await pair();
    await alice.disconnect(url);
    alice.send('bob', 'queued');
    expect(alice.messaging.queueLength('bob')).toBe(1);
  });

  it('peer.close() closes its dgram sockets (no handle left) and settles what was sent', async () => {
    const udpCount = () => process.getActiveResourcesInfo().filter((r) => r === 'UDPWrap').length;
    await vi.waitFor(() => expect(udpCount()).toBe(0));
    const { alice, bob } = await pair();
    expect(udpCount()).toBe(2);
    const deliveries = Array.from({ length: 20 }, (_, i) => alice.send('bob', `m${i}`));
    await alice.close();
    await Promise.all(deliveries.map((d) => d.delivered()));
    expect(() => alice.send('bob', 'late')).toThrow(/closed/);
    await bob.close();
    await vi.waitFor(() => expect(udpCount()).toBe(0));
  });

  it('createPeer takes udp:// listen and connect specs with their options, and refuses bad ones up front', async () => {
    const bob = await peer({ identity: 'bob', listen: { url: 'udp://127.0.0.1:0', options: { maxDatagramSize: 1000 } } });
    const alice = await peer({ identity: 'alice', connect: { url: bob.listening[0]!, options: { identity: 'bob', maxDatagramSize: 500 } } });
    const got: string[] = [];
    bob.on('message', (_c, ident, m) => got.push(`${ident}:${m.data.toString()}`));
    expect(() => alice.send('bob', Buffer.alloc(500))).toThrow(DatagramTooLargeError);
    alice.send('bob', 'spec');
    await vi.waitFor(() => expect(got).toEqual(['alice:spec']));
    await expect(createPeer({ identity: 'carol', connect: 'udp://127.0.0.1:9' })).rejects.toThrow(/need 'identity'/);
    await expect(createPeer({ identity: 'carol', connect: { url: 'udp://127.0.0.1:9', options: { identity: 'bob', reconnectInterval: 5 } } })).rejects.toThrow(
      /unknown option 'reconnectInterval'/,
    );
    await expect(createPeer({ identity: 'carol', listen: { url: 'udp://127.0.0.1:0', options: { backlog: 5 } } })).rejects.toThrow(/unknown option 'backlog'/);
  });
});
