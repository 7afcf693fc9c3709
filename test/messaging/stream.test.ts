/**
 * MessageStream (what `Messaging.messages()` returns) against a fake owner:
 * FIFO of concurrent next() calls, an exact high-water mark, one onLevel per
 * crossing, end() and return() settling every waiting next().
 */
import { describe, expect, it } from 'vitest';
import { MessageStream, type ReceivedMessage } from '../../lib/messaging/stream.js';
import { Message } from '../../lib/messaging/message.js';

/** The owner as Messaging is: pauses what delivered to a full stream, counts level and return calls. */
function fakeOwner(mark: number) {
  const owner = { level: 0, returned: 0, paused: new Set<number>(), stream: null as unknown as MessageStream };
  owner.stream = new MessageStream(
    mark,
    () => {
      owner.level++;
      owner.paused.clear(); // resume everything once no stream is full
    },
    () => owner.returned++,
  );
  return owner;
}

const item = (i: number, connId = 1): ReceivedMessage => ({ connId, ident: `peer${connId}`, message: new Message(`m${i}`) });
const text = (r: IteratorResult<ReceivedMessage>) => (r.done ? 'done' : r.value.message.data.toString());
const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('MessageStream', () => {
  it('settles many concurrent next() calls in order, each with its own message', async () => {
    const { stream } = fakeOwner(10);
    const pending = Array.from({ length: 1000 }, () => stream.next());
    for (let i = 0; i < 1000; i++) expect(stream.push(item(i))).toBe(false);
    expect((await Promise.all(pending)).map(text)).toEqual(Array.from({ length: 1000 }, (_, i) => `m${i}`));
    expect(stream.buffered).toBe(0);
  });

  it('interleaved: waiting next() calls take messages first, the rest are buffered in order', async () => {
    const { stream } = fakeOwner(100);
    const a = stream.next();
    const b = stream.next();
    stream.push(item(0));
    stream.push(item(1));
    stream.push(item(2));
    stream.push(item(3));
    expect([text(await a), text(await b)]).toEqual(['m0', 'm1']);
    expect(stream.buffered).toBe(2);
    expect(text(await stream.next())).toBe('m2');
    expect(text(await stream.next())).toBe('m3');
  });

  it('end() settles every waiting next() with done; buffered messages are still read first, then done for ever', async () => {
    const owner = fakeOwner(10);
    const { stream } = owner;
    const waiting = Array.from({ length: 5 }, () => stream.next());
    stream.end();
    expect((await Promise.all(waiting)).map(text)).toEqual(Array(5).fill('done'));
    expect(stream.push(item(9))).toBe(false); // dropped after the end
    expect(text(await stream.next())).toBe('done');
    expect(owner.returned).toBe(0);

    const other = fakeOwner(10).stream;
    other.push(item(0));
    other.push(item(1));
    other.end();
    expect([text(await other.next()), text(await other.next()), text(await other.next())]).toEqual(['m0', 'm1', 'done']);
  });

  it('return() discards the buffer, settles waiting next() calls with done and calls onReturn once', async () => {
    const owner = fakeOwner(10);
    const { stream } = owner;
    const waiting = [stream.next(), stream.next()];
    expect(await stream.return()).toEqual({ value: undefined, done: true });
    expect((await Promise.all(waiting)).map(text)).toEqual(['done', 'done']);
    await stream.return();
    expect(owner.returned).toBe(1);
    expect(stream.push(item(0))).toBe(false);
    expect(text(await stream.next())).toBe('done');

    const full = fakeOwner(2);
    full.stream.push(item(0));
    full.stream.push(item(1));
    await full.stream.return();
    expect(full.stream.buffered).toBe(0);
    expect(full.returned).toBe(1);
  });

  it('break out of for await ends it through return()', async () => {
    const owner = fakeOwner(10);
    for (let i = 0; i < 5; i++) owner.stream.push(item(i));
    const seen: string[] = [];
    for await (const r of owner.stream) {
      seen.push(r.message.data.toString());
      if (seen.length === 2) break;
    }
    expect(seen).toEqual(['m0', 'm1']);
    expect(owner.returned).toBe(1);
    expect(owner.stream.buffered).toBe(0);
  });

  it('the mark is exact: push returns true from the mark-th buffered message on, for every message while full', () => {
    const mark = 5;
    const owner = fakeOwner(mark);
    const { stream } = owner;
    const results: boolean[] = [];
    for (let i = 0; i < 8; i++) {
      const connId = (i % 3) + 1;
      const full = stream.push(item(i, connId));
      results.push(full);
      if (full) owner.paused.add(connId);
    }
    expect(results).toEqual([false, false, false, false, true, true, true, true]);
    expect(stream.isFull).toBe(true);
    // Only the connections whose messages arrived while it was full were paused.
    expect([...owner.paused].sort()).toEqual([1, 2, 3]);
    const one = fakeOwner(1);
    expect(one.stream.push(item(0))).toBe(true);
  });

  it('onLevel is called once per crossing below the mark, not per message read', async () => {
    const owner = fakeOwner(4);
    const { stream } = owner;
    for (let i = 0; i < 10; i++) stream.push(item(i));
    owner.paused.add(1);
    // 10 buffered: reading down to 4 stays full, the 7th read (to 3) crosses.
    for (let i = 0; i < 6; i++) await stream.next();
    expect(owner.level).toBe(0);
    expect(owner.paused.size).toBe(1);
    await stream.next();
    expect(owner.level).toBe(1);
    expect(owner.paused.size).toBe(0);
    // Read to empty: no more calls.
    for (let i = 0; i < 3; i++) await stream.next();
    expect(owner.level).toBe(1);
    // Below the mark without having reached it: no call.
    stream.push(item(0));
    await stream.next();
    expect(owner.level).toBe(1);
    // A second crossing: a second call.
    for (let i = 0; i < 4; i++) stream.push(item(i));
    await stream.next();
    expect(owner.level).toBe(2);
  });

  it('a mark reached and left many times, with a reader and a writer taking turns, calls onLevel exactly once per crossing', async () => {
    const owner = fakeOwner(64);
    const { stream } = owner;
    let crossingsUp = 0;
    let wasFull = false;
    let read = 0;
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 100; i++) {
        const full = stream.push(item(i));
        if (full && !wasFull) crossingsUp++;
        wasFull = full;
      }
      while (stream.buffered > 0) {
        await stream.next();
        read++;
        if (stream.buffered < 64) wasFull = false;
      }
      await turn();
    }
    expect(read).toBe(5000);
    expect(crossingsUp).toBe(50);
    expect(owner.level).toBe(50);
  });

  it('keeps order across its buffer compaction (more than 4096 read with more buffered)', async () => {
    const { stream } = fakeOwner(1 << 20);
    for (let i = 0; i < 10_000; i++) stream.push(item(i));
    for (let i = 0; i < 10_000; i++) {
      if (i === 5000) for (let j = 10_000; j < 12_000; j++) stream.push(item(j));
      expect(text(await stream.next())).toBe(`m${i}`);
    }
    for (let j = 10_000; j < 12_000; j++) expect(text(await stream.next())).toBe(`m${j}`);
    expect(stream.buffered).toBe(0);
  });
});
