/**
 * Address announcements by UDP, PostTroll's way: a peer sends its
 * announcement ({@link encodeAnnouncement}: identity, endpoints, service
 * name and aliases) at once and then every interval, to a multicast group
 * (225.0.0.212:21200 by default) or to the UDP ports of named nameservers.
 * @module
 */
import { createSocket as createDgramSocket } from 'node:dgram';
import { isIPv4, isIPv6 } from 'node:net';
import { EventEmitter } from 'eventemitter3';
import { ConfigError, ConnectionError, InvalidOptionsError, type AnnouncementError } from '../errors.js';
import { is, validateOptions, type OptionCheck } from '../util/options.js';
import { encodeAnnouncement, MAX_ANNOUNCEMENT_BYTES, SUPPORTED_MESSAGE_VERSION, type Announcement } from './announcement.js';
import { discoveryConfig, isBroadcastGroup, isMulticastGroup, MAX_ANNOUNCE_INTERVAL, MIN_ANNOUNCE_INTERVAL, type DiscoveryConfig } from './config.js';
import { announcedEndpoints } from './endpoints.js';
import { log } from './log.js';

/** Where broadcast announcements go (a multicast group of 0.0.0.0 or 255.255.255.255). */
export const BROADCAST_ADDRESS = '255.255.255.255';

/** What an {@link Announcer} needs of a peer: a {@link Peer} is one. */
export interface AnnouncedPeer {
  /** Bound listener URLs (`Peer.listening`). */
  readonly listening: string[];
  /** Whether the peer is closed: the announcer then closes too. */
  readonly closed: boolean;
  readonly messaging: { readonly identity: string };
}

/** One UDP destination of announcements. */
export interface AnnounceTarget {
  /** An IPv4 or IPv6 address, or a host name (resolved to IPv4 on each send). */
  readonly host: string;
  /** 1..65535 */
  readonly port: number;
}

/** Multicast settings of {@link AnnouncerOptions}; each defaults to the config's. */
export interface AnnouncerMulticastOptions {
  /** Group (224.0.0.0/4), or 0.0.0.0 / 255.255.255.255 for broadcast. @default config.multicastGroup ('225.0.0.212') */
  group?: string;
  /** @default config.multicastPort (21200) */
  port?: number;
  /** `IP_MULTICAST_TTL`, 0..255. @default config.multicastTtl (31) */
  ttl?: number;
  /** Local IPv4 address of the interface to send on (`IP_MULTICAST_IF`). @default config.multicastInterface (the system's choice) */
  interface?: string;
  /** `IP_MULTICAST_LOOP`: whether receivers on this host get the announcements too (a local nameserver). @default true */
  loopback?: boolean;
}

/** The part of a `dgram.Socket` an {@link Announcer} uses. */
export interface AnnouncerSocket {
  bind(port: number, callback: () => void): unknown;
  setMulticastTTL(ttl: number): unknown;
  setMulticastInterface(address: string): unknown;
  setMulticastLoopback(flag: boolean): unknown;
  setBroadcast(flag: boolean): unknown;
  send(msg: Uint8Array, port: number, address: string, callback: (error: Error | null) => void): unknown;
  close(callback?: () => void): unknown;
  unref(): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
}

/** Options of {@link Announcer.start}. Unknown keys are refused. */
export interface AnnouncerOptions {
  /** The service name first, then its aliases (at least one; `MAX_SERVICES`). Required. */
  services: string[];
  /** The identity announced. @default peer.messaging.identity */
  identity?: string;
  /**
   * The endpoints announced. @default {@link announcedEndpoints}(peer.listening): the peer's bound
   * listeners, a wildcard host replaced by the machine's addresses, and followed when they change.
   */
  endpoints?: string[];
  /** Time between two announcements, in ms (10 .. 2^31−1). @default config.announceInterval (2000) */
  interval?: number;
  /** Unicast UDP destinations (say, nameservers' UDP ports), at least one: no multicast is then sent. Exclusive with `multicast`. @default none: multicast */
  targets?: AnnounceTarget[];
  /** Multicast settings (without `targets`). @default the config's */
  multicast?: AnnouncerMulticastOptions;
  /** `supported_message_version` announced. @default SUPPORTED_MESSAGE_VERSION ('v1.2') */
  version?: string;
  /** Largest datagram, in bytes (at most 8192). @default 1024 (DEFAULT_MAX_ANNOUNCEMENT_BYTES, what PostTroll's nameserver reads) */
  maxBytes?: number;
  /** Defaults of interval and multicast (checked; missing keys take the defaults, not the environment). @default discoveryConfig() (the SNAKEMQ_* environment) */
  config?: Partial<DiscoveryConfig>;
  /** @internal Makes the UDP sockets (tests pass a fake). @default dgram.createSocket */
  createSocket?: (type: 'udp4' | 'udp6') => AnnouncerSocket;
}

