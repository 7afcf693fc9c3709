/**
 * A peer's RPC: one {@link RpcServer} and one {@link RpcClient} on the peer's
 * Messaging, each created on first use (a server takes RPC requests away
 * from the `message` event, so a peer that serves nothing has none). Builds
 * on lib/rpc.
 * @module
 */
import type { Messaging, Delivery } from '../messaging/index.js';
import {
  RpcClient,
  RpcServer,
  type MethodName,
  type RemoteProxy,
  type RpcCallOptions,
  type RpcProxyOptions,
  type RpcRegisterOptions,
  type RpcSignalOptions,
} from '../rpc/index.js';
import type { PeerRpcOptions } from './options.js';

/**
 * RPC of a {@link Peer}: `serve` objects to other peers, call theirs with
 * `proxy` or `call`. Any peer serves and calls, whichever side connected.
 * The server and client are attached to the peer's Messaging and close with
 * the peer.
 */
export class PeerRpc {
  readonly #messaging: Messaging;
  readonly #options: PeerRpcOptions;
  #server: RpcServer | null = null;
  #client: RpcClient | null = null;

  /** @internal Made by the peer; creates at once what has options (so that they are checked at once). */
  constructor(messaging: Messaging, options: PeerRpcOptions) {
    this.#messaging = messaging;
    this.#options = options;
    if (options.server !== undefined) void this.server;
    if (options.client !== undefined) void this.client;
  }

  /** The peer's RPC server, created on first use (for its events: `methodError`, `requestError`, `warning`). */
  get server(): RpcServer {
    return (this.#server ??= new RpcServer(this.#messaging, this.#options.server));
  }

  /** The peer's RPC client, created on first use (for its events: `replyError`). */
  get client(): RpcClient {
    return (this.#client ??= new RpcClient(this.#messaging, this.#options.client));
  }

  /**
   * Serves `target`'s methods as object `name` to every peer (RpcServer.register).
   * @throws {InvalidArgumentError} empty name, name already served, `target` not an object.
   * @throws {ClosedError} the peer is closed.
   */
  serve(name: string, target: object, options?: RpcRegisterOptions): void {
    this.server.register(name, target, options);
  }

  /** Stops serving object `name` (calls already running finish). Returns whether it was served. */
  unserve(name: string): boolean {
    return this.#server?.unregister(name) ?? false;
  }

  /**
   * A typed proxy of object `name` served by peer `ident` (RpcClient.proxy):
   * `await peer.rpc.proxy<Calc>('bob', 'calc').add(1, 2)`. A call waits for
   * `ident` to be connected, within its timeout.
   */
  proxy<T extends object, S extends MethodName<T> = never>(ident: string, name: string, options?: RpcProxyOptions<T>): RemoteProxy<T, S> {
    return this.client.proxy<T, S>(ident, name, options);
  }

  /** Calls `object.method(...args)` on peer `ident` (RpcClient.call). */
  call<R = unknown>(ident: string, object: string, method: string, args?: readonly unknown[], options?: RpcCallOptions): Promise<R> {
    return this.client.call<R>(ident, object, method, args, options);
  }

  /** Sends `object.method(...args)` to peer `ident` as a signal: no reply (RpcClient.signal). */
  signal(ident: string, object: string, method: string, args?: readonly unknown[], options?: RpcSignalOptions): Delivery {
    return this.client.signal(ident, object, method, args, options);
  }

  /** @internal Closes (detaches) the server and the client, if they were made. */
  async close(): Promise<void> {
    await Promise.all([this.#server?.close(), this.#client?.close()]);
  }
}
