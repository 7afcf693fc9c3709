/**
 * Options of {@link serveManagement} (and of the `management` option of
 * createPeer), their defaults and validation.
 * @module
 */
import { InvalidOptionsError } from '../errors.js';
import type { RelayRouteInfo } from '../relay/relay-transport.js';
import { is, validateOptions, type OptionCheck } from '../util/options.js';

/** Name of the RPC object management serves by default. */
export const DEFAULT_MANAGEMENT_OBJECT = 'management';
/** Most identities (queues), connections and relay routes a status lists, each. */
export const DEFAULT_MANAGEMENT_MAX_PEERS = 1000;
/** Most listeners and connectors a status lists, each. */
export const DEFAULT_MANAGEMENT_MAX_ENDPOINTS = 1000;
/** Most subject alternative names a status shows per TLS peer. */
export const MAX_TLS_ALT_NAMES = 20;
/** Longest error message a status carries (longer ones are cut). */
export const MAX_ERROR_MESSAGE_LENGTH = 200;

/** Who may call: a list of identities, or a function of the calling identity (`true` lets it in; throwing refuses). */
export type IdentityAllow = readonly string[] | ((ident: string) => boolean);

/** Options of {@link serveManagement}: who may read and who may act. Only `allow` is required. */
export interface ManagementOptions {
  /** Identities that may read the status (`status()`). Required: management is never open to everybody by default. */
  allow: IdentityAllow;
  /**
   * Who may call the actions (`disconnect`, `dropQueue`), apart from who
   * reads. An identity must be allowed here (reading is not enough).
   * @default nobody
   */
  actions?: { allow: IdentityAllow };
  /** Where the relay routes of the status come from. @default the peer's own relay (`peer.messaging.relay.routes()`) when it has the `relay` option, else none (`relayRoutes: []`) */
  relayRoutes?: () => readonly RelayRouteInfo[];
  /** Name of the RPC object. @default {@link DEFAULT_MANAGEMENT_OBJECT} */
  name?: string;
  /** Most identities, connections and relay routes listed, each (`truncated` flags tell). @default {@link DEFAULT_MANAGEMENT_MAX_PEERS} */
  maxPeers?: number;
  /** Most listeners and connectors listed, each. @default {@link DEFAULT_MANAGEMENT_MAX_ENDPOINTS} */
  maxEndpoints?: number;
}

/** @internal {@link ManagementOptions} checked, defaults in. */
export interface ResolvedManagementOptions {
  allow: (ident: string) => boolean;
  actions: (ident: string) => boolean;
  relayRoutes: (() => readonly RelayRouteInfo[]) | null;
  name: string;
  maxPeers: number;
  maxEndpoints: number;
}

const allowCheck: OptionCheck = (v) =>
  typeof v === 'function' || (Array.isArray(v) && v.every((x) => typeof x === 'string'))
    ? undefined
    : 'must be a list of identities or a function of the calling identity';

function allowFn(allow: IdentityAllow | undefined): (ident: string) => boolean {
  if (allow === undefined) return () => false;
  if (typeof allow === 'function') {
    return (ident) => {
      try {
        return allow(ident) === true;
      } catch {
        return false;
      }
    };
  }
  const set = new Set(allow);
  return (ident) => set.has(ident);
}

/** @internal Checks the options (unknown keys rejected). */
export function resolveManagementOptions(what: string, given: ManagementOptions): ResolvedManagementOptions {
  const o = validateOptions<Partial<ManagementOptions>>(
    what,
    given,
    {
      allow: allowCheck,
      actions: (v) => (typeof v === 'object' && v !== null && !Array.isArray(v) ? undefined : 'must be an object { allow }'),
      relayRoutes: is.function(),
      name: (v) => (typeof v === 'string' && v !== '' ? undefined : 'must be a non-empty string'),
      maxPeers: is.integer(1, 1_000_000),
      maxEndpoints: is.integer(1, 1_000_000),
    },
    {},
  );
  if (o.allow === undefined) throw new InvalidOptionsError(`${what}: option 'allow' is required (the identities that may read the status)`);
  const actions = validateOptions<{ allow?: IdentityAllow }>(`${what} actions`, o.actions, { allow: allowCheck }, {});
  return {
    allow: allowFn(o.allow),
    actions: allowFn(actions.allow),
    relayRoutes: o.relayRoutes ?? null,
    name: o.name ?? DEFAULT_MANAGEMENT_OBJECT,
    maxPeers: o.maxPeers ?? DEFAULT_MANAGEMENT_MAX_PEERS,
    maxEndpoints: o.maxEndpoints ?? DEFAULT_MANAGEMENT_MAX_ENDPOINTS,
  };
}
