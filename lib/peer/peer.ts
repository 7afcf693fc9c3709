/**
 * A peer in one call: {@link createPeer} builds Link → (Throttle) → Packeter
 * → Messaging (+ storage), binds the listeners, starts the connectors and
 * waits for stored queues; {@link Peer} is the handle that owns it all, with
 * RPC created on first use ({@link PeerRpc}). Builds on every layer's
 * public API and adds no behaviour of its own.
 * @module
 */
import { Link, type ConnectorOptions, type ListenerOptions, type TlsOptions } from '../link/index.js';
import { Messaging, type Delivery, type Interceptor, type Message, type MessagingEvents, type ReceivedMessage } from '../messaging/index.js';
import { StorageError } from '../errors.js';
import { serveManagement, type ManagementServer } from '../management/management.js';
import { Packeter } from '../packeter/index.js';
import type { QueuesStorage } from '../storage/index.js';
import { Throttle } from '../throttle/index.js';
import { resolvePeerOptions, withTls, type PeerOptions, type ResolvedPeerOptions } from './options.js';
import { PeerRpc } from './rpc.js';

/**
 * A snakeMQ peer: an identity that listens and/or connects, sends to other
 * peers by name, receives, serves and calls RPC. Made by {@link createPeer}.
 *
 * ```ts
 * await using bob = await createPeer({ identity: 'bob', listen: 'tcp://0.0.0.0:4000', storage: 'bob.sqlite' });
 * bob.on('message', (_connId, from, message) => console.log(from, message.data.toString()));
 * bob.rpc.serve('calc', { add: (a: number, b: number) => a + b });
 * await bob.send('alice', 'hi').delivered();
 * ```
 *
 * Who closes what, the same rule in every class: a layer owns the layer it
 * is built on, and its `close()` closes it (Messaging → Packeter → Throttle
 * → Link, and Messaging's storage). RPC objects are attached to a Messaging
 * they do not own: they close when it closes, and their own `close()` only
 * detaches them. A Peer owns everything it created (and a storage given to
 * it): {@link Peer.close} closes the RPC objects, then the Messaging and so
 * the whole stack. Closing a layer directly (`peer.messaging.close()`)
 * closes the layers below it as usual; `peer.close()` still settles.
 *
 * The layers are public for whoever needs more than this class offers
 * (`peer.link.removeConnector(url)`, `peer.messaging.addReceiveHook(…)`).
 */
export class Peer implements AsyncDisposable {
  /** This peer's identity (as sent: at most 50 characters). */
  readonly identity: string;
  /** The sockets: listeners, connectors, TLS. */
  readonly link: Link;
  /** The bandwidth limit between link and packeter, when the `throttle` option was given. */
  readonly throttle: Throttle | null;
  /** The framing layer. */
  readonly packeter: Packeter;
  /** Identities, queues, deliveries; emits the events {@link Peer.on} subscribes to. */
  readonly messaging: Messaging;
  /** The storage of persistent messages (owned, closed by {@link Peer.close}), or `null`. */
  readonly storage: QueuesStorage | null;
  /** Serve objects and call other peers' (RpcServer and RpcClient made on first use). */
  readonly rpc: PeerRpc;
  /** The management object served (the `management` option), or `null`; it ends with the peer. */
  readonly management: ManagementServer | null;
  readonly #tls: TlsOptions | undefined;
  readonly #listening: string[] = [];
  #closing: Promise<void> | null = null;

  /** @internal Use {@link createPeer}. */
  constructor(o: ResolvedPeerOptions, link: Link, throttle: Throttle | null, packeter: Packeter, messaging: Messaging, storage: QueuesStorage | null) {
    this.identity = messaging.identity;
    this.link = link;
    this.throttle = throttle;
    this.packeter = packeter;
    this.messaging = messaging;
    this.storage = storage;
    this.#tls = o.tls;
    this.rpc = new PeerRpc(messaging, o.rpc);
    this.management = o.management === undefined ? null : serveManagement(this, o.management);
  }

