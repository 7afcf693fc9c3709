/**
 * Discovery configuration in one place: an options object given in code,
 * over environment variables with the `SNAKEMQ_` prefix, over the defaults
 * (PostTroll's: multicast group 225.0.0.212, port 21200, TTL 31, an
 * announcement every 2 s). {@link discoveryConfig} reads it all once and
 * fails at once on anything malformed: a bad option throws
 * `InvalidOptionsError`, a bad variable `ConfigError` naming the variable
 * and its value. Nothing is ever silently ignored.
 *
 * {@link keepaliveOptions} turns the `tcpKeepalive*` settings into the
 * Link and Messaging options of a peer.
 * @module
 */
import { isIPv4 } from 'node:net';
import { ConfigError } from '../errors.js';
import { parseEndpoint } from '../link/endpoint.js';
import type { LinkOptions } from '../link/options.js';
import type { MessagingOptions } from '../messaging/options.js';
import { is, validateOptions, type OptionCheck } from '../util/options.js';

/** PostTroll's multicast group of address announcements. */
export const DEFAULT_MULTICAST_GROUP = '225.0.0.212';
/** PostTroll's UDP port of address announcements (`broadcast_port`). */
export const DEFAULT_MULTICAST_PORT = 21200;
/** PostTroll's multicast TTL: 31 router hops (a site). */
export const DEFAULT_MULTICAST_TTL = 31;
/** PostTroll's `broadcast_interval`: an announcement every 2 s. */
export const DEFAULT_ANNOUNCE_INTERVAL = 2000;
/** No nameserver URL by default: announcements go by multicast. */
export const DEFAULT_NAMESERVERS: readonly string[] = Object.freeze([]);
/** Shortest announce interval accepted, in ms. */
export const MIN_ANNOUNCE_INTERVAL = 10;
/** Longest announce interval accepted, in ms (what a Node timer holds). */
export const MAX_ANNOUNCE_INTERVAL = 2 ** 31 - 1;
/** Largest `tcpKeepaliveIdle` / `tcpKeepaliveInterval`, in seconds (Linux's limit of `TCP_KEEPIDLE`). */
export const MAX_KEEPALIVE_SECONDS = 32_767;
/** Largest `tcpKeepaliveCount` (Linux's limit of `TCP_KEEPCNT`). */
export const MAX_KEEPALIVE_COUNT = 127;
/** The probe interval Node's `socket.setKeepAlive` sets (`TCP_KEEPINTVL`), in seconds: used when only a count is given. */
export const NODE_KEEPALIVE_INTERVAL = 1;
/** The probe count Node's `socket.setKeepAlive` sets (`TCP_KEEPCNT`): used when only an interval is given. */
export const NODE_KEEPALIVE_COUNT = 10;
/** The Link's default `keepAliveInitialDelay`, in seconds (`DEFAULT_KEEP_ALIVE_INITIAL_DELAY`): the idle time when none is given. */
export const DEFAULT_KEEPALIVE_IDLE = 30;

/** Discovery settings, as resolved by {@link discoveryConfig}. */
export interface DiscoveryConfig {
  /**
   * Nameserver listener URLs (`tcp://host:port`, `tls://host:port`,
   * `unix://path`), normalised by `parseEndpoint`.
   * @default [] (none: announce by multicast)
   */
  nameservers: string[];
  /**
   * IPv4 multicast group of announcements (224.0.0.0/4), or `0.0.0.0` /
   * `255.255.255.255`: broadcast, as in PostTroll (sent to
   * 255.255.255.255; see {@link isBroadcastGroup}).
   * @default '225.0.0.212'
   */
  multicastGroup: string;
  /** UDP port of announcements (1..65535). @default 21200 */
  multicastPort: number;
  /** Local IPv4 address of the interface multicast goes out on (`IP_MULTICAST_IF`). @default undefined (the system's choice) */
  multicastInterface: string | undefined;
  /** Multicast TTL (`IP_MULTICAST_TTL`), 0..255. @default 31 */
  multicastTtl: number;
  /** Time between two announcements, in ms (10 .. 2^31−1). @default 2000 */
  announceInterval: number;
  /** TCP keepalive on or off ({@link keepaliveOptions}). @default undefined (the stack's defaults) */
  tcpKeepalive: boolean | undefined;
  /** Idle seconds before the first keepalive probe (`TCP_KEEPIDLE`), 1..32767. @default undefined (30) */
  tcpKeepaliveIdle: number | undefined;
  /** Seconds between keepalive probes (`TCP_KEEPINTVL`), 1..32767. @default undefined */
  tcpKeepaliveInterval: number | undefined;
  /** Unanswered probes before the connection is dropped (`TCP_KEEPCNT`), 1..127. @default undefined */
  tcpKeepaliveCount: number | undefined;
}

