/**
 * What an RpcServer keeps and accepts is bounded: the result cache by bytes
 * and age (and the buffers its replies pin), pending calls by maxPending;
 * and RPC objects follow their messaging's close.
 */
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ClosedError, ErrorCode, InvalidOptionsError, RpcBusyError } from '../../lib/errors.js';
import { CallRegistry } from '../../lib/rpc/call-registry.js';
import {
  DEFAULT_MAX_PENDING_CALLS,
  DEFAULT_RESULT_CACHE_AGE,
  DEFAULT_RESULT_CACHE_BYTES,
  RpcClient,
  RpcServer,
  decodeReply,
  encodeRequest,
  type RpcServerOptions,
} from '../../lib/rpc/index.js';
import { FakeNetwork, deferred, flush } from './fake-messaging.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
  vi.useRealTimers();
});

function setup(serverOptions?: RpcServerOptions, timeout = 10_000) {
  const net = new FakeNetwork('alice', 'bob');
  const server = new RpcServer(net.b, serverOptions);
  const client = new RpcClient(net.a, { timeout });
  cleanups.push(() => {
    void client.close();
    void server.close();
  });
  net.connect();
  return { net, server, client };
}

/** A call request as another client would send it, with a string request id (so that it can be re-sent by hand). */
const request = (method: string, args: unknown[], id: string): Buffer => encodeRequest({ command: 'call', object: 'o', method, args, kwargs: {}, reqId: id });

/** Replies alice received, decoded, by request id. */
function replies(net: FakeNetwork): Map<string, ReturnType<typeof decodeReply>> {
  const out = new Map<string, ReturnType<typeof decodeReply>>();
  for (const t of net.sentBy('bob', 'rpcrep')) {
    const r = decodeReply(t.data);
    out.set(String(r.reqId), r);
  }
  return out;
}

