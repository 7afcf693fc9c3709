import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { ClosedError, InvalidOptionsError, UnknownConnectionError, type SnakeMQError } from '../../lib/errors.js';
import { Link } from '../../lib/link/index.js';
import type { ConnectionInfo } from '../../lib/link/types.js';
import { Throttle } from '../../lib/throttle/index.js';
import { Recorder, Sink, nextEvent, resourceCounts, waitUntil } from '../link/helpers.js';

let closers: (() => Promise<void>)[] = [];

afterEach(async () => {
  await Promise.all(closers.map((c) => c()));
  closers = [];
});

interface Setup {
  throttle: Throttle;
  receiver: Link;
  sendId: number;
  recvId: number;
  sink: Sink;
}

/** A throttled sender connected over TCP to a plain receiver. */
async function setup(bytesPerSecond: number, burst?: number): Promise<Setup> {
  const receiver = new Link();
  const throttle = new Throttle(new Link(), burst === undefined ? { bytesPerSecond } : { bytesPerSecond, burst });
  closers.push(
    () => receiver.close(),
    () => throttle.close(),
  );
  const sink = new Sink(receiver);
  const url = await receiver.addListener('tcp://127.0.0.1:0');
  const recv = nextEvent(receiver, 'connect');
  const send = nextEvent(throttle, 'connect');
  throttle.addConnector(url, { reconnectInterval: 60_000 });
  const [[r], [s]] = await Promise.all([recv, send]);
  return { throttle, receiver, sendId: s.id, recvId: r.id, sink };
}

