import { Buffer } from 'node:buffer';
import type { PeerCertificate } from 'node:tls';
import { InvalidOptionsError } from '../errors.js';
import { is, validateOptions, type OptionCheck } from '../util/options.js';
import { resolveDatagramConnectorOptions, resolveDatagramListenerOptions } from './datagram.js';
import type { ParsedEndpoint } from './types.js';

/** @see LinkOptions.highWaterMark */
export const DEFAULT_HIGH_WATER_MARK = 1024 * 1024;
/** @see LinkOptions.keepAliveInitialDelay */
export const DEFAULT_KEEP_ALIVE_INITIAL_DELAY = 30_000;
/** @see LinkOptions.closeTimeout */
export const DEFAULT_CLOSE_TIMEOUT = 2_000;
/** @see ConnectorOptions.connectTimeout */
export const DEFAULT_CONNECT_TIMEOUT = 10_000;
/** @see ListenerOptions.backlog (Node's own default) */
export const DEFAULT_BACKLOG = 511;
/** @see TlsOptions.minVersion */
export const DEFAULT_TLS_MIN_VERSION = 'TLSv1.2';
/** @see LinkOptions.maxConnections */
export const DEFAULT_MAX_CONNECTIONS = 4096;
/** @see TlsOptions.handshakeTimeout */
export const DEFAULT_TLS_HANDSHAKE_TIMEOUT = 10_000;
/** @see ConnectorOptions.stableAfter */
export const DEFAULT_CONNECTION_STABLE_AFTER = 5_000;

/** Options of a {@link Link}. */
export interface LinkOptions {
  /**
   * Bytes queued in a connection's send buffer at or above which `send()`
   * returns false (a `drain` event follows once it is below again).
   * @default 1048576 (1 MiB)
   */
  highWaterMark?: number;
  /** Disable Nagle's algorithm (`TCP_NODELAY`) on TCP connections. @default true */
  noDelay?: boolean;
  /** Enable TCP keepalive probes on TCP connections. @default true */
  keepAlive?: boolean;
  /** Idle time in ms before the first TCP keepalive probe. @default 30000 */
  keepAliveInitialDelay?: number;
  /**
   * How long a local close waits, in ms, for buffered data to flush and the
   * peer to acknowledge the close before the socket is destroyed.
   * @default 2000
   */
  closeTimeout?: number;
  /**
   * Most accepted connections this Link holds at once, over all its listeners,
   * counting TLS sockets still in their handshake (they hold descriptors too)
   * and connections still closing. An accepted socket over the limit is
   * destroyed at once, before any `connect`, and reported with `acceptFailed`
   * carrying a {@link ConnectionLimitError}. Connections made by this Link's
   * connectors do not count. `Infinity` disables the limit.
   * @default 4096 (DEFAULT_MAX_CONNECTIONS)
   */
  maxConnections?: number;
}

/** TLS protocol versions accepted for `minVersion` / `maxVersion` (older ones are refused). */
export type TlsVersion = 'TLSv1.2' | 'TLSv1.3';

/** PEM data: a string, a Buffer, or a list of them. */
export type PemInput = string | Buffer | Array<string | Buffer>;

/**
 * TLS settings, handed to Node's `tls` module. Unknown keys are rejected: a
 * misspelt option (say `rejectUnauthorised`) must not silently weaken security.
 * One object can serve both a listener and a connector of a peer: options that
 * only matter on the other side (`requestCert` for connectors, `servername` and
 * `checkServerIdentity` for listeners) are ignored there.
 */
export interface TlsOptions {
  /** Private key(s) in PEM. Required for listeners; for connectors, when the listener asks for a client certificate. */
  key?: string | Buffer | Array<string | Buffer | { pem: string | Buffer; passphrase?: string }>;
  /** Certificate chain(s) in PEM. Required for listeners (see `key`). */
  cert?: PemInput;
  /** Trusted CA certificates in PEM. @default Node's bundled Mozilla CA list */
  ca?: PemInput;
  /** Passphrase of an encrypted `key`. */
  passphrase?: string;
  /** Listener only: ask connecting peers for a client certificate (mutual TLS). @default false */
  requestCert?: boolean;
  /**
   * Refuse peers whose certificate does not verify against `ca`. On a listener
   * this applies with `requestCert`. Turning it off only makes sense in tests.
   * @default true
   */
  rejectUnauthorized?: boolean;
  /** Connector only: SNI name, also the name checked against the server certificate. @default the host (or `localhost` for Unix sockets) */
  servername?: string;
  /** Lowest TLS version accepted; anything below TLSv1.2 is refused. @default 'TLSv1.2' */
  minVersion?: TlsVersion;
  /** Highest TLS version offered. @default 'TLSv1.3' */
  maxVersion?: TlsVersion;
  /** OpenSSL cipher list for TLSv1.2 (TLSv1.3 suites are not affected). @default Node's default list */
  ciphers?: string;
  /** Connector only: custom server identity check; return an Error to refuse. @default tls.checkServerIdentity */
  checkServerIdentity?: (hostname: string, cert: PeerCertificate) => Error | undefined;
  /**
   * Listener only: ms a client may take to complete its TLS handshake; after
   * that its socket is destroyed and `acceptFailed` reports a {@link TlsError}
   * (cause code `ERR_TLS_HANDSHAKE_TIMEOUT`). Connectors bound their handshake
   * with `connectTimeout` instead.
   * @default 10000 (DEFAULT_TLS_HANDSHAKE_TIMEOUT)
   */
  handshakeTimeout?: number;
}

