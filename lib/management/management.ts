/**
 * {@link serveManagement}: a peer's read-only management object over RPC
 * (`status()`), with two actions (`disconnect`, `dropQueue`) behind a
 * separate allow-list, the caller's identity learnt from
 * `RpcServer.currentCall`; and {@link ManagementClient}, which calls it and
 * turns a refusal back into a {@link ManagementUnauthorizedError}. Builds on
 * lib/peer (PeerRpc) and lib/rpc.
 * @module
 */
import { ClosedError, ErrorCode, InvalidArgumentError, ManagementUnauthorizedError, MessageDroppedError, RpcRemoteError } from '../errors.js';
import type { Peer } from '../peer/index.js';
import { createLogger } from '../util/log.js';
import { resolveManagementOptions, type ManagementOptions, type ResolvedManagementOptions, DEFAULT_MANAGEMENT_OBJECT } from './options.js';
import { statusOf, type ManagementStatus } from './status.js';

const log = createLogger('snakemq:management');

/** Counters of a {@link ManagementServer} (a live object: read, do not write). */
export interface ManagementCounters {
  /** Calls answered (refused ones not included). */
  calls: number;
  /** Calls refused (identity not allowed). */
  refused: number;
}

/**
 * A peer's management object, made by {@link serveManagement} (or the
 * `management` option of createPeer): served as RPC object `name` to the
 * identities allowed. `close()` stops serving it; it also ends with the peer.
 */
export class ManagementServer {
  /** The RPC object name. */
  readonly name: string;
  /** Calls answered and refused. */
  readonly counters: ManagementCounters = { calls: 0, refused: 0 };
  readonly #peer: Peer;
  readonly #o: ResolvedManagementOptions;
  #closed = false;

  /** @internal Use {@link serveManagement}. */
  constructor(peer: Peer, o: ResolvedManagementOptions) {
    this.#peer = peer;
    this.#o = o;
    this.name = o.name;
    peer.rpc.serve(o.name, this.#target());
  }

  /** Whether {@link close} was called, or the peer closed. */
  get closed(): boolean {
    return this.#closed || this.#peer.closed;
  }

  /** The status now, for local use (no allow-list: the caller is this process). */
  status(): Promise<ManagementStatus> {
    return statusOf(this.#peer, this.#o);
  }

  /** Stops serving the object (calls already running finish). Idempotent. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#peer.rpc.unserve(this.name);
    }
    return Promise.resolve();
  }

  /** `await using m = serveManagement(…)`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** The caller's identity, once it is allowed; read before any await (currentCall is the call being started). */
  #caller(method: string, allowed: (ident: string) => boolean, what: string): string {
    const ident = this.#peer.rpc.server.currentCall?.ident;
    if (ident === undefined || !allowed(ident)) {
      this.counters.refused++;
      log(`${this.name}.${method} refused to ${ident ?? '(no caller)'}`);
      throw new ManagementUnauthorizedError(`${this.name}.${method} refused: ${ident ?? 'the caller'} may not ${what} (management allow-list)`);
    }
    this.counters.calls++;
    return ident;
  }

  #target(): object {
    const o = this.#o;
    // A plain object: only these methods are callable remotely.
    return {
      status: (): Promise<ManagementStatus> => {
        this.#caller('status', o.allow, 'read the status');
        return this.status();
      },
      disconnect: async (ident: unknown): Promise<boolean> => {
        const caller = this.#caller('disconnect', o.actions, 'disconnect peers');
        if (typeof ident !== 'string') throw new InvalidArgumentError('disconnect: the identity must be a string');
        const p = this.#peer.messaging.peerStats(ident);
        if (p === undefined || p.connId === null) return false;
        log(`${caller} disconnects ${ident} (connection ${p.connId})`);
        await this.#peer.link.close(p.connId);
        return true;
      },
      dropQueue: (ident: unknown): number => {
        const caller = this.#caller('dropQueue', o.actions, 'drop queues');
        if (typeof ident !== 'string') throw new InvalidArgumentError('dropQueue: the identity must be a string');
        const n = this.#peer.messaging.dropQueued(ident, new MessageDroppedError(`dropped by management: ${caller} dropped the queue of ${ident}`));
        log(`${caller} dropped ${n} queued for ${ident}`);
        return n;
      },
    };
  }
}

/**
 * Serves `peer`'s management object: `status()` to the identities of
 * `allow`, `disconnect(ident)` and `dropQueue(ident)` to those of
 * `actions.allow` only. A refused call fails with
 * {@link ManagementUnauthorizedError} (the caller's {@link ManagementClient}
 * rejects with it). The status is bounded: see {@link ManagementOptions}.
 *
 * ```ts
 * const management = serveManagement(peer, { allow: ['ops'], actions: { allow: ['admin'] } });
 * // elsewhere: await new ManagementClient(opsPeer, 'bob').status()
 * ```
 * @throws {@link InvalidOptionsError} bad or unknown options (`allow` is required).
 * @throws {@link InvalidArgumentError} the name is already served.
 * @throws {@link ClosedError} the peer is closed.
 */
export function serveManagement(peer: Peer, options: ManagementOptions): ManagementServer {
  const o = resolveManagementOptions('serveManagement', options);
  if (peer.closed) throw new ClosedError('serveManagement: the peer is closed');
  // A peer that relays shows its routes without being told where they are.
  const relay = peer.messaging.relay;
  if (o.relayRoutes === null && relay !== null) o.relayRoutes = () => relay.routes();
  return new ManagementServer(peer, o);
}

/** Options of a {@link ManagementClient}. */
export interface ManagementClientOptions {
  /** The RPC object name the target serves. @default {@link DEFAULT_MANAGEMENT_OBJECT} */
  name?: string;
  /** Time limit of each call in ms (RpcClient's `timeout`, which also waits for the connection). @default RpcClient's default */
  timeout?: number;
}

/**
 * Calls peer `target`'s management object from `peer`: a refusal rejects
 * with {@link ManagementUnauthorizedError}; other failures as any RPC call
 * (RpcTimeoutError, RpcNotConnectedError, RpcUnknownObjectError when the
 * target serves no management…).
 */
export class ManagementClient {
  readonly #peer: Peer;
  readonly #target: string;
  readonly #name: string;
  readonly #timeout: number | undefined;

  constructor(peer: Peer, target: string, options?: ManagementClientOptions) {
    this.#peer = peer;
    this.#target = target;
    this.#name = options?.name ?? DEFAULT_MANAGEMENT_OBJECT;
    this.#timeout = options?.timeout;
  }

  /** The target's status. */
  status(): Promise<ManagementStatus> {
    return this.#call<ManagementStatus>('status', []);
  }

  /** Closes the target's connection to `ident` (it may reconnect, as after any disconnect). Resolves with whether one was connected. */
  disconnect(ident: string): Promise<boolean> {
    return this.#call<boolean>('disconnect', [ident]);
  }

  /** Drops the messages waiting in the target's queue for `ident` (drop events fire there). Resolves with how many. */
  dropQueue(ident: string): Promise<number> {
    return this.#call<number>('dropQueue', [ident]);
  }

  async #call<R>(method: string, args: unknown[]): Promise<R> {
    try {
      return await this.#peer.rpc.call<R>(this.#target, this.#name, method, args, this.#timeout === undefined ? undefined : { timeout: this.#timeout });
    } catch (error) {
      if (error instanceof RpcRemoteError && error.remoteCode === ErrorCode.MANAGEMENT_UNAUTHORIZED) {
        throw new ManagementUnauthorizedError(`${this.#target}: ${error.message}`, { cause: error });
      }
      throw error;
    }
  }
}
