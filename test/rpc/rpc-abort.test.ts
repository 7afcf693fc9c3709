/**
 * AbortSignal for RPC calls, over the real stack on 127.0.0.1 (and one
 * timing case on the fake network with fake timers).
 */
import { getEventListeners } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AbortedError, ErrorCode, InvalidOptionsError } from '../../lib/errors.js';
import { Link } from '../../lib/link/index.js';
import { Messaging } from '../../lib/messaging/index.js';
import { Packeter } from '../../lib/packeter/index.js';
import { RpcClient, RpcServer } from '../../lib/rpc/index.js';
import { setLogger } from '../../lib/util/log.js';
import { FakeNetwork, deferred, flush } from './fake-messaging.js';

interface Peer {
  link: Link;
  messaging: Messaging;
  server: RpcServer;
  client: RpcClient;
  close(): Promise<void>;
}

const open = new Set<Peer>();
afterEach(async () => {
  vi.useRealTimers();
  setLogger(null, process.env.DEBUG ?? '');
  await Promise.all([...open].map((p) => p.close()));
});

function peer(ident: string): Peer {
  const link = new Link();
  const messaging = new Messaging(ident, new Packeter(link));
  const server = new RpcServer(messaging);
  const client = new RpcClient(messaging, { timeout: 10_000 });
  const p: Peer = {
    link,
    messaging,
    server,
    client,
    close: async () => {
      open.delete(p);
      await messaging.close();
    },
  };
  open.add(p);
  return p;
}

/** bob listens and serves `job`, alice connects; resolves once both are identified. */
async function connected(): Promise<{ bob: Peer; alice: Peer; gates: ReturnType<typeof deferred<string>>[]; runs: () => number }> {
  const bob = peer('bob');
  const alice = peer('alice');
  const gates: ReturnType<typeof deferred<string>>[] = [];
  let runs = 0;
  bob.server.register('job', {
    wait() {
      runs++;
      const gate = deferred<string>();
      gates.push(gate);
      return gate.promise;
    },
    now: () => ++runs,
    note() {
      runs++;
    },
  });
  const url = await bob.link.addListener('tcp://127.0.0.1:0');
  const both = Promise.all([
    new Promise<void>((resolve) => bob.messaging.once('connect', () => resolve())),
    new Promise<void>((resolve) => alice.messaging.once('connect', () => resolve())),
  ]);
  alice.link.addConnector(url, { reconnectDelay: () => 30 });
  await both;
  return { bob, alice, gates, runs: () => runs };
}

interface Job {
  wait(): string;
  now(): number;
  note(): void;
}

