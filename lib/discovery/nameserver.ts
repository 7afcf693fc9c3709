/**
 * The nameserver, PostTroll's way: it hears address announcements (UDP
 * datagrams, multicast or unicast, or registrations by RPC), keeps each
 * peer's last one for `maxAge`, answers lookups by service name over RPC
 * (object `nameserver`) and publishes every change on `/address/<service>`.
 * Builds on lib/peer (RPC), lib/pubsub (Publisher), announcement.ts,
 * registry.ts and source-filter.ts.
 * @module
 */
import { createSocket as createDgramSocket, type RemoteInfo } from 'node:dgram';
import { isIPv4 } from 'node:net';
import { EventEmitter } from 'eventemitter3';
import { AnnouncementError, ConnectionError } from '../errors.js';
import type { Peer } from '../peer/index.js';
import { Publisher } from '../pubsub/index.js';
import { is, validateOptions, type OptionCheck } from '../util/options.js';
import { checkAnnouncement, decodeAnnouncement, DEFAULT_MAX_ANNOUNCEMENT_BYTES, MAX_ANNOUNCEMENT_BYTES, type Announcement } from './announcement.js';
import { DEFAULT_MULTICAST_GROUP, DEFAULT_MULTICAST_PORT, discoveryConfig, isBroadcastGroup, isMulticastGroup, type DiscoveryConfig } from './config.js';
import { log } from './log.js';
import { DEFAULT_MAX_AGE, DEFAULT_MAX_ENTRIES, Registry, type ServiceEntry } from './registry.js';
import { SourceFilter, type RateLimit } from './source-filter.js';

export type { ServiceEntry } from './registry.js';
export { DEFAULT_MAX_AGE, DEFAULT_MAX_ENTRIES } from './registry.js';
export { DEFAULT_MAX_SOURCES, DEFAULT_RATE_BURST, DEFAULT_RATE_PER_SECOND, type RateLimit } from './source-filter.js';

/** Name of the RPC object a nameserver serves (`lookup`, `register`, `unregister`). */
export const NAMESERVER_OBJECT = 'nameserver';
/** Default address the UDP socket binds. */
export const DEFAULT_NAMESERVER_UDP_HOST = '0.0.0.0';
/** Default UDP port: PostTroll's broadcast port. */
export const DEFAULT_NAMESERVER_UDP_PORT = DEFAULT_MULTICAST_PORT;
/** Default multicast group joined. */
export const DEFAULT_NAMESERVER_GROUP = DEFAULT_MULTICAST_GROUP;
/** Longest time between two expiry checks, in ms (PostTroll checks every 30 s). */
export const MAX_EXPIRY_CHECK_INTERVAL = 30_000;
/** Subject prefix of the publications of changes: `/address/<service>`. */
export const ADDRESS_SUBJECT_PREFIX = '/address/';

