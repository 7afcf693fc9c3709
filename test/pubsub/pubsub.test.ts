import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { ClosedError, InvalidArgumentError, PubSubFrameError, SubscriptionRefusedError } from '../../lib/errors.js';
import { Message } from '../../lib/messaging/index.js';
import { CONFIRM_PREFIX, DataKind, SUBSCRIBE_PREFIX, SUB_FLAG_REJECT, decodeConfirm, encodePublished, encodeSubscribe } from '../../lib/pubsub/frames.js';
import { PubMessage, Publisher, Subscriber, type PublisherOptions, type ReceivedPubMessage, type SubscriberOptions } from '../../lib/pubsub/index.js';
import { closeAllPeers, connectPair, createPeer, fastReconnect, waitEvent, type TestPeer } from '../helpers/peers.js';
import { PlainPeer } from '../helpers/plain-peer.js';

afterEach(closeAllPeers);
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Messages received by `sub`, in order. */
function recorder(sub: Subscriber): ReceivedPubMessage[] {
  const got: ReceivedPubMessage[] = [];
  sub.on('message', (m) => got.push(m));
  return got;
}

/** bob publishes; subscribers connect to it and subscribe. */
async function fanOut(endpoint: string, specs: { ident: string; topics: string[] }[], pubOptions?: PublisherOptions) {
  const bob = createPeer('bob');
  const pub = new Publisher(bob.messaging, pubOptions);
  const url = await bob.link.addListener(endpoint);
  const subs = await Promise.all(
    specs.map(async ({ ident, topics }) => {
      const peer = createPeer(ident);
      const sub = new Subscriber(peer.messaging, { publishers: ['bob'], topics });
      peer.link.addConnector(url, fastReconnect);
      await sub.ready;
      return { peer, sub, got: recorder(sub) };
    }),
  );
  return { bob, pub, url, subs };
}

const SUBJECTS = ['/counter', '/counterfeit', '/counter/a', '/counter/a/b', '/oper/polar/direct_readout/norrköping', '/oper/geo', '/other'];
const SPECS = [
  { ident: 's-prefix', topics: ['/counter'] },
  { ident: 's-star', topics: ['/counter/*'] },
  { ident: 's-rest', topics: ['/oper/>'] },
  { ident: 's-all', topics: [''] },
  { ident: 's-unicode', topics: ['/oper/polar/direct_readout/norrköping', '/counter/a'] },
];
const EXPECTED: Record<string, string[]> = {
  's-prefix': ['/counter', '/counterfeit', '/counter/a', '/counter/a/b'],
  's-star': ['/counter/a'],
  's-rest': ['/oper/polar/direct_readout/norrköping', '/oper/geo'],
  's-all': SUBJECTS,
  's-unicode': ['/counter/a', '/counter/a/b', '/oper/polar/direct_readout/norrköping'],
};

