/**
 * Remote procedure calls over messaging, wire-compatible with snakeMQ's RPC
 * (with a MessagePack serialiser). See docs/rpc.md.
 * @module
 */
export {
  RpcServer,
  DEFAULT_RESULT_CACHE_SIZE,
  DEFAULT_RESULT_CACHE_BYTES,
  DEFAULT_RESULT_CACHE_AGE,
  DEFAULT_MAX_PENDING_CALLS,
  type RpcServerOptions,
  type RpcRegisterOptions,
} from './server.js';
export { RpcClient, DEFAULT_RPC_TIMEOUT, type RpcClientOptions, type RpcCallOptions, type RpcSignalOptions, type RpcProxyOptions } from './client.js';
export { remoteErrorFromReply } from './remote-error.js';
export {
  REQUEST_PREFIX,
  REPLY_PREFIX,
  DEFAULT_MAX_PAYLOAD,
  MAX_DEPTH,
  MAX_REQ_ID_LENGTH,
  encodeRequest,
  encodeReply,
  decodeRequest,
  decodeReply,
  tryDecodeRequest,
  tryDecodeReply,
  reqIdKey,
  type CodecLimits,
  type DecodeRequestResult,
  type DecodeReplyResult,
} from './codec.js';
export type { RpcTransport, RpcRequest, RpcRequestId, RpcReply, RpcCallInfo, RpcServerEvents, RpcClientEvents, MethodName, RemoteProxy } from './types.js';
