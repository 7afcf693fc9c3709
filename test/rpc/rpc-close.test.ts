/**
 * Who closes what: RPC objects are attached to a Messaging they do not own.
 * Their close() detaches them (one promise, idempotent), `await using`
 * closes them, and they close when the messaging closes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ClosedError } from '../../lib/errors.js';
import { Link } from '../../lib/link/index.js';
import { Messaging } from '../../lib/messaging/index.js';
import { Packeter } from '../../lib/packeter/index.js';
import { RpcClient, RpcServer } from '../../lib/rpc/index.js';

const open: Messaging[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((m) => m.close()));
});

function messaging(ident: string): Messaging {
  const m = new Messaging(ident, new Packeter(new Link()));
  open.push(m);
  return m;
}

describe('RpcClient / RpcServer close()', () => {
  it('client.close() returns one promise every time; pending calls have rejected with ClosedError when it resolves; the messaging stays open', async () => {
    const m = messaging('alice');
    const client = new RpcClient(m, { timeout: 60_000 });
    const settled: unknown[] = [];
    // bob never connects: the calls wait.
    const calls = [client.call('bob', 'calc', 'add', [1, 2]), client.call('bob', 'calc', 'add', [3, 4])].map((c) => c.catch((e: unknown) => settled.push(e)));
    expect(client.pendingCalls).toBe(2);
    const first = client.close();
    expect(first).toBeInstanceOf(Promise);
    expect(client.close()).toBe(first);
    await first;
    await Promise.all(calls);
    expect(settled).toHaveLength(2);
    for (const e of settled) expect(e).toBeInstanceOf(ClosedError);
    expect(client.pendingCalls).toBe(0);
    expect(m.closed).toBe(false);
    await expect(client.call('bob', 'calc', 'add')).rejects.toBeInstanceOf(ClosedError);
    // The messaging is still usable by others.
    const again = new RpcClient(m);
    expect(again.pendingCalls).toBe(0);
    await again.close();
  });

  it('server.close() returns one promise every time, and leaves the messaging open', async () => {
    const m = messaging('bob');
    const server = new RpcServer(m);
    server.register('calc', { add: (a: number, b: number) => a + b });
    const first = server.close();
    expect(first).toBeInstanceOf(Promise);
    expect(server.close()).toBe(first);
    await expect(first).resolves.toBeUndefined();
    expect(m.closed).toBe(false);
    // Detached: another server can take the messaging's requests.
    const next = new RpcServer(m);
    await next.close();
  });

  it('`await using` closes client and server at the end of the scope', async () => {
    const m = messaging('alice');
    let pending: Promise<unknown> | undefined;
    let client: RpcClient | undefined;
    {
      await using c = new RpcClient(m, { timeout: 60_000 });
      await using server = new RpcServer(m);
      server.register('calc', {});
      client = c;
      pending = c.call('bob', 'calc', 'add').catch((e: unknown) => e);
      expect(c.pendingCalls).toBe(1);
    }
    expect(await pending).toBeInstanceOf(ClosedError);
    expect(client.pendingCalls).toBe(0);
    await expect(client.call('bob', 'calc', 'add')).rejects.toBeInstanceOf(ClosedError);
    expect(m.closed).toBe(false);
  });

  it('they close when their messaging closes; close() afterwards still gives one resolved promise', async () => {
    const m = messaging('alice');
    const client = new RpcClient(m, { timeout: 60_000 });
    const server = new RpcServer(m);
    const pending = client.call('bob', 'calc', 'add').catch((e: unknown) => e);
    await m.close();
    const error = await pending;
    expect(error).toBeInstanceOf(ClosedError);
    expect((error as Error).message).toMatch(/messaging closed/);
    const c1 = client.close();
    expect(c1).toBeInstanceOf(Promise);
    expect(client.close()).toBe(c1);
    await c1;
    const s1 = server.close();
    expect(server.close()).toBe(s1);
    await s1;
  });
});
