/**
 * Options of relaying (`MessagingOptions.relay`, `createPeer({ relay })`),
 * their defaults and their validation.
 * @module
 */
import { InvalidOptionsError } from '../errors.js';
import type { ConnectionInfo } from '../link/types.js';
import { is, validateOptions } from '../util/options.js';

/** Default of {@link RelayOptions.forward}: a peer forwards for nobody unless told. */
export const DEFAULT_RELAY_FORWARD = false;
/** Default of {@link RelayOptions.hopLimit}. */
export const DEFAULT_RELAY_HOP_LIMIT = 4;
/** Default of {@link RelayOptions.maxRoutes}. */
export const DEFAULT_RELAY_MAX_ROUTES = 1024;
/** Default of {@link RelayOptions.maxRoutesPerPeer}. */
export const DEFAULT_RELAY_MAX_ROUTES_PER_PEER = 64;
/** Default of {@link RelayOptions.window}: 1 MiB. */
export const DEFAULT_RELAY_WINDOW = 1024 * 1024;
/** Default of {@link RelayOptions.maxHeldPerRoute}: 2 MiB. */
export const DEFAULT_RELAY_MAX_HELD_PER_ROUTE = 2 * 1024 * 1024;
/** Default of {@link RelayOptions.maxHeld}: 64 MiB. */
export const DEFAULT_RELAY_MAX_HELD = 64 * 1024 * 1024;
/** Default of {@link RelayOptions.maxRelayedConnections}. */
export const DEFAULT_RELAY_MAX_RELAYED_CONNECTIONS = 1024;
/** Default of {@link RelayOptions.maxLearnedRoutes}. */
export const DEFAULT_RELAY_MAX_LEARNED_ROUTES = 10_000;
/** Default of {@link RelayOptions.routeTtl}: 60 s. */
export const DEFAULT_RELAY_ROUTE_TTL = 60_000;
/** Default of {@link RelayOptions.retryInterval}: 30 s at most between route queries for a peer still wanted. */
export const DEFAULT_RELAY_RETRY_INTERVAL = 30_000;

/** Which identities may have this peer forward for them. */
export type RelayAllowPolicy = (ident: string) => boolean;
/** Whether to believe a relay's word on who a relayed stream comes from (and to use it as a relay). */
export type RelayTrustPolicy = (relay: string, connection: ConnectionInfo) => boolean;

/**
 * Relaying through a peer (docs/relay.md). Give it (`{}` is enough) to
 * every peer that reaches others through a relay or is reached that way;
 * a relay itself also sets `forward: true` and `allow`.
 */
export interface RelayOptions {
  /**
   * Forward packets between peers connected to this one (be a relay).
   * Needs {@link allow}.
   * @default false
   */
  forward?: boolean;
  /**
   * Who may use this peer as a relay: a list of identities or a function.
   * A relayed stream is forwarded only when its source, its destination
   * and the neighbour handing it over (another relay, past the first hop)
   * are all allowed.
   * @default nobody
   */
  allow?: readonly string[] | RelayAllowPolicy;
  /**
   * Which relays this peer uses and believes: a relay says who a stream is
   * from, so only a trusted one may. Called with the relay's identity and
   * the connection to it.
   * @default relays on connections this peer opened (`side === 'connector'`)
   */
  trust?: RelayTrustPolicy;
  /**
   * Hops a relayed stream or route query may take (1 = one relay between).
   * @default 4
   */
  hopLimit?: number;
  /** Relayed streams (one per pair of peers and direction) a relay forwards at once. @default 1024 */
  maxRoutes?: number;
  /** ...of which one neighbour may open this many. @default 64 */
  maxRoutesPerPeer?: number;
  /**
   * Bytes a sender keeps in flight on one relayed stream (sent, not yet
   * passed on by the relay) before `writable()` turns false: flow control.
   * @default 1048576
   */
  window?: number;
  /**
   * Bytes a relay holds for one stream that the next hop has not taken;
   * a sender past it is cut off (the stream is closed, its messages are
   * re-sent on the next one). Keep it above `window` plus a write batch.
   * @default 2097152
   */
  maxHeldPerRoute?: number;
  /**
   * Bytes a relay holds for all streams together; past it, a stream that
   * holds anything and brings more is closed (slow destinations are cut
   * first, the others go on).
   * @default 67108864
   */
  maxHeld?: number;
  /** Relayed connections (peers reached, or reaching us, through a relay) this peer keeps. @default 1024 */
  maxRelayedConnections?: number;
  /** Routes learned from neighbours' replies that are remembered. @default 10000 */
  maxLearnedRoutes?: number;
  /** How long a learned route and a pending query are remembered, in ms. @default 60000 */
  routeTtl?: number;
  /** Longest wait between route queries for a peer that has messages waiting and no route, in ms (from 1 s, doubling). @default 30000 */
  retryInterval?: number;
}