  /** The bound URLs of the peer's listeners (port 0 replaced by the port picked), in the order given. */
  get listening(): string[] {
    return [...this.#listening];
  }

  /** Whether {@link Peer.close} was called (or the Messaging was closed). */
  get closed(): boolean {
    return this.messaging.closed;
  }

  /**
   * Queues a message for peer `ident` (Messaging.send): it goes out, in
   * order, once and while that peer is connected. Returns a {@link Delivery}
   * to await its stages (`persisted()`, `written()`, `delivered()`).
   * @throws {@link QueueFullError} the queue is full (overflow `'reject'`).
   * @throws {@link InvalidArgumentError} `ident` cannot be a peer.
   * @throws {@link ClosedError} after `close()`.
   */
  send(ident: string, message: Message | Uint8Array | string): Delivery {
    return this.messaging.send(ident, message);
  }

  /** Subscribes to a Messaging event: `message`, `connect`, `disconnect`, `drop`, `acknowledged`… ({@link MessagingEvents}). */
  on<E extends keyof MessagingEvents>(event: E, listener: MessagingEvents[E]): this {
    this.messaging.on(event, listener as never);
    return this;
  }

  /** Like {@link Peer.on}, for the next event only. */
  once<E extends keyof MessagingEvents>(event: E, listener: MessagingEvents[E]): this {
    this.messaging.once(event, listener as never);
    return this;
  }

  /** Removes a listener added with {@link Peer.on} or {@link Peer.once} (all of the event's without one). */
  off<E extends keyof MessagingEvents>(event: E, listener?: MessagingEvents[E]): this {
    this.messaging.off(event, listener as never);
    return this;
  }

  /**
   * Received messages as an async iterator (Messaging.messages), with
   * backpressure: reading pauses while it lags `streamHighWaterMark` behind.
   * Ends when the peer closes; `signal` ends it with `AbortedError`.
   */
  messages(options?: { signal?: AbortSignal }): AsyncIterableIterator<ReceivedMessage> {
    return this.messaging.messages(options);
  }

  /**
   * Registers send and/or receive interceptors (Messaging.intercept): they
   * see every message before it is queued or handled and give a verdict
   * (forward, possibly replaced; drop; return; error). Returns the remover.
   * See docs/interceptors.md.
   */
  intercept(interceptor: Interceptor): () => void {
    return this.messaging.intercept(interceptor);
  }

  /**
   * Whether `ident`'s queue is below its high-water mark (Messaging.writable):
   * a streaming sender sends while this is true and otherwise awaits
   * {@link Peer.drained}.
   */
  writable(ident: string): boolean {
    return this.messaging.writable(ident);
  }

  /**
   * Resolves once `ident` is {@link Peer.writable} (at once if it is now);
   * rejects with `AbortedError` when `signal` fires, `ClosedError` on close.
   */
  drained(ident: string, options?: { signal?: AbortSignal }): Promise<void> {
    return this.messaging.drained(ident, options);
  }

  /** Waits until `ident` is writable, then sends (Messaging.sendWhenReady). */
  sendWhenReady(ident: string, message: Message | Uint8Array | string, options?: { signal?: AbortSignal }): Promise<Delivery> {
    return this.messaging.sendWhenReady(ident, message, options);
  }

  /** Whether peer `ident` is connected now. */
  isConnected(ident: string): boolean {
    return this.messaging.isConnected(ident);
  }

  /** Identities connected now. */
  connectedPeers(): string[] {
    return this.messaging.connectedPeers();
  }

  /** Messages queued for `ident` and not yet delivered. */
  queueLength(ident: string): number {
    return this.messaging.queueLength(ident);
  }

  /**
   * Accepts connections on one more endpoint (Link.addListener, with the
   * peer's `tls` for a TLS endpoint without its own). Resolves with the
   * bound URL, also added to {@link Peer.listening}.
   */
  async listen(url: string, options?: ListenerOptions): Promise<string> {
    const bound = await this.link.addListener(url, withTls(url, options, this.#tls));
    this.#listening.push(bound);
    return bound;
  }

  /**
   * Connects to one more endpoint, reconnecting with backoff until the peer
   * closes or {@link disconnect} (Link.addConnector, with the
   * peer's `tls` for a TLS endpoint without its own). Returns the
   * connector's normalised endpoint.
   */
  connect(url: string, options?: ConnectorOptions): string {
    return this.link.addConnector(url, withTls(url, options, this.#tls));
  }

  /** Stops the connector of `url` (as given to {@link connect}, or its normalised form) and closes its connection. */
  disconnect(url: string): Promise<void> {
    return this.link.removeConnector(url);
  }

  /**
   * Closes everything the peer owns: the RPC objects, then the Messaging
   * (pending acknowledgements go out), which closes the packeter, throttle,
   * link and storage. Unfinished deliveries reject with {@link ClosedError};
   * persistent ones stay in the storage. Idempotent: the same promise every time.
   */
  close(): Promise<void> {
    return (this.#closing ??= (async () => {
      await this.rpc.close();
      await this.messaging.close();
    })());
  }

  /** `await using peer = await createPeer(…)` closes the peer at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

async function openSqlite(path: string, identity: string): Promise<QueuesStorage> {
  // Loaded only for a path: sqlite3 is a native addon, and importing the package must not load it.
  let sqlite: typeof import('../storage/sqlite.js');
  try {
    sqlite = await import('../storage/sqlite.js');
  } catch (error) {
    throw new StorageError(`createPeer: storage '${path}' needs the optional sqlite3 package, which failed to load`, { cause: error });
  }
  return sqlite.SqliteQueuesStorage.open(path, { identity });
}

/**
 * Makes a peer in one call: builds Link, Throttle (with `throttle`),
 * Packeter and Messaging, opens the storage (an SQLite path, or the
 * {@link QueuesStorage} given), binds every `listen` endpoint and starts
 * every `connect` one. Resolves once stored queues are loaded and every
 * listener is bound (`peer.listening`); connections are not waited for
 * (`peer.on('connect', …)`, or a send or RPC call simply waits for its peer).
 *
 * Handlers attached after it resolves can miss what arrives at once: to
 * attach them before any connection, create the peer without
 * `listen`/`connect`, attach, then call `peer.listen()` / `peer.connect()`.
 *
 * On a failure it closes everything it opened (the storage given included)
 * and rejects with the error: {@link InvalidOptionsError} (an unknown key or
 * bad value, here or in a layer's options), {@link InvalidEndpointError},
 * {@link ConnectionError} (e.g. `EADDRINUSE`), a storage error
 * ({@link StorageLockedError}, {@link StorageIdentityError}, {@link StorageSchemaError},
 * {@link StorageError}, also when `sqlite3` cannot be loaded).
 */
export async function createPeer(options: PeerOptions): Promise<Peer> {
  // A storage given is ours from the call on: closed on any failure.
  const given = options?.storage;
  let storage: QueuesStorage | null = typeof given === 'object' && given !== null && typeof given.close === 'function' ? given : null;
  let link: Link | null = null;
  let packeter: Packeter | null = null;
  let messaging: Messaging | null = null;
  try {
    const o = resolvePeerOptions(options);
    link = new Link(o.link);
    const throttle = o.throttle === undefined ? null : new Throttle(link, o.throttle);
    packeter = new Packeter(throttle ?? link, o.packeter);
    if (typeof o.storage === 'string') storage = await openSqlite(o.storage, o.identity);
    messaging = new Messaging(o.identity, packeter, { ...o.messaging, storage });
    const peer = new Peer(o, link, throttle, packeter, messaging, storage);
    await messaging.ready;
    // One after the other: `listening` keeps the order given, and the first failure stops it.
    for (const { url, options } of o.listen) await peer.listen(url, options);
    for (const { url, options } of o.connect) peer.connect(url, options);
    return peer;
  } catch (error) {
    // Each layer closes the ones below it: close the topmost one made.
    const top = messaging ?? packeter ?? link;
    await top?.close().catch(() => undefined);
    if (messaging === null) await storage?.close().catch(() => undefined);
    throw error;
  }
}