describe('one publisher, many subscribers', () => {
  for (const transport of ['tcp', 'unix']) {
    it(`delivers each subject to the matching subscribers only, in order, once (${transport})`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'smq-ps-'));
      dirs.push(dir);
      const endpoint = transport === 'tcp' ? 'tcp://127.0.0.1:0' : `unix://${join(dir, 'bob.sock')}`;
      const { pub, subs } = await fanOut(endpoint, SPECS);
      expect(pub.subscriberCount).toBe(5);
      for (const [i, subject] of SUBJECTS.entries()) {
        const r = await pub.publish(subject, 'info', { i });
        expect([subject, r.subscribers.toSorted()]).toEqual([
          subject,
          Object.keys(EXPECTED)
            .filter((k) => EXPECTED[k]!.includes(subject))
            .toSorted(),
        ]);
        expect(r.written).toBe(Object.values(EXPECTED).filter((l) => l.includes(subject)).length);
        expect(r.dropped).toEqual([]);
      }
      await pub.publish('/zzz', 'beat');
      await Promise.all(subs.filter((s) => s.peer.messaging.identity === 's-all').map((s) => vi.waitFor(() => expect(s.got.length).toBe(8))));
      for (const { peer, got } of subs) {
        const want = EXPECTED[peer.messaging.identity]!;
        await vi.waitFor(() => expect(got.length).toBeGreaterThanOrEqual(want.length));
        expect(got.filter((m) => m.type === 'info').map((m) => m.subject)).toEqual(want);
        expect(got.every((m) => m.from === 'bob')).toBe(true);
      }
    });
  }

  it('carries the PostTroll fields: type, sender, time with micros, version, text, bytes, binary strings and JSON', async () => {
    const { pub, subs } = await fanOut('tcp://127.0.0.1:0', [{ ident: 'alice', topics: ['/x'] }], { sender: 'me@here' });
    const got = subs[0]!.got;
    const time = new Date('2026-01-02T03:04:05.678Z');
    await pub.publish('/x', 'file', 'text ö');
    await pub.publish('/x', 'file', new Uint8Array([0, 255]));
    await pub.publish('/x', 'file', '\u00ff\u0000', { binary: true });
    await pub.publish('/x', 'dataset', { uri: '/data/f.nc', sizes: [1, 2.5, null, true] }, { time, micros: 9, version: 'v1.01' });
    await pub.publish('/x', 'beat');
    await pub.publishMessage(new PubMessage({ subject: '/x', type: 'info', sender: 'other@host', data: { when: time } }));
    await vi.waitFor(() => expect(got.length).toBe(6));
    expect(got.map((m) => [m.type, m.data, m.binary])).toEqual([
      ['file', 'text ö', false],
      ['file', Buffer.from([0, 255]), true],
      ['file', '\u00ff\u0000', true],
      ['dataset', { uri: '/data/f.nc', sizes: [1, 2.5, null, true] }, false],
      ['beat', '', false],
      ['info', { when: '2026-01-02T03:04:05.678000+00:00' }, false],
    ]);
    expect(got[0]!.sender).toBe('me@here');
    expect(got[5]!.sender).toBe('other@host');
    expect(got[5]!.wireVersion).toBe('v1.2');
    expect([got[3]!.time, got[3]!.micros, got[3]!.version]).toEqual([time, 9, 'v1.01']);
    expect(got[3]!.encode()).toBe(
      'pytroll://x dataset me@here 2026-01-02T03:04:05.678009 v1.01 application/json {"uri": "/data/f.nc", "sizes": [1, 2.5, null, true]}',
    );
  });

  it('shares one encoded buffer between the subscribers', async () => {
    const { bob, pub } = await fanOut('tcp://127.0.0.1:0', [
      { ident: 'a', topics: ['/x'] },
      { ident: 'b', topics: ['/x'] },
    ]);
    const spy = vi.spyOn(bob.messaging, 'send');
    await pub.publish('/x', 'info', 'same');
    const sent = spy.mock.calls.map((c) => (c[1] as Message).data);
    expect(sent).toHaveLength(2);
    expect(sent[0]).toBe(sent[1]);
  });

  it('subscribe() and unsubscribe() at run time, and ready for the new set', async () => {
    const { pub, subs } = await fanOut('tcp://127.0.0.1:0', [{ ident: 'alice', topics: ['/a'] }]);
    const { sub, got } = subs[0]!;
    await sub.subscribe('/b');
    expect(sub.topics).toEqual(['/a', '/b']);
    await pub.publish('/b', 'info', 1);
    await sub.unsubscribe('/a');
    await pub.publish('/a', 'info', 2);
    await pub.publish('/b', 'info', 3);
    await vi.waitFor(() => expect(got.map((m) => m.data)).toEqual([1, 3]));
    await sub.unsubscribe();
    await vi.waitFor(() => expect(pub.subscriberCount).toBe(0));
    expect((await pub.publish('/b', 'info', 4)).subscribers).toEqual([]);
    expect(() => sub.subscribe('/a/>/b')).toThrow(/'>'/);
  });

  it('iterates with for await; close() ends the iterator; maxBuffered drops the oldest', async () => {
    const bob = createPeer('bob');
    const alice = createPeer('alice');
    await connectPair(bob, alice);
    const pub = new Publisher(bob.messaging);
    const sub = new Subscriber(alice.messaging, { publishers: ['bob'], topics: ['/n'], maxBuffered: 3 });
    const it = sub.messages();
    await sub.ready;
    const overflow = waitEvent(sub, 'overflow');
    for (let i = 0; i < 5; i++) await pub.publish('/n', 'info', i);
    await overflow;
    await vi.waitFor(() => expect(sub.dropped).toBe(2));
    const seen: unknown[] = [];
    const done = (async () => {
      for await (const m of { [Symbol.asyncIterator]: () => it }) seen.push(m.data);
    })();
    await vi.waitFor(() => expect(seen).toEqual([2, 3, 4]));
    await sub.close();
    await done;
    await sub.close();
    expect(sub.closed).toBe(true);
  });
});

