/**
 * Write-batch buffers ({@link Slab}s) of a Packeter and their reuse: small
 * ones of `writeBatchSize` bytes, and stream-sized ones for connections that
 * fill a batch within one tick. The Packeter fills them (see its
 * `reserve`/`flush`); this module decides which buffer serves next.
 * @module
 */
import { Buffer } from 'node:buffer';

/**
 * A write-batch buffer. It is filled from the front by one connection at a
 * time, in batches that are flushed as parts of it. A connection that is not
 * streaming gives it back at the end of the tick: its free rest then goes to
 * the Packeter's pool and serves the next connection that writes (an idle
 * connection holds no buffer); once nobody fills it and every write from it
 * has completed (and a caller that {@link Packeter.retain}ed it released it),
 * it is reused from the front: the same few buffers, warm in the caches,
 * serve all connections, instead of a fresh allocation (and its page faults
 * and garbage) per batch.
 */
export interface Slab {
  readonly buf: Buffer;
  /** A DataView over all of `buf`. */
  readonly view: DataView;
  /** Writes from it not completed yet. */
  pending: number;
  /** A connection still fills it. */
  open: boolean;
  /** A write from it failed: it is left to the garbage collector, never reused. */
  failed: boolean;
  /** Holds of a caller that keeps packets of it (see `Packeter.retain`): not reused while any is left. */
  retained: number;
  /** It is in the Packeter's pool. */
  pooled: boolean;
  /** Where its free rest starts (while it is pooled). */
  tail: number;
}

/** Batch buffers of `writeBatchSize` bytes (free, or with a free rest) kept for reuse per Packeter. */
const SLAB_POOL_SIZE = 8;
/** A stream's batch buffers are this many times `writeBatchSize` (fewer, bigger socket writes). */
const STREAM_BATCH_FACTOR = 4;
/** Stream batch buffers kept for reuse per Packeter. */
const STREAM_SLAB_POOL_SIZE = 4;
/** A batch buffer with less room than this left is flushed for good (and a fresh one taken). */
export const MIN_BATCH_TAIL = 4096;
/** The batch buffers kept for reuse by one Packeter (the last one given back serves first). @internal */
export class SlabPool {
  private readonly small: Slab[] = [];
  private readonly stream: Slab[] = [];

  constructor(private readonly batchSize: number) {}

  /** A batch buffer with room for `need` bytes from its `tail`, from the pool when it has one. */
  take(streaming: boolean, need: number): Slab {
    const pool = streaming ? this.stream : this.small;
    let slab: Slab | undefined;
    for (let i = pool.length - 1; i >= 0; i--) {
      const candidate = pool[i]!;
      if (candidate.failed) pool.splice(i, 1);
      else if (candidate.buf.length - candidate.tail >= need) {
        slab = candidate;
        pool.splice(i, 1);
        break;
      }
    }
    if (slab === undefined) {
      const buf = Buffer.allocUnsafe(streaming ? STREAM_BATCH_FACTOR * this.batchSize : this.batchSize);
      slab = {
        buf,
        view: new DataView(buf.buffer, buf.byteOffset, buf.byteLength),
        pending: 0,
        open: true,
        failed: false,
        retained: 0,
        pooled: false,
        tail: 0,
      };
    } else {
      slab.pooled = false;
      slab.open = true;
    }
    return slab;
  }

  /** A connection stopped filling `slab`; what lies before `tail` is written (or being written) or discarded. */
  giveBack(slab: Slab, tail: number): void {
    slab.open = false;
    if (slab.pending > 0 || slab.retained > 0) {
      // Still in use before `tail`: its rest can take other connections' batches meanwhile.
      if (!slab.failed && slab.buf.length === this.batchSize && slab.buf.length - tail >= MIN_BATCH_TAIL && this.small.length < SLAB_POOL_SIZE) {
        slab.tail = tail;
        slab.pooled = true;
        this.small.push(slab);
      }
      return;
    }
    this.recycle(slab);
  }

  /** Back into the pool once nothing uses it. */
  recycle(slab: Slab): void {
    // Only once no write uses it: the transport is done with a buffer when it reports the write complete.
    if (slab.open || slab.pending > 0 || slab.failed || slab.retained > 0) return;
    slab.tail = 0;
    if (slab.pooled) return;
    const pool = slab.buf.length === this.batchSize ? this.small : this.stream;
    if (pool.length < (pool === this.small ? SLAB_POOL_SIZE : STREAM_SLAB_POOL_SIZE)) {
      slab.pooled = true;
      pool.push(slab);
    }
  }
}