/** The part of a `dgram.Socket` a {@link Nameserver} uses. */
export interface NameserverSocket {
  bind(port: number, address: string, callback: () => void): unknown;
  addMembership(group: string, iface?: string): unknown;
  address(): { address: string; port: number };
  close(callback?: () => void): unknown;
  on(event: 'message', listener: (msg: Buffer, rinfo: RemoteInfo) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  off(event: 'error', listener: (error: Error) => void): unknown;
}

/** The UDP part of {@link NameserverOptions}. */
export interface NameserverUdpOptions {
  /** Address bound. @default '0.0.0.0' */
  host?: string;
  /** Port bound (0: any, in tests). @default config.multicastPort (21200) */
  port?: number;
  /** Join the multicast group (`addMembership`). @default true */
  multicast?: boolean;
  /** Multicast group (224.0.0.0/4); a broadcast group (0.0.0.0, 255.255.255.255) joins none. @default config.multicastGroup ('225.0.0.212') */
  group?: string;
  /** Local IPv4 address of the interface the group is joined on. @default config.multicastInterface (the system's choice) */
  interface?: string;
}

/** Options of {@link Nameserver.start}. Unknown keys are refused. */
export interface NameserverOptions {
  /** The UDP socket of announcements, or `false`: none (registration by RPC only, e.g. a TLS deployment). @default {} (0.0.0.0:21200, multicast 225.0.0.212) */
  udp?: NameserverUdpOptions | false;
  /** Age in ms after which an entry not announced again is dropped (≥ 1). @default 600000 (10 minutes) */
  maxAge?: number;
  /** Accept UDP announcements only from the machine's own addresses and loopback. @default false */
  localOnly?: boolean;
  /** CIDR networks UDP announcements are accepted from (IPv4 and IPv6, at least one); with `localOnly`, both must allow. @default undefined (any) */
  allowNetworks?: string[];
  /** Whether peers may register by RPC (all, none, or those the function accepts); a peer registers only its own identity. @default true */
  registration?: boolean | ((ident: string) => boolean);
  /** Most entries kept; a new identity beyond is refused. @default 10000 */
  maxEntries?: number;
  /** Largest datagram read, in bytes (≤ 8192). @default 1024 (DEFAULT_MAX_ANNOUNCEMENT_BYTES) */
  maxAnnouncementBytes?: number;
  /** Announcements per source address (UDP address, or `rpc:<ident>`), a token bucket; `false`: no limit. @default { perSecond: 10, burst: 20 } */
  rate?: RateLimit | false;
  /** Source addresses whose rate is tracked (the least recently heard forgotten first). @default 10000 */
  maxSources?: number;
  /** Time in ms since the epoch (tests inject one); entries' `receivedAt` and expiry use it. @default Date.now */
  clock?: () => number;
  /** A Publisher of the peer to publish changes with (not closed by the nameserver). @default a new one on the peer's messaging, closed with the nameserver */
  publisher?: Publisher;
  /** Defaults of the UDP port, group and interface (checked; missing keys take the defaults, not the environment). @default discoveryConfig() (the SNAKEMQ_* environment) */
  config?: Partial<DiscoveryConfig>;
  /** @internal Makes the UDP socket (tests pass a fake). @default dgram.createSocket({ type: 'udp4', reuseAddr: true }) */
  createSocket?: () => NameserverSocket;
  /** @internal The machine's addresses for `localOnly` (tests). */
  localAddresses?: () => readonly string[];
}

/** Events of {@link Nameserver}. No `'error'` event. */
export interface NameserverEvents {
  /** An announcement or registration created (`isNew`) or refreshed an entry. */
  registered: (entry: ServiceEntry, isNew: boolean) => void;
  /** An entry was not announced again within `maxAge`: dropped (and `status: false` published). */
  expired: (entry: ServiceEntry) => void;
  /** A peer unregistered its entry by RPC (and `status: false` was published). */
  unregistered: (entry: ServiceEntry) => void;
  /** A datagram or registration was refused: its source (`udp:addr:port`, `rpc:<ident>`) and why (source filter, rate, size, malformed, maxEntries, registration rules). */
  refused: (source: string, error: AnnouncementError) => void;
  /** The UDP socket reported an error; the nameserver goes on. */
  udpError: (error: Error) => void;
}

/** Counters of a {@link Nameserver} since its start. */
export interface NameserverStats {
  /** UDP datagrams received. */
  datagrams: number;
  /** Announcements or registrations accepted (new or refreshed). */
  accepted: number;
  /** Refused by the source filter (localOnly, allowNetworks). */
  refusedSource: number;
  /** Refused by the rate limit. */
  rateLimited: number;
  /** Refused as malformed or too large. */
  malformed: number;
  /** Refused because `maxEntries` are kept. */
  full: number;
  /** RPC registrations refused (registration off, another identity). */
  refusedRegistrations: number;
  /** Entries expired. */
  expired: number;
}

/** The data published on `/address/<service>` for each change (PostTroll's keys plus ours). */
export interface AddressPublication {
  status: boolean;
  identity: string;
  endpoints: string[];
  service: string[];
  URI: string;
  supported_message_version: string;
  receive_time: string;
}

const udpChecks: { [K in keyof NameserverUdpOptions]-?: OptionCheck } = {
  host: (v) => (typeof v === 'string' && isIPv4(v) ? undefined : 'must be an IPv4 address'),
  port: is.integer(0, 65535),
  multicast: is.boolean(),
  group: (v) =>
    typeof v === 'string' && (isMulticastGroup(v) || isBroadcastGroup(v))
      ? undefined
      : 'must be an IPv4 multicast group (224.0.0.0/4), 0.0.0.0 or 255.255.255.255',
  interface: (v) => (typeof v === 'string' && isIPv4(v) ? undefined : 'must be an IPv4 address'),
};

const checks: { [K in keyof NameserverOptions]-?: OptionCheck } = {
  udp: (v) => (v === false || (typeof v === 'object' && v !== null && !Array.isArray(v)) ? undefined : 'must be an object or false'),
  maxAge: is.integer(1, 2 ** 31 - 1),
  localOnly: is.boolean(),
  allowNetworks: (v) =>
    Array.isArray(v) && v.length > 0 && v.every((s) => typeof s === 'string')
      ? undefined
      : 'must be a non-empty list of CIDR strings (leave it out to allow any)',
  registration: (v) => (typeof v === 'boolean' || typeof v === 'function' ? undefined : 'must be a boolean or a function (ident) => boolean'),
  maxEntries: is.integer(1),
  maxAnnouncementBytes: is.integer(1, MAX_ANNOUNCEMENT_BYTES),
  rate: (v) =>
    v === false ||
    (typeof v === 'object' &&
      v !== null &&
      Object.keys(v).every((k) => k === 'perSecond' || k === 'burst') &&
      typeof (v as RateLimit).perSecond === 'number' &&
      (v as RateLimit).perSecond > 0 &&
      Number.isFinite((v as RateLimit).perSecond) &&
      Number.isInteger((v as RateLimit).burst) &&
      (v as RateLimit).burst >= 1)
      ? undefined
      : 'must be false or { perSecond: number > 0, burst: integer ≥ 1 }',
  maxSources: is.integer(1),
  clock: is.function(),
  config: (v) => (typeof v === 'object' && v !== null ? undefined : 'must be a DiscoveryConfig'),
  publisher: (v) => (v instanceof Publisher ? undefined : 'must be a Publisher'),
  createSocket: is.function(),
  localAddresses: is.function(),
};

/** How often entries are checked for expiry: a quarter of `maxAge`, at most 30 s. */
export function expiryCheckInterval(maxAge: number): number {
  return Math.max(1, Math.min(Math.floor(maxAge / 4), MAX_EXPIRY_CHECK_INTERVAL));
}

/**
 * A nameserver on a peer: made by {@link Nameserver.start}, stopped by
 * {@link Nameserver.close} (the peer stays open: the caller owns it).
 *
 * ```ts
 * const peer = await createPeer({ identity: 'nameserver', listen: 'tcp://0.0.0.0:5557' });
 * await using ns = await Nameserver.start(peer, { localOnly: true });
 * ns.on('registered', (e, isNew) => isNew && console.log(e.identity, e.services, e.endpoints));
 * // elsewhere: await peer.rpc.call('nameserver', 'nameserver', 'lookup', ['radar'])
 * ```
 *
 * - UDP: a `udp4` socket (`reuseAddr`, so several receivers can share the
 *   port) hears datagrams; each passes the source filter and the rate of its
 *   source address, then the size limit, BEFORE it is decoded
 *   ({@link decodeAnnouncement}). A valid one creates or refreshes the entry
 *   of its identity (`receivedAt` = now). An identity registered by RPC is
 *   not taken over by a datagram (which anyone may forge): only its own RPC
 *   registration refreshes it, until it expires or unregisters.
 * - RPC object `nameserver`: `lookup(service)` (a name or an alias; `''` =
 *   all), `register(announcement)` (the caller's own identity only, as the
 *   messaging identified it; refused with an AnnouncementError, which the
 *   caller gets as an RpcRemoteError), `unregister()` (the caller's entry).
 * - Changes are published on `/address/<service>` for each name and alias,
 *   type `info`, data {@link AddressPublication}: `status: true` when an
 *   entry appears or its endpoints, services or version change; `false`
 *   when it expires, unregisters, or drops a service name.
 * - Entries expire `maxAge` after their last announcement, checked every
 *   {@link expiryCheckInterval} on one unref'd timer that runs only while
 *   entries exist; lookups never return an expired entry meanwhile.
 *
 * Everything is bounded: entries (`maxEntries`), datagram size, sources
 * tracked (`maxSources`); nothing a sender does throws or crashes (refusals
 * are `refused` events and counters in {@link Nameserver.stats}).
 */
export class Nameserver extends EventEmitter<NameserverEvents> implements AsyncDisposable {
  /** Age in ms after which an entry is dropped. */
  readonly maxAge: number;
  readonly #peer: Peer;
  readonly #registry: Registry;
  readonly #filter: SourceFilter;
  readonly #clock: () => number;
  readonly #maxBytes: number;
  readonly #registration: boolean | ((ident: string) => boolean);
  readonly #publisher: Publisher;
  readonly #ownPublisher: boolean;
  readonly #stats: NameserverStats = {
    datagrams: 0,
    accepted: 0,
    refusedSource: 0,
    rateLimited: 0,
    malformed: 0,
    full: 0,
    refusedRegistrations: 0,
    expired: 0,
  };
  #socket: NameserverSocket | null = null;
  #udpAddress: { address: string; port: number } | null = null;
  #timer: NodeJS.Timeout | null = null;
  #closing: Promise<void> | null = null;
  #served = false;
  readonly #onPeerClose = (): void => void this.close();

