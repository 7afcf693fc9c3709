import { inspect } from 'node:util';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  ClosedError,
  InvalidArgumentError,
  InvalidOptionsError,
  RpcBadRequestError,
  RpcNotConnectedError,
  RpcPartialCallError,
  RpcRemoteError,
  RpcTimeoutError,
  RpcUnknownMethodError,
  RpcUnknownObjectError,
} from '../../lib/errors.js';
import { RpcClient, RpcServer, decodeReply, decodeRequest, encodeReply, encodeRequest, remoteErrorFromReply, type RpcCallInfo } from '../../lib/rpc/index.js';
import { FakeNetwork, deferred, flush } from './fake-messaging.js';

class Calc {
  calls = 0;
  secret = 'xyz';
  getterHits = 0;
  get total(): number {
    this.getterHits++;
    return 42;
  }
  set total(_v: number) {
    this.getterHits++;
  }
  add(a: number, b: number): number {
    this.calls++;
    return a + b;
  }
  async slowAdd(a: number, b: number): Promise<number> {
    await new Promise((r) => setImmediate(r)); // answered in a later turn, not at once
    return a + b;
  }
  fail(): never {
    const e = new TypeError('bad thing') as TypeError & { code: string };
    e.code = 'E_BAD';
    throw e;
  }
  async failAsync(): Promise<never> {
    throw new RangeError('async bad');
  }
  throwString(): never {
    throw 'plain string';
  }
  echo(...args: unknown[]): unknown[] {
    return args;
  }
  hang(): Promise<never> {
    return new Promise(() => {});
  }
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
  vi.useRealTimers();
});

function setup(serverOptions?: ConstructorParameters<typeof RpcServer>[1], clientTimeout = 2000, connect = true) {
  const net = new FakeNetwork('alice', 'bob');
  const server = new RpcServer(net.b, serverOptions);
  const client = new RpcClient(net.a, { timeout: clientTimeout });
  const calc = new Calc();
  server.register('calc', calc);
  cleanups.push(() => {
    void client.close();
    void server.close();
  });
  if (connect) net.connect();
  return { net, server, client, calc };
}

describe('RpcServer / RpcClient: calls', () => {
  it('calls sync and async methods, via call() and a proxy', async () => {
    const { client, calc } = setup();
    await expect(client.call('bob', 'calc', 'add', [1, 2])).resolves.toBe(3);
    const proxy = client.proxy<Calc>('bob', 'calc');
    await expect(proxy.slowAdd(2, 3)).resolves.toBe(5);
    await expect(proxy.echo('a', Buffer.from([1]), { k: null }, [true])).resolves.toEqual(['a', Buffer.from([1]), { k: null }, [true]]);
    expect(calc.calls).toBe(1);
    expect(client.pendingCalls).toBe(0);
  });

  it('currentCall names the caller while a method runs synchronously, and nothing outside', async () => {
    const { server, client } = setup();
    const seen: unknown[] = [];
    server.register('who', {
      whoami: () => server.currentCall?.ident,
      later: async () => {
        await Promise.resolve();
        seen.push(server.currentCall);
        return 'ok';
      },
      fails: () => {
        throw new Error('x');
      },
    });
    await expect(client.call('bob', 'who', 'whoami')).resolves.toBe('alice');
    await expect(client.call('bob', 'who', 'later')).resolves.toBe('ok');
    await expect(client.call('bob', 'who', 'fails')).rejects.toThrow('x');
    expect(seen).toEqual([undefined]);
    expect(server.currentCall).toBeUndefined();
  });

  it('the deadlines of calls made while others are pending do not pile up (steady pipelined load)', async () => {
    const { client, server } = setup();
    // Replies at staggered times: there is never a moment without a pending call.
    server.register('t', { tick: (n: number) => new Promise<number>((resolve) => (n % 2 ? setImmediate : process.nextTick)(() => resolve(n))) });
    const lists = (client as unknown as { deadlines: { lists: Map<number, { items: { length: number } }> } }).deadlines.lists;
    let longest = 0;
    let next = 0;
    await Promise.all(
      Array.from({ length: 20 }, async (_, worker) => {
        while (next < 6000) {
          await client.call('bob', 't', 'tick', [next++ + worker]);
          for (const list of lists.values()) longest = Math.max(longest, list.items.length);
        }
      }),
    );
    // The 20 pending calls and settled ones behind them: seen, and bounded.
    expect(longest).toBeGreaterThan(10);
    expect(longest).toBeLessThan(2100);
  });

  it('a method is looked up once and kept; registering again picks up a replaced method', async () => {
    const { client, server } = setup();
    const target: { f: () => string } = { f: () => 'first' };
    server.register('o', target);
    await expect(client.call('bob', 'o', 'f')).resolves.toBe('first');
    target.f = () => 'second';
    await expect(client.call('bob', 'o', 'f')).resolves.toBe('first');
    server.unregister('o');
    server.register('o', target);
    await expect(client.call('bob', 'o', 'f')).resolves.toBe('second');
    // Unknown names are not kept (a peer cannot grow the cache).
    await expect(client.call('bob', 'o', 'nope')).rejects.toThrow(/no method/);
    expect((server as unknown as { objects: Map<string, { methods: Map<string, unknown> }> }).objects.get('o')!.methods.size).toBe(1);
  });

  it('runs calls concurrently (an async method does not block the next call)', async () => {
    const { client, server } = setup();
    const gate = deferred<string>();
    server.register('w', { wait: () => gate.promise, now: () => 'now' });
    const slow = client.call('bob', 'w', 'wait');
    await expect(client.call('bob', 'w', 'now')).resolves.toBe('now');
    gate.resolve('later');
    await expect(slow).resolves.toBe('later');
  });

  it('works both ways at once over one messaging pair, including a call back from inside a call', async () => {
    const net = new FakeNetwork('alice', 'bob');
    const serverA = new RpcServer(net.a);
    const clientA = new RpcClient(net.a, { timeout: 2000 });
    const serverB = new RpcServer(net.b);
    const clientB = new RpcClient(net.b, { timeout: 2000 });
    cleanups.push(() => [serverA, clientA, serverB, clientB].forEach((x) => void x.close()));
    serverA.register('a', { who: () => 'alice', twice: (n: number) => n * 2 });
    serverB.register('b', {
      who: () => 'bob',
      // bob asks alice while alice waits for bob
      async viaAlice(n: number) {
        return (await clientB.call<number>('alice', 'a', 'twice', [n])) + 1;
      },
    });
    net.connect();
    const results = await Promise.all([
      clientA.call('bob', 'b', 'who'),
      clientB.call('alice', 'a', 'who'),
      clientA.call('bob', 'b', 'viaAlice', [20]),
      ...Array.from({ length: 20 }, (_, i) => (i % 2 ? clientA.call('bob', 'b', 'who') : clientB.call('alice', 'a', 'twice', [i]))),
    ]);
    expect(results.slice(0, 3)).toEqual(['bob', 'alice', 41]);
    expect(results.slice(3)).toEqual(Array.from({ length: 20 }, (_, i) => (i % 2 ? 'bob' : i * 2)));
  });

  it('waits for the peer to connect before sending', async () => {
    const { net, client } = setup(undefined, 2000, false);
    const p = client.call('bob', 'calc', 'add', [2, 2]);
    await flush();
    expect(net.trace).toHaveLength(0);
    net.connect();
    await expect(p).resolves.toBe(4);
  });

  it('passes Python kwargs as one trailing object argument, only when non-empty', async () => {
    const { net } = setup();
    const data = encodeRequest({ command: 'call', object: 'calc', method: 'echo', args: [1], kwargs: { x: 2 }, reqId: Buffer.alloc(16, 7) });
    net.b.inject('alice', data);
    const plain = encodeRequest({ command: 'call', object: 'calc', method: 'echo', args: [1], kwargs: {}, reqId: Buffer.alloc(16, 8) });
    net.b.inject('alice', plain);
    await flush();
    const replies = net.sentBy('bob', 'rpcrep').map((t) => decodeReply(t.data));
    expect(replies).toEqual([
      { reqId: Buffer.alloc(16, 7), ok: true, value: [1, { x: 2 }] },
      { reqId: Buffer.alloc(16, 8), ok: true, value: [1] },
    ]);
  });
});

