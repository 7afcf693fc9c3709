/**
 * Management: a peer's status (identity, listeners, connectors, connections
 * with addresses and TLS peer, bytes and messages, queues with oldest age,
 * storage size, relay routes) and a few actions, over RPC to allowed
 * identities only. See docs/management.md.
 * @module
 */
export { ManagementClient, ManagementServer, serveManagement } from './management.js';
export type { ManagementClientOptions, ManagementCounters } from './management.js';
export {
  DEFAULT_MANAGEMENT_MAX_ENDPOINTS,
  DEFAULT_MANAGEMENT_MAX_PEERS,
  DEFAULT_MANAGEMENT_OBJECT,
  MAX_ERROR_MESSAGE_LENGTH,
  MAX_TLS_ALT_NAMES,
} from './options.js';
export type { IdentityAllow, ManagementOptions } from './options.js';
export { MANAGEMENT_STATUS_VERSION } from './status.js';
export type { ConnectionStatus, ManagementStatus, StatusTotals, StorageStatus, TlsPeerStatus } from './status.js';
