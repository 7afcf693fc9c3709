/**
 * Queue storage: where Messaging keeps persistent messages so they survive a
 * restart of the process. Messaging always keeps its queues in memory too;
 * the storage only sees messages with the PERSISTENT flag.
 * @module
 */

/** One stored message, as loaded back at start. */
export interface StoredMessage {
  /** 16 bytes. */
  readonly uuid: Buffer;
  readonly data: Buffer;
  readonly flags: number;
  /** Seconds left to wait for the peer, `null` = no limit. */
  readonly ttl: number | null;
}

/** One queue's stored state. */
export interface StoredQueue {
  /** The destination identity. */
  readonly ident: string;
  /** Messages in queue order (oldest first). */
  readonly messages: StoredMessage[];
  /**
   * Wall-clock time (ms since the epoch) since which the TTLs have been
   * counting down (the peer was away), or `null` when the clock was stopped
   * (the peer was connected when this was last written).
   */
  readonly awaySince: number | null;
}

/**
 * The storage contract. Methods may be called many times in one tick;
 * implementations batch them (group commit). Every returned promise settles:
 * it resolves once the change is durable, rejects with a `StorageError` when
 * it cannot be made durable, and rejects with a `ClosedError` after `close()`.
 * Operations on one queue apply in call order.
 */
export interface QueuesStorage {
  /** Whether data survives a restart of the process (false for the memory storage). */
  readonly durable: boolean;
  /**
   * Loads every stored queue that holds messages, messages in order. Queues
   * without messages are not returned (their state, e.g. `awaySince`, is
   * dropped as by {@link QueuesStorage.forget}).
   */
  load(): Promise<StoredQueue[]>;
  /** Appends messages to the end of a queue. */
  push(ident: string, messages: readonly StoredMessage[]): Promise<void>;
  /** Removes messages (by uuid) from a queue; unknown uuids are ignored. */
  remove(ident: string, uuids: readonly Buffer[]): Promise<void>;
  /** Sets the remaining TTL of messages of a queue (after the away time was subtracted). */
  updateTtl(ident: string, entries: readonly { uuid: Buffer; ttl: number | null }[]): Promise<void>;
  /** Records since when a queue's peer has been away (`null`: connected now). */
  setAwaySince(ident: string, awaySince: number | null): Promise<void>;
  /**
   * Forgets queue `ident` if it holds no messages (once the calls made before
   * it applied): its stored state (`awaySince`) is removed, so that nothing of
   * an identity that left with nothing queued stays in the storage. A queue
   * that still holds messages is left as it is. Batched like the other calls.
   */
  forget(ident: string): Promise<void>;
  /** Flushes pending writes and closes. Idempotent. */
  close(): Promise<void>;
  /**
   * Optional: how much is stored now (read by management). Bounded work:
   * counters, or one count query. Both storages of this package have it.
   */
  size?(): Promise<StorageSize>;
}

/** What a storage holds ({@link QueuesStorage.size}). */
export interface StorageSize {
  /** Messages stored. */
  readonly messages: number;
  /** Bytes of their data, when the storage counts them (the memory storage); else `null`. */
  readonly bytes: number | null;
  /** Size on disk of the storage's files (SQLite: the database and its WAL), or `null` for a storage in memory. */
  readonly fileBytes: number | null;
}