describe('RpcServer / RpcClient: errors', () => {
  it('transfers exceptions: name, message, code, stack', async () => {
    const { client } = setup();
    const err = await client.call('bob', 'calc', 'fail').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RpcRemoteError);
    const r = err as RpcRemoteError;
    expect(r.message).toBe('bad thing');
    expect(r.remoteName).toBe('TypeError');
    expect(r.remoteCode).toBe('E_BAD');
    expect(r.remoteStack).toMatch(/TypeError: bad thing[\s\S]*Calc\.fail/);
    const a = (await client.call('bob', 'calc', 'failAsync').catch((e: unknown) => e)) as RpcRemoteError;
    expect([a.remoteName, a.message, a.remoteCode]).toEqual(['RangeError', 'async bad', undefined]);
    const s = (await client.call('bob', 'calc', 'throwString').catch((e: unknown) => e)) as RpcRemoteError;
    expect(s).toBeInstanceOf(RpcRemoteError);
    expect([s.remoteName, s.message, s.remoteStack]).toEqual(['Error', 'plain string', undefined]);
  });

  it('with transferExceptions: false sends a generic error and emits methodError', async () => {
    const { client, server } = setup({ transferExceptions: false });
    const seen: [unknown, RpcCallInfo][] = [];
    server.on('methodError', (e, info) => seen.push([e, info]));
    const err = (await client.call('bob', 'calc', 'fail').catch((e: unknown) => e)) as RpcRemoteError;
    expect(err).toBeInstanceOf(RpcRemoteError);
    expect(err.remoteName).toBe('Error');
    expect(err.message).toBe('remote method failed');
    expect(err.remoteCode).toBeUndefined();
    expect(err.remoteStack).toBeUndefined();
    expect(seen).toHaveLength(1);
    expect((seen[0]![0] as Error).message).toBe('bad thing');
    expect(seen[0]![1]).toEqual({ ident: 'alice', command: 'call', object: 'calc', method: 'fail' });
    // protocol errors keep their type
    await expect(client.call('bob', 'calc', 'nope')).rejects.toBeInstanceOf(RpcUnknownMethodError);
  });

  it('unknown object and unknown method', async () => {
    const { client, server } = setup();
    await expect(client.call('bob', 'nothing', 'add', [1, 2])).rejects.toThrow(RpcUnknownObjectError);
    await expect(client.call('bob', 'calc', 'sub', [1, 2])).rejects.toThrow(RpcUnknownMethodError);
    server.unregister('calc');
    await expect(client.call('bob', 'calc', 'add', [1, 2])).rejects.toThrow(RpcUnknownObjectError);
  });

  it.each([
    'constructor',
    '__proto__',
    'toString',
    'hasOwnProperty',
    '__defineGetter__',
    '__lookupGetter__',
    'valueOf',
    'isPrototypeOf',
    'total',
    'secret',
    'calls',
    'getterHits',
  ])('refuses %s as an unknown method', async (name) => {
    const { client, calc } = setup();
    const err = await client.call('bob', 'calc', name, ['x', () => 1]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RpcUnknownMethodError);
    expect((err as Error).message).toBe(`'calc' has no method '${name}'`);
    expect(calc.getterHits).toBe(0);
  });

  it('refuses Object.prototype names even when overridden, allows own function properties, stops at Function.prototype', async () => {
    const { client, server } = setup();
    class Custom {
      toString(): string {
        return 'custom';
      }
      ok(): string {
        return 'ok';
      }
    }
    class Statics {
      static hello(): string {
        return 'static hello';
      }
    }
    server.register('custom', new Custom());
    server.register('literal', { f: () => 'own', n: 1 });
    server.register('statics', Statics);
    await expect(client.call('bob', 'custom', 'toString')).rejects.toThrow(RpcUnknownMethodError);
    await expect(client.call('bob', 'custom', 'ok')).resolves.toBe('ok');
    await expect(client.call('bob', 'literal', 'f')).resolves.toBe('own');
    await expect(client.call('bob', 'literal', 'n')).rejects.toThrow(RpcUnknownMethodError);
    await expect(client.call('bob', 'statics', 'hello')).resolves.toBe('static hello');
    for (const m of ['call', 'apply', 'bind', 'prototype', 'name', 'length']) {
      await expect(client.call('bob', 'statics', m)).rejects.toThrow(RpcUnknownMethodError);
    }
  });

  it('does not pollute prototypes through arguments', async () => {
    const { net, server } = setup();
    let received: Record<string, unknown> | undefined;
    server.register('sink', { take: (o: Record<string, unknown>) => ((received = o), Object.keys(o)) });
    const { Packr } = await import('msgpackr');
    const raw = new Packr({ useRecords: false, variableMapSize: true });
    const body = raw.pack(
      new Map<string, unknown>([
        ['command', 'call'],
        ['object', 'sink'],
        ['method', 'take'],
        ['args', [new Map([['__proto__', new Map([['polluted', 1]])]])]],
        ['kwargs', new Map()],
        ['req_id', Buffer.alloc(16, 1)],
      ]),
    );
    net.b.inject('alice', Buffer.concat([Buffer.from('rpcreq'), body]));
    await flush();
    expect(received).toBeDefined();
    expect(Object.getPrototypeOf(received)).toBe(Object.prototype);
    expect(received!.polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(decodeReply(net.sentBy('bob', 'rpcrep')[0]!.data)).toMatchObject({ ok: true, value: ['__proto__'] });
  });

  it('RpcNotConnectedError when the peer never connects', async () => {
    const { net, client } = setup(undefined, 50, false);
    await expect(client.call('bob', 'calc', 'add', [1, 2])).rejects.toThrow(RpcNotConnectedError);
    expect(net.trace).toHaveLength(0);
    expect(client.pendingCalls).toBe(0);
  });

  it('RpcTimeoutError when the peer stays connected and does not reply', async () => {
    const { client } = setup(undefined, 50);
    await expect(client.call('bob', 'calc', 'hang')).rejects.toThrow(RpcTimeoutError);
    await expect(client.call('bob', 'calc', 'hang', [], { timeout: 20 })).rejects.toThrow(RpcTimeoutError);
    await expect(client.proxy<Calc>('bob', 'calc', { timeout: 20 }).hang()).rejects.toThrow(RpcTimeoutError);
  });

  it('every call keeps its own timeout, whatever the order calls are made in', async () => {
    // Fake timers (the fake network still moves on setImmediate): long timeouts cost nothing, and a busy machine cannot reorder them.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { client } = setup(undefined, 60_000);
    const order: string[] = [];
    const at = (name: string, p: Promise<unknown>) =>
      p.then(
        () => order.push(`${name} resolved`),
        (e: unknown) => order.push(e instanceof RpcTimeoutError ? name : `${name} failed`),
      );
    const all = Promise.all([
      at('slow', client.call('bob', 'calc', 'hang', [], { timeout: 16_000 })),
      at('fast', client.call('bob', 'calc', 'hang', [], { timeout: 4000 })),
      at('proxied', client.proxy<Calc>('bob', 'calc', { timeout: 10_000 }).hang()),
      at('add', client.call('bob', 'calc', 'add', [1, 2], { timeout: 4000 })),
    ]);
    await flush();
    expect(order).toEqual(['add resolved']);
    await vi.advanceTimersByTimeAsync(3990);
    expect(order).toEqual(['add resolved']);
    await vi.advanceTimersByTimeAsync(20);
    expect(order).toEqual(['add resolved', 'fast']);
    // The client re-arms its one timer from the real clock: step on until the others are due too (bounded).
    for (let i = 0; i < 100 && order.length < 4; i++) await vi.advanceTimersByTimeAsync(500);
    await all;
    expect(order).toEqual(['add resolved', 'fast', 'proxied', 'slow']);
    expect(client.pendingCalls).toBe(0);
  });

  it('a hanging call behind thousands of answered ones still times out, and they do not pile up', async () => {
    const { client } = setup(undefined, 2000);
    const hanging = client.call('bob', 'calc', 'hang', [], { timeout: 400 });
    for (let round = 0; round < 3; round++) {
      await Promise.all(Array.from({ length: 1000 }, (_, i) => client.call('bob', 'calc', 'add', [i, 1], { timeout: 400 })));
    }
    const lists = (client as unknown as { deadlines: { lists: Map<number, { items: { length: number } }> } }).deadlines.lists;
    const list = lists.get(400)!;
    expect(list.items.length).toBeLessThan(1100);
    await expect(hanging).rejects.toThrow(RpcTimeoutError);
    expect(client.pendingCalls).toBe(0);
    expect(lists.size).toBe(0);
  });

  it('RpcTimeoutError when the request is lost on a live connection', async () => {
    const { net, client, calc } = setup(undefined, 50);
    net.loseNext((from) => from === 'alice');
    await expect(client.call('bob', 'calc', 'add', [1, 1])).rejects.toThrow(RpcTimeoutError);
    expect(calc.calls).toBe(0);
  });

  it('RpcPartialCallError when the peer went away after the request was sent', async () => {
    const { net, client } = setup(undefined, 60);
    const p = client.call('bob', 'calc', 'hang');
    await flush();
    net.disconnect();
    await expect(p).rejects.toThrow(RpcPartialCallError);
    // also when it came back but the reply still did not arrive in time
    net.connect();
    const q = client.call('bob', 'calc', 'hang');
    await flush();
    net.disconnect();
    net.connect();
    await expect(q).rejects.toThrow(RpcPartialCallError);
  });

  it('a messaging send that throws rejects the call with that error', async () => {
    const { net, client } = setup();
    net.a.closed = true;
    await expect(client.call('bob', 'calc', 'add', [1, 2])).rejects.toThrow(ClosedError);
    expect(client.pendingCalls).toBe(0);
  });

  it('arguments that cannot be encoded reject with InvalidArgumentError', async () => {
    const { client } = setup();
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    await expect(client.call('bob', 'calc', 'echo', [circular])).rejects.toThrow(InvalidArgumentError);
    await expect(client.call('bob', 'calc', 'echo', [2n ** 80n])).rejects.toThrow(InvalidArgumentError);
    await expect(client.call('', 'calc', 'echo')).rejects.toThrow(InvalidArgumentError);
    await expect(client.call('bob', 'calc', 'echo', 'x' as unknown as unknown[])).rejects.toThrow(InvalidArgumentError);
  });

  it('a result that cannot be encoded gives a remote InvalidArgumentError and methodError', async () => {
    const { client, server } = setup();
    const errors: unknown[] = [];
    server.on('methodError', (e) => errors.push(e));
    server.register('bad', { big: () => 2n ** 80n });
    const err = (await client.call('bob', 'bad', 'big').catch((e: unknown) => e)) as RpcRemoteError;
    expect(err).toBeInstanceOf(RpcRemoteError);
    expect(err.remoteName).toBe('InvalidArgumentError');
    expect(err.message).toMatch(/result of 'bad.big' cannot be sent/);
    expect(errors).toHaveLength(1);
  });
});