/** One environment variable {@link discoveryConfig} reads. */
export interface EnvironmentVariable {
  /** Its name, `SNAKEMQ_…`. */
  readonly name: string;
  /** The {@link DiscoveryConfig} key it sets. */
  readonly option: keyof DiscoveryConfig;
  /** What it holds, as written in the variable. */
  readonly type: string;
  /** Its default, as written in the variable (or `—` for none). */
  readonly default: string;
  readonly description: string;
}

/** Every environment variable {@link discoveryConfig} reads, in the order of the docs' table. */
export const ENVIRONMENT_VARIABLES: readonly EnvironmentVariable[] = Object.freeze([
  {
    name: 'SNAKEMQ_NAMESERVERS',
    option: 'nameservers',
    type: 'URLs separated by commas and/or whitespace',
    default: '—',
    description: 'Nameserver listener URLs (tcp://host:port, tls://host:port, unix://path).',
  },
  {
    name: 'SNAKEMQ_MC_GROUP',
    option: 'multicastGroup',
    type: 'IPv4 multicast address (224.0.0.0/4), or 0.0.0.0 / 255.255.255.255 for broadcast',
    default: DEFAULT_MULTICAST_GROUP,
    description: 'Multicast group announcements are sent to.',
  },
  {
    name: 'SNAKEMQ_MC_PORT',
    option: 'multicastPort',
    type: 'integer 1..65535',
    default: String(DEFAULT_MULTICAST_PORT),
    description: 'UDP port of announcements.',
  },
  {
    name: 'SNAKEMQ_MC_INTERFACE',
    option: 'multicastInterface',
    type: 'IPv4 address',
    default: '—',
    description: 'Local address of the interface multicast goes out on (default: the system chooses).',
  },
  {
    name: 'SNAKEMQ_MC_TTL',
    option: 'multicastTtl',
    type: 'integer 0..255',
    default: String(DEFAULT_MULTICAST_TTL),
    description: 'Multicast TTL (router hops).',
  },
  {
    name: 'SNAKEMQ_ANNOUNCE_INTERVAL',
    option: 'announceInterval',
    type: 'seconds > 0, may be fractional (at least 0.01)',
    default: String(DEFAULT_ANNOUNCE_INTERVAL / 1000),
    description: 'Time between two announcements.',
  },
  {
    name: 'SNAKEMQ_TCP_KEEPALIVE',
    option: 'tcpKeepalive',
    type: '1/0, true/false, yes/no, on/off',
    default: '—',
    description: 'TCP keepalive on or off (default: the stack’s defaults).',
  },
  {
    name: 'SNAKEMQ_TCP_KEEPALIVE_IDLE',
    option: 'tcpKeepaliveIdle',
    type: `integer seconds 1..${MAX_KEEPALIVE_SECONDS}`,
    default: '—',
    description: 'Idle time before the first keepalive probe (TCP_KEEPIDLE).',
  },
  {
    name: 'SNAKEMQ_TCP_KEEPALIVE_INTERVAL',
    option: 'tcpKeepaliveInterval',
    type: `integer seconds 1..${MAX_KEEPALIVE_SECONDS}`,
    default: '—',
    description: 'Time between keepalive probes (TCP_KEEPINTVL; applied as Messaging keepalive).',
  },
  {
    name: 'SNAKEMQ_TCP_KEEPALIVE_COUNT',
    option: 'tcpKeepaliveCount',
    type: `integer 1..${MAX_KEEPALIVE_COUNT}`,
    default: '—',
    description: 'Unanswered probes before the connection is dropped (TCP_KEEPCNT; applied as Messaging keepalive).',
  },
]);

/**
 * Whether `group` means broadcast (`0.0.0.0` or `255.255.255.255`, as in
 * PostTroll) rather than a multicast group: announcements then go to
 * 255.255.255.255 with `SO_BROADCAST`, and a receiver joins no group.
 */
export function isBroadcastGroup(group: string): boolean {
  return group === '0.0.0.0' || group === '255.255.255.255';
}

/** Whether `group` is an IPv4 multicast address (224.0.0.0/4). */
export function isMulticastGroup(group: string): boolean {
  if (!isIPv4(group)) return false;
  const first = Number(group.split('.')[0]);
  return first >= 224 && first <= 239;
}

