import { describe, expect, it, vi } from 'vitest';
import { EventEmitter } from 'eventemitter3';
import { Packeter } from '../../lib/packeter/index.js';
import { PacketDecoder, encodePacket } from '../../lib/packeter/decoder.js';
import {
  BufferLimitError,
  InvalidArgumentError,
  InvalidOptionsError,
  PacketTooLargeError,
  UnknownConnectionError,
  type SnakeMQError,
} from '../../lib/errors.js';
import type { ConnectionInfo, DisconnectReason, LinkEvents } from '../../lib/link/types.js';

/** A transport that records writes and completes them on demand. */
class RecordingTransport extends EventEmitter<LinkEvents> {
  readonly writes: { connId: number; data: Buffer; cb?: (e?: SnakeMQError) => void }[] = [];
  readonly closed: { connId?: number; reason?: SnakeMQError }[] = [];
  writable = true;
  send(connId: number, data: Buffer, cb?: (e?: SnakeMQError) => void): boolean {
    this.writes.push({ connId, data: Buffer.from(data), cb });
    return this.writable;
  }
  isWritable(): boolean {
    return this.writable;
  }
  pause(): void {}
  resume(): void {}
  connection(): ConnectionInfo | undefined {
    return undefined;
  }
  async close(connId?: number, reason?: SnakeMQError): Promise<void> {
    this.closed.push({ connId, reason });
    if (connId !== undefined) this.emit('disconnect', connId, { by: 'local', error: reason } as DisconnectReason);
  }
  connect(id: number): void {
    this.emit('connect', { id, side: 'listener', endpoint: 'test://' });
  }
  /** Every packet written so far, decoded. */
  packets(connId: number): string[] {
    const out: string[] = [];
    const d = new PacketDecoder(1 << 30);
    for (const w of this.writes) if (w.connId === connId) d.push(w.data, (b, s, e) => out.push(b.toString('utf8', s, e)));
    return out;
  }
}

const tick = () => new Promise((r) => process.nextTick(r));