describe('RpcServer / RpcClient: re-send after reconnect runs exactly once', () => {
  const req = (net: FakeNetwork) => net.sentBy('alice', 'rpcreq');

  it('reply lost, reconnect: re-sent with the same req_id, answered from the cache', async () => {
    const { net, server, client } = setup();
    let count = 0;
    server.register('ctr', { inc: () => ++count });
    net.loseNext((from, _to, data) => from === 'bob' && data.subarray(0, 6).toString() === 'rpcrep');
    const p = client.call('bob', 'ctr', 'inc');
    await flush();
    expect(count).toBe(1);
    net.disconnect();
    net.connect();
    await expect(p).resolves.toBe(1);
    expect(count).toBe(1);
    expect(req(net)).toHaveLength(2);
    expect(req(net)[0]!.data.equals(req(net)[1]!.data)).toBe(true);
    expect(decodeRequest(req(net)[0]!.data).reqId).toHaveLength(16);
  });

  it('re-sent while still running: not started again, one reply when done', async () => {
    const { net, client, server } = setup();
    const gate = deferred();
    let count = 0;
    server.register('slow', {
      async run() {
        count++;
        await gate.promise;
        return 'done';
      },
    });
    const p = client.call('bob', 'slow', 'run');
    await flush();
    net.disconnect();
    net.connect();
    await flush();
    expect(req(net)).toHaveLength(2);
    expect(req(net).map((t) => t.outcome)).toEqual(['delivered', 'delivered']);
    gate.resolve();
    await expect(p).resolves.toBe('done');
    expect(count).toBe(1);
    expect(net.sentBy('bob', 'rpcrep')).toHaveLength(1);
  });

  it('request lost by a disconnect in flight: sent again on reconnect, runs once', async () => {
    const { net, client, calc } = setup();
    const p = client.call('bob', 'calc', 'add', [5, 5]);
    net.disconnect(); // before the in-flight request arrives
    await flush();
    expect(req(net)[0]!.outcome).toBe('lost');
    net.connect();
    await expect(p).resolves.toBe(10);
    expect(calc.calls).toBe(1);
  });

  it('reply dropped because the caller was away when it was ready: re-sent request answered from cache', async () => {
    const { net, client, server } = setup();
    const gate = deferred();
    let count = 0;
    server.register('slow', {
      async run() {
        count++;
        await gate.promise;
        return count;
      },
    });
    const p = client.call('bob', 'slow', 'run');
    await flush();
    net.disconnect();
    gate.resolve();
    await flush();
    expect(net.sentBy('bob', 'rpcrep')[0]!.outcome).toBe('dropped');
    net.connect();
    await expect(p).resolves.toBe(1);
    expect(count).toBe(1);
  });

  it('repeated disconnects: still exactly once', async () => {
    const { net, client, server } = setup(undefined, 5000);
    let count = 0;
    server.register('ctr', { inc: () => ++count });
    net.loseNext((from) => from === 'bob', 3);
    const p = client.call('bob', 'ctr', 'inc');
    for (let i = 0; i < 4; i++) {
      await flush();
      net.disconnect();
      net.connect();
    }
    await expect(p).resolves.toBe(1);
    expect(count).toBe(1);
  });

  it('with resultCacheSize 0 a request re-sent after its reply was lost runs again (documented)', async () => {
    const { net, client, server } = setup({ resultCacheSize: 0 });
    let count = 0;
    server.register('ctr', { inc: () => ++count });
    net.loseNext((from) => from === 'bob');
    const p = client.call('bob', 'ctr', 'inc');
    await flush();
    net.disconnect();
    net.connect();
    await expect(p).resolves.toBe(2);
  });

  it('the result cache is bounded', async () => {
    const { client, server } = setup({ resultCacheSize: 2 });
    let count = 0;
    server.register('ctr', { inc: () => ++count });
    for (let i = 0; i < 5; i++) await client.call('bob', 'ctr', 'inc');
    expect((server as unknown as { calls: { size: number } }).calls.size).toBe(2);
  });

  it('a burst of requests: the first 24 run at once, the rest in the next turns, in order; close() answers those left', async () => {
    const { net, server } = setup();
    const order: number[] = [];
    server.register('o', { note: (i: number) => void order.push(i) });
    const request = (i: number): Buffer => encodeRequest({ command: 'call', object: 'o', method: 'note', args: [i], kwargs: {}, reqId: Buffer.alloc(16, i) });
    for (let i = 0; i < 60; i++) net.b.inject('alice', request(i));
    expect(order).toHaveLength(24);
    await new Promise<void>((r) => setImmediate(r));
    expect(order).toHaveLength(48);
    await new Promise<void>((r) => setImmediate(r));
    expect(order).toEqual(Array.from({ length: 60 }, (_, i) => i));
    for (let i = 60; i < 90; i++) net.b.inject('alice', request(i));
    expect(order).toHaveLength(84);
    void server.close();
    await flush();
    expect(order).toHaveLength(84);
    const replies = net.sentBy('bob', 'rpcrep').map((t) => decodeReply(t.data));
    expect(replies).toHaveLength(90);
    expect(replies.slice(84).map((r) => !r.ok && (r.exception as { name: string }).name)).toEqual(Array(6).fill('ClosedError'));
  });

  it('re-sent requests: the 2 most recent are answered from the cache, older ones run again', async () => {
    const { net, server } = setup({ resultCacheSize: 2 });
    let count = 0;
    server.register('ctr', { inc: () => ++count });
    const request = (n: number): Buffer => encodeRequest({ command: 'call', object: 'ctr', method: 'inc', args: [], kwargs: {}, reqId: Buffer.alloc(16, n) });
    for (let n = 1; n <= 4; n++) net.b.inject('alice', request(n));
    expect(count).toBe(4);
    net.b.inject('alice', request(4));
    net.b.inject('alice', request(3));
    expect(count).toBe(4);
    net.b.inject('alice', request(1)); // evicted: runs again
    expect(count).toBe(5);
    net.b.inject('mallory', request(4)); // same id from another caller: another call
    expect(count).toBe(6);
    await flush();
    const replies = net.sentBy('bob', 'rpcrep').map((t) => decodeReply(t.data));
    expect(replies.map((r) => (r.ok ? r.value : r.exception))).toEqual([1, 2, 3, 4, 4, 3, 5]);
  });
});

