/**
 * snakemq-ts: brokerless, symmetric peer-to-peer messaging for Node.js,
 * wire-compatible with Python snakeMQ 1.6.
 *
 * The stack, bottom to top: {@link Link} (sockets) → optional
 * {@link Throttle} → {@link Packeter} (framing) → {@link Messaging}
 * (identities, queues) → {@link RpcServer} / {@link RpcClient} and
 * {@link Publisher} / {@link Subscriber}; or all of
 * it, owned by one {@link Peer}, with {@link createPeer}.
 * @module
 */
export * from './errors.js';
export * from './link/index.js';
export * from './throttle/index.js';
export * from './packeter/index.js';
export * from './messaging/index.js';
export {
  certificateIdentity,
  parseSubjectAltName,
  DEFAULT_MATCH_COMMON_NAME,
  DEFAULT_MATCH_DNS_NAMES,
  type CertificateIdentityOptions,
} from './messaging/authorize.js';
export * from './storage/index.js';
// Not the codec (encode/decode functions, wire prefixes, request and reply
// records): lib/rpc/index.ts exports it for the tests and benchmarks.
export {
  RpcServer,
  RpcClient,
  DEFAULT_RESULT_CACHE_SIZE,
  DEFAULT_RESULT_CACHE_BYTES,
  DEFAULT_RESULT_CACHE_AGE,
  DEFAULT_MAX_PENDING_CALLS,
  DEFAULT_RPC_TIMEOUT,
  DEFAULT_MAX_PAYLOAD,
  MAX_DEPTH,
  MAX_REQ_ID_LENGTH,
  type RpcServerOptions,
  type RpcRegisterOptions,
  type RpcClientOptions,
  type RpcCallOptions,
  type RpcSignalOptions,
  type RpcProxyOptions,
  type RpcTransport,
  type RpcRequestId,
  type RpcCallInfo,
  type RpcServerEvents,
  type RpcClientEvents,
  type MethodName,
  type RemoteProxy,
} from './rpc/index.js';
export * from './pubsub/index.js';
export * from './discovery/index.js';
export * from './relay/index.js';
export * from './management/index.js';
export * from './peer/index.js';
export { setLogger, type LogSink } from './util/log.js';
