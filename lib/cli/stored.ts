import type { Buffer } from 'node:buffer';
import type { QueuesStorage, StoredMessage, StoredQueue } from '../storage/index.js';

/**
 * A {@link QueuesStorage} that passes everything to another one and counts,
 * for one identity, the messages whose storing or removal was committed: what
 * `smq send --persistent` reports as stored (progress, and on exit, also at
 * a second Ctrl-C). Counts follow committed transactions only, so a figure
 * never claims more than the file holds.
 */
export class CountingStorage implements QueuesStorage {
  /** Messages for the identity committed to the storage by this run. */
  committed = 0;
  /** Messages for the identity whose removal (delivered, dropped) was committed. */
  removed = 0;
  /** Removals asked for and not committed yet. */
  removing = 0;
  readonly #inner: QueuesStorage;
  readonly #ident: string;

  constructor(inner: QueuesStorage, ident: string) {
    this.#inner = inner;
    this.#ident = ident;
  }

  get durable(): boolean {
    return this.#inner.durable;
  }

  load(): Promise<StoredQueue[]> {
    return this.#inner.load();
  }

  push(ident: string, messages: readonly StoredMessage[]): Promise<void> {
    const done = this.#inner.push(ident, messages);
    if (ident === this.#ident)
      done.then(
        () => (this.committed += messages.length),
        () => undefined,
      );
    return done;
  }

  remove(ident: string, uuids: readonly Buffer[]): Promise<void> {
    const done = this.#inner.remove(ident, uuids);
    if (ident === this.#ident) {
      const n = uuids.length;
      this.removing += n;
      done.then(
        () => {
          this.removing -= n;
          this.removed += n;
        },
        () => (this.removing -= n),
      );
    }
    return done;
  }

  updateTtl(ident: string, entries: readonly { uuid: Buffer; ttl: number | null }[]): Promise<void> {
    return this.#inner.updateTtl(ident, entries);
  }

  setAwaySince(ident: string, awaySince: number | null): Promise<void> {
    return this.#inner.setAwaySince(ident, awaySince);
  }

  forget(ident: string): Promise<void> {
    return this.#inner.forget(ident);
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