describe('RpcServer / RpcClient: signals', () => {
  it('proxy signals: no req_id, no reply, method runs, Promise<void> resolves once queued', async () => {
    const { net, client, server } = setup();
    const got: string[] = [];
    server.register('log', { notify: (s: string) => void got.push(s), add: (a: number, b: number) => a + b }, { signals: ['notify'] });
    const warnings: string[] = [];
    server.on('warning', (m) => warnings.push(m));
    const proxy = client.proxy<{ notify(s: string): void; add(a: number, b: number): number }>('bob', 'log', { signals: ['notify'] });
    await expect(proxy.notify('hello')).resolves.toBeUndefined();
    await flush();
    expect(got).toEqual(['hello']);
    const sent = decodeRequest(net.sentBy('alice', 'rpcreq')[0]!.data);
    expect(sent.command).toBe('signal');
    expect(sent.reqId).toBeUndefined();
    expect(net.sentBy('bob', 'rpcrep')).toHaveLength(0);
    await expect(proxy.add(1, 2)).resolves.toBe(3);
    expect(warnings).toEqual([]);
  });

  it('a call to a signal method and a signal to a regular method run, with a warning', async () => {
    const { client, server, calc } = setup();
    const got: unknown[] = [];
    server.register('log', { notify: (s: string) => (got.push(s), 'r') }, { signals: ['notify'] });
    const warnings: [string, RpcCallInfo][] = [];
    server.on('warning', (m, info) => warnings.push([m, info]));
    await expect(client.call('bob', 'log', 'notify', ['x'])).resolves.toBe('r');
    client.signal('bob', 'calc', 'add', [1, 2]);
    await flush();
    expect(got).toEqual(['x']);
    expect(calc.calls).toBe(1);
    expect(warnings.map(([, i]) => `${i.command} ${i.object}.${i.method}`)).toEqual(['call log.notify', 'signal calc.add']);
  });

  it('signal TTL: 0 drops while the peer is away, the default waits for it', async () => {
    const { net, client, calc } = setup(undefined, 2000, false);
    const dropped = client.signal('bob', 'calc', 'add', [1, 1], { ttl: 0 });
    await expect(dropped.written()).rejects.toThrow();
    const queued = client.signal('bob', 'calc', 'add', [1, 1]);
    const viaProxy = client.proxy<Calc>('bob', 'calc', { signals: ['add'], signalTtl: 60 });
    await viaProxy.add(2, 2);
    net.connect();
    await queued.written();
    await flush();
    expect(calc.calls).toBe(2);
  });

  it('failing signals and signals to unknown targets are reported by events', async () => {
    const { client, server } = setup();
    const errors: unknown[] = [];
    const warnings: string[] = [];
    server.on('methodError', (e) => errors.push(e));
    server.on('warning', (m) => warnings.push(m));
    client.signal('bob', 'calc', 'fail');
    client.signal('bob', 'nope', 'x');
    client.signal('bob', 'calc', 'constructor');
    await flush();
    expect(errors).toHaveLength(1);
    expect(warnings.some((w) => /no object registered as 'nope'/.test(w))).toBe(true);
    expect(warnings.some((w) => /has no method 'constructor'/.test(w))).toBe(true);
  });
});

