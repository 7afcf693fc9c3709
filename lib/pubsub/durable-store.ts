/**
 * Where a {@link Publisher} keeps its durable subscriptions, so that after a
 * restart it goes on holding messages for subscribers still away. The held
 * messages themselves are in the messaging's queues (and its storage).
 * @module
 */
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { StorageError } from '../errors.js';

/** One durable subscription as stored. */
export interface DurableRecord {
  readonly ident: string;
  readonly filters: readonly string[];
  /** Seconds a message is held for the subscriber while it is away. */
  readonly ttl: number;
  /** Subscription flags as received (see frames.ts). */
  readonly flags: number;
}

/**
 * Storage of durable subscriptions. Changes are rare (a subscriber
 * subscribing or changing its filters), so a store may write all records at
 * once.
 */
export interface DurableStore {
  /** The records kept, read at the publisher's start. */
  load(): Promise<DurableRecord[]>;
  /** Every record now (replaces what was kept). Calls are made one at a time. */
  save(records: readonly DurableRecord[]): Promise<void>;
  close(): Promise<void>;
}

/** Largest durable-subscription file read back: 64 MiB. */
const MAX_FILE_BYTES = 64 * 1024 * 1024;

/**
 * A {@link DurableStore} in one JSON file, replaced atomically (written
 * beside it, flushed, renamed), so a crash leaves the old file or the new
 * one, never half of either.
 */
export class FileDurableStore implements DurableStore {
  constructor(readonly path: string) {}

  async load(): Promise<DurableRecord[]> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new StorageError(`cannot read durable subscriptions from ${this.path}`, { cause: err });
    }
    if (text.length > MAX_FILE_BYTES) throw new StorageError(`${this.path}: over ${MAX_FILE_BYTES} bytes`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new StorageError(`${this.path} is not JSON`, { cause: err });
    }
    if (!Array.isArray(parsed) || !parsed.every(isRecord)) throw new StorageError(`${this.path} is not a list of durable subscriptions`);
    return parsed;
  }

  async save(records: readonly DurableRecord[]): Promise<void> {
    const tmp = `${this.path}.tmp`;
    try {
      const fh = await open(tmp, 'w');
      try {
        await fh.writeFile(JSON.stringify(records));
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, this.path);
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw new StorageError(`cannot write durable subscriptions to ${this.path}`, { cause: err });
    }
  }

  async close(): Promise<void> {}
}

function isRecord(r: unknown): r is DurableRecord {
  if (typeof r !== 'object' || r === null) return false;
  const o = r as Record<string, unknown>;
  return (
    typeof o.ident === 'string' &&
    Array.isArray(o.filters) &&
    o.filters.every((f) => typeof f === 'string') &&
    Number.isInteger(o.ttl) &&
    (o.ttl as number) >= 0 &&
    Number.isInteger(o.flags)
  );
}
