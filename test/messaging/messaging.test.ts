import { afterEach, describe, expect, it, vi } from 'vitest';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Message, FLAG_PERSISTENT } from '../../lib/messaging/index.js';
import {
  DuplicateIdentityError,
  IncompatibleProtocolError,
  InvalidArgumentError,
  KeepaliveTimeoutError,
  MessageExpiredError,
  NotIdentifiedError,
  PacketTooLargeError,
  ProtocolError,
  QueueFullError,
  type SnakeMQError,
} from '../../lib/errors.js';
import { closeAllPeers, collect, connectPair, createPeer, fastReconnect, waitEvent, type TestPeer } from '../helpers/peers.js';
import { PlainPeer } from '../helpers/plain-peer.js';

const fixtures = join(import.meta.dirname, '..', 'fixtures', 'tls');
const plainPeers: PlainPeer[] = [];
afterEach(async () => {
  for (const p of plainPeers.splice(0)) p.close();
  await closeAllPeers();
});

function portOf(url: string): number {
  return Number(new URL(url).port);
}

async function exchange(bob: TestPeer, alice: TestPeer): Promise<void> {
  const atAlice = collect(alice.messaging, 3);
  const atBob = collect(bob.messaging, 3);
  for (let i = 0; i < 3; i++) {
    bob.messaging.send('alice', new Message(`b${i}`));
    alice.messaging.send('bob', new Message(`a${i}`));
  }
  expect((await atAlice).map((m) => `${m.ident}:${m.data}`)).toEqual(['bob:b0', 'bob:b1', 'bob:b2']);
  expect((await atBob).map((m) => `${m.ident}:${m.data}`)).toEqual(['alice:a0', 'alice:a1', 'alice:a2']);
}