describe('restarts', () => {
  it('a restarted subscriber subscribes again; a non-durable one is forgotten while away', async () => {
    const bob = createPeer('bob');
    const pub = new Publisher(bob.messaging);
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const start = async () => {
      const peer = createPeer('alice');
      const sub = new Subscriber(peer.messaging, { publishers: ['bob'], topics: ['/t'] });
      peer.link.addConnector(url, fastReconnect);
      await sub.ready;
      return { peer, sub, got: recorder(sub) };
    };
    const first = await start();
    const gone = waitEvent(pub, 'unsubscribe');
    await first.peer.close();
    expect((await gone)[1]).toBe('disconnected');
    expect((await pub.publish('/t', 'info', 'while away')).subscribers).toEqual([]);
    const second = await start();
    for (let i = 0; i < 100; i++) void pub.publish('/t', 'info', i);
    await vi.waitFor(() => expect(second.got.length).toBe(100));
    expect(second.got.map((m) => m.data)).toEqual([...Array(100).keys()]);
  });

  it('a restarted publisher learns the subscriptions again; nothing published after `subscribed` is missed', async () => {
    const bob1 = createPeer('bob');
    const url = await bob1.link.addListener('tcp://127.0.0.1:0');
    new Publisher(bob1.messaging);
    const alice = createPeer('alice');
    const sub = new Subscriber(alice.messaging, { publishers: ['bob'], topics: ['/t'] });
    const lost = waitEvent(sub, 'publisherLost');
    alice.link.addConnector(url, fastReconnect);
    await sub.ready;
    const got = recorder(sub);
    await bob1.close();
    await lost;
    const bob2 = createPeer('bob');
    const pub2 = new Publisher(bob2.messaging);
    const again = waitEvent(sub, 'subscribed');
    await bob2.link.addListener(url);
    await again;
    expect(pub2.subscribers()).toEqual(['alice']);
    for (let i = 0; i < 200; i++) void pub2.publish('/t', 'info', i);
    await vi.waitFor(() => expect(got.length).toBe(200));
    expect(got.map((m) => m.data)).toEqual([...Array(200).keys()]);
  });
});

describe('durable subscriptions', () => {
  it('keep what matches while the subscriber is away and deliver it in order when it is back', async () => {
    const bob = createPeer('bob');
    const pub = new Publisher(bob.messaging);
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const start = async (options: Partial<SubscriberOptions> = {}) => {
      const peer = createPeer('alice');
      const sub = new Subscriber(peer.messaging, { publishers: ['bob'], topics: ['/t'], durable: true, ...options });
      const got = recorder(sub);
      peer.link.addConnector(url, fastReconnect);
      await sub.ready;
      return { peer, sub, got };
    };
    const first = await start();
    await pub.publish('/t', 'info', 'before');
    await vi.waitFor(() => expect(first.got.length).toBe(1));
    await first.sub.close();
    await first.peer.close();
    await vi.waitFor(() => expect(bob.messaging.isConnected('alice')).toBe(false));
    expect(pub.subscribers()).toEqual(['alice']);
    const results = [];
    for (let i = 0; i < 20; i++) results.push(await pub.publish('/t', 'info', i));
    await pub.publish('/other', 'info', 'not for alice');
    expect(results.every((r) => r.held[0] === 'alice' && r.written === 0)).toBe(true);
    const second = await start();
    await vi.waitFor(() => expect(second.got.length).toBe(20));
    expect(second.got.map((m) => m.data)).toEqual([...Array(20).keys()]);
    await pub.publish('/t', 'info', 'after');
    await vi.waitFor(() => expect(second.got.length).toBe(21));
    await second.sub.unsubscribe();
    await vi.waitFor(() => expect(pub.subscriberCount).toBe(0));
  });

  it('are bounded: beyond durableMaxMessages new messages are refused for the away subscriber (slowSubscriber once)', async () => {
    const bob = createPeer('bob');
    const pub = new Publisher(bob.messaging, { durableMaxMessages: 5 });
    const alice = createPeer('alice');
    await connectPair(bob, alice);
    const sub = new Subscriber(alice.messaging, { publishers: ['bob'], topics: ['/t'], durable: true });
    await sub.ready;
    await sub.close();
    await alice.close();
    await vi.waitFor(() => expect(bob.messaging.isConnected('alice')).toBe(false));
    const slow = vi.fn();
    pub.on('slowSubscriber', slow);
    const results = [];
    for (let i = 0; i < 8; i++) results.push(await pub.publish('/t', 'info', i));
    expect(results.map((r) => r.dropped.length)).toEqual([0, 0, 0, 0, 0, 1, 1, 1]);
    expect(slow).toHaveBeenCalledTimes(1);
    expect(pub.subscriber('alice')).toMatchObject({ durable: true, queued: 5, dropped: 3 });
  });

  it('are refused beyond maxDurable', async () => {
    const bob = createPeer('bob');
    new Publisher(bob.messaging, { maxDurable: 0 });
    const alice = createPeer('alice');
    await connectPair(bob, alice);
    const sub = new Subscriber(alice.messaging, { publishers: ['bob'], topics: ['/t'], durable: true });
    await expect(sub.ready).rejects.toThrow(/maxDurable/);
  });
});