describe('RpcServer result cache: bytes and age', () => {
  it('defaults and validation', () => {
    const { server } = setup();
    expect(server.resultCacheBytes).toBe(DEFAULT_RESULT_CACHE_BYTES);
    expect(DEFAULT_RESULT_CACHE_BYTES).toBe(64 * 1024 * 1024);
    expect(server.resultCacheAge).toBe(DEFAULT_RESULT_CACHE_AGE);
    expect(DEFAULT_RESULT_CACHE_AGE).toBe(5 * 60_000);
    expect(server.maxPending).toBe(DEFAULT_MAX_PENDING_CALLS);
    expect(DEFAULT_MAX_PENDING_CALLS).toBe(10_000);
    const net = new FakeNetwork();
    for (const bad of [
      { resultCacheBytes: -1 },
      { resultCacheBytes: 1.5 },
      { resultCacheAge: 0 },
      { resultCacheAge: '1' },
      { maxPending: 0 },
      { maxPending: NaN },
      { resultCacheBytez: 1 },
    ]) {
      expect(() => new RpcServer(net.b, bad as RpcServerOptions)).toThrow(InvalidOptionsError);
    }
    const s = new RpcServer(net.b, { resultCacheAge: Infinity, maxPending: Infinity, resultCacheBytes: 0 });
    void s.close();
  });

  it('the byte budget: the oldest results go first, a result larger than the budget is not kept, re-sent calls beyond it run again', async () => {
    const { net, server } = setup({ resultCacheBytes: 1024 * 1024 });
    let runs = 0;
    server.register('o', { echo: (b: Buffer) => (runs++, b) });
    const big = Buffer.alloc(300 * 1024, 7);
    for (let i = 0; i < 10; i++) net.b.inject('alice', request('echo', [big], `id${i}`));
    await flush();
    expect(runs).toBe(10);
    expect(server.cachedResultBytes).toBeLessThanOrEqual(1024 * 1024);
    expect(server.cachedResults).toBe(3); // 3 × 300 KiB fit in 1 MiB, 4 do not
    // The last three are answered from the cache, the first ones run again.
    net.b.inject('alice', request('echo', [big], 'id9'));
    net.b.inject('alice', request('echo', [big], 'id7'));
    expect(runs).toBe(10);
    net.b.inject('alice', request('echo', [big], 'id0'));
    expect(runs).toBe(11);
    // Larger than the whole budget: answered, never kept.
    const huge = Buffer.alloc(1024 * 1024 + 1);
    net.b.inject('alice', request('echo', [huge], 'huge'));
    await flush();
    expect(runs).toBe(12);
    expect(server.cachedResultBytes).toBeLessThanOrEqual(1024 * 1024);
    expect(replies(net).get('huge')?.ok).toBe(true);
    net.b.inject('alice', request('echo', [huge], 'huge'));
    expect(runs).toBe(13);
  });

  it('memory: 40 calls echoing 1 MiB keep at most the byte budget (not 40 buffers twice their size)', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    // Large backing stores are freed after the collection that found them unreachable: let it finish.
    const settle = async (): Promise<number> => {
      for (let i = 0; i < 3; i++) {
        gc();
        await flush(1);
      }
      return process.memoryUsage().arrayBuffers;
    };
    const { net, client, server } = setup({ resultCacheBytes: 4 * 1024 * 1024 });
    server.register('o', { echo: (b: Buffer) => b });
    const before = await settle();
    const payload = Buffer.alloc(1024 * 1024, 1);
    for (let i = 0; i < 40; i++) expect(((await client.call('bob', 'o', 'echo', [payload])) as Buffer).length).toBe(payload.length);
    net.trace.length = 0; // the fake network's record of traffic holds every message
    const kept = (await settle()) - before;
    // The budget, plus the 1 MiB payload itself and some slack.
    expect(kept).toBeLessThan(7 * 1024 * 1024);
    expect(server.cachedResultBytes).toBeLessThanOrEqual(4 * 1024 * 1024);
    expect(server.cachedResults).toBe(3);
  });

  it('the age limit: one timer, results forgotten between the age and 9/8 of it, re-sent calls after that run again', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
    const { net, server } = setup({ resultCacheAge: 8000 });
    let runs = 0;
    server.register('o', { inc: () => ++runs });
    for (let i = 0; i < 100; i++) net.b.inject('alice', request('inc', [], `a${i}`));
    await flush(); // a burst is looked at over a few turns
    expect(server.cachedResults).toBe(100);
    expect(vi.getTimerCount()).toBe(1); // one sweep timer, not one per call
    vi.advanceTimersByTime(4000);
    for (let i = 0; i < 100; i++) net.b.inject('alice', request('inc', [], `b${i}`));
    await flush();
    expect(server.cachedResults).toBe(200);
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(3999); // 7,999 ms after the first ones
    net.b.inject('alice', request('inc', [], 'a0'));
    expect(runs).toBe(200); // still cached
    vi.advanceTimersByTime(1001); // 9,000 ms: the first hundred are gone, the second are 5 s old
    expect(server.cachedResults).toBe(100);
    net.b.inject('alice', request('inc', [], 'a1'));
    expect(runs).toBe(201);
    net.b.inject('alice', request('inc', [], 'b1'));
    expect(runs).toBe(201);
    vi.advanceTimersByTime(5000);
    expect(server.cachedResults).toBe(1); // a1's new result
    vi.advanceTimersByTime(9000);
    expect(server.cachedResults).toBe(0);
    expect(server.cachedResultBytes).toBe(0);
    expect(vi.getTimerCount()).toBe(0); // the timer stops with nothing kept
    await flush();
  });

  it('close() stops the sweep timer and forgets the cache', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
    const { net, server } = setup();
    server.register('o', { inc: () => 1 });
    net.b.inject('alice', request('inc', [], 'x'));
    expect(vi.getTimerCount()).toBe(1);
    void server.close();
    expect(vi.getTimerCount()).toBe(0);
    expect(server.cachedResults).toBe(0);
  });

  it('a kept reply that is a small view of a big buffer is copied (it does not keep the big buffer alive)', () => {
    const reg = new CallRegistry(10);
    const big = Buffer.alloc(1024 * 1024);
    reg.locate('alice', 'x');
    const { slots, key } = reg;
    reg.keep(slots, key, big.subarray(100, 20_100));
    const kept = slots.map.get(key)!;
    expect(kept.equals(big.subarray(100, 20_100))).toBe(true);
    expect(kept.buffer.byteLength).toBeLessThan(30_000);
    expect(reg.bytes).toBe(20_000);
    // A view of a small shared buffer (the codec's slab, Node's pool) or a buffer its own size is kept as is.
    const own = Buffer.alloc(20_000);
    reg.locate('alice', 'y');
    reg.keep(reg.slots, reg.key, own);
    reg.locate('alice', 'y');
    expect(reg.slots.map.get(reg.key)).toBe(own);
  });
});