/** Events of {@link Announcer}. No `'error'` event: send failures are `sendError`. */
export interface AnnouncerEvents {
  /** One datagram went out to `target`. */
  sent: (target: AnnounceTarget, bytes: number) => void;
  /** A send failed (or the socket reported an error: `target` null). The announcer goes on at the next interval. */
  sendError: (error: Error, target: AnnounceTarget | null) => void;
  /** The announcement was encoded again (the peer's listeners changed, or {@link Announcer.refresh}). */
  refreshed: (announcement: Announcement) => void;
  /** The peer's listeners changed but the new announcement was refused (too long, no endpoint): the previous one is still sent. */
  refreshFailed: (error: AnnouncementError) => void;
  /** The announcer closed (by {@link Announcer.close}, or because the peer closed). */
  close: () => void;
}

const multicastChecks: { [K in keyof AnnouncerMulticastOptions]-?: OptionCheck } = {
  group: (v) =>
    typeof v === 'string' && (isMulticastGroup(v) || isBroadcastGroup(v)) ? undefined : 'must be an IPv4 multicast group, 0.0.0.0 or 255.255.255.255',
  port: is.integer(1, 65535),
  ttl: is.integer(0, 255),
  interface: (v) => (typeof v === 'string' && isIPv4(v) ? undefined : 'must be an IPv4 address'),
  loopback: is.boolean(),
};

const stringList: OptionCheck = (v) => (Array.isArray(v) && v.every((s) => typeof s === 'string') ? undefined : 'must be a list of strings');

const checks: { [K in keyof AnnouncerOptions]-?: OptionCheck } = {
  services: stringList,
  identity: is.string(),
  endpoints: stringList,
  interval: is.number(MIN_ANNOUNCE_INTERVAL, MAX_ANNOUNCE_INTERVAL),
  targets: (v) =>
    Array.isArray(v) &&
    v.length > 0 &&
    v.every(
      (t) =>
        typeof t === 'object' &&
        t !== null &&
        typeof t.host === 'string' &&
        t.host !== '' &&
        Number.isInteger(t.port) &&
        t.port >= 1 &&
        t.port <= 65535 &&
        Object.keys(t).every((k) => k === 'host' || k === 'port'),
    )
      ? undefined
      : 'must be a non-empty list of { host, port } (port 1..65535); leave it out for multicast',
  multicast: (v) => (typeof v === 'object' && v !== null && !Array.isArray(v) ? undefined : 'must be an object'),
  version: is.string(),
  maxBytes: is.integer(1, MAX_ANNOUNCEMENT_BYTES),
  config: (v) => (typeof v === 'object' && v !== null ? undefined : 'must be a DiscoveryConfig'),
  createSocket: is.function(),
};

type Family = 'udp4' | 'udp6';

/**
 * Announces a peer by UDP datagram every interval: made by
 * {@link Announcer.start}, stopped by {@link Announcer.close} (or when the
 * peer closes).
 *
 * ```ts
 * const peer = await createPeer({ identity: 'radar-1', listen: 'tcp://0.0.0.0:0' });
 * await using announcer = await Announcer.start(peer, { services: ['radar', 'weather'] });
 * announcer.on('sendError', (err) => console.warn('announce:', err.message));
 * ```
 *
 * The announcement is encoded once at start (its PostTroll `time` is the
 * start's: nameservers keep their own receive time) and again when the
 * peer's listeners change — checked at each interval, by comparing
 * `peer.listening` — or on {@link Announcer.refresh} (call it when the
 * machine's addresses changed). One timer, unref'd: it does not keep the
 * process alive.
 *
 * Multicast goes out on a `udp4` socket with `IP_MULTICAST_TTL`,
 * `IP_MULTICAST_IF` (when an interface is given) and `IP_MULTICAST_LOOP`
 * set; a broadcast group (0.0.0.0 / 255.255.255.255) sends to
 * 255.255.255.255 with `SO_BROADCAST`. With `targets`, each gets the
 * datagram by unicast (a `udp6` socket for IPv6 addresses) and no
 * multicast is sent. Send failures are `sendError` events, counted in
 * {@link Announcer.sendErrors}; they never throw.
 */
export class Announcer extends EventEmitter<AnnouncerEvents> implements AsyncDisposable {
  /** The destinations of every announcement: the targets, or the multicast group and port. */
  readonly targets: readonly AnnounceTarget[];
  /** Time between two announcements, in ms. */
  readonly interval: number;
  /** Whether announcements go by multicast (or broadcast) rather than to `targets`. */
  readonly multicast: boolean;
  readonly #peer: AnnouncedPeer;
  readonly #options: AnnouncerOptions;
  readonly #sockets: Map<Family, AnnouncerSocket>;
  #announcement: Announcement;
  #datagram: Uint8Array;
  #listeningKey: string;
  #timer: NodeJS.Timeout | null = null;
  #sent = 0;
  #sendErrors = 0;
  #closing: Promise<void> | null = null;