describe('Throttle', () => {
  it('sends 200 kB at 100 kB/s in no less than 1.5 s, complete and in order', async () => {
    const { throttle, sendId, recvId, sink } = await setup(100_000);
    expect(throttle.burst).toBe(10_000);
    const payload = randomBytes(200_000);
    const chunk = 4000;
    const written: number[] = [];
    const results: boolean[] = [];
    const drains: number[] = [];
    throttle.on('drain', (id) => {
      drains.push(id);
      // drain means everything queued went through.
      expect(throttle.throttledConnections).toBe(0);
    });

    const start = performance.now();
    for (let i = 0; i < payload.length; i += chunk) {
      const n = i / chunk;
      results.push(
        throttle.send(sendId, payload.subarray(i, i + chunk), (err?: SnakeMQError) => {
          expect(err).toBeUndefined();
          written.push(n);
        }),
      );
    }
    // The burst passes straight through; once throttled, it stays so (no timer can run in between).
    expect(results.slice(0, 2)).toEqual([true, true]);
    const firstFalse = results.indexOf(false);
    expect(firstFalse).toBeGreaterThanOrEqual(2);
    expect(results.slice(firstFalse).every((r) => r === false)).toBe(true);
    expect(throttle.isWritable(sendId)).toBe(false);
    expect(throttle.throttledConnections).toBe(1);
    expect(throttle.activeTimers).toBe(1);

    await waitUntil(() => sink.length(recvId) === payload.length, 20_000, 'all bytes');
    const elapsed = performance.now() - start;
    expect(elapsed).toBeGreaterThanOrEqual(1500);
    expect(sink.bytes(recvId).equals(payload)).toBe(true);

    await waitUntil(() => drains.length === 1 && written.length === results.length);
    expect(drains).toEqual([sendId]);
    expect(written).toEqual(results.map((_, i) => i));
    expect(throttle.isWritable(sendId)).toBe(true);
    expect(throttle.throttledConnections).toBe(0);
    expect(throttle.activeTimers).toBe(0);
  });

  it('honours backpressure: false, then drain, repeatedly', async () => {
    const { throttle, sendId, recvId, sink } = await setup(400_000);
    const payload = randomBytes(120_000);
    let offset = 0;
    let falses = 0;
    let drains = 0;
    throttle.on('drain', () => {
      drains++;
      pump();
    });
    const pump = () => {
      while (offset < payload.length) {
        const ok = throttle.send(sendId, payload.subarray(offset, offset + 5000));
        offset += 5000;
        if (!ok) {
          falses++;
          return;
        }
      }
    };
    pump();
    await waitUntil(() => sink.length(recvId) === payload.length, 20_000);
    expect(sink.bytes(recvId).equals(payload)).toBe(true);
    expect(falses).toBeGreaterThan(1);
    await waitUntil(() => drains === falses);
  });

  it('arms no timer while sends fit in the bucket', async () => {
    const { throttle, sendId, recvId, sink } = await setup(1_000_000, 100_000);
    let written = 0;
    for (let i = 0; i < 10; i++) {
      expect(throttle.send(sendId, Buffer.alloc(1000, i), () => written++)).toBe(true);
      expect(throttle.activeTimers).toBe(0);
      expect(throttle.throttledConnections).toBe(0);
    }
    await waitUntil(() => sink.length(recvId) === 10_000 && written === 10);
    // Every write completed (nothing left to schedule): still no timer.
    expect(throttle.activeTimers).toBe(0);
    expect(throttle.isWritable(sendId)).toBe(true);
  });

  it('slices a buffer larger than the burst; onWritten fires once, after the last slice', async () => {
    const { throttle, sendId, recvId, sink } = await setup(200_000, 8000);
    const payload = randomBytes(50_000);
    const calls: (SnakeMQError | undefined)[] = [];
    const start = performance.now();
    expect(throttle.send(sendId, payload, (err) => calls.push(err))).toBe(false);
    expect(throttle.throttledConnections).toBe(1);
    await nextEvent(throttle, 'drain');
    await waitUntil(() => sink.length(recvId) === payload.length && calls.length === 1);
    // 8000 bytes at once, the other 42000 at 200 kB/s.
    expect(performance.now() - start).toBeGreaterThanOrEqual(200);
    expect(sink.chunks.get(recvId)!.length).toBeGreaterThan(1);
    expect(calls).toEqual([undefined]);
    expect(sink.bytes(recvId).equals(payload)).toBe(true);
  });

  it('sendv paces the buffers like one send, in order, with one onWritten', async () => {
    const { throttle, sendId, recvId, sink } = await setup(200_000, 8000);
    const head = randomBytes(100);
    const body = randomBytes(30_000);
    const calls: (SnakeMQError | undefined)[] = [];
    const start = performance.now();
    throttle.sendv(sendId, [head, body], (err) => calls.push(err));
    await waitUntil(() => sink.length(recvId) === head.length + body.length && calls.length === 1);
    expect(performance.now() - start).toBeGreaterThanOrEqual(100);
    expect(calls).toEqual([undefined]);
    expect(sink.bytes(recvId).equals(Buffer.concat([head, body]))).toBe(true);
  });

  it('throttles each connection on its own', async () => {
    const receiver = new Link();
    const throttle = new Throttle(new Link(), { bytesPerSecond: 50_000 });
    closers.push(
      () => receiver.close(),
      () => throttle.close(),
    );
    const urls = [await receiver.addListener('tcp://127.0.0.1:0'), await receiver.addListener('tcp://127.0.0.1:0')];
    const infos: ConnectionInfo[] = [];
    throttle.on('connect', (info) => infos.push(info));
    for (const url of urls) throttle.addConnector(url);
    await waitUntil(() => infos.length === 2);
    for (const info of infos) expect(throttle.send(info.id, Buffer.alloc(20_000))).toBe(false);
    expect(throttle.throttledConnections).toBe(2);
    expect(throttle.activeTimers).toBe(2);
    await throttle.close(infos[0]!.id);
    expect(throttle.throttledConnections).toBe(1);
    expect(throttle.activeTimers).toBe(1);
  });

  it('drops the queue on disconnect and reports the error to onWritten', async () => {
    const { throttle, receiver, sendId, recvId } = await setup(10_000);
    const errors: (SnakeMQError | undefined)[] = [];
    throttle.send(sendId, Buffer.alloc(1000));
    for (let i = 0; i < 5; i++) expect(throttle.send(sendId, Buffer.alloc(5000), (e) => errors.push(e))).toBe(false);
    expect(throttle.activeTimers).toBe(1);
    const gone = nextEvent(throttle, 'disconnect');
    await receiver.close(recvId);
    const [id, reason] = await gone;
    expect(id).toBe(sendId);
    expect(reason.by).toBe('remote');
    await waitUntil(() => errors.length === 5);
    expect(errors.every((e) => e !== undefined && e.code === 'SMQ_ERR_CONNECTION')).toBe(true);
    expect(throttle.activeTimers).toBe(0);
    expect(throttle.throttledConnections).toBe(0);
  });

  it('close() clears timers, fails queued sends with ClosedError and closes the link', async () => {
    const before = resourceCounts();
    const { throttle, receiver, sendId } = await setup(10_000);
    const errors: (SnakeMQError | undefined)[] = [];
    throttle.send(sendId, Buffer.alloc(50_000), (e) => errors.push(e));
    expect(throttle.activeTimers).toBe(1);
    const closing = throttle.close();
    expect(throttle.activeTimers).toBe(0);
    await closing;
    await throttle.close();
    await receiver.close();
    await waitUntil(() => errors.length === 1);
    expect(errors[0]).toBeInstanceOf(ClosedError);
    expect((throttle.transport as Link).closed).toBe(true);
    const late = await new Promise<SnakeMQError | undefined>((r) => expect(throttle.send(sendId, Buffer.alloc(1), r)).toBe(false));
    expect(late).toBeInstanceOf(ClosedError);
    const after = resourceCounts();
    for (const [name, count] of Object.entries(after)) {
      expect(`${name}: ${count}`).toBe(`${name}: ${Math.min(count, before[name]!)}`);
    }
  });

  it('re-emits link events and forwards listener/connector calls', async () => {
    const throttle = new Throttle(new Link(), { bytesPerSecond: 1_000_000 });
    const peer = new Link();
    closers.push(
      () => throttle.close(),
      () => peer.close(),
    );
    const rec = new Recorder(throttle);
    const url = await throttle.addListener('tcp://127.0.0.1:0');
    const connected = nextEvent(throttle, 'connect');
    peer.addConnector(url, { reconnectInterval: 60_000 });
    const [info] = await connected;
    expect(throttle.connection(info.id)).toBe(info);
    const [pid] = await waitUntil(() => peer.connectionIds().length === 1).then(() => peer.connectionIds());
    peer.send(pid!, Buffer.from('hi'));
    await nextEvent(throttle, 'data');
    throttle.pause(info.id);
    throttle.resume(info.id);

    const failedKey = throttle.addConnector('tcp://127.0.0.1:1', { reconnectInterval: 60_000 });
    await nextEvent(throttle, 'reconnect');
    await throttle.removeConnector(failedKey);
    await throttle.removeListener(url);
    await waitUntil(() => rec.of('disconnect').length === 1);
    expect(rec.of('connectFailed').length).toBe(1);
    expect(rec.of('data')[0]![1].toString()).toBe('hi');

    const err = await new Promise<SnakeMQError | undefined>((r) => throttle.send(12345, Buffer.from('x'), r));
    expect(err).toBeInstanceOf(UnknownConnectionError);
  });

  it('validates its options', () => {
    const link = new Link();
    expect(() => new Throttle(link, {} as never)).toThrow(/bytesPerSecond' is required/);
    expect(() => new Throttle(link, undefined as never)).toThrow(InvalidOptionsError);
    expect(() => new Throttle(link, { bytesPerSecond: 0 })).toThrow(InvalidOptionsError);
    expect(() => new Throttle(link, { bytesPerSecond: -5 })).toThrow(InvalidOptionsError);
    expect(() => new Throttle(link, { bytesPerSecond: Infinity })).toThrow(InvalidOptionsError);
    expect(() => new Throttle(link, { bytesPerSecond: 100, burst: 0 })).toThrow(InvalidOptionsError);
    expect(() => new Throttle(link, { bytesPerSecond: 100, brust: 10 } as never)).toThrow(/unknown option 'brust'/);
    expect(new Throttle(link, { bytesPerSecond: 5 }).burst).toBe(1);
    expect(new Throttle(link, { bytesPerSecond: 1000, burst: 64 }).burst).toBe(64);
  });
});
