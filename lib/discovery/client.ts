/**
 * {@link NameserverClient}: a peer's way to the nameservers — it connects
 * to their listeners, learns who is behind each URL, and looks services up
 * (or registers) on every nameserver by RPC, merging the answers. Builds on
 * lib/peer (connect, RPC) and nameserver.ts (the RPC object it calls).
 * @module
 */
import { EventEmitter } from 'eventemitter3';
import { AbortedError, ClosedError, InvalidArgumentError, NameserverError, type SnakeMQError } from '../errors.js';
import type { ConnectorOptions } from '../link/index.js';
import type { Peer } from '../peer/index.js';
import { is, validateOptions, type OptionCheck } from '../util/options.js';
import { checkAnnouncement, type Announcement } from './announcement.js';
import { log } from './log.js';
import { NAMESERVER_OBJECT, type ServiceEntry } from './nameserver.js';

/** Default time a lookup (or registration) waits for nameservers, in ms: PostTroll's 10 s. */
export const DEFAULT_NAMESERVER_TIMEOUT = 10_000;
/** Default time between two registrations of the same announcement, in ms (well below the nameserver's 10-minute `maxAge`). */
export const DEFAULT_REGISTER_INTERVAL = 60_000;

/** Options of {@link NameserverClient}. Unknown keys are refused. */
export interface NameserverClientOptions {
  /** Listener URLs of the nameservers (`tcp://ns1:5557`, `tls://…`), at least one. */
  nameservers: string[];
  /** Time a lookup or registration waits, in ms (for a connection, then for the answers). @default 10000 */
  timeout?: number;
  /** Time between two registrations of the announcement given to {@link NameserverClient.register}, in ms. @default 60000 */
  registerInterval?: number;
  /** Options of the connectors (reconnect delays, TLS…). @default the peer's defaults */
  connect?: ConnectorOptions;
}

/** Options of one {@link NameserverClient.lookup}. */
export interface LookupOptions {
  /** @default the client's `timeout` */
  timeout?: number;
  /** Aborts the lookup: it rejects with AbortedError. */
  signal?: AbortSignal;
}

/** Events of {@link NameserverClient}. No `'error'` event. */
export interface NameserverClientEvents {
  /** The identity behind nameserver `url` was learnt (it connected), or changed. */
  nameserver: (url: string, identity: string) => void;
  /** A registration renewed in the background (interval, reconnect) failed at one nameserver. */
  registerError: (identity: string, error: SnakeMQError) => void;
}

interface Known {
  readonly url: string;
  readonly endpoint: string;
  identity: string | undefined;
}

const checks: { [K in keyof NameserverClientOptions]-?: OptionCheck } = {
  nameservers: (v) =>
    Array.isArray(v) && v.length > 0 && v.every((s) => typeof s === 'string' && s !== '') ? undefined : 'must be a non-empty list of listener URLs',
  timeout: is.integer(1, 2 ** 31 - 1),
  registerInterval: is.integer(10, 2 ** 31 - 1),
  connect: (v) => (typeof v === 'object' && v !== null ? undefined : 'must be connector options'),
};

/** Whether `v` looks like a {@link ServiceEntry} (answers are read defensively). */
function isEntry(v: unknown): v is ServiceEntry {
  const e = v as Partial<ServiceEntry> | null;
  return typeof e === 'object' && e !== null && typeof e.identity === 'string' && typeof e.receivedAt === 'number' && Array.isArray(e.endpoints);
}

/**
 * Looks services up at a peer's nameservers.
 *
 * ```ts
 * const peer = await createPeer({ identity: 'viewer' });
 * const ns = new NameserverClient(peer, { nameservers: ['tcp://ns1:5557', 'tcp://ns2:5557'] });
 * const radars = await ns.lookup('radar'); // ServiceEntry[]: identity, endpoints, services…
 * ```
 *
 * It adds a connector per URL ({@link Peer.connect}, reconnecting as
 * usual) and learns the identity behind it from the messaging `connect`
 * event (the connection's endpoint is the connector's). A lookup asks
 * every nameserver connected at the time (waiting, up to the timeout, for
 * the first one when none is), and merges the answers by identity, the
 * newest `receivedAt` winning: one nameserver down does not hold it up. A
 * nameserver still unreachable is not waited for once another answered.
 *
 * {@link NameserverClient.register} registers the peer's announcement on
 * every nameserver and keeps it registered: again every `registerInterval`
 * and whenever a nameserver (re)connects, until
 * {@link NameserverClient.unregister} or close.
 */