describe('Messaging over real sockets', () => {
  it('bob listens, alice connects: messages both ways over TCP', async () => {
    const bob = createPeer('bob');
    const alice = createPeer('alice');
    await connectPair(bob, alice);
    await exchange(bob, alice);
  });

  it('alice listens, bob connects: the roles do not matter', async () => {
    const bob = createPeer('bob');
    const alice = createPeer('alice');
    await connectPair(alice, bob);
    await exchange(bob, alice);
  });

  it('the listener sends first to a peer that connected to it (the NAT case)', async () => {
    const pub = createPeer('public');
    const natted = createPeer('natted');
    await connectPair(pub, natted);
    const got = collect(natted.messaging, 1);
    pub.messaging.send('natted', new Message('hello from the public side'));
    expect((await got)[0]).toMatchObject({ ident: 'public', data: 'hello from the public side' });
  });

  it('messages sent before the peer connects wait for it, in order', async () => {
    const bob = createPeer('bob');
    const alice = createPeer('alice');
    for (let i = 0; i < 100; i++) bob.messaging.send('alice', new Message(`m${i}`));
    const got = collect(alice.messaging, 100);
    await connectPair(bob, alice);
    expect((await got).map((m) => m.data)).toEqual(Array.from({ length: 100 }, (_, i) => `m${i}`));
  });

  it('over mutual TLS', async () => {
    const [ca, bobCert, bobKey, aliceCert, aliceKey] = await Promise.all(
      ['ca.pem', 'bob.pem', 'bob-key.pem', 'alice.pem', 'alice-key.pem'].map((f) => readFile(join(fixtures, f))),
    );
    const bob = createPeer('bob');
    const alice = createPeer('alice');
    await connectPair(
      bob,
      alice,
      'tls://127.0.0.1:0',
      { tls: { ca, cert: bobCert, key: bobKey, requestCert: true, rejectUnauthorized: true } },
      { ...fastReconnect, tls: { ca, cert: aliceCert, key: aliceKey, servername: 'localhost' } },
    );
    await exchange(bob, alice);
  });

  it('over a Unix socket and the abstract namespace', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'smq-'));
    try {
      for (const endpoint of [`unix://${join(dir, 'bob.sock')}`, `unix://@smq-test-${randomBytes(6).toString('hex')}`]) {
        const bob = createPeer('bob');
        const alice = createPeer('alice');
        await connectPair(bob, alice, endpoint);
        await exchange(bob, alice);
        await Promise.all([bob.close(), alice.close()]);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a listener that goes away and comes back: the connector reconnects and queued messages arrive in order', async () => {
    const bob = createPeer('bob');
    const alice = createPeer('alice');
    const url = await connectPair(bob, alice);
    const gone = waitEvent(alice.messaging, 'disconnect');
    await bob.close();
    await gone;
    for (let i = 0; i < 500; i++) alice.messaging.send('bob', new Message(`q${i}`));
    const bob2 = createPeer('bob');
    const got = collect(bob2.messaging, 500);
    await bob2.link.addListener(url);
    expect((await got).map((m) => m.data)).toEqual(Array.from({ length: 500 }, (_, i) => `q${i}`));
  });

  it('a second peer with an identity already connected is refused', async () => {
    const bob = createPeer('bob');
    const alice = createPeer('alice');
    const url = await connectPair(bob, alice);
    const errors: SnakeMQError[] = [];
    bob.messaging.on('protocolError', (_c, e) => errors.push(e));
    const impostor = await PlainPeer.connect(portOf(url), 'alice');
    plainPeers.push(impostor);
    await impostor.until(() => impostor.closed);
    expect(errors[0]).toBeInstanceOf(DuplicateIdentityError);
    expect(errors[0]!.code).toBe('SMQ_ERR_DUPLICATE_IDENTITY');
    await exchange(bob, alice);
  });

  it('cuts identities to 50 characters', async () => {
    const long = 'x'.repeat(60);
    const bob = createPeer('bob');
    const peer = createPeer(long);
    expect(peer.messaging.identity).toBe('x'.repeat(50));
    const seen = waitEvent<[number, string]>(bob.messaging, 'connect');
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    peer.link.addConnector(url, fastReconnect);
    expect((await seen)[1]).toBe('x'.repeat(50));
  });

  it('answers another protocol version with INCOMPATIBLE_PROTOCOL and closes', async () => {
    const bob = createPeer('bob');
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const error = waitEvent<[number, SnakeMQError]>(bob.messaging, 'protocolError');
    const peer = await PlainPeer.connect(portOf(url), 'old', { handshake: false });
    plainPeers.push(peer);
    peer.sendFrame(0, Buffer.from([0, 0, 0, 2]));
    await peer.until(() => peer.closed);
    expect((await error)[1]).toBeInstanceOf(IncompatibleProtocolError);
    expect(peer.frames.map((f) => f.type)).toContain(1);
  });

  it('keepalive closes a peer that stopped answering', async () => {
    const bob = createPeer('bob', { keepaliveInterval: 100, keepaliveWait: 100 });
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const error = waitEvent<[number, SnakeMQError]>(bob.messaging, 'protocolError');
    const peer = await PlainPeer.connect(portOf(url), 'silent', { answerPing: false });
    plainPeers.push(peer);
    await peer.until(() => peer.closed);
    expect((await error)[1]).toBeInstanceOf(KeepaliveTimeoutError);
    expect(peer.frames.some((f) => f.type === 4)).toBe(true);
  });

  it('keepalive keeps a peer that answers', async () => {
    const bob = createPeer('bob', { keepaliveInterval: 50, keepaliveWait: 200 });
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const peer = await PlainPeer.connect(portOf(url), 'lively');
    plainPeers.push(peer);
    // Several PING rounds, each answered: the connection stays.
    await peer.until(() => peer.closed || peer.frames.filter((f) => f.type === 4).length >= 4);
    expect(peer.closed).toBe(false);
    expect(bob.messaging.connectedPeers()).toEqual(['lively']);
  });

  const badInputs: [string, (p: PlainPeer) => void, new (...a: never[]) => SnakeMQError][] = [
    ['an oversize announced length', (p) => p.sendRaw(Buffer.from('7fffffff03', 'hex')), PacketTooLargeError],
    ['an empty frame', (p) => p.sendRaw(Buffer.from('00000000', 'hex')), ProtocolError],
    ['a short message frame', (p) => p.sendFrame(3, Buffer.alloc(10)), ProtocolError],
  ];
  for (const [name, send, ErrorClass] of badInputs) {
    it(`${name} closes that connection with a typed error; the listener keeps serving others`, async () => {
      const bob = createPeer('bob');
      const alice = createPeer('alice');
      const url = await connectPair(bob, alice);
      const error = waitEvent<[number, SnakeMQError]>(bob.messaging, 'protocolError');
      const peer = await PlainPeer.connect(portOf(url), 'mallory');
      plainPeers.push(peer);
      send(peer);
      await peer.until(() => peer.closed);
      expect((await error)[1]).toBeInstanceOf(ErrorClass);
      await exchange(bob, alice);
    });
  }

  it('a message before identification closes that connection with a typed error', async () => {
    const bob = createPeer('bob');
    const alice = createPeer('alice');
    const url = await connectPair(bob, alice);
    const error = waitEvent<[number, SnakeMQError]>(bob.messaging, 'protocolError');
    const peer = await PlainPeer.connect(portOf(url), 'mallory', { handshake: false });
    plainPeers.push(peer);
    peer.sendMessage('too early');
    await peer.until(() => peer.closed);
    expect((await error)[1]).toBeInstanceOf(NotIdentifiedError);
    await exchange(bob, alice);
  });

  it('ignores unknown frame types', async () => {
    const bob = createPeer('bob');
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const peer = await PlainPeer.connect(portOf(url), 'future');
    plainPeers.push(peer);
    const got = collect(bob.messaging, 1);
    peer.sendFrame(42, Buffer.from('whatever'));
    peer.sendMessage('after the unknown frame');
    expect((await got)[0]).toMatchObject({ ident: 'future', data: 'after the unknown frame' });
    expect(peer.closed).toBe(false);
  });

  it('a plain protocol-1 peer gets messages with their TTL and flags; they leave the queue once written', async () => {
    const bob = createPeer('bob');
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const peer = await PlainPeer.connect(portOf(url), 'python');
    plainPeers.push(peer);
    await waitEvent(bob.messaging, 'connect');
    const d = bob.messaging.send('python', new Message('hi', { ttl: 600.7, persistent: true }));
    await d.delivered();
    expect(d.state).toBe('acknowledged');
    expect(bob.messaging.queueLength('python')).toBe(0);
    await peer.until(() => peer.messages.length === 1);
    expect(peer.messages[0]).toMatchObject({ ttl: 600, flags: FLAG_PERSISTENT, uuid: d.message.id });
    expect(peer.messages[0]!.data.toString()).toBe('hi');
    // No extension frame reaches a plain peer that has not announced it, other than the
    // EXTENSIONS announcement itself (ignored by snakeMQ) and never an ACK.
    expect(peer.frames.some((f) => f.type === 17)).toBe(false);
  });

  it('de-duplicates messages marked re-sent by a peer speaking the extension; acknowledges them all', async () => {
    const bob = createPeer('bob');
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const got = collect(bob.messaging, 4);
    const ext = Buffer.from([1, 0, 0, 0, 1]);
    const first = await PlainPeer.connect(portOf(url), 'alice');
    plainPeers.push(first);
    first.sendFrame(16, ext);
    const x = first.sendMessage('x');
    const y = first.sendMessage('y');
    await first.until(() => first.frames.some((f) => f.type === 17));
    first.close();
    await waitEvent(bob.messaging, 'disconnect');
    const second = await PlainPeer.connect(portOf(url), 'alice');
    plainPeers.push(second);
    second.sendFrame(16, ext);
    second.sendMessage('x again', { uuid: x, flags: 0x80000000 });
    second.sendMessage('y again', { uuid: y, flags: 0x80000000 });
    second.sendMessage('z', { flags: 0x80000000 });
    second.sendMessage('x, deliberately sent again by the application', { uuid: x });
    const acked = () => second.frames.filter((f) => f.type === 17).reduce((n, f) => n + f.body.readUInt32BE(0), 0);
    await second.until(() => acked() === 4);
    const msgs = await got;
    // Duplicates marked re-sent are dropped; the same uuid without the mark is the application's choice.
    expect(msgs.map((m) => m.data)).toEqual(['x', 'y', 'z', 'x, deliberately sent again by the application']);
  });

  it('one socket read carrying messages among other frames: order kept, re-sent duplicates dropped, all acknowledged', async () => {
    const bob = createPeer('bob');
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const got = collect(bob.messaging, 6);
    const peer = await PlainPeer.connect(portOf(url), 'alice');
    plainPeers.push(peer);
    peer.sendFrame(16, Buffer.from([1, 0, 0, 0, 1]));
    await waitEvent(bob.messaging, 'connect');
    const frame = (type: number, body: Buffer): Buffer => {
      const head = Buffer.alloc(5);
      head.writeUInt32BE(body.length + 1);
      head[4] = type;
      return Buffer.concat([head, body]);
    };
    const message = (data: string, uuid: Buffer, flags = 0): Buffer => {
      const fields = Buffer.alloc(8);
      fields.writeUInt32BE(0xffffffff, 0);
      fields.writeUInt32BE(flags, 4);
      return frame(3, Buffer.concat([uuid, fields, Buffer.from(data)]));
    };
    const [a, b, c, d, e, f] = Array.from({ length: 6 }, () => randomBytes(16));
    peer.sendRaw(
      Buffer.concat([
        message('a', a!),
        message('b', b!),
        frame(4, Buffer.alloc(0)), // PING, answered with a PONG
        message('a re-sent', a!, 0x80000000), // a duplicate: acknowledged, not delivered
        message('c', c!, 0x80000000), // re-sent but new: delivered
        message('d', d!),
        frame(99, Buffer.from('future')), // unknown type: ignored
        message('e', e!),
        message('f', f!),
      ]),
    );
    const acked = () => peer.frames.filter((fr) => fr.type === 17).reduce((n, fr) => n + fr.body.readUInt32BE(0), 0);
    await peer.until(() => acked() === 7);
    expect((await got).map((m) => m.data)).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    expect(peer.frames.some((fr) => fr.type === 5)).toBe(true);
  });

  it('a busy stream is acknowledged every 8192 messages or so, not every turn; the rest at the first quiet turn', async () => {
    const bob = createPeer('bob');
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const n = 30_000;
    const got = collect(bob.messaging, n);
    const peer = await PlainPeer.connect(portOf(url), 'alice');
    plainPeers.push(peer);
    peer.sendFrame(16, Buffer.from([1, 0, 0, 0, 1]));
    await waitEvent(bob.messaging, 'connect');
    const fields = Buffer.alloc(8);
    fields.writeUInt32BE(0xffffffff, 0);
    const frames: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      const body = Buffer.concat([Buffer.from([3]), randomBytes(16), fields, Buffer.alloc(100, i)]);
      const head = Buffer.alloc(4);
      head.writeUInt32BE(body.length);
      frames.push(head, body);
    }
    // 500 messages per write, a write per turn: the receiver reads about one write per turn.
    for (let i = 0; i < n; i += 500) {
      peer.sendRaw(Buffer.concat(frames.slice(2 * i, 2 * (i + 500))));
      await new Promise((resolve) => setImmediate(resolve));
    }
    const acks = () => peer.frames.filter((fr) => fr.type === 17).map((fr) => fr.body.readUInt32BE(0));
    await peer.until(() => acks().reduce((a, b) => a + b, 0) === n);
    expect((await got).length).toBe(n);
    // One ACK per turn would be about one per write: 60.
    expect(acks().length).toBeLessThanOrEqual(20);
  });

  it('a handler that closes the connection stops delivery of the rest of the socket read', async () => {
    const bob = createPeer('bob');
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const peer = await PlainPeer.connect(portOf(url), 'alice');
    plainPeers.push(peer);
    const [connId] = await waitEvent<[number, string]>(bob.messaging, 'connect');
    const seen: string[] = [];
    bob.messaging.on('message', (_c, _i, m) => {
      seen.push(m.data.toString());
      if (seen.length === 2) void bob.packeter.close(connId);
    });
    const frames = ['m1', 'm2', 'm3', 'm4', 'm5'].map((t) => {
      const body = Buffer.concat([Buffer.from([3]), randomBytes(16), Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]), Buffer.from(t)]);
      const head = Buffer.alloc(4);
      head.writeUInt32BE(body.length);
      return Buffer.concat([head, body]);
    });
    peer.sendRaw(Buffer.concat(frames));
    await waitEvent(bob.messaging, 'disconnect');
    expect(seen).toEqual(['m1', 'm2']);
  });

  it('re-sends unacknowledged messages after a reconnect, marked re-sent, with the same uuids', async () => {
    const bob = createPeer('bob');
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const ext = Buffer.from([1, 0, 0, 0, 1]);
    const first = await PlainPeer.connect(portOf(url), 'alice');
    plainPeers.push(first);
    first.sendFrame(16, ext);
    await waitEvent(bob.messaging, 'connect');
    const ds = ['a', 'b', 'c'].map((t) => bob.messaging.send('alice', new Message(t)));
    await first.until(() => first.messages.length === 3);
    first.sendFrame(17, Buffer.from([0, 0, 0, 1]));
    await ds[0]!.delivered();
    first.close();
    await waitEvent(bob.messaging, 'disconnect');
    expect(bob.messaging.queueLength('alice')).toBe(2);
    const second = await PlainPeer.connect(portOf(url), 'alice');
    plainPeers.push(second);
    second.sendFrame(16, ext);
    await second.until(() => second.messages.length === 2);
    expect(second.messages.map((m) => [m.data.toString(), m.uuid, m.flags])).toEqual([
      ['b', ds[1]!.message.id, 0x80000000],
      ['c', ds[2]!.message.id, 0x80000000],
    ]);
    second.sendFrame(17, Buffer.from([0, 0, 0, 2]));
    await Promise.all([ds[1]!.delivered(), ds[2]!.delivered()]);
    expect(bob.messaging.queueLength('alice')).toBe(0);
  });

  it('bare data (Buffer, Uint8Array, string) is sent as a message with a fresh uuid, made into a Message object only when asked for', async () => {
    const bob = createPeer('bob');
    const alice = createPeer('alice');
    await connectPair(bob, alice);
    const got = collect(alice.messaging, 3);
    const acked: Message[] = [];
    bob.messaging.on('acknowledged', (_ident, m) => acked.push(m));
    const ds = [bob.messaging.send('alice', Buffer.from('buf')), bob.messaging.send('alice', new Uint8Array([0x75, 0x38])), bob.messaging.send('alice', 'str')];
    await Promise.all(ds.map((d) => d.delivered()));
    const received = await got;
    expect(received.map((m) => m.data)).toEqual(['buf', 'u8', 'str']);
    // The same object every time, and the one the events carry; its uuid is the one on the wire.
    expect(acked).toEqual(ds.map((d) => d.message));
    expect(acked[0]).toBe(ds[0]!.message);
    expect(ds.map((d) => d.message.id)).toEqual(received.map((m) => m.uuid));
    for (const d of ds) {
      expect(d.message).toBeInstanceOf(Message);
      expect(d.message.ttl).toBeNull();
      expect(d.message.flags).toBe(0);
      expect(d.message.id).toMatch(/^[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}$/);
      expect(d.state).toBe('acknowledged');
    }
    expect(new Set(ds.map((d) => d.message.id)).size).toBe(3);
    expect(() => bob.messaging.send('alice', 42 as never)).toThrow(InvalidArgumentError);
  });

  it('an acknowledgement for more messages than are in flight is a protocol error', async () => {
    const bob = createPeer('bob');
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const error = waitEvent<[number, SnakeMQError]>(bob.messaging, 'protocolError');
    const peer = await PlainPeer.connect(portOf(url), 'alice');
    plainPeers.push(peer);
    peer.sendFrame(16, Buffer.from([1, 0, 0, 0, 1]));
    await waitEvent(bob.messaging, 'connect');
    // EXTENSIONS went first on the same socket: bob is in acknowledged mode when the ACK arrives.
    peer.sendFrame(17, Buffer.from([0, 0, 0, 5]));
    await peer.until(() => peer.closed);
    expect((await error)[1]).toBeInstanceOf(ProtocolError);
  });

  it('a TTL 0 message is dropped at once when the peer is away', async () => {
    const bob = createPeer('bob');
    const drops: SnakeMQError[] = [];
    bob.messaging.on('drop', (_i, _m, reason) => drops.push(reason));
    const d = bob.messaging.send('nobody', new Message('x', { ttl: 0 }));
    await expect(d.delivered()).rejects.toBeInstanceOf(MessageExpiredError);
    expect(drops[0]).toBeInstanceOf(MessageExpiredError);
  });

  it('TTL counts down while the peer is away; expired messages are dropped with an event', async () => {
    const bob = createPeer('bob');
    const alice = createPeer('alice');
    const dropped: string[] = [];
    bob.messaging.on('drop', (_i, m) => dropped.push(m.data.toString()));
    // The away time is measured on the wall clock: queue the messages 1.2 s "ago" instead of waiting.
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(Date.now() - 1200);
      bob.messaging.send('alice', new Message('short', { ttl: 1 }));
      bob.messaging.send('alice', new Message('long', { ttl: 60 }));
    } finally {
      vi.useRealTimers();
    }
    const got = collect(alice.messaging, 1);
    await connectPair(bob, alice);
    expect((await got)[0]!.data).toBe('long');
    expect(dropped).toEqual(['short']);
  });

  it('a full queue rejects the send, or drops the oldest, by policy', async () => {
    const rejecting = createPeer('r', { maxQueueMessages: 3 });
    for (let i = 0; i < 3; i++) rejecting.messaging.send('x', new Message(`${i}`));
    expect(() => rejecting.messaging.send('x', new Message('3'))).toThrow(QueueFullError);

    const dropping = createPeer('d', { maxQueueMessages: 3, overflow: 'drop-oldest' });
    const dropped: string[] = [];
    dropping.messaging.on('drop', (_i, m, reason) => {
      expect(reason).toBeInstanceOf(QueueFullError);
      dropped.push(m.data.toString());
    });
    for (let i = 0; i < 5; i++) dropping.messaging.send('x', new Message(`${i}`));
    expect(dropped).toEqual(['0', '1']);
    expect(dropping.messaging.queueLength('x')).toBe(3);
  });

  it('receive hooks take messages by prefix and by regular expression', async () => {
    const bob = createPeer('bob');
    const alice = createPeer('alice');
    await connectPair(bob, alice);
    const byPrefix: string[] = [];
    const byRegexp: string[] = [];
    bob.messaging.addReceiveHook('cmd:', (_c, _i, m) => byPrefix.push(m.data.toString()));
    const remove = bob.messaging.addReceiveHook(/^\d+$/, (_c, _i, m) => byRegexp.push(m.data.toString()));
    const rest = collect(bob.messaging, 2);
    for (const t of ['cmd:a', '123', 'plain', 'cmd:b']) alice.messaging.send('bob', new Message(t));
    await waitEvent(bob.messaging, 'message', (_c: number, _i: string, m: Message) => m.data.toString() === 'plain');
    remove();
    alice.messaging.send('bob', new Message('456'));
    expect((await rest).map((m) => m.data)).toEqual(['plain', '456']);
    expect(byPrefix).toEqual(['cmd:a', 'cmd:b']);
    expect(byRegexp).toEqual(['123']);
  });

  it('message listeners: a lone once listener hears one message; a lone listener gets its context; several each hear all', async () => {
    const bob = createPeer('bob');
    const alice = createPeer('alice');
    await connectPair(bob, alice);
    const heard = (m: Message) => m.data.toString();
    // A lone `once` listener: called for the first message only.
    const once: string[] = [];
    const first = new Promise<void>((resolve) =>
      alice.messaging.once('message', (_c, _i, m) => {
        once.push(heard(m));
        resolve();
      }),
    );
    bob.messaging.send('alice', new Message('1'));
    await first;
    // A lone listener with a context object.
    const context = { seen: [] as string[] };
    let contextDone!: () => void;
    const two = new Promise<void>((resolve) => (contextDone = resolve));
    alice.messaging.on(
      'message',
      function (this: typeof context, _c, _i, m) {
        this.seen.push(heard(m));
        if (this.seen.length === 2) contextDone();
      },
      context,
    );
    bob.messaging.send('alice', new Message('2'));
    bob.messaging.send('alice', new Message('3'));
    await two;
    // A second listener: both hear what follows.
    const also: string[] = [];
    alice.messaging.on('message', (_c, _i, m) => also.push(heard(m)));
    const got = collect(alice.messaging, 1);
    bob.messaging.send('alice', new Message('4'));
    await got;
    expect(once).toEqual(['1']);
    expect(context.seen).toEqual(['2', '3', '4']);
    expect(also).toEqual(['4']);
  });

  it('received messages as an async iterator', async () => {
    const bob = createPeer('bob');
    const alice = createPeer('alice');
    await connectPair(bob, alice);
    for (let i = 0; i < 5; i++) alice.messaging.send('bob', new Message(`it${i}`));
    const seen: string[] = [];
    for await (const { ident, message } of bob.messaging.messages()) {
      seen.push(`${ident}:${message.data.toString()}`);
      if (seen.length === 5) break;
    }
    expect(seen).toEqual(['alice:it0', 'alice:it1', 'alice:it2', 'alice:it3', 'alice:it4']);
  });

  it('a callback that sends 1,000,000 messages in one go neither blocks nor deadlocks', async () => {
    const bob = createPeer('bob');
    const alice = createPeer('alice');
    await connectPair(bob, alice);
    const n = 1_000_000;
    let received = 0;
    let inOrder = true;
    const done = new Promise<void>((resolve) => {
      bob.messaging.on('message', (_c, _i, m) => {
        if (m.data.readUInt32BE(0) !== received) inOrder = false;
        if (++received === n) resolve();
      });
    });
    const payload = Buffer.alloc(8);
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 10);
    setImmediate(() => {
      for (let i = 0; i < n; i++) {
        const data = Buffer.from(payload);
        data.writeUInt32BE(i, 0);
        alice.messaging.send('bob', new Message(data));
      }
    });
    await done;
    clearInterval(ticker);
    expect(inOrder).toBe(true);
    expect(ticks).toBeGreaterThan(0);
    await vi.waitFor(() => expect(alice.messaging.queueLength('bob')).toBe(0), { timeout: 20_000 });
  }, 60_000);
});