describe('RpcServer: concurrency limit', () => {
  it('runs at most `concurrency` at once; the rest wait in FIFO order', async () => {
    const { client, server } = setup({ concurrency: 2 });
    const gates = Array.from({ length: 5 }, () => deferred());
    const started: number[] = [];
    let running = 0;
    let max = 0;
    server.register('jobs', {
      async job(i: number) {
        started.push(i);
        max = Math.max(max, ++running);
        await gates[i]!.promise;
        running--;
        return i;
      },
    });
    const calls = [0, 1, 2, 3, 4].map((i) => client.call('bob', 'jobs', 'job', [i]));
    await flush();
    expect(started).toEqual([0, 1]);
    expect(server.running).toBe(2);
    expect(server.queued).toBe(3);
    gates[1]!.resolve();
    await flush();
    expect(started).toEqual([0, 1, 2]);
    gates.forEach((g) => g.resolve());
    await expect(Promise.all(calls)).resolves.toEqual([0, 1, 2, 3, 4]);
    expect(started).toEqual([0, 1, 2, 3, 4]);
    expect(max).toBe(2);
  });
});

describe('RpcServer: malformed requests', () => {
  it('emits requestError, answers when a req_id is readable, keeps serving', async () => {
    const { net, client, server } = setup();
    const errors: [RpcBadRequestError, string][] = [];
    server.on('requestError', (e, ident) => errors.push([e, ident]));
    const { Packr } = await import('msgpackr');
    const raw = new Packr({ useRecords: false, variableMapSize: true });
    const bad = [
      Buffer.from('rpcreq'),
      Buffer.from('rpcreq\xc1', 'latin1'),
      Buffer.from('rpcreqnot msgpack at all'),
      Buffer.concat([Buffer.from('rpcreq'), raw.pack([1, 2, 3])]),
      Buffer.concat([Buffer.from('rpcreq'), raw.pack({ command: 'call', object: 'calc', method: 7, args: [], kwargs: {}, req_id: Buffer.alloc(16, 9) })]),
      Buffer.concat([Buffer.from('rpcreq'), raw.pack({ command: 'signal', object: 'calc', method: 7, args: [], kwargs: {}, req_id: Buffer.alloc(16, 9) })]),
    ];
    for (const data of bad) net.b.inject('alice', data);
    await flush();
    expect(errors).toHaveLength(bad.length);
    expect(errors.every(([e, ident]) => e instanceof RpcBadRequestError && ident === 'alice')).toBe(true);
    const replies = net.sentBy('bob', 'rpcrep').map((t) => decodeReply(t.data));
    expect(replies).toHaveLength(1);
    expect(replies[0]).toMatchObject({ ok: false, reqId: Buffer.alloc(16, 9), exception: { name: 'RpcBadRequestError', code: 'SMQ_ERR_RPC_BAD_REQUEST' } });
    // and the error reply, if it belonged to a call, would surface as RpcBadRequestError
    const r = replies[0]!;
    if (!r.ok) expect(remoteErrorFromReply(r.exception, r.exceptionFormat)).toBeInstanceOf(RpcBadRequestError);
    await expect(client.call('bob', 'calc', 'add', [1, 2])).resolves.toBe(3);
  });

  it('a listener that throws does not break the server', async () => {
    const { net, client, server } = setup();
    server.on('requestError', () => {
      throw new Error('listener bug');
    });
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown) => uncaught.push(e);
    process.prependListener('uncaughtException', onUncaught);
    try {
      net.b.inject('alice', Buffer.from('rpcreq'));
      await flush();
    } finally {
      process.off('uncaughtException', onUncaught);
    }
    expect((uncaught[0] as Error)?.message).toBe('listener bug');
    await expect(client.call('bob', 'calc', 'add', [1, 2])).resolves.toBe(3);
  });
});