export class NameserverClient extends EventEmitter<NameserverClientEvents> implements AsyncDisposable {
  /** Default time a lookup waits, in ms. */
  readonly timeout: number;
  readonly #peer: Peer;
  readonly #known: Known[] = [];
  readonly #registerInterval: number;
  readonly #waiters = new Set<() => void>();
  #announcement: Announcement | null = null;
  #timer: NodeJS.Timeout | null = null;
  #closing: Promise<void> | null = null;

  /**
   * Adds a connector for each nameserver URL.
   * @throws InvalidOptionsError an unknown key or a bad value.
   * @throws InvalidEndpointError a URL that is not an endpoint.
   */
  constructor(peer: Peer, options: NameserverClientOptions) {
    super();
    const o = validateOptions<NameserverClientOptions>('NameserverClient options', options, checks, {} as NameserverClientOptions);
    if (o.nameservers === undefined) throw new InvalidArgumentError('NameserverClient: option nameservers (listener URLs) is required');
    this.#peer = peer;
    this.timeout = o.timeout ?? DEFAULT_NAMESERVER_TIMEOUT;
    this.#registerInterval = o.registerInterval ?? DEFAULT_REGISTER_INTERVAL;
    peer.on('connect', this.#onConnect);
    try {
      for (const url of new Set(o.nameservers)) this.#known.push({ url, endpoint: peer.connect(url, o.connect), identity: undefined });
    } catch (error) {
      void this.close();
      throw error;
    }
  }

  /** The nameservers: each URL as given, and the identity behind it once learnt. */
  nameservers(): { url: string; identity: string | undefined }[] {
    return this.#known.map(({ url, identity }) => ({ url, identity }));
  }

  /** Whether {@link NameserverClient.close} was called. */
  get closed(): boolean {
    return this.#closing !== null;
  }

  /**
   * The entries of service name or alias `service` (`''` = all) known to
   * the nameservers, merged by identity (the newest `receivedAt` wins).
   * `[]` when the nameservers answered and know none.
   * @throws NameserverError no nameserver connected, or none answered, within the timeout (`cause`: why each failed).
   * @throws AbortedError `signal` fired.
   * @throws ClosedError the client or the peer is closed.
   */
  async lookup(service: string, options: LookupOptions = {}): Promise<ServiceEntry[]> {
    if (typeof service !== 'string') throw new InvalidArgumentError('NameserverClient.lookup: service must be a string');
    const answers = await this.#askAll<unknown>('lookup', [service], options);
    const merged = new Map<string, ServiceEntry>();
    for (const list of answers) {
      if (!Array.isArray(list)) continue;
      for (const e of list) {
        if (!isEntry(e)) continue;
        const had = merged.get(e.identity);
        if (had === undefined || e.receivedAt > had.receivedAt) merged.set(e.identity, e);
      }
    }
    return [...merged.values()];
  }

  /**
   * Registers `announcement` (its identity must be this peer's: nameservers
   * refuse another) on every nameserver connected, and keeps it registered
   * (every `registerInterval`, and on each nameserver's (re)connection).
   * Resolves with the number of nameservers that accepted it.
   * @throws AnnouncementError a malformed announcement (checked here first).
   * @throws NameserverError none accepted it within the timeout (`cause`: their refusals); it is still renewed later.
   */
  async register(announcement: Announcement, options: LookupOptions = {}): Promise<number> {
    const a = checkAnnouncement(announcement);
    this.#checkOpen();
    this.#announcement = a;
    if (this.#timer === null) {
      this.#timer = setInterval(() => this.#renew(), this.#registerInterval);
      this.#timer.unref();
    }
    return (await this.#askAll('register', [a], options)).length;
  }

  /**
   * Stops renewing and removes this peer's entry from every nameserver
   * connected. Resolves with the number that answered.
   * @throws NameserverError none answered within the timeout.
   */
  async unregister(options: LookupOptions = {}): Promise<number> {
    this.#stopRenewing();
    return (await this.#askAll('unregister', [], options)).length;
  }

  /** Stops renewing, removes the connectors (closing their connections). Idempotent. The peer stays open. */
  close(): Promise<void> {
    return (this.#closing ??= (async () => {
      this.#stopRenewing();
      this.#peer.off('connect', this.#onConnect);
      for (const w of this.#waiters) w();
      if (!this.#peer.closed) await Promise.all(this.#known.map((k) => this.#peer.disconnect(k.endpoint).catch(() => undefined)));
    })());
  }

  /** `await using client = new NameserverClient(…)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #checkOpen(): void {
    if (this.#closing !== null || this.#peer.closed) throw new ClosedError('NameserverClient is closed');
  }

  #stopRenewing(): void {
    this.#announcement = null;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  readonly #onConnect = (connId: number, ident: string): void => {
    const endpoint = this.#peer.link.connection(connId)?.endpoint;
    let learnt = false;
    for (const k of this.#known) {
      if (k.endpoint !== endpoint) continue;
      learnt = true;
      if (k.identity !== ident) {
        k.identity = ident;
        if (log.enabled) log(`nameserver client: ${k.url} is ${ident}`);
        this.emit('nameserver', k.url, ident);
      }
    }
    if (!learnt) return;
    for (const w of this.#waiters) w();
    if (this.#announcement !== null) this.#registerAt(ident, this.#announcement);
  };

  #renew(): void {
    const a = this.#announcement;
    if (a !== null) for (const ident of this.#connected()) this.#registerAt(ident, a);
  }

  #registerAt(ident: string, a: Announcement): void {
    this.#peer.rpc.call(ident, NAMESERVER_OBJECT, 'register', [a], { timeout: this.timeout }).catch((error: SnakeMQError) => {
      if (log.enabled) log(`nameserver client: registration at ${ident} failed: ${error.message}`);
      this.emit('registerError', ident, error);
    });
  }

  /** Identities of the nameservers connected now, each once. */
  #connected(): string[] {
    const ids = new Set<string>();
    for (const k of this.#known) if (k.identity !== undefined && this.#peer.isConnected(k.identity)) ids.add(k.identity);
    return [...ids];
  }

  /** Resolves once a nameserver is connected, at `deadline`, on abort or on close. */
  #waitConnected(deadline: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.#waiters.delete(wake);
        resolve();
      };
      const wake = (): void => {
        if (this.#connected().length > 0 || this.#closing !== null) done();
      };
      const timer = setTimeout(done, Math.max(0, deadline - Date.now()));
      signal?.addEventListener('abort', done);
      this.#waiters.add(wake);
    });
  }