// The checks, each returning a problem description (or undefined), shared by options and variables.
const groupProblem = (v: unknown): string | undefined =>
  typeof v === 'string' && (isMulticastGroup(v) || isBroadcastGroup(v))
    ? undefined
    : 'must be an IPv4 multicast address (224.0.0.0/4), or 0.0.0.0 / 255.255.255.255 for broadcast';
const ipv4Problem = (v: unknown): string | undefined => (typeof v === 'string' && isIPv4(v) ? undefined : 'must be an IPv4 address');
const nameserversProblem = (v: unknown): string | undefined => {
  if (!Array.isArray(v)) return 'must be a list of URLs';
  for (const url of v) {
    if (typeof url !== 'string') return 'must be a list of URL strings';
    try {
      parseEndpoint(url);
    } catch (err) {
      return `has a bad URL: ${(err as Error).message}`;
    }
  }
  return undefined;
};

const CHECKS: { [K in keyof DiscoveryConfig]-?: OptionCheck } = {
  nameservers: nameserversProblem,
  multicastGroup: groupProblem,
  multicastPort: is.integer(1, 65535),
  multicastInterface: ipv4Problem,
  multicastTtl: is.integer(0, 255),
  announceInterval: is.number(MIN_ANNOUNCE_INTERVAL, MAX_ANNOUNCE_INTERVAL),
  tcpKeepalive: is.boolean(),
  tcpKeepaliveIdle: is.integer(1, MAX_KEEPALIVE_SECONDS),
  tcpKeepaliveInterval: is.integer(1, MAX_KEEPALIVE_SECONDS),
  tcpKeepaliveCount: is.integer(1, MAX_KEEPALIVE_COUNT),
};

const DEFAULTS: DiscoveryConfig = {
  nameservers: [],
  multicastGroup: DEFAULT_MULTICAST_GROUP,
  multicastPort: DEFAULT_MULTICAST_PORT,
  multicastInterface: undefined,
  multicastTtl: DEFAULT_MULTICAST_TTL,
  announceInterval: DEFAULT_ANNOUNCE_INTERVAL,
  tcpKeepalive: undefined,
  tcpKeepaliveIdle: undefined,
  tcpKeepaliveInterval: undefined,
  tcpKeepaliveCount: undefined,
};

const TRUE = new Set(['1', 'true', 'yes', 'on']);
const FALSE = new Set(['0', 'false', 'no', 'off']);
const DECIMAL = /^[+]?(\d+(\.\d*)?|\.\d+)$/;
const INTEGER = /^[+]?\d+$/;

/** Reads one variable's text into its option's value; `undefined` means "not a value of this type". */
function parseVariable(option: keyof DiscoveryConfig, text: string): unknown {
  switch (option) {
    case 'nameservers':
      return text.split(/[\s,]+/).filter(Boolean);
    case 'multicastGroup':
    case 'multicastInterface':
      return text;
    case 'tcpKeepalive': {
      const t = text.toLowerCase();
      return TRUE.has(t) ? true : FALSE.has(t) ? false : undefined;
    }
    case 'announceInterval':
      // Seconds in the variable (as PostTroll's broadcast_interval), ms in the config.
      return DECIMAL.test(text) ? Math.round(Number(text) * 1000) : undefined;
    default:
      return INTEGER.test(text) ? Number(text) : undefined;
  }
}

/** The settings found in `env`, each checked; throws ConfigError on the first malformed one. */
function fromEnvironment(env: NodeJS.ProcessEnv): Partial<DiscoveryConfig> {
  const out: Record<string, unknown> = {};
  for (const v of ENVIRONMENT_VARIABLES) {
    const raw = env[v.name];
    // Unset, empty or blank: not set (as a shell's `VAR=` is usually meant).
    if (raw === undefined || raw.trim() === '') continue;
    const text = raw.trim();
    const value = parseVariable(v.option, text);
    const problem = value === undefined ? `must be ${v.type}` : CHECKS[v.option](value);
    if (problem !== undefined) {
      const why = v.option === 'nameservers' && value !== undefined ? problem : `must be ${v.type}`;
      throw new ConfigError(`environment variable ${v.name}=${JSON.stringify(raw)} is malformed: ${why}`);
    }
    out[v.option] = v.option === 'nameservers' ? (value as string[]).map((u) => parseEndpoint(u).url) : value;
  }
  return out as Partial<DiscoveryConfig>;
}