/** {@link RelayOptions} with every default applied. */
export interface ResolvedRelayOptions {
  readonly forward: boolean;
  readonly allow: RelayAllowPolicy;
  readonly trust: RelayTrustPolicy;
  readonly hopLimit: number;
  readonly maxRoutes: number;
  readonly maxRoutesPerPeer: number;
  readonly window: number;
  readonly maxHeldPerRoute: number;
  readonly maxHeld: number;
  readonly maxRelayedConnections: number;
  readonly maxLearnedRoutes: number;
  readonly routeTtl: number;
  readonly retryInterval: number;
}

const nobody: RelayAllowPolicy = () => false;
/** Default of {@link RelayOptions.trust}. */
export const trustRelaysWeConnectedTo: RelayTrustPolicy = (_relay, connection) => connection.side === 'connector';

/** Validates relay options (`true` means `{}`); throws {@link InvalidOptionsError}. */
export function resolveRelayOptions(given: RelayOptions | true): ResolvedRelayOptions {
  const o = validateOptions<Required<RelayOptions>>(
    'relay',
    given === true ? {} : given,
    {
      forward: is.boolean(),
      allow: (v) =>
        typeof v === 'function' || (Array.isArray(v) && v.every((x) => typeof x === 'string')) ? undefined : 'must be an array of identities or a function',
      trust: is.function(),
      hopLimit: is.integer(1, 16),
      maxRoutes: is.integer(1),
      maxRoutesPerPeer: is.integer(1),
      window: is.integer(1024),
      maxHeldPerRoute: is.integer(1024),
      maxHeld: is.integer(1024),
      maxRelayedConnections: is.integer(1),
      maxLearnedRoutes: is.integer(1),
      routeTtl: is.integer(1),
      retryInterval: is.integer(1),
    },
    {
      forward: DEFAULT_RELAY_FORWARD,
      allow: nobody,
      trust: trustRelaysWeConnectedTo,
      hopLimit: DEFAULT_RELAY_HOP_LIMIT,
      maxRoutes: DEFAULT_RELAY_MAX_ROUTES,
      maxRoutesPerPeer: DEFAULT_RELAY_MAX_ROUTES_PER_PEER,
      window: DEFAULT_RELAY_WINDOW,
      maxHeldPerRoute: DEFAULT_RELAY_MAX_HELD_PER_ROUTE,
      maxHeld: DEFAULT_RELAY_MAX_HELD,
      maxRelayedConnections: DEFAULT_RELAY_MAX_RELAYED_CONNECTIONS,
      maxLearnedRoutes: DEFAULT_RELAY_MAX_LEARNED_ROUTES,
      routeTtl: DEFAULT_RELAY_ROUTE_TTL,
      retryInterval: DEFAULT_RELAY_RETRY_INTERVAL,
    },
  );
  if (o.forward && o.allow === nobody) throw new InvalidOptionsError("relay: 'forward: true' needs 'allow' (who may use this relay)");
  const allow: RelayAllowPolicy =
    typeof o.allow === 'function'
      ? o.allow
      : (
          (set) => (ident: string) =>
            set.has(ident)
        )(new Set(o.allow));
  return { ...o, allow };
}
