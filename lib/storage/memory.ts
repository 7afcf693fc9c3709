import { Buffer } from 'node:buffer';
import { ClosedError, InvalidArgumentError } from '../errors.js';
import type { QueuesStorage, StorageSize, StoredMessage, StoredQueue } from './types.js';
import { checkAwaySince, checkIdent, checkMessages, checkTtlEntries, checkUuids, wellFormed } from './validate.js';

interface MemoryQueue {
  /** seq -> message; a Map iterates in insertion (= queue) order. */
  readonly messages: Map<number, StoredMessage>;
  /** uuid (latin1 key) -> seqs carrying it (duplicates are kept, as in SQLite). */
  readonly byUuid: Map<string, number[]>;
  awaySince: number | null;
}

/**
 * A {@link QueuesStorage} that keeps everything in the process's memory.
 *
 * **It is NOT persistent**: everything is lost when the process exits
 * (`durable` is `false`). Use it in tests, or when messages only need to
 * survive a reconnection, not a restart. It has the same semantics as
 * {@link SqliteQueuesStorage} (queue order, remove by uuid, `updateTtl`,
 * `awaySince`, `forget`, `ClosedError` after `close()`); changes apply at once and the
 * returned promises resolve on the next microtask. Buffers are copied in and
 * out, so callers may reuse theirs.
 */
export class MemoryQueuesStorage implements QueuesStorage {
  /** Always `false`: nothing survives a restart. */
  readonly durable = false;
  private readonly queues = new Map<string, MemoryQueue>();
  private nextSeq = 0;
  private closed = false;
  private messageCount = 0;
  private byteCount = 0;

  /**
   * Every queue that holds messages, messages oldest first; queues without
   * messages are forgotten. Rejects with `ClosedError` after `close()`.
   */
  load(): Promise<StoredQueue[]> {
    if (this.closed) return closedPromise();
    const out: StoredQueue[] = [];
    for (const [ident, q] of this.queues) {
      if (q.messages.size === 0) {
        this.queues.delete(ident);
        continue;
      }
      const messages = [...q.messages.values()].map(copyMessage);
      out.push({ ident, messages, awaySince: q.awaySince });
    }
    return Promise.resolve(out);
  }

  /** Appends messages (copied) to the end of queue `ident`. */
  push(ident: string, messages: readonly StoredMessage[]): Promise<void> {
    const problem = this.check(checkIdent(ident) ?? checkMessages(messages));
    if (problem) return problem;
    const q = this.queue(wellFormed(ident));
    for (const m of messages) {
      const seq = this.nextSeq++;
      q.messages.set(seq, copyMessage(m));
      this.messageCount++;
      this.byteCount += m.data.length;
      const key = m.uuid.toString('latin1');
      const seqs = q.byUuid.get(key);
      if (seqs) seqs.push(seq);
      else q.byUuid.set(key, [seq]);
    }
    return Promise.resolve();
  }

  /** Removes every message of queue `ident` carrying one of `uuids`; unknown ones are ignored. */
  remove(ident: string, uuids: readonly Buffer[]): Promise<void> {
    const problem = this.check(checkIdent(ident) ?? checkUuids(uuids));
    if (problem) return problem;
    ident = wellFormed(ident);
    const q = this.queues.get(ident);
    if (!q) return Promise.resolve();
    for (const uuid of uuids) {
      const key = uuid.toString('latin1');
      const seqs = q.byUuid.get(key);
      if (!seqs) continue;
      for (const seq of seqs) {
        const m = q.messages.get(seq);
        if (m === undefined) continue;
        this.messageCount--;
        this.byteCount -= m.data.length;
        q.messages.delete(seq);
      }
      q.byUuid.delete(key);
    }
    this.prune(ident, q);
    return Promise.resolve();
  }

  /** Sets the TTL of the messages of queue `ident` carrying each uuid; unknown ones are ignored. */
  updateTtl(ident: string, entries: readonly { uuid: Buffer; ttl: number | null }[]): Promise<void> {
    const problem = this.check(checkIdent(ident) ?? checkTtlEntries(entries));
    if (problem) return problem;
    const q = this.queues.get(wellFormed(ident));
    if (!q) return Promise.resolve();
    for (const { uuid, ttl } of entries) {
      for (const seq of q.byUuid.get(uuid.toString('latin1')) ?? []) {
        const m = q.messages.get(seq)!;
        q.messages.set(seq, { ...m, ttl });
      }
    }
    return Promise.resolve();
  }

  /** Records since when the peer of queue `ident` has been away (`null`: connected). */
  setAwaySince(ident: string, awaySince: number | null): Promise<void> {
    const problem = this.check(checkIdent(ident) ?? checkAwaySince(awaySince));
    if (problem) return problem;
    ident = wellFormed(ident);
    const q = this.queue(ident);
    q.awaySince = awaySince;
    this.prune(ident, q);
    return Promise.resolve();
  }

  /** Forgets queue `ident` (its `awaySince`) if it holds no messages; one that does is left as it is. */
  forget(ident: string): Promise<void> {
    const problem = this.check(checkIdent(ident));
    if (problem) return problem;
    ident = wellFormed(ident);
    if (this.queues.get(ident)?.messages.size === 0) this.queues.delete(ident);
    return Promise.resolve();
  }

  /** Drops everything. Idempotent; afterwards every method rejects with `ClosedError`. */
  close(): Promise<void> {
    this.closed = true;
    this.queues.clear();
    this.messageCount = 0;
    this.byteCount = 0;
    return Promise.resolve();
  }

  /** Messages and bytes of data held (counters kept as they change); `fileBytes` is `null`. Rejects with `ClosedError` after `close()`. */
  size(): Promise<StorageSize> {
    if (this.closed) return closedPromise();
    return Promise.resolve({ messages: this.messageCount, bytes: this.byteCount, fileBytes: null });
  }

  private check(problem: string | undefined): Promise<never> | undefined {
    if (this.closed) return closedPromise();
    return problem === undefined ? undefined : Promise.reject(new InvalidArgumentError(problem));
  }

  private queue(ident: string): MemoryQueue {
    let q = this.queues.get(ident);
    if (!q) {
      q = { messages: new Map(), byUuid: new Map(), awaySince: null };
      this.queues.set(ident, q);
    }
    return q;
  }

  private prune(ident: string, q: MemoryQueue): void {
    if (q.messages.size === 0 && q.awaySince === null) this.queues.delete(ident);
  }
}

function copyMessage(m: StoredMessage): StoredMessage {
  return { uuid: Buffer.from(m.uuid), data: Buffer.from(m.data), flags: m.flags, ttl: m.ttl };
}

function closedPromise(): Promise<never> {
  return Promise.reject(new ClosedError('storage is closed'));
}