describe('a stalled subscriber', () => {
  it('never slows the others; the publisher holds a bounded amount for it and drops the oldest', async () => {
    const bob = createPeer('bob', { highWaterMark: 64 });
    const pub = new Publisher(bob.messaging, { maxQueue: 100 });
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const alice = createPeer('alice');
    const sub = new Subscriber(alice.messaging, { publishers: ['bob'], topics: ['/t'] });
    alice.link.addConnector(url, fastReconnect);
    await sub.ready;
    let aliceCount = 0;
    let inOrder = true;
    sub.on('message', (m) => {
      if ((m.data as Uint8Array)[0] !== aliceCount % 256) inOrder = false;
      aliceCount++;
    });
    const stalled = await PlainPeer.connect(Number(new URL(url).port), 'stalled');
    stalled.sendMessage(encodeSubscribe(1, 0, null, ['/t']));
    await stalled.until(() => stalled.messages.some((m) => m.data.subarray(0, 6).toString() === CONFIRM_PREFIX));
    stalled.socket.pause();
    const slow = waitEvent(pub, 'slowSubscriber');
    const N = 20_000;
    const body = Buffer.alloc(1024);
    for (let i = 0; i < N; i++) {
      body[0] = i % 256;
      const r = pub.publish('/t', 'info', Buffer.from(body));
      if (!bob.messaging.writable('alice')) await bob.messaging.drained('alice');
      if (i % 1000 === 999) {
        expect(pub.subscriber('stalled')!.queued).toBeLessThanOrEqual(100);
        expect(bob.messaging.queueLength('stalled')).toBeLessThanOrEqual(64);
        void r;
      }
    }
    expect((await slow)[0]).toBe('stalled');
    await vi.waitFor(() => expect(aliceCount).toBe(N), { timeout: 20_000 });
    expect(inOrder).toBe(true);
    expect(pub.subscriber('alice')!.dropped).toBe(0);
    expect(pub.subscriber('stalled')!.dropped).toBeGreaterThan(N / 2);
    stalled.close();
  });

  it("with overflow 'reject' the newest are refused instead (the publication says so)", async () => {
    const bob = createPeer('bob', { highWaterMark: 4 });
    const pub = new Publisher(bob.messaging, { maxQueue: 2 });
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const stalled = await PlainPeer.connect(Number(new URL(url).port), 'stalled');
    stalled.sendMessage(encodeSubscribe(1, SUB_FLAG_REJECT, null, ['/t']));
    await stalled.until(() => stalled.messages.length > 0);
    stalled.socket.pause();
    const big = Buffer.alloc(256 * 1024);
    let refused = null;
    for (let i = 0; i < 400 && refused === null; i++) {
      const r = pub.publish('/t', 'info', big);
      await new Promise((res) => setImmediate(res));
      if (pub.subscriber('stalled')!.dropped > 0) refused = r;
    }
    expect((await refused!).dropped).toEqual(['stalled']);
    expect(pub.subscriber('stalled')!.requested).toBe('reject');
    expect(pub.subscriber('stalled')!.queued).toBe(2);
    stalled.close();
  });
});