  private constructor(
    peer: AnnouncedPeer,
    options: AnnouncerOptions,
    sockets: Map<Family, AnnouncerSocket>,
    targets: AnnounceTarget[],
    multicast: boolean,
    interval: number,
    first: { announcement: Announcement; datagram: Uint8Array; listeningKey: string },
  ) {
    super();
    this.#peer = peer;
    this.#options = options;
    this.#sockets = sockets;
    this.targets = Object.freeze(targets.map((t) => Object.freeze({ ...t })));
    this.multicast = multicast;
    this.interval = interval;
    this.#announcement = first.announcement;
    this.#datagram = first.datagram;
    this.#listeningKey = first.listeningKey;
  }

  /**
   * Encodes `peer`'s announcement, opens the UDP socket(s), sends the first
   * announcement and starts the timer. Resolves once the first datagrams
   * are handed to the socket (their outcome is a `sent` or `sendError` event).
   *
   * @throws InvalidOptionsError an unknown option key or a bad value.
   * @throws AnnouncementError the announcement is malformed (a bad service name, no endpoint: a peer without listeners) or does not fit `maxBytes` — refused here, never cut.
   * @throws ConfigError a malformed `SNAKEMQ_*` variable (when no `config` is given), or a multicast interface that is not a local address.
   * @throws ConnectionError the UDP socket could not be opened.
   */
  static async start(peer: AnnouncedPeer, options: AnnouncerOptions): Promise<Announcer> {
    const o = validateOptions<AnnouncerOptions>('Announcer options', options, checks, {} as AnnouncerOptions);
    if (o.services === undefined) throw new InvalidOptionsError("Announcer options: option 'services' (the service name, then aliases) is required");
    if (o.targets !== undefined && o.multicast !== undefined) {
      throw new InvalidOptionsError("Announcer options: 'targets' and 'multicast' are exclusive (with targets, no multicast is sent)");
    }
    const m = validateOptions<AnnouncerMulticastOptions>('Announcer multicast options', o.multicast, multicastChecks, {});
    // A config given is checked (and completed with the defaults) without the environment.
    const config = o.config !== undefined ? discoveryConfig(o.config, {}) : discoveryConfig();
    const interval = o.interval ?? config.announceInterval;
    const first = encode(peer, o);

    const targets = o.targets ?? [];
    const multicast = targets.length === 0;
    const group = m.group ?? config.multicastGroup;
    const broadcast = multicast && isBroadcastGroup(group);
    const destinations: AnnounceTarget[] = multicast ? [{ host: broadcast ? BROADCAST_ADDRESS : group, port: m.port ?? config.multicastPort }] : targets;

    const make = o.createSocket ?? ((type: Family) => createDgramSocket(type));
    const sockets = new Map<Family, AnnouncerSocket>();
    try {
      for (const t of destinations) {
        const family: Family = isIPv6(t.host) ? 'udp6' : 'udp4';
        if (!sockets.has(family)) sockets.set(family, await openSocket(make, family));
      }
      const socket = sockets.get('udp4');
      if (broadcast) {
        socket!.setBroadcast(true);
      } else if (multicast) {
        socket!.setMulticastTTL(m.ttl ?? config.multicastTtl);
        const iface = m.interface ?? config.multicastInterface;
        if (iface !== undefined) {
          try {
            socket!.setMulticastInterface(iface);
          } catch (err) {
            throw new ConfigError(`Announcer: multicast interface ${iface} cannot be used (not a local IPv4 address?): ${(err as Error).message}`, {
              cause: err,
            });
          }
        }
        socket!.setMulticastLoopback(m.loopback ?? true);
      }
    } catch (err) {
      await Promise.all([...sockets.values()].map(closeSocket));
      if (err instanceof ConfigError || err instanceof ConnectionError) throw err;
      throw new ConnectionError(`Announcer: cannot set up the UDP socket: ${(err as Error).message}`, { cause: err });
    }

    const announcer = new Announcer(peer, o, sockets, destinations, multicast, interval, first);
    for (const s of sockets.values()) s.on('error', (err) => announcer.#failed(err, null));
    log(
      `announcing ${first.announcement.identity} as ${first.announcement.services.join(', ')} at ${first.announcement.endpoints.join(' ')} every ${interval} ms to ${destinations.map((t) => `${t.host}:${t.port}`).join(', ')}${broadcast ? ' (broadcast)' : multicast ? ' (multicast)' : ''}`,
    );
    announcer.#sendAll();
    announcer.#timer = setInterval(() => announcer.#tick(), interval);
    announcer.#timer.unref();
    return announcer;
  }

  /** What is announced now. */
  get announcement(): Announcement {
    return this.#announcement;
  }

  /** Size of the announcement's datagram, in bytes. */
  get bytes(): number {
    return this.#datagram.byteLength;
  }

  /** Datagrams sent so far (one per target and interval, counted when the socket reports it sent). */
  get datagramsSent(): number {
    return this.#sent;
  }

  /** Sends that failed so far (each also a `sendError` event). */
  get sendErrors(): number {
    return this.#sendErrors;
  }

  /** Whether {@link Announcer.close} was called (or the peer closed). */
  get closed(): boolean {
    return this.#closing !== null;
  }

  /**
   * Encodes the announcement again — the endpoints from `peer.listening`
   * and the machine's interfaces now (unless `endpoints` was given) — and
   * sends it from the next interval on. The announcer does this by itself
   * when `peer.listening` changes; call it after the machine's addresses changed.
   * @throws AnnouncementError the new announcement is refused (the previous one is kept).
   */
  refresh(): Announcement {
    const next = encode(this.#peer, this.#options);
    this.#announcement = next.announcement;
    this.#datagram = next.datagram;
    this.#listeningKey = next.listeningKey;
    log(`announcement of ${next.announcement.identity} now at ${next.announcement.endpoints.join(' ')}`);
    this.emit('refreshed', next.announcement);
    return next.announcement;
  }

  /** Stops announcing and closes the UDP socket(s). Idempotent: the same promise every time. */
  close(): Promise<void> {
    return (this.#closing ??= (async () => {
      if (this.#timer !== null) clearInterval(this.#timer);
      this.#timer = null;
      await Promise.all([...this.#sockets.values()].map(closeSocket));
      log(`stopped announcing ${this.#announcement.identity} (${this.#sent} datagrams sent, ${this.#sendErrors} send errors)`);
      this.emit('close');
    })());
  }

  /** `await using announcer = await Announcer.start(…)` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #tick(): void {
    if (this.#closing !== null) return;
    if (this.#peer.closed) {
      void this.close();
      return;
    }
    if (this.#options.endpoints === undefined && this.#peer.listening.join(' ') !== this.#listeningKey) {
      try {
        this.refresh();
      } catch (err) {
        // Not again at every interval: only at the next change.
        this.#listeningKey = this.#peer.listening.join(' ');
        log(`announcement not refreshed: ${(err as Error).message}`);
        this.emit('refreshFailed', err as AnnouncementError);
      }
    }
    this.#sendAll();
  }

  #sendAll(): void {
    const datagram = this.#datagram;
    for (const target of this.targets) {
      const socket = this.#sockets.get(isIPv6(target.host) ? 'udp6' : 'udp4')!;
      try {
        socket.send(datagram, target.port, target.host, (err) => {
          if (err) return this.#failed(err, target);
          this.#sent++;
          this.emit('sent', target, datagram.byteLength);
        });
      } catch (err) {
        this.#failed(err as Error, target);
      }
    }
  }

  #failed(error: Error, target: AnnounceTarget | null): void {
    if (this.#closing !== null) return;
    this.#sendErrors++;
    log(`announcement to ${target ? `${target.host}:${target.port}` : 'the socket'} failed: ${error.message}`);
    this.emit('sendError', error, target);
  }
}

function encode(peer: AnnouncedPeer, o: AnnouncerOptions): { announcement: Announcement; datagram: Uint8Array; listeningKey: string } {
  const listening = peer.listening;
  const announcement: Announcement = {
    identity: o.identity ?? peer.messaging.identity,
    endpoints: o.endpoints ?? announcedEndpoints(listening),
    services: o.services,
    version: o.version ?? SUPPORTED_MESSAGE_VERSION,
  };
  const datagram = encodeAnnouncement(announcement, { maxBytes: o.maxBytes });
  return {
    announcement: { ...announcement, endpoints: [...announcement.endpoints], services: [...announcement.services] },
    datagram,
    listeningKey: listening.join(' '),
  };
}

function openSocket(make: (type: Family) => AnnouncerSocket, family: Family): Promise<AnnouncerSocket> {
  return new Promise((resolve, reject) => {
    let socket: AnnouncerSocket;
    let bound = false;
    try {
      socket = make(family);
      socket.on('error', (err) => {
        if (bound) return;
        reject(new ConnectionError(`Announcer: cannot open a ${family} socket: ${err.message}`, { cause: err }));
        void closeSocket(socket);
      });
      socket.bind(0, () => {
        bound = true;
        socket.unref();
        resolve(socket);
      });
    } catch (err) {
      reject(new ConnectionError(`Announcer: cannot open a ${family} socket: ${(err as Error).message}`, { cause: err }));
    }
  });
}

function closeSocket(socket: AnnouncerSocket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve(); // already closed
    }
  });
}