describe('RpcServer maxPending', () => {
  it('beyond maxPending calls waiting or running, a call gets RpcBusyError at once (the method does not run); later calls run', async () => {
    const { server, client } = setup({ maxPending: 3, concurrency: 1 });
    const gate = deferred();
    let runs = 0;
    server.register('w', { wait: () => (runs++, gate.promise.then(() => 'done')) });
    const calls = Array.from({ length: 5 }, () => client.call('bob', 'w', 'wait'));
    const settled = calls.map((c) =>
      c.then(
        (v) => v,
        (e: unknown) => e,
      ),
    );
    await flush();
    expect(server.running).toBe(1);
    expect(server.queued).toBe(2);
    const busy = (await settled[3]) as RpcBusyError;
    expect(busy).toBeInstanceOf(RpcBusyError);
    expect(busy.code).toBe(ErrorCode.RPC_BUSY);
    expect(busy.message).toMatch(/maxPending/);
    expect(await settled[4]).toBeInstanceOf(RpcBusyError);
    gate.resolve();
    expect(await Promise.all(settled.slice(0, 3))).toEqual(['done', 'done', 'done']);
    expect(runs).toBe(3);
    await expect(client.call('bob', 'w', 'wait')).resolves.toBe('done');
  });

  it('counts a burst not yet looked at; signals beyond it are dropped with a warning; a re-sent running call is not refused', async () => {
    const { net, server } = setup({ maxPending: 30 });
    const gate = deferred();
    let runs = 0;
    server.register('o', { wait: () => (runs++, gate.promise) });
    const warnings: string[] = [];
    server.on('warning', (m) => warnings.push(m));
    // 100 requests in one turn: 24 are looked at now, the rest wait for the next turns.
    for (let i = 0; i < 100; i++) net.b.inject('alice', request('wait', [], `c${i}`));
    net.b.inject('alice', encodeRequest({ command: 'signal', object: 'o', method: 'wait', args: [], kwargs: {} }));
    net.b.inject('alice', request('wait', [], 'c0')); // re-sent while running
    await flush();
    expect(runs).toBe(30);
    const got = replies(net);
    const busy = [...got.values()].filter((r) => !r.ok && (r.exception as { code?: string }).code === ErrorCode.RPC_BUSY);
    expect(busy).toHaveLength(70);
    expect(got.has('c0')).toBe(false);
    expect(warnings.some((w) => /signal dropped: server busy/.test(w))).toBe(true);
    gate.resolve();
    await flush();
    expect(server.running).toBe(0);
  });
});

describe('RPC and its messaging closing', () => {
  it('pending calls reject with ClosedError as soon as the messaging closes (no timer runs out)', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { net, server, client } = setup(undefined, 30_000);
    server.register('o', { hang: () => new Promise(() => {}) });
    const sent = client.call('bob', 'o', 'hang');
    const unsent = client.call('carol', 'o', 'hang'); // never connected
    await flush();
    net.a.close();
    await expect(sent).rejects.toThrow(ClosedError);
    await expect(unsent).rejects.toThrow(ClosedError);
    expect(client.pendingCalls).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    await expect(client.call('bob', 'o', 'hang')).rejects.toThrow(ClosedError);
    expect(net.a.listenerCount('close')).toBe(0);
    expect(net.a.listenerCount('connect')).toBe(0);
  });

  it('an RpcServer closes with its messaging: unhooked, queued calls answered, the cache forgotten', async () => {
    const { net, server, client } = setup({ concurrency: 1 });
    const gate = deferred();
    server.register('o', { wait: () => gate.promise, one: () => 1 });
    await expect(client.call('bob', 'o', 'one')).resolves.toBe(1);
    const hooks = net.b.hookCount;
    void client.call('bob', 'o', 'wait', [], { timeout: 100 }).catch(() => undefined);
    await flush();
    net.b.close();
    expect(net.b.hookCount).toBe(hooks - 1);
    expect(net.b.listenerCount('close')).toBe(0);
    expect(server.cachedResults).toBe(0);
    gate.resolve();
  });

  it('an RpcClient or RpcServer on a closed messaging is refused at construction with ClosedError', () => {
    const net = new FakeNetwork();
    net.a.close();
    expect(() => new RpcClient(net.a)).toThrow(ClosedError);
    expect(() => new RpcServer(net.a)).toThrow(ClosedError);
    expect(net.a.hookCount).toBe(0);
    expect(net.a.listenerCount('close')).toBe(0);
  });
});
