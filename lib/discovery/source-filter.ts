/**
 * Which UDP sources a {@link Nameserver} listens to, checked before a
 * datagram is decoded: local addresses only, an allow-list of networks
 * (CIDR, IPv4 and IPv6, with `node:net`'s BlockList) and a token bucket per
 * source address. Builds on nothing of ours but errors.ts.
 * @module
 */
import { BlockList, isIP, isIPv4 } from 'node:net';
import { networkInterfaces } from 'node:os';
import { AnnouncementError, InvalidOptionsError } from '../errors.js';

/** Default announcements per second and per source address. */
export const DEFAULT_RATE_PER_SECOND = 10;
/** Default burst of announcements per source address. */
export const DEFAULT_RATE_BURST = 20;
/** Default number of source addresses whose rate is tracked (the least recently heard is forgotten first). */
export const DEFAULT_MAX_SOURCES = 10_000;
/** How long the machine's interface addresses are cached by `localOnly`, in ms. */
export const LOCAL_ADDRESSES_TTL = 5000;

/** A token bucket: `perSecond` announcements per second on average, `burst` at once. */
export interface RateLimit {
  /** Tokens added per second (> 0). */
  readonly perSecond: number;
  /** Bucket size (≥ 1): announcements accepted at once after a quiet time. */
  readonly burst: number;
}

/** Options of {@link SourceFilter}. */
export interface SourceFilterOptions {
  /** Accept only the machine's own addresses and loopback. @default false */
  localOnly?: boolean;
  /** CIDR networks (`10.0.0.0/8`, `2001:db8::/32`, or one address) accepted; all others are refused. @default undefined (any) */
  allowNetworks?: readonly string[];
  /** Per source address; `false` for none. @default { perSecond: 10, burst: 20 } */
  rate?: RateLimit | false;
  /** Source addresses tracked. @default 10,000 */
  maxSources?: number;
  /** Time in ms. @default Date.now */
  clock?: () => number;
  /** @internal The machine's addresses (tests); replaces the interfaces and loopback. @default os.networkInterfaces() + 127.0.0.0/8 + ::1 */
  localAddresses?: () => readonly string[];
}

/** Why {@link SourceFilter.check} refused a source. */
export interface SourceRefusal {
  /** `source`: localOnly or allowNetworks; `rate`: over the rate. */
  readonly reason: 'source' | 'rate';
  readonly error: AnnouncementError;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** `::ffff:1.2.3.4` → `1.2.3.4`: one spelling per IPv4 source. */
export function normaliseAddress(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m !== null ? m[1]! : address;
}

const familyOf = (address: string): 'ipv4' | 'ipv6' => (isIPv4(address) ? 'ipv4' : 'ipv6');

/**
 * Parses an allow-list into a BlockList (used as an allow-list).
 * @throws InvalidOptionsError for an entry that is not `address[/prefix]`.
 */
export function parseNetworks(what: string, networks: readonly string[]): BlockList {
  const list = new BlockList();
  for (const n of networks) {
    const [addr, prefix, extra] = typeof n === 'string' ? n.split('/') : [];
    const version = addr === undefined ? 0 : isIP(addr);
    const max = version === 4 ? 32 : 128;
    const bits = prefix === undefined ? max : /^\d{1,3}$/.test(prefix) ? Number(prefix) : NaN;
    if (version === 0 || extra !== undefined || !(bits >= 0 && bits <= max)) {
      throw new InvalidOptionsError(`${what}: ${JSON.stringify(n)} is not a network (a.b.c.d/n, x:y::/n or one address)`);
    }
    list.addSubnet(addr!, bits, version === 4 ? 'ipv4' : 'ipv6');
  }
  return list;
}

/**
 * Decides, per datagram and before it is decoded, whether its source is
 * heard: {@link SourceFilter.check} returns the refusal or `null`. Bounded:
 * at most `maxSources` buckets, the least recently heard forgotten first.
 */
export class SourceFilter {
  readonly #localOnly: boolean;
  readonly #allow: BlockList | null;
  readonly #rate: RateLimit | false;
  readonly #maxSources: number;
  readonly #clock: () => number;
  readonly #localAddresses: (() => readonly string[]) | undefined;
  readonly #buckets = new Map<string, Bucket>();
  #local: { set: Set<string>; at: number } | null = null;

  constructor(options: SourceFilterOptions = {}) {
    this.#localOnly = options.localOnly ?? false;
    this.#allow = options.allowNetworks === undefined ? null : parseNetworks('allowNetworks', options.allowNetworks);
    this.#rate = options.rate ?? { perSecond: DEFAULT_RATE_PER_SECOND, burst: DEFAULT_RATE_BURST };
    this.#maxSources = options.maxSources ?? DEFAULT_MAX_SOURCES;
    this.#clock = options.clock ?? Date.now;
    this.#localAddresses = options.localAddresses;
  }

  /** Source addresses tracked now (at most `maxSources`). */
  get sources(): number {
    return this.#buckets.size;
  }

  /**
   * Whether a datagram from `address` is heard: `null`, or the refusal
   * (local-only, not in the allow-list, over the rate). A heard datagram
   * takes a token.
   */
  check(address: string): SourceRefusal | null {
    const a = normaliseAddress(address);
    if (this.#localOnly && !this.isLocal(a)) {
      return { reason: 'source', error: new AnnouncementError(`announcement from ${a} refused: not a local address (localOnly)`) };
    }
    if (this.#allow !== null && !this.#allow.check(a, familyOf(a))) {
      return { reason: 'source', error: new AnnouncementError(`announcement from ${a} refused: not in allowNetworks`) };
    }
    return this.take(a);
  }

  /** Takes a token of `key`'s bucket (a source address, or `rpc:<ident>`): `null`, or the refusal. */
  take(key: string): SourceRefusal | null {
    if (this.#rate === false) return null;
    const now = this.#clock();
    let b = this.#buckets.get(key);
    if (b === undefined) {
      b = { tokens: this.#rate.burst, at: now };
      if (this.#buckets.size >= this.#maxSources) this.#buckets.delete(this.#buckets.keys().next().value!);
    } else {
      this.#buckets.delete(key); // re-inserted below: the map is ordered by last use
      b.tokens = Math.min(this.#rate.burst, b.tokens + (Math.max(0, now - b.at) * this.#rate.perSecond) / 1000);
      b.at = now;
    }
    this.#buckets.set(key, b);
    if (b.tokens < 1) {
      return { reason: 'rate', error: new AnnouncementError(`announcement from ${key} refused: over ${this.#rate.perSecond}/s (burst ${this.#rate.burst})`) };
    }
    b.tokens -= 1;
    return null;
  }

  /** Whether `address` is loopback or one of the machine's interface addresses (cached for {@link LOCAL_ADDRESSES_TTL}, read again on a miss after it). */
  isLocal(address: string): boolean {
    const a = normaliseAddress(address);
    if (this.#localAddresses === undefined && (a === '::1' || (isIPv4(a) && a.startsWith('127.')))) return true;
    const now = this.#clock();
    if (this.#local !== null && this.#local.set.has(a)) return true;
    if (this.#local === null || now - this.#local.at >= LOCAL_ADDRESSES_TTL || now < this.#local.at) {
      this.#local = { set: new Set(this.#readLocal().map(normaliseAddress)), at: now };
    }
    return this.#local.set.has(a);
  }

  #readLocal(): readonly string[] {
    if (this.#localAddresses !== undefined) return this.#localAddresses();
    return Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address.replace(/%.*$/, '')));
  }
}