  /** Calls `method` on every nameserver connected (waiting for the first one); the answers of those that answered. */
  async #askAll<R>(method: string, args: unknown[], options: LookupOptions): Promise<R[]> {
    this.#checkOpen();
    const timeout = options.timeout ?? this.timeout;
    if (!(typeof timeout === 'number' && timeout > 0)) throw new InvalidArgumentError('NameserverClient: timeout must be a number > 0');
    const { signal } = options;
    const aborted = (): AbortedError => new AbortedError(`NameserverClient.${method} aborted`, { cause: signal?.reason });
    if (signal?.aborted) throw aborted();
    const deadline = Date.now() + timeout;
    let ids = this.#connected();
    if (ids.length === 0) {
      await this.#waitConnected(deadline, signal);
      if (signal?.aborted) throw aborted();
      this.#checkOpen();
      ids = this.#connected();
      if (ids.length === 0) {
        const urls = this.#known.map((k) => k.url).join(', ');
        throw new NameserverError(`NameserverClient.${method}: no nameserver connected within ${timeout} ms (${urls})`);
      }
    }
    const remaining = Math.max(1, deadline - Date.now());
    const settled = await Promise.allSettled(ids.map((id) => this.#peer.rpc.call<R>(id, NAMESERVER_OBJECT, method, args, { timeout: remaining, signal })));
    if (signal?.aborted) throw aborted();
    const answers: R[] = [];
    const errors: unknown[] = [];
    for (const s of settled) {
      if (s.status === 'fulfilled') answers.push(s.value);
      else errors.push(s.reason);
    }
    if (answers.length === 0) {
      const why = errors.map((e) => (e as Error).message).join('; ');
      throw new NameserverError(`NameserverClient.${method}: no nameserver answered (${ids.join(', ')}): ${why}`, {
        cause: errors.length === 1 ? errors[0] : new AggregateError(errors, why),
      });
    }
    return answers;
  }
}