/** Options of {@link Link.addListener}. */
export interface ListenerOptions {
  /** TLS settings; required for `tls://` and `unix+tls://` endpoints (must include `key` and `cert`), refused otherwise. */
  tls?: TlsOptions;
  /** Length of the kernel's queue of not-yet-accepted connections. @default 511 */
  backlog?: number;
  /**
   * `udp://` only: datagrams longer than this are dropped (counted as
   * `oversize`), in 1..65,507.
   * @default 65507 (DEFAULT_MAX_DATAGRAM_SIZE)
   */
  maxDatagramSize?: number;
  /**
   * `udp://` only: which sources may send datagrams; return `true` to accept
   * one from `address`:`port` (anything else, or throwing, drops it, counted
   * as `refused`). Called for every datagram: keep it cheap.
   * @default every source
   */
  allowSource?: (address: string, port: number) => boolean;
}

/** Options of {@link Link.addConnector}. */
export interface ConnectorOptions {
  /** TLS settings; required for `tls://` and `unix+tls://` endpoints (may be `{}` to use the defaults), refused otherwise. */
  tls?: TlsOptions;
  /**
   * Delay in ms before reconnect attempt number `attempt` (1-based; counts
   * consecutive failures since the last stable connection, see
   * `stableAfter`). Exclusive with `reconnectInterval`.
   * @default DEFAULT_RECONNECT_DELAY (exponential backoff 100 ms … 10 s with jitter)
   */
  reconnectDelay?: (attempt: number) => number;
  /** Fixed reconnect delay in ms, as in Python snakeMQ (which uses 3000). Exclusive with `reconnectDelay`. */
  reconnectInterval?: number;
  /** Time in ms for the TCP connect plus the TLS handshake, after which the attempt fails. @default 10000 */
  connectTimeout?: number;
  /**
   * How long, in ms, a connection must live before the reconnect backoff
   * starts again at attempt 1. A connection that closes sooner counts as a
   * failed attempt for the backoff: a peer that accepts and drops at once (a
   * TLS port dialled with `tcp://`, a service that is not snakeMQ, a peer
   * refusing our identity) is retried with growing delays, not at attempt 1
   * every time. An upper layer that knows sooner that a connection is good
   * calls {@link Link.markEstablished}. `0`: every connection resets the backoff.
   * @default 5000 (DEFAULT_CONNECTION_STABLE_AFTER)
   */
  stableAfter?: number;
  /**
   * `udp://` only, and required there: the identity of the peer listening at
   * the endpoint. UDP has no handshake, so this is who `send(identity, …)`
   * reaches through the connector (see docs/datagrams.md).
   */
  identity?: string;
  /**
   * `udp://` only: `send()` refuses (DatagramTooLargeError) a message whose
   * datagram would be longer, in 1..65,507.
   * @default 65507 (DEFAULT_MAX_DATAGRAM_SIZE)
   */
  maxDatagramSize?: number;
}

/** Options of {@link exponentialBackoff}. */
export interface BackoffOptions {
  /** Delay of attempt 1, in ms. @default 100 */
  initial?: number;
  /** Growth per attempt (>= 1). @default 2 */
  factor?: number;
  /** Upper bound of the delay, in ms. @default 10000 */
  max?: number;
  /** Fraction (0..1) by which each delay is randomly shortened. @default 0.5 */
  jitter?: number;
}