describe('RpcClient: replies', () => {
  it('a malformed reply for a pending call rejects it with RpcBadRequestError and emits replyError', async () => {
    const { net, client } = setup();
    const errors: RpcBadRequestError[] = [];
    client.on('replyError', (e) => errors.push(e));
    const p = client.call('bob', 'calc', 'hang');
    await flush();
    const reqId = decodeRequest(net.sentBy('alice', 'rpcreq')[0]!.data).reqId as Buffer;
    const { Packr } = await import('msgpackr');
    const raw = new Packr({ useRecords: false, variableMapSize: true });
    net.a.inject('bob', Buffer.concat([Buffer.from('rpcrep'), raw.pack({ req_id: reqId, ok: 'yes' })]));
    await expect(p).rejects.toThrow(RpcBadRequestError);
    expect(errors).toHaveLength(1);
    net.a.inject('bob', Buffer.from('rpcrepgarbage'));
    expect(errors).toHaveLength(2);
  });

  it('ignores replies from another identity and replies nobody waits for', async () => {
    const { net, client, server } = setup();
    const errors: unknown[] = [];
    client.on('replyError', (e) => errors.push(e));
    const gate = deferred<string>();
    server.register('g', { wait: () => gate.promise });
    const p = client.call('bob', 'g', 'wait');
    await flush();
    const reqId = decodeRequest(net.sentBy('alice', 'rpcreq')[0]!.data).reqId!;
    net.a.inject('mallory', encodeReply({ reqId, ok: true, value: 'forged' }));
    net.a.inject('bob', encodeReply({ reqId: Buffer.alloc(16), ok: true, value: 'stray' }));
    gate.resolve('real');
    await expect(p).resolves.toBe('real');
    expect(errors).toHaveLength(0);
  });

  it('maps whatever exception value a peer sends to a readable error', () => {
    const cases: [unknown, string, string][] = [
      ['ValueError: bad value', 'Error', 'ValueError: bad value'],
      [['ValueError', 'bad', 'worse'], 'ValueError', 'bad, worse'],
      [['just one'], 'Error', '["just one"]'],
      [{ type: 'KeyError', args: ['k'] }, 'KeyError', '["k"]'],
      [{ name: 'E', message: 'm', code: 5 }, 'E', 'm'],
      [42, 'Error', '42'],
      [null, 'Error', 'remote call failed'],
      [Buffer.from('x'), 'Error', '"<bin 78>"'],
      [{ name: 'OnlyName' }, 'OnlyName', '{"name":"OnlyName"}'],
    ];
    for (const [exception, name, message] of cases) {
      const e = remoteErrorFromReply(exception, 'Traceback...') as RpcRemoteError;
      expect(e).toBeInstanceOf(RpcRemoteError);
      expect([e.remoteName, e.message, e.remoteStack]).toEqual([name, message, 'Traceback...']);
    }
    expect((remoteErrorFromReply({ name: 'E', message: 'm', code: 5 }, '') as RpcRemoteError).remoteCode).toBe('5');
    // protocol errors only from the server itself (no traceback); a nested one thrown by a method stays remote
    expect(remoteErrorFromReply({ name: 'RpcUnknownMethodError', message: 'x', code: 'SMQ_ERR_RPC_UNKNOWN_METHOD' }, '')).toBeInstanceOf(RpcUnknownMethodError);
    expect(remoteErrorFromReply({ name: 'RpcUnknownObjectError', message: 'x', code: 'SMQ_ERR_RPC_UNKNOWN_OBJECT' }, '')).toBeInstanceOf(RpcUnknownObjectError);
    expect(remoteErrorFromReply({ name: 'RpcUnknownMethodError', message: 'x', code: 'SMQ_ERR_RPC_UNKNOWN_METHOD' }, 'at ...')).toBeInstanceOf(RpcRemoteError);
  });
});

