/**
 * The entries a {@link Nameserver} knows, keyed by identity, with an index
 * by service name and expiry by age. Pure bookkeeping: no sockets, no timer.
 * @module
 */
import { AnnouncementError } from '../errors.js';
import type { Announcement } from './announcement.js';

/** Default age after which an entry not announced again is dropped: 10 minutes, as PostTroll's `max_age`. */
export const DEFAULT_MAX_AGE = 10 * 60_000;
/** Default most entries (identities) a nameserver keeps. */
export const DEFAULT_MAX_ENTRIES = 10_000;

/** What a nameserver knows of one peer: its last announcement, when and where from. */
export interface ServiceEntry extends Announcement {
  /** When the last announcement (or registration) was received, in ms since the epoch (the nameserver's clock). */
  readonly receivedAt: number;
  /** Where it came from: `udp:1.2.3.4:5678` (a datagram) or `rpc:<ident>` (a registration by RPC). */
  readonly source: string;
}

/** What {@link Registry.upsert} did. */
export interface UpsertResult {
  readonly entry: ServiceEntry;
  /** The identity was not known. */
  readonly isNew: boolean;
  /** New, or its endpoints, services or version changed. */
  readonly changed: boolean;
  /** The entry replaced (`undefined` when new). */
  readonly previous: ServiceEntry | undefined;
}

const sameList = (a: readonly string[], b: readonly string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * Entries by identity, at most `maxEntries`, each in the index of each of
 * its service names. The map is kept in order of `receivedAt` (a refreshed
 * entry moves to the end), so {@link Registry.expire} visits only what
 * expires.
 */
export class Registry {
  readonly #entries = new Map<string, ServiceEntry>();
  readonly #byService = new Map<string, Set<string>>();

  constructor(
    readonly maxEntries: number = DEFAULT_MAX_ENTRIES,
    readonly maxAge: number = DEFAULT_MAX_AGE,
  ) {}

  /** Entries kept now. */
  get size(): number {
    return this.#entries.size;
  }

  /** The entry of `identity`. */
  get(identity: string): ServiceEntry | undefined {
    return this.#entries.get(identity);
  }

  /**
   * Creates or refreshes the entry of `a.identity`.
   * @throws AnnouncementError a new identity while `maxEntries` are kept (entries are never evicted for a newcomer).
   */
  upsert(a: Announcement, source: string, now: number): UpsertResult {
    const previous = this.#entries.get(a.identity);
    if (previous === undefined && this.#entries.size >= this.maxEntries) {
      throw new AnnouncementError(`announcement of ${a.identity} refused: the nameserver keeps ${this.maxEntries} entries (maxEntries)`);
    }
    const entry: ServiceEntry = Object.freeze({
      identity: a.identity,
      endpoints: Object.freeze([...a.endpoints]),
      services: Object.freeze([...a.services]),
      version: a.version,
      receivedAt: now,
      source,
    });
    if (previous !== undefined) this.#remove(previous);
    this.#entries.set(entry.identity, entry);
    for (const s of entry.services) {
      let set = this.#byService.get(s);
      if (set === undefined) this.#byService.set(s, (set = new Set()));
      set.add(entry.identity);
    }
    const changed =
      previous === undefined ||
      previous.version !== entry.version ||
      !sameList(previous.endpoints, entry.endpoints) ||
      !sameList(previous.services, entry.services);
    return { entry, isNew: previous === undefined, changed, previous };
  }

  /** Removes the entry of `identity`; returns it. */
  delete(identity: string): ServiceEntry | undefined {
    const e = this.#entries.get(identity);
    if (e !== undefined) this.#remove(e);
    return e;
  }

  /** Removes and returns the entries received more than `maxAge` before `now`. */
  expire(now: number): ServiceEntry[] {
    const out: ServiceEntry[] = [];
    for (const e of this.#entries.values()) {
      if (now - e.receivedAt <= this.maxAge) {
        // In order of reception: the rest is younger — unless the clock went back; then look at everything.
        if (e.receivedAt <= now) break;
        continue;
      }
      out.push(e);
    }
    for (const e of out) this.#remove(e);
    return out;
  }

  /** The live entries (not older than `maxAge` at `now`) of service name or alias `service`; `''` = all. */
  lookup(service: string, now: number): ServiceEntry[] {
    const live = (e: ServiceEntry | undefined): e is ServiceEntry => e !== undefined && now - e.receivedAt <= this.maxAge;
    if (service === '') return [...this.#entries.values()].filter(live);
    const ids = this.#byService.get(service);
    return ids === undefined ? [] : [...ids].map((id) => this.#entries.get(id)).filter(live);
  }

  /** Every entry kept, oldest first (expired ones not yet swept included). */
  entries(): ServiceEntry[] {
    return [...this.#entries.values()];
  }

  /** Forgets everything. */
  clear(): void {
    this.#entries.clear();
    this.#byService.clear();
  }

  #remove(e: ServiceEntry): void {
    this.#entries.delete(e.identity);
    for (const s of e.services) {
      const set = this.#byService.get(s);
      set?.delete(e.identity);
      if (set?.size === 0) this.#byService.delete(s);
    }
  }
}