  private constructor(peer: Peer, o: NameserverOptions, publisher: Publisher, ownPublisher: boolean) {
    super();
    this.#peer = peer;
    this.maxAge = o.maxAge ?? DEFAULT_MAX_AGE;
    this.#clock = o.clock ?? Date.now;
    this.#registry = new Registry(o.maxEntries ?? DEFAULT_MAX_ENTRIES, this.maxAge);
    this.#filter = new SourceFilter({
      localOnly: o.localOnly,
      allowNetworks: o.allowNetworks,
      rate: o.rate,
      maxSources: o.maxSources,
      clock: this.#clock,
      localAddresses: o.localAddresses,
    });
    this.#maxBytes = o.maxAnnouncementBytes ?? DEFAULT_MAX_ANNOUNCEMENT_BYTES;
    this.#registration = o.registration ?? true;
    this.#publisher = publisher;
    this.#ownPublisher = ownPublisher;
  }

  /**
   * Starts a nameserver on `peer`: serves RPC object `nameserver`, makes
   * the Publisher and binds the UDP socket (joining the multicast group
   * when `udp.multicast`). Resolves once the socket is bound
   * ({@link Nameserver.udpAddress}).
   *
   * @throws InvalidOptionsError an unknown option key or a bad value (a bad network in `allowNetworks`…).
   * @throws InvalidArgumentError the peer already serves an object named `nameserver`.
   * @throws ConnectionError the UDP socket could not be bound or the group joined.
   * @throws ConfigError a malformed `SNAKEMQ_*` variable (with UDP and no `config` given).
   * @throws ClosedError the peer is closed.
   */
  static async start(peer: Peer, options?: NameserverOptions): Promise<Nameserver> {
    const o = validateOptions<NameserverOptions>('Nameserver options', options, checks, {});
    let udp = o.udp === false ? false : validateOptions<NameserverUdpOptions>('Nameserver udp options', o.udp, udpChecks, {});
    if (udp !== false) {
      // A config given is checked (and completed with the defaults) without the environment, as the Announcer does.
      const config = o.config !== undefined ? discoveryConfig(o.config, {}) : discoveryConfig();
      udp = { port: config.multicastPort, group: config.multicastGroup, interface: config.multicastInterface, ...udp };
    }
    // The filter parses allowNetworks: build it (in the constructor) before anything is opened.
    const publisher = o.publisher ?? null;
    const ns = new Nameserver(peer, o, publisher ?? new Publisher(peer.messaging), publisher === null);
    try {
      peer.rpc.serve(NAMESERVER_OBJECT, ns.#rpcTarget());
      ns.#served = true;
      if (udp !== false) await ns.#bind(udp, o.createSocket ?? (() => createDgramSocket({ type: 'udp4', reuseAddr: true })));
    } catch (error) {
      await ns.close();
      throw error;
    }
    peer.messaging.once('close', ns.#onPeerClose);
    if (log.enabled) log(`nameserver ${peer.identity} started (udp ${JSON.stringify(ns.#udpAddress)}, maxAge ${ns.maxAge} ms)`);
    return ns;
  }

  /** The bound UDP address (`{ address, port }`), or `null` without UDP or after close. */
  get udpAddress(): { address: string; port: number } | null {
    return this.#udpAddress === null ? null : { ...this.#udpAddress };
  }

  /** Whether {@link Nameserver.close} was called. */
  get closed(): boolean {
    return this.#closing !== null;
  }

  /** Entries kept now. */
  get size(): number {
    return this.#registry.size;
  }

  /** Whether the expiry timer runs now (only while entries exist). */
  get expiryTimerRunning(): boolean {
    return this.#timer !== null;
  }

  /** Counters since the start. */
  get stats(): Readonly<NameserverStats> {
    return { ...this.#stats };
  }

  /** The live entries of service name or alias `service` (`''` = all), as the RPC `lookup` answers. */
  lookup(service: string): ServiceEntry[] {
    if (typeof service !== 'string') throw new AnnouncementError('lookup: the service must be a string');
    return this.#registry.lookup(service, this.#clock());
  }

  /** Every live entry. */
  entries(): ServiceEntry[] {
    return this.lookup('');
  }

  /** Drops the entries older than `maxAge` now (the timer does it every {@link expiryCheckInterval}); returns them. */
  expire(): ServiceEntry[] {
    const gone = this.#registry.expire(this.#clock());
    for (const e of gone) {
      this.#stats.expired++;
      if (log.enabled) log(`nameserver: ${e.identity} expired (${e.services.join(' ')})`);
      this.#publish(e, false, e.services);
      this.emit('expired', e);
    }
    this.#updateTimer();
    return gone;
  }

  /**
   * Stops: closes the UDP socket and the timer, closes the Publisher (when
   * it made it), stops serving `nameserver` and forgets the entries. The
   * peer stays open. Idempotent: the same promise every time.
   */
  close(): Promise<void> {
    return (this.#closing ??= (async () => {
      if (this.#timer !== null) clearInterval(this.#timer);
      this.#timer = null;
      this.#registry.clear();
      this.#peer.messaging.off('close', this.#onPeerClose);
      // Only what we served: a failed start must not unserve another nameserver's object.
      if (this.#served) this.#peer.rpc.unserve(NAMESERVER_OBJECT);
      const socket = this.#socket;
      this.#socket = null;
      this.#udpAddress = null;
      if (socket !== null) await new Promise<void>((resolve) => socket.close(() => resolve())).catch(() => undefined);
      if (this.#ownPublisher) await this.#publisher.close().catch(() => undefined);
      log(`nameserver ${this.#peer.identity} closed`);
    })());
  }

  /** `await using ns = await Nameserver.start(…)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #bind(udp: NameserverUdpOptions, make: () => NameserverSocket): Promise<void> {
    const socket = make();
    this.#socket = socket;
    const host = udp.host ?? DEFAULT_NAMESERVER_UDP_HOST;
    const port = udp.port ?? DEFAULT_NAMESERVER_UDP_PORT;
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error): void => reject(new ConnectionError(`Nameserver: cannot bind UDP ${host}:${port}: ${error.message}`, { cause: error }));
      socket.on('error', onError);
      socket.bind(port, host, () => {
        socket.off('error', onError);
        resolve();
      });
    });
    socket.on('error', (error) => {
      log(`nameserver: UDP error ${error.message}`);
      this.emit('udpError', error);
    });
    socket.on('message', (msg, rinfo) => this.#onDatagram(msg, rinfo));
    const group = udp.group ?? DEFAULT_NAMESERVER_GROUP;
    if ((udp.multicast ?? true) && !isBroadcastGroup(group)) {
      try {
        if (udp.interface === undefined) socket.addMembership(group);
        else socket.addMembership(group, udp.interface);
      } catch (error) {
        throw new ConnectionError(
          `Nameserver: cannot join multicast group ${group}${udp.interface ? ` on ${udp.interface}` : ''}: ${(error as Error).message}`,
          {
            cause: error,
          },
        );
      }
    }
    const a = socket.address();
    this.#udpAddress = { address: a.address, port: a.port };
  }

  #onDatagram(msg: Buffer, rinfo: RemoteInfo): void {
    if (this.#closing !== null) return;
    this.#stats.datagrams++;
    const source = `udp:${rinfo.address}:${rinfo.port}`;
    const refusal = this.#filter.check(rinfo.address);
    if (refusal !== null) {
      if (refusal.reason === 'rate') this.#stats.rateLimited++;
      else this.#stats.refusedSource++;
      this.#refuse(source, refusal.error);
      return;
    }
    let a: Announcement;
    try {
      a = decodeAnnouncement(msg, this.#maxBytes);
    } catch (error) {
      this.#stats.malformed++;
      this.#refuse(source, error instanceof AnnouncementError ? error : new AnnouncementError(String(error), { cause: error }));
      return;
    }
    const existing = this.#registry.get(a.identity);
    if (existing !== undefined && existing.source.startsWith('rpc:')) {
      this.#refuse(source, new AnnouncementError(`announcement of ${a.identity} refused: it registered by RPC, a datagram does not replace that`));
      return;
    }
    void this.#accept(a, source);
  }

  #refuse(source: string, error: AnnouncementError): void {
    if (log.enabled) log(`nameserver: refused ${source}: ${error.message}`);
    this.emit('refused', source, error);
  }

  /** Creates or refreshes the entry; returns the refusal (maxEntries) instead, after reporting it. */
  #accept(a: Announcement, source: string): AnnouncementError | null {
    let r;
    try {
      r = this.#registry.upsert(a, source, this.#clock());
    } catch (error) {
      this.#stats.full++;
      this.#refuse(source, error as AnnouncementError);
      return error as AnnouncementError;
    }
    this.#stats.accepted++;
    if (r.changed) {
      if (r.previous !== undefined) {
        const dropped = r.previous.services.filter((s) => !r.entry.services.includes(s));
        if (dropped.length > 0) this.#publish(r.previous, false, dropped);
      }
      if (log.enabled) log(`nameserver: ${r.entry.identity} ${r.isNew ? 'registered' : 'changed'} from ${source}: ${r.entry.endpoints.join(' ')}`);
      this.#publish(r.entry, true, r.entry.services);
    }
    this.#updateTimer();
    this.emit('registered', r.entry, r.isNew);
    return null;
  }

  #publish(e: ServiceEntry, status: boolean, services: readonly string[]): void {
    if (this.#publisher.closed) return;
    const data: AddressPublication = {
      status,
      identity: e.identity,
      endpoints: [...e.endpoints],
      service: [...e.services],
      URI: e.endpoints[0]!,
      supported_message_version: e.version,
      receive_time: new Date(e.receivedAt).toISOString(),
    };
    for (const s of services) {
      try {
        void this.#publisher.publish(`${ADDRESS_SUBJECT_PREFIX}${s}`, 'info', data as never);
      } catch (error) {
        log(`nameserver: cannot publish ${s}: ${(error as Error).message}`);
      }
    }
  }

  #updateTimer(): void {
    if (this.#registry.size === 0 || this.#closing !== null) {
      if (this.#timer !== null) clearInterval(this.#timer);
      this.#timer = null;
    } else if (this.#timer === null) {
      this.#timer = setInterval(() => this.expire(), expiryCheckInterval(this.maxAge));
      this.#timer.unref();
    }
  }

  #caller(method: string): string {
    const ident = this.#peer.rpc.server.currentCall?.ident;
    if (ident === undefined) throw new AnnouncementError(`nameserver.${method}: no calling peer`);
    const allowed = typeof this.#registration === 'function' ? this.#registration(ident) === true : this.#registration;
    if (!allowed) {
      this.#stats.refusedRegistrations++;
      const error = new AnnouncementError(`nameserver.${method} refused: ${ident} may not register with this nameserver`);
      this.#refuse(`rpc:${ident}`, error);
      throw error;
    }
    return ident;
  }

  #rpcTarget(): object {
    // A plain object: only these three methods are callable remotely.
    return {
      lookup: (service: unknown): ServiceEntry[] => this.lookup(service as string),
      register: (announcement: unknown): boolean => {
        const ident = this.#caller('register');
        const source = `rpc:${ident}`;
        let a: Announcement;
        try {
          a = checkAnnouncement(announcement);
        } catch (error) {
          this.#stats.malformed++;
          this.#refuse(source, error as AnnouncementError);
          throw error;
        }
        if (a.identity !== ident) {
          this.#stats.refusedRegistrations++;
          const error = new AnnouncementError(`nameserver.register refused: ${ident} cannot register identity ${a.identity} (only its own)`);
          this.#refuse(source, error);
          throw error;
        }
        const over = this.#filter.take(source);
        if (over !== null) {
          this.#stats.rateLimited++;
          this.#refuse(source, over.error);
          throw over.error;
        }
        const full = this.#accept(a, source);
        if (full !== null) throw full;
        return true;
      },
      unregister: (): boolean => {
        const ident = this.#caller('unregister');
        const e = this.#registry.delete(ident);
        if (e === undefined) return false;
        log(`nameserver: ${ident} unregistered`);
        this.#publish(e, false, e.services);
        this.#updateTimer();
        this.emit('unregistered', e);
        return true;
      },
    };
  }
}
