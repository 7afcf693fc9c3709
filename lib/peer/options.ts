/**
 * Options of {@link createPeer} and their validation: what a one-call peer
 * builds (Link, optional Throttle, Packeter, Messaging, storage, RPC) and
 * where it listens and connects. Builds on the layers' own option types;
 * each layer still validates its own options object.
 * @module
 */
import type { RelayOptions } from '../relay/options.js';
import { InvalidOptionsError } from '../errors.js';
import { parseEndpoint, type ConnectorOptions, type LinkOptions, type ListenerOptions, type TlsOptions } from '../link/index.js';
import { resolveConnectorOptions, resolveListenerOptions, resolveTlsOptions } from '../link/options.js';
import { resolveManagementOptions, type ManagementOptions } from '../management/options.js';
import type { MessagingOptions } from '../messaging/index.js';
import type { PacketerOptions } from '../packeter/index.js';
import type { RpcClientOptions, RpcServerOptions } from '../rpc/index.js';
import type { QueuesStorage } from '../storage/index.js';
import type { ThrottleOptions } from '../throttle/index.js';
import { is, validateOptions, type OptionCheck } from '../util/options.js';

/** A listener of a peer: a URL (`tcp://127.0.0.1:0`, `tls://…`, `unix:///…`), or a URL with {@link ListenerOptions}. */
export type ListenSpec = string | { url: string; options?: ListenerOptions };
/** A connector of a peer: a URL, or a URL with {@link ConnectorOptions}. */
export type ConnectSpec = string | { url: string; options?: ConnectorOptions };

/** Options of the RPC objects a peer creates on first use (see {@link PeerRpc}). */
export interface PeerRpcOptions {
  /** Options of the peer's {@link RpcServer}; given, the server is created at once (and its options checked then). @default RpcServer's defaults */
  server?: RpcServerOptions;
  /** Options of the peer's {@link RpcClient}; given, the client is created at once (and its options checked then). @default RpcClient's defaults */
  client?: RpcClientOptions;
}

/** Options of {@link createPeer}. Only `identity` is required. */
export interface PeerOptions {
  /** This peer's identity (at most 50 characters on the wire). Required. */
  identity: string;
  /**
   * Where to accept connections: one endpoint or a list. `createPeer`
   * resolves once every one is bound (`peer.listening` has the bound URLs,
   * with the port a `:0` picked). More later with `peer.listen()`.
   * @default none
   */
  listen?: ListenSpec | readonly ListenSpec[];
  /**
   * Where to connect, reconnecting with backoff until the peer closes: one
   * endpoint or a list. Connecting is not waited for. More later with
   * `peer.connect()`.
   * @default none
   */
  connect?: ConnectSpec | readonly ConnectSpec[];
  /**
   * TLS settings for every `tls://` and `unix+tls://` endpoint of `listen`,
   * `connect`, `peer.listen()` and `peer.connect()` that has no `tls` of its
   * own (one object serves both sides: key and cert, plus `ca` and
   * `requestCert: true` for mutual TLS). Plain endpoints ignore it.
   * @default none
   */
  tls?: TlsOptions;
  /**
   * Where persistent messages are kept: a {@link QueuesStorage}, or the path
   * of an SQLite file, opened with `SqliteQueuesStorage.open(path, {
   * identity })` (the optional `sqlite3` package, loaded only then). Either
   * way the peer owns the storage from the call on: `close()` closes it, and
   * so does a failing `createPeer`. For other SQLite settings (`durability:
   * 'power'`…), open it yourself and pass it.
   * @default none (queues in memory only)
   */
  storage?: QueuesStorage | string;
  /** A {@link Throttle} between the Link and the Packeter with these options. @default none (no throttle) */
  throttle?: ThrottleOptions;
  /** Options of the {@link Link}. @default Link's defaults */
  link?: LinkOptions;
  /** Options of the {@link Packeter}. @default Packeter's defaults */
  packeter?: PacketerOptions;
  /** Options of the {@link Messaging}, without `storage` (a peer option of its own). @default Messaging's defaults */
  messaging?: Omit<MessagingOptions, 'storage'>;
  /** Options of the RPC server and client. @default RPC's defaults, created on first use */
  rpc?: PeerRpcOptions;
  /**
   * Serve the peer's management object (serveManagement, docs/management.md):
   * its status to the identities of `allow`, its actions to those of
   * `actions.allow`; the handle is `peer.management`.
   * @default none (no management object)
   */
  management?: ManagementOptions;
  /**
   * Relaying through a peer (docs/relay.md): `{}` or `true` to reach peers
   * through relays and be reached that way, `{ forward: true, allow }` to be
   * a relay. Shorthand for `messaging: { relay }`.
   * @default none (no relaying)
   */
  relay?: RelayOptions | true;
}