describe('RPC calls with an AbortSignal', () => {
  it('abort rejects a call in flight at once with AbortedError (cause: the reason), frees it, and drops the late reply', async () => {
    const { alice, gates } = await connected();
    const lines: string[] = [];
    setLogger((_ns, line) => lines.push(line), 'snakemq:rpc');
    const ac = new AbortController();
    const call = alice.client.call('bob', 'job', 'wait', [], { signal: ac.signal });
    await vi.waitFor(() => expect(gates.length).toBe(1), { timeout: 5000 });
    expect(alice.client.pendingCalls).toBe(1);
    const reason = new Error('user gave up');
    ac.abort(reason);
    const error = await call.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(AbortedError);
    expect((error as AbortedError).code).toBe(ErrorCode.ABORTED);
    expect((error as AbortedError).cause).toBe(reason);
    expect((error as AbortedError).message).toMatch(/aborted after it was sent/);
    expect(alice.client.pendingCalls).toBe(0);
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    // The server finishes: its reply finds no call, like a reply after a timeout.
    gates[0]!.resolve('late');
    await vi.waitFor(() => expect(lines.some((l) => /dropping a reply from bob nobody waits for/.test(l))).toBe(true), { timeout: 5000 });
    expect(alice.client.pendingCalls).toBe(0);
  });

  it('an already aborted signal rejects without sending (call and proxy)', async () => {
    const { alice, runs } = await connected();
    const ac = new AbortController();
    ac.abort('stop');
    await expect(alice.client.call('bob', 'job', 'now', [], { signal: ac.signal })).rejects.toMatchObject({
      name: 'AbortedError',
      code: ErrorCode.ABORTED,
      cause: 'stop',
      message: expect.stringMatching(/not sent/),
    });
    const job = alice.client.proxy<Job, 'note'>('bob', 'job', { signal: ac.signal, signals: ['note'] });
    await expect(job.now()).rejects.toBeInstanceOf(AbortedError);
    await expect(job.note()).rejects.toBeInstanceOf(AbortedError);
    expect(alice.client.pendingCalls).toBe(0);
    // Nothing reached bob: the next call is the first that runs.
    await expect(alice.client.call('bob', 'job', 'now')).resolves.toBe(1);
    expect(runs()).toBe(1);
  });

  it("a proxy's signal aborts its pending calls, and only those", async () => {
    const { alice, gates } = await connected();
    const ac = new AbortController();
    const job = alice.client.proxy<Job>('bob', 'job', { signal: ac.signal });
    const other = alice.client.call('bob', 'job', 'wait');
    const a = job.wait();
    const b = job.wait();
    await vi.waitFor(() => expect(gates.length).toBe(3), { timeout: 5000 });
    ac.abort();
    await expect(a).rejects.toBeInstanceOf(AbortedError);
    await expect(b).rejects.toMatchObject({ cause: ac.signal.reason });
    expect(alice.client.pendingCalls).toBe(1);
    for (const gate of gates) gate.resolve('done');
    await expect(other).resolves.toBe('done');
    await expect(job.now()).rejects.toBeInstanceOf(AbortedError);
  });

  it('a signal shared by many calls that complete keeps no listener, and aborting it later changes nothing', async () => {
    const { alice } = await connected();
    const ac = new AbortController();
    for (let i = 0; i < 50; i++) await alice.client.call('bob', 'job', 'now', [], { signal: ac.signal });
    expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
    ac.abort();
    expect(alice.client.pendingCalls).toBe(0);
  });

  it('takes `signal` as an option of call() and proxy(), and refuses one that is not an AbortSignal', async () => {
    const { alice } = await connected();
    await expect(alice.client.call('bob', 'job', 'now', [], { signal: new AbortController().signal })).resolves.toBe(1);
    await expect(alice.client.proxy<Job>('bob', 'job', { signal: AbortSignal.timeout(60_000) }).now()).resolves.toBe(2);
    await expect(alice.client.call('bob', 'job', 'now', [], { signal: 'x' as unknown as AbortSignal })).rejects.toThrow(/'signal' must be an AbortSignal/);
    expect(() => alice.client.proxy('bob', 'job', { signal: {} as AbortSignal })).toThrow(InvalidOptionsError);
  });
});

describe('RPC abort timing (fake timers)', () => {
  it('a call waiting for its peer to connect aborts at once, not at its timeout, and stops the timer', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const net = new FakeNetwork('alice', 'bob'); // not connected
    const server = new RpcServer(net.b);
    server.register('job', { now: () => 1 });
    const client = new RpcClient(net.a, { timeout: 60_000 });
    try {
      const ac = new AbortController();
      const call = client.call('bob', 'job', 'now', [], { signal: ac.signal });
      const settled = vi.fn();
      call.then(settled, settled);
      await vi.advanceTimersByTimeAsync(1000);
      expect(settled).not.toHaveBeenCalled();
      expect(vi.getTimerCount()).toBe(1); // the call's deadline
      ac.abort();
      await flush();
      expect(settled).toHaveBeenCalledTimes(1);
      expect(settled.mock.calls[0]![0]).toBeInstanceOf(AbortedError);
      expect((settled.mock.calls[0]![0] as Error).message).toMatch(/before it was sent/);
      expect(client.pendingCalls).toBe(0);
      expect(vi.getTimerCount()).toBe(0);
      // Connecting later sends nothing.
      net.connect();
      await flush();
      expect(net.trace.filter((t) => t.from === 'alice').length).toBe(0);
    } finally {
      void client.close();
      void server.close();
    }
  });
});