describe('bad input from peers', () => {
  it('a malformed subscription is dropped and refused; the connection and everything else go on', async () => {
    const bob = createPeer('bob');
    const pub = new Publisher(bob.messaging, { maxFilters: 4, maxFilterLength: 16 });
    const url = await bob.link.addListener('tcp://127.0.0.1:0');
    const mallory = await PlainPeer.connect(Number(new URL(url).port), 'mallory');
    const bad = vi.fn();
    pub.on('badFrame', bad);
    const refusals = () => mallory.messages.filter((m) => m.data.subarray(0, 6).toString() === CONFIRM_PREFIX).map((m) => decodeConfirm(m.data));
    mallory.sendMessage(Buffer.concat([Buffer.from(SUBSCRIBE_PREFIX), randomBytes(3)]));
    const huge = encodeSubscribe(5, 0, null, []);
    huge.writeUInt16BE(60_000, 15);
    mallory.sendMessage(huge);
    mallory.sendMessage(encodeSubscribe(6, 0, null, ['/' + 'x'.repeat(40)]));
    mallory.sendMessage(encodeSubscribe(7, 0, null, ['/a/>/b']));
    mallory.sendMessage(encodeSubscribe(8, 0, null, ['/a', '/b', '/c', '/d', '/e']));
    await mallory.until(() => refusals().length === 5);
    expect(refusals().map((c) => [c.seq, c.ok])).toEqual([
      [0, false],
      [5, false],
      [6, false],
      [7, false],
      [8, false],
    ]);
    expect(refusals()[1]!.reason).toMatch(/60000 filters: over the limit of 4/);
    expect(bad).toHaveBeenCalledTimes(3);
    expect(bad.mock.calls[0]![1]).toBeInstanceOf(PubSubFrameError);
    expect(pub.subscriberCount).toBe(0);
    mallory.sendMessage(encodeSubscribe(9, 0, null, ['/ok']));
    await mallory.until(() => refusals().some((c) => c.seq === 9 && c.ok));
    await pub.publish('/ok', 'info', 'still here');
    await mallory.until(() => mallory.messages.some((m) => m.data.includes(Buffer.from('still here'))));
    expect(mallory.closed).toBe(false);
    mallory.close();
  });

  it('a malformed published frame is dropped and reported; frames from peers that are not our publishers are ignored', async () => {
    const alice = createPeer('alice');
    const url = await alice.link.addListener('tcp://127.0.0.1:0');
    const sub = new Subscriber(alice.messaging, { publishers: ['evil'], topics: [''] });
    const got = recorder(sub);
    const bad = vi.fn();
    sub.on('badFrame', bad);
    const port = Number(new URL(url).port);
    const evil = await PlainPeer.connect(port, 'evil');
    await evil.until(() => evil.messages.length > 0);
    const good = (s: string) =>
      encodePublished({ subject: '/x', type: 'info', sender: Buffer.from('e@h'), version: undefined, timeMs: 0, micros: 0 }, DataKind.Text, s);
    const badSubject = encodePublished(
      { subject: '/x y', type: 'info', sender: Buffer.from('e@h'), version: undefined, timeMs: 0, micros: 0 },
      DataKind.Text,
      's',
    );
    const badJson = encodePublished({ subject: '/x', type: 'info', sender: Buffer.from('e@h'), version: undefined, timeMs: 0, micros: 0 }, DataKind.Json, '{');
    evil.sendMessage(good('one').subarray(0, 12));
    evil.sendMessage(badSubject);
    evil.sendMessage(badJson);
    evil.sendMessage(good('two'));
    const other = await PlainPeer.connect(port, 'other');
    other.sendMessage(good('forged'));
    await vi.waitFor(() => expect(got.map((m) => m.data)).toEqual(['two']));
    expect(bad).toHaveBeenCalledTimes(3);
    expect(bad.mock.calls.every((c) => c[1] instanceof PubSubFrameError)).toBe(true);
    evil.sendMessage(good('three'));
    await vi.waitFor(() => expect(got.map((m) => m.data)).toEqual(['two', 'three']));
    evil.close();
    other.close();
  });

  it('limits and allow: a refused subscription rejects ready with SubscriptionRefusedError', async () => {
    const { bob, url } = await fanOut('tcp://127.0.0.1:0', [{ ident: 'first', topics: ['/t'] }], { maxSubscribers: 1, allow: (id) => id !== 'banned' });
    void bob;
    for (const ident of ['second', 'banned']) {
      const peer = createPeer(ident);
      const sub = new Subscriber(peer.messaging, { publishers: ['bob'], topics: ['/t'] });
      const refused = waitEvent<[string, SubscriptionRefusedError]>(sub, 'refused');
      peer.link.addConnector(url, fastReconnect);
      await expect(sub.ready).rejects.toBeInstanceOf(SubscriptionRefusedError);
      expect((await refused)[1].message).toMatch(ident === 'banned' ? /does not serve banned/ : /maxSubscribers/);
    }
  });
});

