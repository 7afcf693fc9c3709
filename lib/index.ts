/**
 * snakemq-ts: brokerless, symmetric peer-to-peer messaging for Node.js,
 * wire-compatible with Python snakeMQ 1.6.
 *
 * The stack, bottom to top: {@link Link} (sockets) → optional
 * {@link Throttle} → {@link Packeter} (framing) → {@link Messaging}
 * (identities, queues) → {@link RpcServer} / {@link RpcClient}.
 * @module
 */
export * from './errors.js';
export * from './link/index.js';
export * from './throttle/index.js';
export * from './packeter/index.js';
export * from './messaging/index.js';
export { certificateIdentity, parseSubjectAltName, DEFAULT_MATCH_COMMON_NAME, DEFAULT_MATCH_DNS_NAMES, type CertificateIdentityOptions } from './messaging/authorize.js';
export * from './storage/index.js';
export * from './rpc/index.js';
export * from './peer/index.js';
export { setLogger, type LogSink } from './util/log.js';