describe('RpcClient: proxy', () => {
  it('is not thenable and makes no call for local probes', async () => {
    const { net, client } = setup();
    const proxy = client.proxy<Calc>('bob', 'calc');
    const awaited = await proxy;
    expect(awaited).toBe(proxy);
    const p = proxy as unknown as Record<string | symbol, unknown>;
    for (const name of [
      'then',
      'catch',
      'finally',
      'toJSON',
      'inspect',
      'constructor',
      '__proto__',
      'valueOf',
      'hasOwnProperty',
      'asymmetricMatch',
      '$$typeof',
    ]) {
      expect(p[name]).toBeUndefined();
    }
    expect('then' in p).toBe(false);
    expect(p[Symbol.iterator]).toBeUndefined();
    expect(p[Symbol.asyncIterator]).toBeUndefined();
    expect(String(proxy)).toBe('[RemoteProxy bob/calc]');
    expect(`${proxy}`).toBe('[RemoteProxy bob/calc]');
    expect(inspect(proxy)).toBe('[RemoteProxy bob/calc]');
    expect(JSON.stringify(proxy)).toBe('{}');
    expect(Object.prototype.toString.call(proxy)).toBe('[object RemoteProxy]');
    expect(proxy.add).toBe(proxy.add);
    expect(() => {
      (p as Record<string, unknown>).add = 1;
    }).toThrow(TypeError);
    await Promise.resolve(proxy);
    await flush();
    expect(net.trace).toHaveLength(0);
  });
});

