/**
 * RPC over the real stack (Link, Packeter, Messaging) on 127.0.0.1.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ClosedError, RpcRemoteError, RpcUnknownMethodError } from '../../lib/errors.js';
import { Link } from '../../lib/link/index.js';
import { Messaging } from '../../lib/messaging/index.js';
import { Packeter } from '../../lib/packeter/index.js';
import { RpcClient, RpcServer, type RpcTransport } from '../../lib/rpc/index.js';
import { setLogger } from '../../lib/util/log.js';
import { deferred } from './fake-messaging.js';

interface Peer {
  link: Link;
  messaging: Messaging;
  server: RpcServer;
  client: RpcClient;
  close(): Promise<void>;
}

const open = new Set<Peer>();
afterEach(async () => {
  await Promise.all([...open].map((p) => p.close()));
});

function peer(ident: string): Peer {
  const link = new Link();
  const messaging = new Messaging(ident, new Packeter(link));
  const transport: RpcTransport = messaging; // compile-time check: Messaging satisfies RpcTransport
  const server = new RpcServer(transport);
  const client = new RpcClient(transport, { timeout: 10_000 });
  const p: Peer = {
    link,
    messaging,
    server,
    client,
    close: async () => {
      open.delete(p);
      void client.close();
      void server.close();
      await messaging.close();
    },
  };
  open.add(p);
  return p;
}

function waitConnect(m: Messaging, ident: string): Promise<number> {
  return new Promise((resolve) => {
    const fn = (connId: number, who: string) => {
      if (who !== ident) return;
      m.off('connect', fn);
      resolve(connId);
    };
    m.on('connect', fn);
  });
}

const fast = { reconnectDelay: () => 30 };

/** `listener` listens on a free port, `connector` connects to it; resolves with the URL once both are identified. */
async function pair(listener: Peer, connector: Peer): Promise<string> {
  const url = await listener.link.addListener('tcp://127.0.0.1:0');
  const both = Promise.all([waitConnect(listener.messaging, connector.messaging.identity), waitConnect(connector.messaging, listener.messaging.identity)]);
  connector.link.addConnector(url, fast);
  await both;
  return url;
}

describe('RPC over TCP', () => {
  it('calls both ways, including the NAT direction (the listener calls the connector)', async () => {
    const bob = peer('bob'); // listens
    const alice = peer('alice'); // connects (behind NAT)
    bob.server.register('calc', {
      add: (a: number, b: number) => a + b,
      boom: () => {
        throw new TypeError('nope');
      },
    });
    alice.server.register('phone', {
      async ring(times: number) {
        return 'ring'.repeat(times);
      },
    });
    await pair(bob, alice);

    const [sum, rings, bin] = await Promise.all([
      alice.client.call('bob', 'calc', 'add', [2, 3]),
      bob.client.proxy<{ ring(n: number): Promise<string> }>('alice', 'phone').ring(2),
      bob.client.call('alice', 'phone', 'ring', [0]),
    ]);
    expect([sum, rings, bin]).toEqual([5, 'ringring', '']);
    await expect(alice.client.call('bob', 'calc', 'boom')).rejects.toBeInstanceOf(RpcRemoteError);
    await expect(bob.client.call('alice', 'phone', 'constructor')).rejects.toBeInstanceOf(RpcUnknownMethodError);

    const many = await Promise.all(
      Array.from({ length: 200 }, (_, i) => (i % 2 ? alice.client.call('bob', 'calc', 'add', [i, 1]) : bob.client.call('alice', 'phone', 'ring', [1]))),
    );
    expect(many).toEqual(Array.from({ length: 200 }, (_, i) => (i % 2 ? i + 1 : 'ring')));
  });

  it('a connection dropped while a call runs: re-sent on reconnect, runs once, one reply', async () => {
    const bob = peer('bob');
    const alice = peer('alice');
    const gate = deferred();
    const started = deferred();
    let runs = 0;
    bob.server.register('job', {
      async run() {
        runs++;
        started.resolve();
        await gate.promise;
        return 'finished';
      },
    });
    await pair(bob, alice);
    const lines: string[] = [];
    setLogger((_ns, line) => lines.push(line), 'snakemq:rpc');
    const call = alice.client.call('bob', 'job', 'run');
    await started.promise;
    const back = waitConnect(alice.messaging, 'bob');
    // Drop every connection on the listener side; alice's connector reconnects.
    for (const id of bob.link.connectionIds()) await bob.link.close(id);
    await back;
    try {
      await vi.waitFor(() => expect(lines.some((l) => /still running/.test(l))).toBe(true), { timeout: 10_000 });
    } finally {
      setLogger(null, process.env.DEBUG ?? '');
    }
    expect(lines.some((l) => /re-sent call job.run from alice: still running/.test(l))).toBe(true);
    gate.resolve();
    await expect(call).resolves.toBe('finished');
    expect(runs).toBe(1);
  });

  it('a server restart during a call: the call completes against the new server, exactly once', async () => {
    const counter = { runs: 0, inc: (): number => ++counter.runs };
    const target = { inc: () => counter.inc() };
    const bob = peer('bob');
    const alice = peer('alice');
    bob.server.register('ctr', target);
    const url = await pair(bob, alice);
    await expect(alice.client.call('bob', 'ctr', 'inc')).resolves.toBe(1);

    const gone = new Promise<void>((resolve) => alice.messaging.once('disconnect', () => resolve()));
    await bob.close();
    await gone;
    const call = alice.client.call('bob', 'ctr', 'inc'); // pending across the restart

    const bob2 = peer('bob');
    bob2.server.register('ctr', target);
    const back = waitConnect(alice.messaging, 'bob');
    await bob2.link.addListener(url);
    await back;
    await expect(call).resolves.toBe(2);
    expect(counter.runs).toBe(2);
  });

  it("closing the caller's Messaging rejects its pending calls with ClosedError at once, not after their timeout", async () => {
    const bob = peer('bob');
    const alice = peer('alice');
    const gate = deferred();
    bob.server.register('job', { run: () => gate.promise });
    await pair(bob, alice);
    // No timeout at all: before this was handled the calls waited for ever (or their whole timeout).
    const sent = alice.client.call('bob', 'job', 'run', [], { timeout: Infinity });
    const waiting = alice.client.call('carol', 'job', 'run', [], { timeout: Infinity }); // carol never connects
    await vi.waitFor(() => expect(bob.server.running).toBe(1), { timeout: 10_000 });
    const closing = alice.messaging.close();
    await expect(sent).rejects.toThrow(ClosedError);
    await expect(waiting).rejects.toThrow(ClosedError);
    expect(alice.client.pendingCalls).toBe(0);
    await closing;
    await expect(alice.client.call('bob', 'job', 'run')).rejects.toThrow(ClosedError);
    expect(() => new RpcClient(alice.messaging)).toThrow(ClosedError);
    expect(() => new RpcServer(alice.messaging)).toThrow(ClosedError);
    gate.resolve();
  });
});