/**
 * The discovery settings: `options` given in code win over the
 * environment, which wins over the defaults (the `DEFAULT_*` constants).
 * The variables are listed in {@link ENVIRONMENT_VARIABLES}; an unset or
 * blank variable counts as not set.
 *
 * @param options Settings given in code; a key given as `undefined` counts as not given.
 * @param env The environment to read. @default process.env
 * @throws InvalidOptionsError for an unknown key or a bad value in `options`.
 * @throws ConfigError for a malformed environment variable, naming it and its value.
 */
export function discoveryConfig(options?: Partial<DiscoveryConfig>, env: NodeJS.ProcessEnv = process.env): DiscoveryConfig {
  // Options first: a misspelt key in code is reported even when the environment is bad too.
  const given = validateOptions<Partial<DiscoveryConfig>>('discovery config', options, CHECKS, {});
  const config: DiscoveryConfig = { ...DEFAULTS, ...fromEnvironment(env), ...given };
  config.nameservers = config.nameservers.map((u) => parseEndpoint(u).url);
  return config;
}

/** What {@link keepaliveOptions} applies: spread into `createPeer`'s `link` and `messaging` options. */
export interface KeepaliveOptions {
  /** Kernel TCP keepalive: `SO_KEEPALIVE` and `TCP_KEEPIDLE`, set by the Link on every TCP connection. */
  link: Pick<LinkOptions, 'keepAlive' | 'keepAliveInitialDelay'>;
  /** Messaging keepalive (a PING, and the connection closed without an answer): stands for `TCP_KEEPINTVL` × `TCP_KEEPCNT`. */
  messaging: Pick<MessagingOptions, 'keepaliveInterval' | 'keepaliveWait'>;
}

/**
 * Turns the `tcpKeepalive*` settings into options the stack can apply:
 *
 * ```ts
 * const k = keepaliveOptions(discoveryConfig());
 * const peer = await createPeer({ identity, listen, link: { ...k.link }, messaging: { ...k.messaging } });
 * ```
 *
 * - `tcpKeepalive: false`: `link.keepAlive = false`; nothing else is
 *   applied (the other three settings are ignored: off is off).
 * - Otherwise, when `tcpKeepalive` is true or any of idle, interval and
 *   count is set: `link.keepAlive = true`, and with `tcpKeepaliveIdle`,
 *   `link.keepAliveInitialDelay = idle × 1000` (Node's
 *   `socket.setKeepAlive(true, ms)` sets `TCP_KEEPIDLE`).
 * - Node's `setKeepAlive` offers no `TCP_KEEPINTVL` nor `TCP_KEEPCNT` (it
 *   sets them to 1 s and 10 itself, on the Node versions this library
 *   supports), so interval and count are applied as Messaging's keepalive:
 *   `keepaliveInterval = idle × 1000 / 2` and `keepaliveWait = interval ×
 *   count × 1000`, an unset idle taken as 30 s (the Link's default), an
 *   unset interval as 1 s and count as 10 (Node's). Messaging PINGs a
 *   connection that received nothing for one `keepaliveInterval` window and
 *   closes it when nothing arrives within `keepaliveWait`: as the silence
 *   can start anywhere in a window, a dead peer is detected between
 *   `idle / 2 + interval × count` and `idle + interval × count` after the
 *   last thing it sent — at most what the kernel would take with these
 *   settings. A lost PING is retransmitted by TCP within the wait.
 * - Nothing set: `{ link: {}, messaging: {} }` (the stack's defaults:
 *   kernel keepalive on after 30 s idle, Messaging keepalive off).
 */
export function keepaliveOptions(
  config: Pick<DiscoveryConfig, 'tcpKeepalive' | 'tcpKeepaliveIdle' | 'tcpKeepaliveInterval' | 'tcpKeepaliveCount'>,
): KeepaliveOptions {
  const { tcpKeepalive, tcpKeepaliveIdle: idle, tcpKeepaliveInterval: interval, tcpKeepaliveCount: count } = config;
  if (tcpKeepalive === false) return { link: { keepAlive: false }, messaging: {} };
  const out: KeepaliveOptions = { link: {}, messaging: {} };
  if (tcpKeepalive === true || idle !== undefined || interval !== undefined || count !== undefined) out.link.keepAlive = true;
  if (idle !== undefined) out.link.keepAliveInitialDelay = idle * 1000;
  if (interval !== undefined || count !== undefined) {
    out.messaging.keepaliveInterval = ((idle ?? DEFAULT_KEEPALIVE_IDLE) * 1000) / 2;
    out.messaging.keepaliveWait = (interval ?? NODE_KEEPALIVE_INTERVAL) * (count ?? NODE_KEEPALIVE_COUNT) * 1000;
  }
  return out;
}
