/**
 * A peer in one call: {@link createPeer} and the {@link Peer} it returns
 * (the whole stack, owned), with {@link PeerRpc}.
 * @module
 */
export { Peer, createPeer } from './peer.js';
export { PeerRpc } from './rpc.js';
export type { PeerOptions, PeerRpcOptions, ListenSpec, ConnectSpec } from './options.js';