describe('close()', () => {
  it('client: rejects every pending call with ClosedError, detaches, idempotent', async () => {
    const { net, client } = setup(undefined, 60_000);
    const hooksBefore = net.a.hookCount;
    const pendingOnLive = client.call('bob', 'calc', 'hang');
    const pendingOnAway = client.call('nobody', 'calc', 'add');
    await flush();
    expect(client.pendingCalls).toBe(2);
    void client.close();
    await expect(pendingOnLive).rejects.toThrow(ClosedError);
    await expect(pendingOnAway).rejects.toThrow(ClosedError);
    expect(client.pendingCalls).toBe(0);
    expect(net.a.hookCount).toBe(hooksBefore - 1);
    expect(net.a.listenerCount('connect')).toBe(0);
    expect(net.a.listenerCount('disconnect')).toBe(0);
    void client.close();
    await expect(client.call('bob', 'calc', 'add', [1, 2])).rejects.toThrow(ClosedError);
    expect(() => client.signal('bob', 'calc', 'add')).toThrow(ClosedError);
    await expect(client.proxy<Calc>('bob', 'calc').add(1, 2)).rejects.toThrow(ClosedError);
  });

  it('client: leaves no timers once calls settle', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { net, client } = setup(undefined, 10_000, false);
    const away = client.call('bob', 'calc', 'add', [1, 2]);
    expect(vi.getTimerCount()).toBe(1);
    net.connect();
    await expect(away).resolves.toBe(3);
    await expect(client.call('bob', 'calc', 'nope')).rejects.toThrow(RpcUnknownMethodError);
    await expect(client.call('bob', 'calc', 'fail')).rejects.toThrow(RpcRemoteError);
    expect(vi.getTimerCount()).toBe(0);
    const hanging = client.call('bob', 'calc', 'hang');
    await flush();
    vi.advanceTimersByTime(10_000);
    await expect(hanging).rejects.toThrow(RpcTimeoutError);
    const closing = client.call('bob', 'calc', 'hang');
    void client.close();
    await expect(closing).rejects.toThrow(ClosedError);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('server: answers queued calls with a ClosedError, drops replies of running ones, unhooks', async () => {
    const { net, client, server } = setup({ concurrency: 1 });
    const gate = deferred();
    server.register('w', { wait: () => gate.promise });
    const running = client.call('bob', 'w', 'wait', [], { timeout: 100 });
    const queued = client.call('bob', 'w', 'wait');
    await flush();
    expect(server.queued).toBe(1);
    void server.close();
    void server.close();
    const err = (await queued.catch((e: unknown) => e)) as RpcRemoteError;
    expect(err).toBeInstanceOf(RpcRemoteError);
    expect([err.remoteName, err.remoteCode]).toEqual(['ClosedError', 'SMQ_ERR_CLOSED']);
    gate.resolve();
    await expect(running).rejects.toThrow(RpcTimeoutError);
    const messages: unknown[] = [];
    net.b.on('message', (_c, _i, m) => messages.push(m));
    await expect(client.call('bob', 'calc', 'add', [1, 2], { timeout: 50 })).rejects.toThrow(RpcTimeoutError);
    expect(messages).toHaveLength(1);
  });
});

describe('options', () => {
  it('are validated fail-fast', () => {
    const net = new FakeNetwork();
    expect(() => new RpcServer(net.b, { concurency: 2 } as never)).toThrow(InvalidOptionsError);
    expect(() => new RpcServer(net.b, { concurrency: 0 })).toThrow(InvalidOptionsError);
    expect(() => new RpcServer(net.b, { concurrency: 1.5 })).toThrow(InvalidOptionsError);
    expect(() => new RpcServer(net.b, { resultCacheSize: -1 })).toThrow(InvalidOptionsError);
    expect(() => new RpcServer(net.b, { transferExceptions: 'no' as never })).toThrow(InvalidOptionsError);
    expect(() => new RpcClient(net.a, { timeout: 0 })).toThrow(InvalidOptionsError);
    expect(() => new RpcClient(net.a, { timeout: -5 })).toThrow(InvalidOptionsError);
    expect(() => new RpcClient(net.a, { tiemout: 5 } as never)).toThrow(InvalidOptionsError);
    const server = new RpcServer(net.b, { concurrency: Infinity });
    const client = new RpcClient(net.a, { timeout: Infinity });
    expect(() => server.register('x', {}, { signal: [] } as never)).toThrow(InvalidOptionsError);
    expect(() => server.register('', {})).toThrow(InvalidArgumentError);
    expect(() => server.register('x', null as never)).toThrow(InvalidArgumentError);
    server.register('x', {});
    expect(() => server.register('x', {})).toThrow(InvalidArgumentError);
    expect(server.objectNames).toEqual(['x']);
    expect(() => client.proxy('bob', 'x', { timout: 1 } as never)).toThrow(InvalidOptionsError);
    expect(() => client.signal('bob', 'x', 'y', [], { ttl: -1 })).toThrow(InvalidOptionsError);
    return expect(client.call('bob', 'x', 'y', [], { timeout: 0 }))
      .rejects.toThrow(InvalidOptionsError)
      .finally(() => {
        void client.close();
        void server.close();
      });
  });
});

describe('hostile values thrown or returned', () => {
  it('an exception whose properties throw still gives a readable error', async () => {
    const { client, server } = setup();
    const evil = new Proxy(
      {},
      {
        get() {
          throw new Error('gotcha');
        },
      },
    );
    server.register('evil', {
      throwProxy: () => {
        throw evil;
      },
    });
    const err = (await client.call('bob', 'evil', 'throwProxy').catch((e: unknown) => e)) as RpcRemoteError;
    expect(err).toBeInstanceOf(RpcRemoteError);
    expect(err.message).toMatch(/could not be read/);
    await expect(client.call('bob', 'calc', 'add', [1, 2])).resolves.toBe(3);
  });

  it('a result too large for maxPayload: error reply; even that too large: no reply, server keeps serving', async () => {
    const { client, server } = setup({ maxPayload: 300 }, 100);
    server.register('big', { make: (n: number) => 'x'.repeat(n) });
    const err = (await client.call('bob', 'big', 'make', [1000]).catch((e: unknown) => e)) as RpcRemoteError;
    expect(err).toBeInstanceOf(RpcRemoteError);
    expect(err.remoteName).toBe('InvalidArgumentError');
    // 100 bytes: the request fits, neither the result nor the error reply does
    const tiny = setup({ maxPayload: 100 }, 100);
    let ran = 0;
    const errors: unknown[] = [];
    tiny.server.on('methodError', (e) => errors.push(e));
    tiny.server.register('big', { make: () => (ran++, 'x'.repeat(1000)) });
    await expect(tiny.client.call('bob', 'big', 'make')).rejects.toThrow(RpcTimeoutError);
    expect(ran).toBe(1);
    expect(errors).toHaveLength(1);
    expect(tiny.server.running).toBe(0);
    await expect(client.call('bob', 'big', 'make', [10])).resolves.toBe('x'.repeat(10));
  });
});
