/**
 * The calls collected for one transaction of the group commit ({@link Batch})
 * and the rows it will insert ({@link PendingInsert}). Plain data: builds on
 * nothing; lib/storage/sqlite/storage.ts fills and writes them.
 * @module
 */
import type { Buffer } from 'node:buffer';

/** @internal A message to insert, as pushed (its TTL may be updated, or it may be cancelled, before the batch is written). */
export interface PendingInsert {
  readonly ident: string;
  /** JSON.stringify(ident), computed once per push() call. */
  readonly identJson: string;
  readonly uuid: Buffer;
  readonly data: Buffer;
  readonly flags: number;
  ttl: number | null;
  cancelled: boolean;
}

/**
 * The calls collected for one transaction, reduced so that running the
 * DELETEs, then the TTL UPDATEs, then the INSERTs gives the same result as
 * applying the calls one by one: a remove cancels a push of the same batch, a
 * TTL update is folded into a push of the same batch, and DELETE/UPDATE (run
 * before the INSERTs) therefore only need to reach rows committed earlier.
 * Forgets run last: a call on a forgotten queue other than `setAwaySince`
 * (which overrides the forget) starts the next batch, so a forget is the last
 * call on its queue in a batch.
 * @internal
 */
export class Batch {
  readonly inserts: PendingInsert[] = [];
  /** uuid (latin1) + ident -> pending inserts carrying it; built on the first remove/updateTtl. */
  index: Map<string, PendingInsert[]> | null = null;
  /** ident -> uuid (latin1) -> uuid */
  readonly deletes = new Map<string, Map<string, Buffer>>();
  /** ident -> uuid (latin1) -> new ttl */
  readonly ttls = new Map<string, Map<string, { uuid: Buffer; ttl: number | null }>>();
  readonly away = new Map<string, number | null>();
  /** Idents to forget if they hold no messages once the rest of the batch applied. */
  readonly forgets = new Set<string>();
  calls = 0;
  readonly promise: Promise<void>;
  resolve!: () => void;
  reject!: (err: Error) => void;

  constructor() {
    this.promise = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  indexed(): Map<string, PendingInsert[]> {
    if (!this.index) {
      this.index = new Map();
      for (const p of this.inserts) if (!p.cancelled) this.addToIndex(p);
    }
    return this.index;
  }

  addToIndex(p: PendingInsert): void {
    const key = p.uuid.toString('latin1') + p.ident;
    const same = this.index!.get(key);
    if (same) same.push(p);
    else this.index!.set(key, [p]);
  }
}
