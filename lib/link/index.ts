/**
 * The link layer: sockets (TCP, TLS, Unix, Unix+TLS), listeners, reconnecting
 * connectors. See {@link Link}.
 * @module
 */
export { Link } from './link.js';
export { parseEndpoint } from './endpoint.js';
export { DEFAULT_MAX_DATAGRAM_SIZE } from './datagram.js';
export type { LinkDatagramCounters } from './datagram.js';
export {
  exponentialBackoff,
  DEFAULT_RECONNECT_DELAY,
  DEFAULT_LINK_OPTIONS,
  DEFAULT_HIGH_WATER_MARK,
  DEFAULT_KEEP_ALIVE_INITIAL_DELAY,
  DEFAULT_CLOSE_TIMEOUT,
  DEFAULT_CONNECT_TIMEOUT,
  DEFAULT_BACKLOG,
  DEFAULT_TLS_MIN_VERSION,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_TLS_HANDSHAKE_TIMEOUT,
  DEFAULT_CONNECTION_STABLE_AFTER,
} from './options.js';
export type { LinkOptions, TlsOptions, TlsVersion, PemInput, ListenerOptions, ConnectorOptions, BackoffOptions } from './options.js';
export type * from './types.js';
export type { ByteCounts, ConnectorStatus, LinkEndpoints, ListenerStatus } from './status.js';
