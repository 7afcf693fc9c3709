export { RelayTransport } from './relay-transport.js';
export type { RelayedConnectionInfo, RelayRouteInfo, RelayStats } from './relay-transport.js';
export type { RelayCounters } from './state.js';
export {
  DEFAULT_RELAY_FORWARD,
  DEFAULT_RELAY_HOP_LIMIT,
  DEFAULT_RELAY_MAX_HELD,
  DEFAULT_RELAY_MAX_HELD_PER_ROUTE,
  DEFAULT_RELAY_MAX_LEARNED_ROUTES,
  DEFAULT_RELAY_MAX_RELAYED_CONNECTIONS,
  DEFAULT_RELAY_MAX_ROUTES,
  DEFAULT_RELAY_MAX_ROUTES_PER_PEER,
  DEFAULT_RELAY_RETRY_INTERVAL,
  DEFAULT_RELAY_ROUTE_TTL,
  DEFAULT_RELAY_WINDOW,
  trustRelaysWeConnectedTo,
} from './options.js';
export type { RelayAllowPolicy, RelayOptions, RelayTrustPolicy } from './options.js';