/**
 * A reconnect policy: attempt `n` (1-based) waits `min(max, initial * factor^(n-1))`
 * ms, shortened by a random fraction of at most `jitter`; the result is in
 * `[d * (1 - jitter), d]`. With the defaults: ~50–100 ms, 100–200 ms, 200–400 ms, …
 * up to 5–10 s from attempt 8 on. Jitter keeps many peers that lost the same
 * listener from reconnecting in lockstep.
 * @throws InvalidOptionsError on unknown keys or out-of-range values.
 */
export function exponentialBackoff(options?: BackoffOptions): (attempt: number) => number {
  const { initial, factor, max, jitter } = validateOptions<Required<BackoffOptions>>(
    'exponentialBackoff',
    options,
    { initial: is.number(0), factor: is.number(1), max: is.number(0), jitter: is.number(0, 1) },
    { initial: 100, factor: 2, max: 10_000, jitter: 0.5 },
  );
  return (attempt: number) => {
    const n = Number.isFinite(attempt) && attempt >= 1 ? Math.floor(attempt) : 1;
    const delay = Math.min(max, initial * factor ** (n - 1));
    return delay * (1 - jitter * Math.random());
  };
}

/** The default reconnect policy: `exponentialBackoff()` (100 ms doubling up to 10 s, jitter 0.5). */
export const DEFAULT_RECONNECT_DELAY: (attempt: number) => number = exponentialBackoff();

/** Defaults of {@link LinkOptions}. */
export const DEFAULT_LINK_OPTIONS: Readonly<Required<LinkOptions>> = Object.freeze({
  highWaterMark: DEFAULT_HIGH_WATER_MARK,
  noDelay: true,
  keepAlive: true,
  keepAliveInitialDelay: DEFAULT_KEEP_ALIVE_INITIAL_DELAY,
  closeTimeout: DEFAULT_CLOSE_TIMEOUT,
  maxConnections: DEFAULT_MAX_CONNECTIONS,
});

/** @internal Validates {@link LinkOptions} and fills in defaults. */
export function resolveLinkOptions(options: unknown): Required<LinkOptions> {
  return validateOptions<Required<LinkOptions>>(
    'Link options',
    options,
    {
      highWaterMark: is.integer(1),
      noDelay: is.boolean(),
      keepAlive: is.boolean(),
      keepAliveInitialDelay: is.integer(0),
      closeTimeout: is.integer(0, 2 ** 31 - 1),
      maxConnections: (v) => (v === Infinity ? undefined : is.integer(1)(v)),
    },
    { ...DEFAULT_LINK_OPTIONS },
  );
}

const pem =
  (what: string, allowKeyObjects = false): OptionCheck =>
  (v) => {
    const one = (x: unknown) =>
      typeof x === 'string' ||
      Buffer.isBuffer(x) ||
      (allowKeyObjects &&
        typeof x === 'object' &&
        x !== null &&
        (typeof (x as { pem?: unknown }).pem === 'string' || Buffer.isBuffer((x as { pem?: unknown }).pem)));
    if (one(v) || (Array.isArray(v) && v.length > 0 && v.every(one))) return undefined;
    return `must be ${what}`;
  };

const tlsVersion: OptionCheck = (v) => {
  if (v === 'TLSv1.2' || v === 'TLSv1.3') return undefined;
  if (v === 'TLSv1' || v === 'TLSv1.1' || v === 'SSLv3') return `'${String(v)}' is insecure and refused (use 'TLSv1.2' or 'TLSv1.3')`;
  return "must be 'TLSv1.2' or 'TLSv1.3'";
};

const TLS_CHECKS: { [K in keyof TlsOptions]-?: OptionCheck } = {
  key: pem('PEM data (string or Buffer), or a list of them', true),
  cert: pem('PEM data (string or Buffer), or a list of them'),
  ca: pem('PEM data (string or Buffer), or a list of them'),
  passphrase: is.string(),
  requestCert: is.boolean(),
  rejectUnauthorized: is.boolean(),
  servername: is.string(),
  minVersion: tlsVersion,
  maxVersion: tlsVersion,
  ciphers: is.string(),
  checkServerIdentity: is.function(),
  handshakeTimeout: is.integer(1, 2 ** 31 - 1),
};

/** @internal Validates {@link TlsOptions} and fills in `minVersion` and `rejectUnauthorized`. */
export function resolveTlsOptions(what: string, options: unknown): TlsOptions & { minVersion: TlsVersion; rejectUnauthorized: boolean } {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidOptionsError(`${what}: option 'tls' must be an object`);
  }
  const out = validateOptions<TlsOptions>(`${what} TLS options`, options, TLS_CHECKS, {
    minVersion: DEFAULT_TLS_MIN_VERSION,
    rejectUnauthorized: true,
  }) as TlsOptions & { minVersion: TlsVersion; rejectUnauthorized: boolean };
  if (out.maxVersion !== undefined && out.maxVersion < out.minVersion) {
    throw new InvalidOptionsError(`${what} TLS options: maxVersion ${out.maxVersion} is below minVersion ${out.minVersion}`);
  }
  return out;
}