describe('Packeter', () => {
  it('coalesces many small packets of one tick into few writes, in order', async () => {
    const t = new RecordingTransport();
    const p = new Packeter(t as never);
    t.connect(1);
    for (let i = 0; i < 10_000; i++) p.sendPacket(1, Buffer.from(`packet ${i}`));
    await tick();
    // ~15 bytes a packet: 150 kB in 64 KiB batches.
    expect(t.writes.length).toBeLessThanOrEqual(4);
    expect(t.packets(1)).toEqual(Array.from({ length: 10_000 }, (_, i) => `packet ${i}`));
  });

  it('returns increasing packet ids and reports them sent cumulatively once written', async () => {
    const t = new RecordingTransport();
    const p = new Packeter(t as never);
    t.connect(1);
    const sent: number[] = [];
    p.on('sent', (_c, last) => sent.push(last));
    const ids = [p.sendPacket(1, Buffer.from('a')), p.sendPacket(1, Buffer.from('b')), p.sendPacket(1, Buffer.from('c'))];
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    await tick();
    expect(sent).toEqual([]);
    for (const w of t.writes) w.cb?.();
    expect(sent).toEqual([ids[2]]);
  });

  it('reports each write sent with the id of the last packet in it, also when batches fill up mid-tick', async () => {
    const t = new RecordingTransport();
    const p = new Packeter(t as never, { writeBatchSize: 1024 });
    t.connect(1);
    const ids: number[] = [];
    for (let i = 0; i < 300; i++) {
      if (i % 2 === 0) ids.push(p.sendPacket(1, Buffer.alloc(40, i)));
      else {
        ids.push(p.allocPacket(1, 40));
        p.allocated.fill(i, p.allocatedOffset, p.allocatedOffset + 40);
      }
    }
    await tick();
    expect(t.writes.length).toBeGreaterThan(3);
    const sent: number[] = [];
    p.on('sent', (_c, last) => sent.push(last));
    let seen = 0;
    const expected: number[] = [];
    for (const w of t.writes) {
      const d = new PacketDecoder(1 << 20);
      d.push(w.data, () => seen++);
      expected.push(ids[seen - 1]!);
      w.cb?.();
    }
    expect(seen).toBe(300);
    expect(sent).toEqual(expected);
  });

  it('writes a large payload without copying it into a batch', async () => {
    const t = new RecordingTransport();
    const p = new Packeter(t as never, { writeBatchSize: 1024 });
    t.connect(1);
    p.sendPacket(1, Buffer.from('small'));
    const big = Buffer.alloc(5000, 7);
    p.sendPacket(1, Buffer.from('head:'), big);
    p.sendPacket(1, Buffer.from('after'));
    await tick();
    const packets = t.packets(1);
    expect(packets[0]).toBe('small');
    expect(packets[1]).toBe('head:' + big.toString());
    expect(packets[2]).toBe('after');
  });

  it('sendPacketWith lets the caller write the payload into the batch, small or large', async () => {
    const t = new RecordingTransport();
    const p = new Packeter(t as never, { writeBatchSize: 1024 });
    t.connect(1);
    const write = (buf: Buffer, off: number, text: string) => void buf.write(text, off, 'latin1');
    p.sendPacketWith(1, 3, write, 'abc');
    p.sendPacket(1, Buffer.from('mid'));
    p.sendPacketWith(1, 2000, write, 'z'.repeat(2000));
    await tick();
    expect(t.packets(1)).toEqual(['abc', 'mid', 'z'.repeat(2000)]);
  });

  it('allocPacket reserves a packet in the batch for the caller to fill; one that does not fit a batch is refused', async () => {
    const t = new RecordingTransport();
    const p = new Packeter(t as never, { writeBatchSize: 1024 });
    t.connect(1);
    const ids: number[] = [];
    for (const text of ['one', 'two', 'x'.repeat(1020)]) {
      ids.push(p.allocPacket(1, text.length));
      p.allocated.write(text, p.allocatedOffset, 'latin1');
    }
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    expect(() => p.allocPacket(1, 1021)).toThrow(InvalidArgumentError);
    expect(() => p.allocPacket(2, 1)).toThrow(UnknownConnectionError);
    await tick();
    expect(t.packets(1)).toEqual(['one', 'two', 'x'.repeat(1020)]);
  });

  it('a too-large send is a typed error at the call; an unknown connection too', () => {
    const t = new RecordingTransport();
    const p = new Packeter(t as never, { maxPacketSize: 100 });
    t.connect(1);
    expect(() => p.sendPacket(1, Buffer.alloc(101))).toThrow(PacketTooLargeError);
    expect(() => p.sendPacket(1, Buffer.alloc(50), Buffer.alloc(51))).toThrow(PacketTooLargeError);
    expect(() => p.sendPacket(2, Buffer.alloc(1))).toThrow(UnknownConnectionError);
  });

  it('an oversize announced length closes that connection with a typed error, others keep working', async () => {
    const t = new RecordingTransport();
    const p = new Packeter(t as never, { maxPacketSize: 1000 });
    t.connect(1);
    t.connect(2);
    const errors: [number, SnakeMQError][] = [];
    const packets: [number, string][] = [];
    p.on('protocolError', (c, e) => errors.push([c, e]));
    p.on('packet', (c, payload) => packets.push([c, payload.toString()]));
    t.emit('data', 1, Buffer.from('0000ffff', 'hex'));
    t.emit('data', 2, Buffer.from('000000026869', 'hex'));
    expect(errors).toHaveLength(1);
    expect(errors[0]![0]).toBe(1);
    expect(errors[0]![1]).toBeInstanceOf(PacketTooLargeError);
    expect(t.closed[0]).toMatchObject({ connId: 1 });
    expect(packets).toEqual([[2, 'hi']]);
  });

  it('rejects unknown options', () => {
    expect(() => new Packeter(new RecordingTransport() as never, { maxPacketSise: 1 } as never)).toThrow(InvalidOptionsError);
    expect(() => new Packeter(new RecordingTransport() as never, { restrictedBudget: -1 })).toThrow(InvalidOptionsError);
    expect(() => new Packeter(new RecordingTransport() as never, { restrictedBudget: 1.5 })).toThrow(InvalidOptionsError);
  });

  describe('restricted connections', () => {
    const header = (size: number) => {
      const h = Buffer.alloc(4);
      h.writeUInt32BE(size, 0);
      return h;
    };

    it('accept only packets up to their limit until unrestricted', () => {
      const t = new RecordingTransport();
      const p = new Packeter(t as never, { maxPacketSize: 100_000 });
      const errors: [number, SnakeMQError][] = [];
      const packets: [number, number][] = [];
      p.on('protocolError', (c, e) => errors.push([c, e]));
      p.on('packet', (c, payload) => packets.push([c, payload.length]));
      p.on('connect', (info) => p.restrict(info.id, 4096));
      t.connect(1);
      t.connect(2);
      t.emit('data', 1, encodePacket(Buffer.alloc(4096)));
      t.emit('data', 2, encodePacket(Buffer.alloc(4096)));
      p.unrestrict(2);
      t.emit('data', 2, encodePacket(Buffer.alloc(50_000)));
      t.emit('data', 1, header(4097));
      expect(packets).toEqual([
        [1, 4096],
        [2, 4096],
        [2, 50_000],
      ]);
      expect(errors).toHaveLength(1);
      expect(errors[0]![0]).toBe(1);
      expect(errors[0]![1]).toBeInstanceOf(PacketTooLargeError);
      expect((errors[0]![1] as PacketTooLargeError).limit).toBe(4096);
      expect(t.closed).toEqual([{ connId: 1, reason: errors[0]![1] }]);
    });

    it('a limit above maxPacketSize is capped at it; a bad one is an argument error; an unknown connection is ignored', () => {
      const t = new RecordingTransport();
      const p = new Packeter(t as never, { maxPacketSize: 1000 });
      const errors: SnakeMQError[] = [];
      p.on('protocolError', (_c, e) => errors.push(e));
      t.connect(1);
      p.restrict(1, 4096);
      expect(() => p.restrict(1, -1)).toThrow(InvalidArgumentError);
      expect(() => p.restrict(1, 1.5)).toThrow(InvalidArgumentError);
      p.restrict(99, 10);
      p.unrestrict(99);
      t.emit('data', 1, header(1001));
      expect((errors[0] as PacketTooLargeError).limit).toBe(1000);
    });

    it('share one budget for their partial packets: the connection that would go over it is closed', () => {
      const t = new RecordingTransport();
      const p = new Packeter(t as never, { restrictedBudget: 10_000 });
      const errors: [number, SnakeMQError][] = [];
      p.on('protocolError', (c, e) => errors.push([c, e]));
      p.on('connect', (info) => p.restrict(info.id, 4096));
      const packets: number[] = [];
      p.on('packet', (c) => packets.push(c));
      for (let id = 1; id <= 5; id++) t.connect(id);
      t.connect(6); // not restricted: never counted
      p.unrestrict(6);
      const partial = encodePacket(Buffer.alloc(4000, 1)).subarray(0, 3004);
      for (const id of [1, 2, 3]) t.emit('data', id, partial);
      t.emit('data', 6, encodePacket(Buffer.alloc(20_000)).subarray(0, 15_000));
      expect(p.restrictedBufferedBytes).toBe(9000);
      expect(errors).toEqual([]);
      t.emit('data', 4, partial); // 12,000 > 10,000
      expect(errors).toHaveLength(1);
      expect(errors[0]![0]).toBe(4);
      expect(errors[0]![1]).toBeInstanceOf(BufferLimitError);
      expect(errors[0]![1]).toMatchObject({ code: 'SMQ_ERR_BUFFER_LIMIT', name: 'BufferLimitError', limit: 10_000 });
      expect(t.closed.map((c) => c.connId)).toEqual([4]);
      expect(p.restrictedBufferedBytes).toBe(9000);
      // A header alone counts too, until it is read.
      t.emit('data', 5, Buffer.from([0, 0]));
      expect(p.restrictedBufferedBytes).toBe(9002);
      // Completing a packet, leaving the restriction or disconnecting gives bytes back.
      t.emit('data', 1, encodePacket(Buffer.alloc(4000, 1)).subarray(3004));
      expect(packets).toEqual([1]);
      expect(p.restrictedBufferedBytes).toBe(6002);
      p.unrestrict(2);
      expect(p.restrictedBufferedBytes).toBe(3002);
      t.emit('disconnect', 3, { by: 'remote' });
      expect(p.restrictedBufferedBytes).toBe(2);
      // Restricting a connection that already holds bytes counts them (and may close it).
      p.restrict(2, 4096);
      expect(p.restrictedBufferedBytes).toBe(3002);
      t.emit('data', 2, Buffer.alloc(1000));
      expect(packets).toEqual([1, 2]);
      expect(p.restrictedBufferedBytes).toBe(2);
    });

    it('a packet handler that unrestricts (the peer identified) takes the connection out of the budget at once', () => {
      const t = new RecordingTransport();
      const p = new Packeter(t as never, { restrictedBudget: 100 });
      const errors: SnakeMQError[] = [];
      p.on('protocolError', (_c, e) => errors.push(e));
      p.on('connect', (info) => p.restrict(info.id, 50));
      p.on('packet', (c, payload) => {
        if (payload.toString() === 'identify') p.unrestrict(c);
      });
      t.connect(1);
      // The identification and the start of a big packet in one read.
      t.emit('data', 1, Buffer.concat([encodePacket(Buffer.from('identify')), encodePacket(Buffer.alloc(5000)).subarray(0, 4000)]));
      expect(errors).toEqual([]);
      expect(p.restrictedBufferedBytes).toBe(0);
    });
  });

  describe('write batch buffers', () => {
    /** Keeps what it was given by reference (no copy), with a snapshot to check it is left alone until completed. */
    class HoldingTransport extends RecordingTransport {
      readonly held: { data: Buffer; snapshot: Buffer; cb?: (e?: SnakeMQError) => void; done: boolean }[] = [];
      override send(connId: number, data: Buffer, cb?: (e?: SnakeMQError) => void): boolean {
        this.held.push({ data, snapshot: Buffer.from(data), cb, done: false });
        return super.send(connId, data, cb);
      }
      complete(error?: SnakeMQError): void {
        for (const h of this.held) {
          if (h.done) continue;
          h.done = true;
          h.cb?.(error);
        }
      }
      /** Every write not completed yet still holds the bytes it was given. */
      untouched(): boolean {
        return this.held.every((h) => h.done || h.data.equals(h.snapshot));
      }
    }

    const fill = (p: Packeter, from: number, n: number) => {
      for (let i = from; i < from + n; i++) p.sendPacket(1, Buffer.from(`packet ${i} `.padEnd(100, '.')));
    };

    it('are reused once their writes completed, never while one is under way', async () => {
      const t = new HoldingTransport();
      const p = new Packeter(t as never);
      t.connect(1);
      fill(p, 0, 2000); // about 3.3 batches
      await tick();
      fill(p, 2000, 2000); // nothing completed yet: fresh buffers only
      await tick();
      expect(t.untouched()).toBe(true);
      const before = new Set(t.held.map((h) => h.data.buffer));
      const heldBefore = t.held.length;
      t.complete();
      fill(p, 4000, 4000);
      await tick();
      const reused = t.held.slice(heldBefore).filter((h) => before.has(h.data.buffer));
      expect(reused.length).toBeGreaterThan(0);
      expect(t.untouched()).toBe(true);
      // And the bytes on the wire are exactly the packets, in order.
      expect(t.packets(1)).toEqual(Array.from({ length: 8000 }, (_, i) => `packet ${i} `.padEnd(100, '.')));
    });

    it('are four times as large for a connection that streams, and small again once it is quiet', async () => {
      const t = new HoldingTransport();
      const p = new Packeter(t as never);
      t.connect(1);
      const slabSizes = (from: number) => t.held.slice(from).map((h) => h.data.buffer.byteLength);
      fill(p, 0, 10_000); // about 1 MB in one tick
      await tick();
      expect(slabSizes(0)[0]).toBe(65536);
      expect(slabSizes(1).every((n) => n === 4 * 65536)).toBe(true);
      expect(Math.max(...t.held.map((h) => h.data.length))).toBeGreaterThan(65536);
      t.complete();
      let seen = t.held.length;
      fill(p, 10_000, 1); // a quiet tick: the stream buffer is given back
      await tick();
      fill(p, 10_001, 1);
      await tick();
      expect(slabSizes(seen)).toEqual([4 * 65536, 65536]);
      seen = t.held.length;
      fill(p, 10_002, 10);
      await tick();
      expect(slabSizes(seen)).toEqual([65536]); // the small buffer's rest serves the next ticks
      expect(t.packets(1)).toEqual(Array.from({ length: 10_012 }, (_, i) => `packet ${i} `.padEnd(100, '.')));
    });

    it('a connection that stops streaming gives its stream buffer back after a sweep interval without writes', async () => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
      try {
        const t = new HoldingTransport();
        const p = new Packeter(t as never);
        t.connect(1);
        t.connect(2);
        const sizes = (from: number, id: number) =>
          t.held
            .slice(from)
            .filter((h) => t.writes[t.held.indexOf(h)]!.connId === id)
            .map((h) => h.data.buffer.byteLength);
        const stream = (id: number) => {
          for (let i = 0; i < 10_000; i++) p.sendPacket(id, Buffer.alloc(100, id));
        };
        stream(1);
        stream(2);
        await tick();
        t.complete();
        // Connection 2 goes on streaming, a tick every 600 ms; connection 1 stops.
        for (let k = 0; k < 4; k++) {
          vi.advanceTimersByTime(600);
          const seen = t.held.length;
          stream(2);
          await tick();
          t.complete();
          expect(sizes(seen, 2).every((n) => n === 4 * 65536)).toBe(true);
        }
        const seen = t.held.length;
        p.sendPacket(1, Buffer.from('later'));
        await tick();
        expect(sizes(seen, 1)).toEqual([65536]);
        expect(t.packets(1).at(-1)).toBe('later');
      } finally {
        vi.useRealTimers();
      }
    });

    it('an idle connection keeps none: the rest of the buffer serves the next connection that writes', async () => {
      const t = new HoldingTransport();
      const p = new Packeter(t as never);
      for (let id = 1; id <= 100; id++) t.connect(id);
      for (let id = 1; id <= 100; id++) {
        p.sendPacket(id, Buffer.from(`to ${id}`));
        await tick();
        if (id % 2 === 0) t.complete(); // half of them while the write before is still under way
      }
      // One buffer for all (one per connection before); what was not yet written was never overwritten.
      expect(new Set(t.held.map((h) => h.data.buffer)).size).toBe(1);
      expect(t.untouched()).toBe(true);
      for (let id = 1; id <= 100; id++) expect(t.packets(id)).toEqual([`to ${id}`]);
    });

    it('a connection writing every tick reuses the same buffer from the front once its writes completed', async () => {
      const t = new HoldingTransport();
      const p = new Packeter(t as never);
      t.connect(1);
      for (let i = 0; i < 20; i++) {
        p.sendPacket(1, Buffer.from(`tick ${i}`));
        await tick();
        t.complete();
      }
      expect(new Set(t.held.map((h) => h.data.buffer)).size).toBe(1);
      expect(new Set(t.held.map((h) => h.data.byteOffset)).size).toBe(1);
    });

    it('bytes of writes under way and of retained buffers are never overwritten, whichever connections write', async () => {
      const t = new HoldingTransport();
      const p = new Packeter(t as never, { writeBatchSize: 16384 });
      let seed = 12345;
      const rnd = (n: number) => {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        return seed % n;
      };
      const conns = [1, 2, 3, 4, 5, 6];
      for (const id of conns) t.connect(id);
      const sent = new Map<number, string[]>(conns.map((id) => [id, []]));
      const kept: { slab: NonNullable<Packeter['allocatedSlab']>; start: number; bytes: Buffer }[] = [];
      for (let round = 0; round < 400; round++) {
        const writers = rnd(3) + 1;
        for (let w = 0; w < writers; w++) {
          const id = conns[rnd(conns.length)]!;
          const n = rnd(4) === 0 ? rnd(9000) : rnd(300);
          const text = `${id}:${round}:`.padEnd(n, String.fromCharCode(97 + rnd(26)));
          if (text.length + 4 <= 16384 && rnd(2) === 0) {
            p.allocPacket(id, text.length);
            p.allocated.write(text, p.allocatedOffset, 'latin1');
            if (rnd(3) === 0) {
              // Like Messaging's frames in flight: kept until "acknowledged".
              p.retain(p.allocatedSlab!);
              kept.push({ slab: p.allocatedSlab!, start: p.allocatedOffset, bytes: Buffer.from(text, 'latin1') });
            }
          } else p.sendPacket(id, Buffer.from(text, 'latin1'));
          sent.get(id)!.push(text);
        }
        await tick();
        expect(t.untouched()).toBe(true);
        for (const k of kept) expect(k.slab.buf.subarray(k.start, k.start + k.bytes.length).equals(k.bytes)).toBe(true);
        if (rnd(3) === 0) t.complete();
        while (kept.length > 0 && rnd(2) === 0) p.release(kept.splice(rnd(kept.length), 1)[0]!.slab);
      }
      for (const id of conns) expect(t.packets(id)).toEqual(sent.get(id));
    });

    it('are never reused after a failed write', async () => {
      const t = new HoldingTransport();
      const p = new Packeter(t as never);
      t.connect(1);
      fill(p, 0, 2000);
      await tick();
      const failed = new Set(t.held.map((h) => h.data.buffer));
      const heldBefore = t.held.length;
      t.complete(new UnknownConnectionError('gone'));
      t.emit('disconnect', 1, { by: 'error' });
      t.connect(2);
      for (let i = 0; i < 8000; i++) p.sendPacket(2, Buffer.alloc(100, 1));
      await tick();
      expect(t.held.length - heldBefore).toBeGreaterThan(2);
      expect(t.held.slice(heldBefore).some((h) => failed.has(h.data.buffer))).toBe(false);
    });
  });
});