describe('lifecycle', () => {
  it('close() settles ready, is idempotent; messaging close closes the subscriber; one Subscriber per publisher', async () => {
    const alice: TestPeer = createPeer('alice');
    const sub = new Subscriber(alice.messaging, { publishers: ['nobody'], topics: ['/t'] });
    expect(() => new Subscriber(alice.messaging, { publishers: ['nobody'] })).toThrow(InvalidArgumentError);
    const other = new Subscriber(alice.messaging, { publishers: ['somebody'], topics: ['/t'] });
    const it = other.messages();
    await sub.close();
    await expect(sub.ready).rejects.toBeInstanceOf(ClosedError);
    expect(() => sub.subscribe('/x')).toThrow(ClosedError);
    await alice.messaging.close();
    expect(other.closed).toBe(true);
    expect(await it.next()).toEqual({ value: undefined, done: true });
    expect(() => new Subscriber(alice.messaging, { publishers: ['x'] })).toThrow(ClosedError);
    expect(() => new Publisher(alice.messaging)).toThrow(ClosedError);
  });

  it('rejects unknown options and bad arguments', async () => {
    const p = createPeer('p');
    expect(() => new Publisher(p.messaging, { maxQueu: 1 } as never)).toThrow(/unknown option 'maxQueu'/);
    expect(() => new Subscriber(p.messaging, { publishers: 'x' } as never)).toThrow(/array of strings/);
    expect(() => new Subscriber(p.messaging, { publishers: ['x'], topics: ['/a/>/b'] })).toThrow(/'>'/);
    const pub = new Publisher(p.messaging);
    expect(() => pub.publish('has space', 'info')).toThrow(/whitespace/);
    expect(() => pub.publish('/x', '')).toThrow(/Invalid type/);
    expect(() => pub.publish('/x', 'info', { a: () => 1 } as never)).toThrow(/not JSON serializable/);
    expect(() => pub.publish('/x', 'info', 'x', { binar: true } as never)).toThrow(/unknown option 'binar'/);
    await pub.close();
    await pub.close();
    expect(() => pub.publish('/x', 'info')).toThrow(ClosedError);
  });
});

describe('publishers added and removed at run time', () => {
  it('addPublisher subscribes there too; removePublisher withdraws the subscription', async () => {
    const alice = createPeer('alice');
    const url = await alice.link.addListener('tcp://127.0.0.1:0');
    const sub = new Subscriber(alice.messaging, { publishers: [], topics: ['/t'] });
    await sub.ready;
    const got = recorder(sub);
    const pubs = await Promise.all(
      ['p1', 'p2'].map(async (ident) => {
        const peer = createPeer(ident);
        const pub = new Publisher(peer.messaging);
        peer.link.addConnector(url, fastReconnect);
        await waitEvent(alice.messaging, 'connect', (_c: number, id: string) => id === ident);
        return pub;
      }),
    );
    await sub.addPublisher('p1');
    await sub.addPublisher('p2');
    expect(sub.publishers).toEqual(['p1', 'p2']);
    await pubs[0]!.publish('/t', 'info', 'one');
    await pubs[1]!.publish('/t', 'info', 'two');
    await vi.waitFor(() => expect(got.map((m) => `${m.from}:${String(m.data)}`).toSorted()).toEqual(['p1:one', 'p2:two']));
    const gone = waitEvent(pubs[1]!, 'unsubscribe');
    sub.removePublisher('p2');
    expect((await gone)[1]).toBe('unsubscribed');
    expect((await pubs[1]!.publish('/t', 'info', 'three')).subscribers).toEqual([]);
    expect(() => new Subscriber(alice.messaging, { publishers: ['p1'] })).toThrow(InvalidArgumentError);
    const other = new Subscriber(alice.messaging, { publishers: ['p2'], topics: ['/t'] });
    await other.ready;
    await other.close();
  });
});

describe('after a Subscriber closed', () => {
  it("published frames still arriving are dropped, not handed to the messaging's message listeners", async () => {
    const bob = createPeer('bob');
    const alice = createPeer('alice');
    await connectPair(bob, alice);
    const pub = new Publisher(bob.messaging);
    const sub = new Subscriber(alice.messaging, { publishers: ['bob'], topics: ['/t'], durable: true });
    await sub.ready;
    await sub.close();
    const plain = vi.fn();
    alice.messaging.on('message', plain);
    await pub.publish('/t', 'info', 'after close');
    bob.messaging.send('alice', new Message('an ordinary message'));
    await vi.waitFor(() => expect(plain).toHaveBeenCalledTimes(1));
    expect((plain.mock.calls[0]![2] as Message).data.toString()).toBe('an ordinary message');
  });
});
