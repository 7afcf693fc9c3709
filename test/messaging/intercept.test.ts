import { afterEach, describe, expect, it, vi } from 'vitest';
import { ErrorCode, InterceptedError, InvalidArgumentError, InvalidOptionsError, MessageDroppedError, QueueFullError, SnakeMQError } from '../../lib/errors.js';
import { LOOPBACK_CONN_ID, MAX_HELD_RECEIVED, Message, Verdict, type InterceptResult } from '../../lib/messaging/index.js';
import { RpcClient, RpcServer } from '../../lib/rpc/index.js';
import { closeAllPeers, collect, connectPair, createPeer, waitEvent, type TestPeer } from '../helpers/peers.js';

afterEach(async () => {
  await closeAllPeers();
});

async function pair(): Promise<{ bob: TestPeer; alice: TestPeer }> {
  const bob = createPeer('bob');
  const alice = createPeer('alice');
  await connectPair(bob, alice);
  return { bob, alice };
}

/** A promise and its resolver, for async interceptors the test decides. */
function later<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('send interceptors', () => {
  it('forward: undefined and Verdict.forward() send the message unchanged, the interceptor sees each one', async () => {
    const { bob, alice } = await pair();
    const seen: string[] = [];
    bob.messaging.intercept({ send: (ident, m) => void seen.push(`${ident}:${m.data}`) });
    bob.messaging.intercept({ send: () => Verdict.forward() });
    const got = collect(alice.messaging, 2);
    const m = new Message('one');
    const d = bob.messaging.send('alice', m);
    bob.messaging.send('alice', 'two');
    expect(d.message).toBe(m);
    expect((await got).map((r) => r.data)).toEqual(['one', 'two']);
    await d.delivered();
    expect(seen).toEqual(['alice:one', 'alice:two']);
  });

  it('forward replaced (redaction): the replacement is sent and later interceptors see it; a Message returned means the same', async () => {
    const { bob, alice } = await pair();
    const second: string[] = [];
    bob.messaging.intercept({ send: (_i, m) => Verdict.forward(new Message(m.data.toString().replace(/\d{4}/g, '****'), { ttl: m.ttl })) });
    bob.messaging.intercept({ send: (_i, m) => new Message(`${m.data}!`) });
    bob.messaging.intercept({ send: (_i, m) => void second.push(m.data.toString()) });
    const got = collect(alice.messaging, 1);
    const d = bob.messaging.send('alice', new Message('card 1234 5678'));
    expect(d.message.data.toString()).toBe('card **** ****!');
    expect((await got)[0]!.data).toBe('card **** ****!');
    expect(second).toEqual(['card **** ****!']);
  });

  it('drop: not queued, the Delivery is dropped with MessageDroppedError, a drop event; later interceptors are not called', async () => {
    const { bob, alice } = await pair();
    const after = vi.fn();
    bob.messaging.intercept({ send: (_i, m) => (m.data.toString() === 'secret' ? Verdict.drop('no secrets') : undefined) });
    bob.messaging.intercept({ send: after });
    const drops: SnakeMQError[] = [];
    bob.messaging.on('drop', (_i, _m, reason) => drops.push(reason));
    const d = bob.messaging.send('alice', 'secret');
    expect(d.state).toBe('dropped');
    expect(bob.messaging.queueLength('alice')).toBe(0);
    await expect(d.delivered()).rejects.toBeInstanceOf(MessageDroppedError);
    await expect(d.written()).rejects.toMatchObject({ code: ErrorCode.MESSAGE_DROPPED, message: expect.stringContaining('no secrets') });
    expect(drops).toHaveLength(1);
    expect(drops[0]).toBeInstanceOf(MessageDroppedError);
    expect(after).toHaveBeenCalledTimes(0);
    // The next message still goes: nothing else was affected.
    const got = collect(alice.messaging, 1);
    bob.messaging.send('alice', 'public');
    expect((await got)[0]!.data).toBe('public');
    expect(after).toHaveBeenCalledTimes(1);
  });

  it('return: delivered here as if received from the destination (connId -1, listeners, iterators, hooks), never sent', async () => {
    const { bob, alice } = await pair();
    const atAlice = vi.fn();
    alice.messaging.on('message', atAlice);
    const off = bob.messaging.intercept({ send: (ident) => (ident === 'alice' ? Verdict.return() : undefined) });
    const iterator = bob.messaging.messages();
    const heard = waitEvent(bob.messaging, 'message');
    const hooked = new Promise<[number, string, string]>((resolve) => bob.messaging.addReceiveHook('hook:', (c, i, m) => resolve([c, i, m.data.toString()])));
    const d = bob.messaging.send('alice', 'loop');
    bob.messaging.send('alice', 'hook:x');
    expect(d.state).toBe('acknowledged');
    await d.delivered();
    const [connId, ident, message] = await heard;
    expect([connId, ident, (message as Message).data.toString()]).toEqual([LOOPBACK_CONN_ID, 'alice', 'loop']);
    expect((await iterator.next()).value).toMatchObject({ connId: -1, ident: 'alice' });
    expect(await hooked).toEqual([-1, 'alice', 'hook:x']);
    // A peer that is not connected (or does not exist) is fine too: nothing is queued for it.
    bob.messaging.intercept({ send: (ident) => (ident === 'nobody' ? Verdict.return() : undefined) });
    const fromNobody = waitEvent(bob.messaging, 'message', (_c: number, i: string) => i === 'nobody');
    bob.messaging.send('nobody', 'hello');
    await fromNobody;
    expect(bob.messaging.queueLength('nobody')).toBe(0);
    // And alice got nothing of it: the first thing she gets is a marker sent the normal way afterwards.
    off();
    const marker = waitEvent(alice.messaging, 'message');
    bob.messaging.send('alice', 'marker');
    await marker;
    expect(atAlice).toHaveBeenCalledTimes(1);
    expect((atAlice.mock.calls[0]![2] as Message).data.toString()).toBe('marker');
  });

  it('return goes through the receive interceptors', async () => {
    const bob = createPeer('bob');
    bob.messaging.intercept({ send: () => Verdict.return(), receive: (c, _i, m) => new Message(`${c}:${m.data}`) });
    const heard = waitEvent(bob.messaging, 'message');
    bob.messaging.send('ghost', 'x');
    expect(((await heard)[2] as Message).data.toString()).toBe('-1:x');
  });

  it('error: send() throws the SnakeMQError given as is, anything else wrapped in InterceptedError (cause kept)', async () => {
    const { bob } = await pair();
    const mine = new QueueFullError('policy says full');
    const cause = new Error('schema: field x missing');
    bob.messaging.intercept({
      send: (_i, m) => {
        const t = m.data.toString();
        if (t === 'a') return Verdict.error(mine);
        if (t === 'b') return Verdict.error(cause);
        if (t === 'c') return Verdict.error('not allowed');
        return undefined;
      },
    });
    expect(() => bob.messaging.send('alice', 'a')).toThrow(mine);
    let thrown: unknown;
    try {
      bob.messaging.send('alice', 'b');
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(InterceptedError);
    expect((thrown as InterceptedError).code).toBe(ErrorCode.INTERCEPTED);
    expect((thrown as InterceptedError).cause).toBe(cause);
    expect(() => bob.messaging.send('alice', 'c')).toThrow(/not allowed/);
    expect(bob.messaging.queueLength('alice')).toBe(0);
  });

  it('a throwing interceptor is an error verdict: send() throws InterceptedError with the cause, messaging goes on', async () => {
    const { bob, alice } = await pair();
    const boom = new TypeError('bug');
    bob.messaging.intercept({
      send: (_i, m) => {
        if (m.data.toString() === 'bad') throw boom;
      },
    });
    expect(() => bob.messaging.send('alice', 'bad')).toThrow(expect.objectContaining({ name: 'InterceptedError', cause: boom }));
    const got = collect(alice.messaging, 1);
    bob.messaging.send('alice', 'good');
    expect((await got)[0]!.data).toBe('good');
  });

  it('bare data: the interceptor gets a Message made for it (fresh uuid, no flags, no TTL limit), the delivery carries it', async () => {
    const { bob, alice } = await pair();
    const seen: Message[] = [];
    bob.messaging.intercept({ send: (_i, m) => void seen.push(m) });
    const got = collect(alice.messaging, 2);
    const d = bob.messaging.send('alice', Buffer.from('bytes'));
    bob.messaging.send('alice', 'text');
    const received = await got;
    expect(seen.map((m) => [m.data.toString(), m.ttl, m.flags])).toEqual([
      ['bytes', null, 0],
      ['text', null, 0],
    ]);
    expect(d.message).toBe(seen[0]);
    expect(received.map((r) => r.uuid)).toEqual(seen.map((m) => m.id));
    expect(seen[0]!.id).not.toBe(seen[1]!.id);
  });

  it('bad destinations are refused before any interceptor runs, as without one', async () => {
    const bob = createPeer('bob');
    const fn = vi.fn();
    bob.messaging.intercept({ send: fn });
    expect(() => bob.messaging.send('bob', 'x')).toThrow(InvalidArgumentError);
    expect(() => bob.messaging.send('x'.repeat(51), 'x')).toThrow(InvalidArgumentError);
    expect(fn).not.toHaveBeenCalled();
  });

  it('a result that is not a verdict is an error (InterceptedError)', async () => {
    const bob = createPeer('bob');
    const off = bob.messaging.intercept({ send: () => ({ verdict: 'maybe' }) as unknown as InterceptResult });
    expect(() => bob.messaging.send('alice', 'x')).toThrow(/not a verdict/);
    off();
    bob.messaging.intercept({ send: () => Verdict.forward('text' as unknown as Message) });
    expect(() => bob.messaging.send('alice', 'x')).toThrow(/not a Message/);
    expect(bob.messaging.queueLength('alice')).toBe(0);
  });
});

describe('receive interceptors', () => {
  it('forward and replaced: handlers get the (replaced) message; drop: not delivered but acknowledged', async () => {
    const { bob, alice } = await pair();
    alice.messaging.intercept({
      receive: (_c, ident, m) => {
        const t = m.data.toString();
        if (t.startsWith('drop')) return Verdict.drop();
        if (t.startsWith('redact')) return Verdict.forward(new Message(`[${ident}] redacted`));
        return undefined;
      },
    });
    const got = collect(alice.messaging, 2);
    const dropped = bob.messaging.send('alice', new Message('drop me'));
    bob.messaging.send('alice', new Message('redact 1234'));
    bob.messaging.send('alice', new Message('plain'));
    expect((await got).map((r) => r.data)).toEqual(['[bob] redacted', 'plain']);
    // Received, so acknowledged: bob's delivery completes.
    await dropped.delivered();
    expect(bob.messaging.queueLength('alice')).toBe(0);
  });

  it('error and throw: not delivered, reported by the typed intercepted event (never an error event)', async () => {
    const { bob, alice } = await pair();
    const boom = new Error('receive bug');
    alice.messaging.intercept({
      receive: (_c, _i, m) => {
        const t = m.data.toString();
        if (t === 'refuse') return Verdict.error(new Error('schema'));
        if (t === 'throw') throw boom;
        if (t === 'return') return Verdict.return();
        return undefined;
      },
    });
    const reports: [number, string, string, SnakeMQError][] = [];
    alice.messaging.on('intercepted', (c, i, m, e) => reports.push([c, i, m.data.toString(), e]));
    const errorListener = vi.fn();
    alice.messaging.on('error' as never, errorListener);
    const got = collect(alice.messaging, 1);
    for (const t of ['refuse', 'throw', 'return', 'ok']) bob.messaging.send('alice', t);
    expect((await got)[0]!.data).toBe('ok');
    expect(reports.map((r) => r[2])).toEqual(['refuse', 'throw', 'return']);
    expect(reports.every((r) => r[0] > 0 && r[1] === 'bob' && r[3] instanceof InterceptedError)).toBe(true);
    expect(reports[1]![3].cause).toBe(boom);
    expect(errorListener).not.toHaveBeenCalled();
  });

  it('without an intercepted listener the first refusal is a process warning, once', async () => {
    const { bob, alice } = await pair();
    alice.messaging.intercept({ receive: () => Verdict.error('no') });
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      bob.messaging.send('alice', 'a');
      await bob.messaging.send('alice', 'b').delivered();
      await vi.waitFor(() => expect(warnings.filter((w) => /receive interceptor/.test(w.message))).toHaveLength(1));
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('receive interceptors see RPC frames; forwarding everything keeps an RPC call working', async () => {
    const { bob, alice } = await pair();
    const seenByBob: string[] = [];
    const seenByAlice: string[] = [];
    bob.messaging.intercept({ receive: (_c, _i, m) => void seenByBob.push(m.data.subarray(0, 8).toString('latin1')), send: () => Verdict.forward() });
    alice.messaging.intercept({ receive: (_c, _i, m) => void seenByAlice.push(m.data.subarray(0, 8).toString('latin1')), send: () => undefined });
    const server = new RpcServer(bob.messaging);
    server.register('calc', { add: (a: number, b: number) => a + b });
    const client = new RpcClient(alice.messaging, { timeout: 10_000 });
    try {
      expect(await client.call('bob', 'calc', 'add', [2, 3])).toBe(5);
      expect(seenByBob).toHaveLength(1);
      expect(seenByAlice).toHaveLength(1);
    } finally {
      await client.close();
      await server.close();
    }
  });
});

describe('order, removal, async', () => {
  it('interceptors run in order of registration; the remover takes one out (idempotent)', async () => {
    const { bob, alice } = await pair();
    const order: string[] = [];
    const offA = bob.messaging.intercept({ send: () => void order.push('a'), receive: () => void order.push('ra') });
    bob.messaging.intercept({ send: () => void order.push('b') });
    const offC = bob.messaging.intercept({ send: () => void order.push('c') });
    let got = collect(alice.messaging, 1);
    bob.messaging.send('alice', 'x');
    await got;
    expect(order).toEqual(['a', 'b', 'c']);
    order.length = 0;
    offA();
    offA();
    got = collect(alice.messaging, 1);
    bob.messaging.send('alice', 'y');
    await got;
    expect(order).toEqual(['b', 'c']);
    offC();
    // offA took its receive interceptor out too.
    const atBob = collect(bob.messaging, 1);
    alice.messaging.send('bob', 'z');
    await atBob;
    got = collect(alice.messaging, 1);
    bob.messaging.send('alice', 'w');
    await got;
    expect(order).toEqual(['b', 'c', 'b']);
  });

  it('all removed: messages go the plain way again', async () => {
    const { bob, alice } = await pair();
    const off = bob.messaging.intercept({ send: () => Verdict.drop(), receive: () => Verdict.drop() });
    expect(bob.messaging.send('alice', 'x').state).toBe('dropped');
    off();
    const got = collect(alice.messaging, 1);
    const atBob = collect(bob.messaging, 1);
    bob.messaging.send('alice', 'y');
    alice.messaging.send('bob', 'z');
    expect((await got)[0]!.data).toBe('y');
    expect((await atBob)[0]!.data).toBe('z');
  });

  it('checks its argument', () => {
    const bob = createPeer('bob');
    expect(() => bob.messaging.intercept({})).toThrow(InvalidArgumentError);
    expect(() => bob.messaging.intercept({ send: 'no' as never })).toThrow(InvalidOptionsError);
    expect(() => bob.messaging.intercept({ sned: () => undefined } as never)).toThrow(InvalidOptionsError);
  });

  it('async send: the message and the later ones to that identity wait for the verdict, in order; other identities do not', async () => {
    const { bob, alice } = await pair();
    const gate = later<InterceptResult>();
    bob.messaging.intercept({ send: (ident, m) => (m.data.toString() === 'slow' ? gate.promise : ident === 'carol' ? Verdict.return() : undefined) });
    const got = collect(alice.messaging, 3);
    const slow = bob.messaging.send('alice', 'slow');
    const next = bob.messaging.send('alice', 'next');
    expect(slow.state).toBe('queued');
    expect(next.state).toBe('queued');
    // carol is not held up by alice's wait.
    const fromCarol = waitEvent(bob.messaging, 'message', (_c: number, i: string) => i === 'carol');
    bob.messaging.send('carol', 'c');
    await fromCarol;
    const delivered = slow.delivered();
    gate.resolve(Verdict.forward(new Message('slow, decided')));
    bob.messaging.send('alice', 'last');
    expect((await got).map((r) => r.data)).toEqual(['slow, decided', 'next', 'last']);
    await delivered;
    await next.delivered();
    expect(slow.message.data.toString()).toBe('slow, decided');
  });

  it('async send drop, error and rejection: the Delivery rejects (no throw), a drop event tells, order kept', async () => {
    const { bob, alice } = await pair();
    bob.messaging.intercept({
      send: async (_i, m) => {
        await Promise.resolve();
        const t = m.data.toString();
        if (t === 'drop') return Verdict.drop();
        if (t === 'error') return Verdict.error(new Error('no'));
        if (t === 'reject') throw new Error('async bug');
        return undefined;
      },
    });
    const drops: string[] = [];
    bob.messaging.on('drop', (_i, m, reason) => drops.push(`${m.data}:${reason.code}`));
    const got = collect(alice.messaging, 2);
    const ds = ['a', 'drop', 'error', 'reject', 'b'].map((t) => bob.messaging.send('alice', t));
    expect((await got).map((r) => r.data)).toEqual(['a', 'b']);
    await expect(ds[1]!.delivered()).rejects.toBeInstanceOf(MessageDroppedError);
    await expect(ds[2]!.delivered()).rejects.toBeInstanceOf(InterceptedError);
    await expect(ds[3]!.persisted()).rejects.toMatchObject({ cause: expect.objectContaining({ message: 'async bug' }) });
    expect(ds[1]!.state).toBe('dropped');
    expect(drops).toEqual(['drop:SMQ_ERR_MESSAGE_DROPPED', 'error:SMQ_ERR_INTERCEPTED', 'reject:SMQ_ERR_INTERCEPTED']);
  });

  it('async receive: messages of a connection keep their order behind a pending verdict', async () => {
    const { bob, alice } = await pair();
    const gates = new Map<string, ReturnType<typeof later<InterceptResult>>>();
    alice.messaging.intercept({
      receive: (_c, _i, m) => {
        const t = m.data.toString();
        if (!t.startsWith('wait')) return undefined;
        const g = later<InterceptResult>();
        gates.set(t, g);
        return g.promise;
      },
    });
    const got = collect(alice.messaging, 4);
    for (const t of ['wait1', 'x', 'wait2', 'y']) bob.messaging.send('alice', t);
    await vi.waitFor(() => expect(gates.has('wait1')).toBe(true));
    // Nothing passes wait1 while it waits.
    expect(gates.has('wait2')).toBe(false);
    gates.get('wait1')!.resolve(undefined);
    await vi.waitFor(() => expect(gates.has('wait2')).toBe(true));
    gates.get('wait2')!.resolve(Verdict.forward(new Message('w2')));
    expect((await got).map((r) => r.data)).toEqual(['wait1', 'x', 'w2', 'y']);
  });

  it('bounded: a connection whose messages wait behind a pending verdict is paused at MAX_HELD_RECEIVED, resumed after; sends held past maxQueueMessages throw QueueFullError', async () => {
    const { bob, alice } = await pair();
    const gate = later<InterceptResult>();
    let first = true;
    alice.messaging.intercept({
      receive: () => {
        if (!first) return undefined;
        first = false;
        return gate.promise;
      },
    });
    const pause = vi.spyOn(alice.packeter, 'pause');
    const resume = vi.spyOn(alice.packeter, 'resume');
    const n = MAX_HELD_RECEIVED + 500;
    const got = collect(alice.messaging, n);
    for (let i = 0; i < n; i++) bob.messaging.send('alice', `m${i}`);
    await vi.waitFor(() => expect(pause).toHaveBeenCalledTimes(1));
    gate.resolve(undefined);
    const received = await got;
    expect(received.map((r) => r.data)).toEqual(Array.from({ length: n }, (_, i) => `m${i}`));
    expect(resume).toHaveBeenCalled();

    const small = createPeer('small', { maxQueueMessages: 3 });
    small.messaging.intercept({ send: () => new Promise<InterceptResult>(() => undefined) });
    for (let i = 0; i < 3; i++) small.messaging.send('alice', `h${i}`);
    expect(() => small.messaging.send('alice', 'one too many')).toThrow(QueueFullError);
  });

  it('close settles sends waiting for an async verdict with ClosedError', async () => {
    const bob = createPeer('bob');
    bob.messaging.intercept({ send: () => new Promise<InterceptResult>(() => undefined) });
    const d = bob.messaging.send('alice', 'x');
    const closed = bob.close();
    await expect(d.delivered()).rejects.toMatchObject({ code: ErrorCode.CLOSED });
    await closed;
    expect(() => bob.messaging.intercept({ send: () => undefined })).toThrow(/closed/);
  });
});

describe('RPC and send verdicts', () => {
  it('an error verdict on an RPC request rejects the call at once with that error', async () => {
    const { bob, alice } = await pair();
    const server = new RpcServer(bob.messaging);
    server.register('calc', { add: (a: number, b: number) => a + b });
    const client = new RpcClient(alice.messaging, { timeout: 10_000 });
    const refused = new InterceptedError('calls to calc are not allowed from here');
    alice.messaging.intercept({ send: (_i, m) => (m.data.subarray(0, 6).toString() === 'rpcreq' ? Verdict.error(refused) : undefined) });
    try {
      const started = Date.now();
      await expect(client.call('bob', 'calc', 'add', [1, 2])).rejects.toBe(refused);
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await client.close();
      await server.close();
    }
  });
});

describe('RPC through return (a local test double)', () => {
  it('an RpcClient calling a peer whose messages are returned reaches the local RpcServer', async () => {
    const { bob } = await pair();
    // bob serves 'alice' locally: requests to alice and replies to alice come back to bob.
    bob.messaging.intercept({ send: (ident) => (ident === 'alice' ? Verdict.return() : undefined) });
    const server = new RpcServer(bob.messaging);
    server.register('double', { echo: (v: string) => `local:${v}` });
    const client = new RpcClient(bob.messaging, { timeout: 10_000 });
    try {
      expect(await client.call('alice', 'double', 'echo', ['hi'])).toBe('local:hi');
    } finally {
      await client.close();
      await server.close();
    }
  });
});