function checkTlsPresence(what: string, endpoint: ParsedEndpoint, tls: unknown): void {
  if (endpoint.tls && tls === undefined) {
    throw new InvalidOptionsError(`${what} ${endpoint.url}: a TLS endpoint needs the 'tls' option`);
  }
  if (!endpoint.tls && tls !== undefined) {
    throw new InvalidOptionsError(`${what} ${endpoint.url}: 'tls' options given for a non-TLS endpoint (use tls:// or unix+tls://)`);
  }
}

/** Datagram options given for a stream endpoint. */
const udpOnly: OptionCheck = () => 'is only for udp:// endpoints';

/** @internal Resolved {@link ListenerOptions}. */
export interface ResolvedListenerOptions {
  tls: ReturnType<typeof resolveTlsOptions> | undefined;
  backlog: number;
}

/** @internal Validates {@link ListenerOptions} against the endpoint. */
export function resolveListenerOptions(endpoint: ParsedEndpoint, options: unknown): ResolvedListenerOptions {
  // A udp:// listener has options of its own (lib/link/datagram.ts); checked here too for createPeer's fail-fast validation.
  if (endpoint.transport === 'udp') {
    resolveDatagramListenerOptions(endpoint, options);
    return { tls: undefined, backlog: DEFAULT_BACKLOG };
  }
  const what = 'listener';
  const opts = validateOptions<ListenerOptions>(
    'listener options',
    options,
    { tls: is.any(), backlog: is.integer(0, 65535), maxDatagramSize: udpOnly, allowSource: udpOnly },
    { backlog: DEFAULT_BACKLOG },
  );
  checkTlsPresence(what, endpoint, opts.tls);
  const tls = opts.tls === undefined ? undefined : resolveTlsOptions(what, opts.tls);
  if (tls && (tls.key === undefined || tls.cert === undefined)) {
    throw new InvalidOptionsError(`listener ${endpoint.url}: TLS listeners need 'key' and 'cert'`);
  }
  return { tls, backlog: opts.backlog ?? DEFAULT_BACKLOG };
}

/** @internal Resolved {@link ConnectorOptions}. */
export interface ResolvedConnectorOptions {
  tls: ReturnType<typeof resolveTlsOptions> | undefined;
  reconnectDelay: (attempt: number) => number;
  connectTimeout: number;
  stableAfter: number;
}

/** @internal Validates {@link ConnectorOptions} against the endpoint. */
export function resolveConnectorOptions(endpoint: ParsedEndpoint, options: unknown): ResolvedConnectorOptions {
  if (endpoint.transport === 'udp') {
    resolveDatagramConnectorOptions(endpoint, options);
    return { tls: undefined, reconnectDelay: DEFAULT_RECONNECT_DELAY, connectTimeout: DEFAULT_CONNECT_TIMEOUT, stableAfter: DEFAULT_CONNECTION_STABLE_AFTER };
  }
  const what = 'connector';
  const opts = validateOptions<ConnectorOptions>(
    'connector options',
    options,
    {
      tls: is.any(),
      reconnectDelay: is.function(),
      reconnectInterval: is.integer(0, 2 ** 31 - 1),
      connectTimeout: is.integer(1, 2 ** 31 - 1),
      stableAfter: is.integer(0, 2 ** 31 - 1),
      identity: udpOnly,
      maxDatagramSize: udpOnly,
    },
    { connectTimeout: DEFAULT_CONNECT_TIMEOUT, stableAfter: DEFAULT_CONNECTION_STABLE_AFTER },
  );
  if (opts.reconnectDelay !== undefined && opts.reconnectInterval !== undefined) {
    throw new InvalidOptionsError("connector options: 'reconnectDelay' and 'reconnectInterval' are mutually exclusive");
  }
  checkTlsPresence(what, endpoint, opts.tls);
  const tls = opts.tls === undefined ? undefined : resolveTlsOptions(what, opts.tls);
  const interval = opts.reconnectInterval;
  const reconnectDelay = interval !== undefined ? () => interval : (opts.reconnectDelay ?? DEFAULT_RECONNECT_DELAY);
  return {
    tls,
    reconnectDelay,
    connectTimeout: opts.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT,
    stableAfter: opts.stableAfter ?? DEFAULT_CONNECTION_STABLE_AFTER,
  };
}