/** @internal {@link PeerOptions} checked, endpoints parsed into lists. */
export interface ResolvedPeerOptions {
  identity: string;
  listen: { url: string; options: ListenerOptions | undefined }[];
  connect: { url: string; options: ConnectorOptions | undefined }[];
  tls: TlsOptions | undefined;
  storage: QueuesStorage | string | undefined;
  throttle: ThrottleOptions | undefined;
  link: LinkOptions | undefined;
  packeter: PacketerOptions | undefined;
  messaging: Omit<MessagingOptions, 'storage'> | undefined;
  rpc: PeerRpcOptions;
  management: ManagementOptions | undefined;
}

const object: OptionCheck = (v) => (typeof v === 'object' && v !== null && !Array.isArray(v) ? undefined : 'must be an object');

function specCheck(v: unknown): string | undefined {
  const list = Array.isArray(v) ? v : [v];
  for (const spec of list) {
    const url: unknown = typeof spec === 'object' && spec !== null ? (spec as { url?: unknown }).url : spec;
    if (typeof url !== 'string') return 'must be a URL string, { url, options }, or a list of them';
    if (typeof spec === 'object') {
      const extra = Object.keys(spec as object).find((k) => k !== 'url' && k !== 'options');
      if (extra !== undefined) return `has an unknown key '${extra}' (known: options, url)`;
    }
    try {
      parseEndpoint(url);
    } catch (error) {
      return `has an invalid endpoint: ${(error as Error).message}`;
    }
  }
  return undefined;
}

function specs<O>(v: unknown): { url: string; options: O | undefined }[] {
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).map((spec: string | { url: string; options?: O }) =>
    typeof spec === 'string' ? { url: spec, options: undefined } : { url: spec.url, options: spec.options },
  );
}

/** @internal Checks the peer's own options (each layer checks its own object when it is built). */
export function resolvePeerOptions(given: PeerOptions): ResolvedPeerOptions {
  if (typeof given !== 'object' || given === null) throw new InvalidOptionsError('createPeer: options must be an object with an identity');
  const o = validateOptions<Partial<PeerOptions>>(
    'createPeer',
    given,
    {
      identity: is.string(),
      listen: specCheck,
      connect: specCheck,
      tls: object,
      storage: (v) =>
        (typeof v === 'string' && v !== '') || (typeof v === 'object' && v !== null && typeof (v as QueuesStorage).push === 'function')
          ? undefined
          : 'must be a QueuesStorage or the path of an SQLite file',
      throttle: object,
      link: object,
      packeter: object,
      messaging: (v) => object(v) ?? ('storage' in (v as object) ? "must not hold 'storage' (it is an option of the peer)" : undefined),
      rpc: object,
      management: object,
      relay: (v) => (v === true ? undefined : object(v)),
    },
    {},
  );
  if (o.identity === undefined) throw new InvalidOptionsError("createPeer: option 'identity' is required");
  const rpc = validateOptions<PeerRpcOptions>('createPeer rpc', o.rpc, { server: object, client: object }, {});
  if (o.management !== undefined) resolveManagementOptions('createPeer management', o.management);
  // Endpoint and TLS options are checked now, as the Link will, so that nothing is opened for a peer that cannot start.
  if (o.tls !== undefined) resolveTlsOptions('createPeer', o.tls);
  const listen = specs<ListenerOptions>(o.listen);
  for (const { url, options } of listen) resolveListenerOptions(parseEndpoint(url), withTls(url, options, o.tls));
  const connect = specs<ConnectorOptions>(o.connect);
  for (const { url, options } of connect) resolveConnectorOptions(parseEndpoint(url), withTls(url, options, o.tls));
  return {
    identity: o.identity,
    listen,
    connect,
    tls: o.tls,
    storage: o.storage,
    throttle: o.throttle,
    link: o.link,
    packeter: o.packeter,
    messaging: o.relay === undefined ? o.messaging : { ...o.messaging, relay: o.relay },
    rpc,
    management: o.management,
  };
}

/** @internal The endpoint's options with the peer's default TLS settings filled in (TLS endpoints without their own). */
export function withTls<O extends { tls?: TlsOptions }>(url: string, options: O | undefined, tls: TlsOptions | undefined): O | undefined {
  if (tls === undefined || options?.tls !== undefined || !parseEndpoint(url).tls) return options;
  return { ...options, tls } as O;
}
