import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { InvalidArgumentError, UnknownConnectionError, type SnakeMQError } from '../../lib/errors.js';
import type { ConnId, ConnectionInfo, LinkEvents, Transport } from '../../lib/link/types.js';
import { Throttle } from '../../lib/throttle/index.js';

/**
 * A minimal Transport written as a user would: connections are in memory,
 * `send` records when each byte arrived (by the faked clock), nothing ever
 * pushes back. Only the required members, plus markEstablished.
 */
class MemoryTransport implements Transport {
  readonly #events = new EventEmitter();
  readonly #conns = new Map<ConnId, ConnectionInfo>();
  /** [performance.now(), bytes] per send that reached this transport. */
  readonly writes: [number, number][] = [];
  readonly established: ConnId[] = [];
  closes = 0;

  get delivered(): number {
    return this.writes.reduce((n, [, bytes]) => n + bytes, 0);
  }

  open(id: ConnId): void {
    const info: ConnectionInfo = { id, side: 'connector', endpoint: 'memory://peer' };
    this.#conns.set(id, info);
    this.#events.emit('connect', info);
  }

  on<E extends keyof LinkEvents>(event: E, fn: LinkEvents[E]): this {
    this.#events.on(event, fn);
    return this;
  }
  once<E extends keyof LinkEvents>(event: E, fn: LinkEvents[E]): this {
    this.#events.once(event, fn);
    return this;
  }
  off<E extends keyof LinkEvents>(event: E, fn?: LinkEvents[E]): this {
    if (fn) this.#events.off(event, fn);
    else this.#events.removeAllListeners(event);
    return this;
  }
  send(connId: ConnId, data: Buffer, onWritten?: (error?: SnakeMQError) => void): boolean {
    if (!this.#conns.has(connId)) {
      if (onWritten) process.nextTick(onWritten, new UnknownConnectionError(`no connection ${connId}`));
      return false;
    }
    this.writes.push([performance.now(), data.length]);
    if (onWritten) process.nextTick(onWritten);
    return true;
  }
  isWritable(connId: ConnId): boolean {
    return this.#conns.has(connId);
  }
  pause(): void {}
  resume(): void {}
  connection(connId: ConnId): ConnectionInfo | undefined {
    return this.#conns.get(connId);
  }
  markEstablished(connId: ConnId): void {
    this.established.push(connId);
  }
  close(connId?: ConnId): Promise<void> {
    if (connId === undefined) {
      this.closes++;
      for (const id of [...this.#conns.keys()]) this.#end(id);
    } else if (this.#conns.has(connId)) {
      this.#end(connId);
    }
    return Promise.resolve();
  }
  #end(id: ConnId): void {
    this.#conns.delete(id);
    this.#events.emit('disconnect', id, { by: 'local' });
  }
}

/**
 * Sends `bytes` at once through `top`, then runs the faked clock in 10 ms
 * steps (at most `maxMs`) until everything reached `bottom`, checking after
 * each step that no more arrived than `burst + rate * elapsed` allows.
 */
async function run(top: Throttle, bottom: MemoryTransport, bytes: number, rate: number, burst: number, maxMs: number) {
  const start = performance.now();
  const written: (SnakeMQError | undefined)[] = [];
  let drains = 0;
  top.on('drain', () => drains++);
  expect(top.send(1, Buffer.alloc(bytes), (e) => written.push(e))).toBe(false);
  for (let step = 0; bottom.delivered < bytes && step * 10 < maxMs; step++) {
    await vi.advanceTimersByTimeAsync(10);
    expect(bottom.delivered).toBeLessThanOrEqual(burst + (rate * (performance.now() - start)) / 1000);
  }
  const elapsed = performance.now() - start;
  expect(bottom.delivered).toBe(bytes);
  await vi.waitFor(() => expect(written).toEqual([undefined]));
  expect(drains).toBe(1);
  expect(top.activeTimers).toBe(0);
  return elapsed;
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe('Throttle over any Transport', () => {
  it('throttles a hand-written Transport at its rate (fake clock)', async () => {
    const memory = new MemoryTransport();
    const throttle = new Throttle(memory, { bytesPerSecond: 10_000, burst: 1000 });
    const connects: ConnectionInfo[] = [];
    throttle.on('connect', (info) => connects.push(info));
    memory.open(1);
    expect(connects.map((c) => c.id)).toEqual([1]);
    expect(throttle.connection(1)).toBe(memory.connection(1));

    // 1000 bytes at once (the burst), the other 9000 at 10 kB/s: 0.9 s.
    const elapsed = await run(throttle, memory, 10_000, 10_000, 1000, 5000);
    expect(memory.writes[0]).toEqual([expect.any(Number), 1000]);
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThanOrEqual(1000);
    expect(throttle.isWritable(1)).toBe(true);

    throttle.markEstablished(1);
    expect(memory.established).toEqual([1]);
    await throttle.close();
  });

  it('a Throttle over a Throttle goes at the lower of the two rates', async () => {
    const memory = new MemoryTransport();
    const inner = new Throttle(memory, { bytesPerSecond: 5000, burst: 500 });
    const outer = new Throttle(inner, { bytesPerSecond: 20_000, burst: 2000 });
    expect(outer.transport).toBe(inner);
    memory.open(1);

    // The inner bucket bounds it: 500 bytes at once, the other 4500 at 5 kB/s.
    const elapsed = await run(outer, memory, 5000, 5000, 500, 5000);
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThanOrEqual(1100);
    expect(inner.throttledConnections).toBe(0);
    expect(outer.throttledConnections).toBe(0);

    // Forwarded through both layers; close closes the whole stack once.
    outer.markEstablished(1);
    expect(memory.established).toEqual([1]);
    await outer.close();
    expect(memory.closes).toBe(1);
  });

  it('close() closes the transport below once and returns the same promise; `await using` closes it', async () => {
    const memory = new MemoryTransport();
    let throttle: Throttle;
    {
      await using t = new Throttle(memory, { bytesPerSecond: 1000 });
      throttle = t;
      memory.open(1);
      expect(t.send(1, Buffer.alloc(5000))).toBe(false);
      expect(t.activeTimers).toBe(1);
    }
    expect(memory.closes).toBe(1);
    expect(throttle.activeTimers).toBe(0);
    const first = throttle.close();
    expect(throttle.close()).toBe(first);
    expect(throttle[Symbol.asyncDispose]()).toBe(first);
    await first;
    expect(memory.closes).toBe(1);
  });

  it('listener/connector calls fail clearly when the transport below has none', async () => {
    const throttle = new Throttle(new MemoryTransport(), { bytesPerSecond: 1000 });
    expect(() => throttle.addConnector('tcp://127.0.0.1:4000')).toThrow(InvalidArgumentError);
    await expect(throttle.addListener('tcp://127.0.0.1:0')).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(throttle.removeListener('tcp://127.0.0.1:4000')).rejects.toThrow(/has no removeListener/);
    await expect(throttle.removeConnector('tcp://127.0.0.1:4000')).rejects.toThrow(/has no removeConnector/);
    await throttle.close();
  });
});
