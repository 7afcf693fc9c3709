/**
 * The {@link Messaging} facade: its public API and events. The work is done
 * by the modules below, in the order a message goes through them:
 * sending — peer-queue (send, limits, TTL, idle identities) → persist
 * (storage) → write-path (frames into the write batch) → in-flight (frames
 * kept until the ACK, the ACK itself); receiving — receive-path (decode,
 * dedup, ACK batching) → dispatch (hooks, listeners, iterators); around
 * them handshake (identification, modes, claims), keepalive and
 * backpressure (per-peer high-water marks). They share one
 * {@link MessagingCore} and talk to the Packeter through
 * {@link PacketTransport}.
 * @module
 */
import type { EventEmitter as EE } from 'eventemitter3';
import { EventEmitter } from 'eventemitter3';
import { ClosedError, InvalidArgumentError, type SnakeMQError } from '../errors.js';
import type { Packeter } from '../packeter/packeter.js';
import type { PacketTransport } from '../packeter/packet-transport.js';
import { RelayTransport } from '../relay/relay-transport.js';
import { MessagingCore } from './core.js';
import { addHook, listenersChanged, openStream, safeEmit, type ReceiveHookHandler } from './dispatch.js';
import { dropAllInFlight, onSent } from './in-flight.js';
import { datagramState, onDatagram, type DatagramCounters } from './datagram.js';
import { onConnect, onDisconnect, onFramingError } from './handshake.js';
import { encodeExtensions, encodeIdentification, encodePing, encodeProtocolVersion, FEATURE_ACK, truncateIdent } from './frames.js';
import type { Message } from './message.js';
import { resolveMessagingOptions, type MessagingOptions, type ResolvedMessagingOptions } from './options.js';
import { drained, rejectDrainWaiters, writable } from './backpressure.js';
import { addInterceptor, releaseHeld, type Interceptor } from './intercept.js';
import { enqueue, wantQueued } from './peer-queue.js';
import { load } from './persist.js';
import { onPacket, onRun, sendAck } from './receive-path.js';
import type { ReceivedMessage } from './stream.js';
import type { Delivery, MessagingEvents } from './types.js';
import { onDrain } from './write-path.js';
import { dropQueued, peerStatsOf, statsOf, type MessagingStats, type PeerStats } from './stats.js';

export {
  DEFAULT_DEDUP_WINDOW,
  DEFAULT_PEER_HIGH_WATER_MARK,
  DEFAULT_PEER_HIGH_WATER_MARK_BYTES,
  DEFAULT_IDENTIFY_TIMEOUT,
  DEFAULT_IDLE_IDENTITY_GRACE,
  DEFAULT_KEEPALIVE_WAIT,
  DEFAULT_MAX_HANDSHAKE_PACKET_SIZE,
  DEFAULT_MAX_IDLE_IDENTITIES,
  DEFAULT_MAX_QUEUE_BYTES,
  DEFAULT_MAX_QUEUE_MESSAGES,
  DEFAULT_STREAM_HIGH_WATER_MARK,
} from './options.js';
export type { AuthorizePolicy, MessagingOptions, OverflowPolicy, ResolvedMessagingOptions } from './options.js';
export type { ReceiveHookHandler } from './dispatch.js';
export type { DatagramCounters } from './datagram.js';
export type { MessagingStats, PeerStats } from './stats.js';

type Names = EE.EventNames<MessagingEvents>;
type Fn<T extends Names> = EE.EventListener<MessagingEvents, T>;

/**
 * Identities, per-identity queues and the snakeMQ messaging protocol over a
 * {@link Packeter} (reference §2-§5), plus acknowledged delivery with peers
 * that announce it.
 *
 * ```ts
 * const link = new Link();
 * const bob = new Messaging('bob', new Packeter(link));
 * bob.on('message', (connId, ident, message) => console.log(ident, message.data.toString()));
 * await link.addListener('tcp://127.0.0.1:4000');
 * bob.send('alice', new Message('hi alice'));   // queued until alice connects
 * ```
 */
export class Messaging extends EventEmitter<MessagingEvents> {
  /** This peer's identity (as sent: at most 50 characters). */
  readonly identity: string;
  /** The packeter below. */
  readonly packeter: Packeter;
  /** The relay layer between the packeter and this one, with the `relay` option (docs/relay.md); null without. */
  readonly relay: RelayTransport | null;
  /** Options in force. */
  readonly options: Readonly<ResolvedMessagingOptions>;
  /** Settles once stored queues are loaded (at once without storage); rejects with a StorageError. */
  readonly ready: Promise<void>;

  /** @internal The state the modules of this layer share. */
  private readonly core: MessagingCore;
  private closing: Promise<void> | null = null;

  constructor(identity: string, packeter: Packeter, options?: MessagingOptions) {
    super();
    if (typeof identity !== 'string') throw new InvalidArgumentError('identity must be a string');
    this.identity = truncateIdent(identity);
    this.packeter = packeter;
    this.options = resolveMessagingOptions(options);
    // Relaying sits between the Packeter and this layer, as a PacketTransport: the rest of Messaging does not know it is there.
    const transport: PacketTransport =
      (this.relay = this.options.relay === null ? null : new RelayTransport(packeter, this.identity, this.options.relay)) ?? packeter;
    const s = (this.core = new MessagingCore(this, this.identity, transport, this.options));
    s.wantPeer = transport.wantPeer === undefined ? null : (ident) => transport.wantPeer!(ident);
    s.handshake = [encodeProtocolVersion(), encodeIdentification(this.identity)];
    if (this.options.acknowledgements) s.handshake.push(encodeExtensions(FEATURE_ACK), encodePing());

    transport.onEvent('connect', (info) => onConnect(s, info));
    transport.onEvent('disconnect', (connId) => onDisconnect(s, connId));
    transport.setPacketSink(
      (connId, buf, start, end) => onPacket(s, connId, buf, start, end),
      (connId, chunk, off, decoder) => onRun(s, connId, chunk, off, decoder),
    );
    transport.onEvent('sent', (connId, lastId) => onSent(s, connId, lastId));
    transport.onEvent('drain', (connId) => onDrain(s, connId));
    transport.onEvent('protocolError', (connId, error) => onFramingError(s, connId, error));

    // Datagrams come from the Packeter itself (they have no connection a layer in between could route).
    packeter.onDatagram((connId, datagram, address, port) => onDatagram(s, connId, datagram, address, port));
    this.ready = s.storage === null ? Promise.resolve() : load(s, s.storage);
    // Callers that never await `ready` still get the failure through drop events, not an unhandled rejection.
    this.ready.catch(() => undefined);
    if (s.wantPeer !== null)
      void this.ready.then(
        () => wantQueued(s),
        () => undefined,
      );
  }

  /**
   * Queues a message for `ident`. It goes out, in order, as soon as and as
   * long as that peer is connected. Returns a {@link Delivery} to follow it.
   *
   * A message with TTL 0 is dropped at once (event `drop`) when the peer is
   * not connected now.
   *
   * Bare data (`Uint8Array`/`Buffer`, or a string as UTF-8) is sent as a
   * message with a fresh uuid, no flags and no TTL limit; the
   * {@link Message} (`delivery.message`, events) is made only when asked
   * for, the same object every time. Keep the data (of a Message too)
   * unchanged until the message is delivered: it is read when the message
   * is written, which may be later (while the peer is away), and data of a
   * write batch or more is written by reference and read again by a re-send.
   * Nothing about the peer's state makes `send` throw: a message for a
   * peer that is away, misbehaving or being disconnected is queued.
   * @throws {@link QueueFullError} when the queue is full and the overflow policy is `reject`.
   * @throws {@link InvalidArgumentError} when `ident` is not a string, is
   *   longer than the 50 characters an identity has on the wire (no peer
   *   could ever have it), or is this peer's own identity.
   * @throws {@link ClosedError} after `close()`.
   * @throws {@link DatagramPersistentError} / {@link DatagramTooLargeError} for an identity
   *   reached through a `udp://` connector (see docs/datagrams.md): a persistent message, a datagram over `maxDatagramSize`.
   */
  send(ident: string, message: Message | Uint8Array | string): Delivery {
    return enqueue(this.core, ident, message);
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.core.isClosed;
  }

  /**
   * Counters of the datagrams this peer received on `udp://` listeners
   * (delivered, and dropped by kind) and sent through `udp://` connectors
   * (see docs/datagrams.md). A live object: read it, do not write it.
   */
  get datagramCounters(): Readonly<DatagramCounters> {
    return datagramState(this.core).counters;
  }

  /**
   * Identities whose state is kept: connected, with messages queued, or
   * idle within their grace period (see `idleIdentityGrace`).
   */
  get identityCount(): number {
    return this.core.queues.size;
  }

  /**
   * Whether a peer with this identity is connected now (over a stream: an
   * identity reached only through a `udp://` connector is never connected,
   * see docs/datagrams.md).
   */
  isConnected(ident: string): boolean {
    return this.core.byIdent.has(ident);
  }

  /** Identities of the connected peers. */
  connectedPeers(): string[] {
    return [...this.core.byIdent.keys()];
  }

  /**
   * Asks for a connection to `ident` without sending anything: with the
   * `relay` option, relays are asked for a route to it (as when a message
   * is queued for it); without, nothing happens. RPC calls and subscriptions
   * waiting for a peer do this.
   */
  reach(ident: string): void {
    const s = this.core;
    if (s.wantPeer !== null && !s.isClosed && !s.byIdent.has(ident) && ident !== s.identity) s.wantPeer(ident);
  }

  /** Number of messages queued for `ident` (sent but unacknowledged included). */
  queueLength(ident: string): number {
    return this.core.queues.get(ident)?.count ?? 0;
  }

  /**
   * A snapshot of identity `ident` (queue, messages in flight, oldest age,
   * connection and its message counters), or `undefined` when no state is
   * kept for it. Read-only; for management (lib/management).
   */
  peerStats(ident: string): PeerStats | undefined {
    const queue = this.core.queues.get(ident);
    return queue === undefined ? undefined : peerStatsOf(queue, Date.now());
  }

  /**
   * A snapshot of every identity, listing at most `limit` of them
   * (`truncated` tells), with totals. Read-only; for management.
   * @param limit most identities listed. @default 1000
   */
  stats(limit = 1000): MessagingStats {
    return statsOf(this.core, limit, Date.now());
  }

  /**
   * Drops the messages of `ident` that wait to be written (those in flight
   * wait for their acknowledgement): each gets a `drop` event and its
   * Delivery rejects with `reason`; stored ones leave the storage. Returns
   * how many were dropped. A management action.
   */
  dropQueued(ident: string, reason: SnakeMQError): number {
    return dropQueued(this.core, ident, reason);
  }

  /**
   * Routes received messages whose data starts with `prefix` (or matches a
   * regular expression, tested on the data as latin1 text) to `handler`
   * instead of the `message` event and iterators (snakeMQ's `ReceiveHook`).
   * Returns a function that removes the hook.
   */
  addReceiveHook(matcher: string | Uint8Array | RegExp, handler: ReceiveHookHandler): () => void {
    return addHook(this.core, matcher, handler);
  }

  /**
   * Received messages as an async iterator (in addition to the `message`
   * event). Reading from peers pauses while an iterator holds more than
   * `streamHighWaterMark` unread messages. Ends when messaging closes.
   *
   * With `signal`, aborting it ends the iterator: a waiting `next()` (or,
   * if none waits, the next one) rejects with {@link AbortedError} (`cause`:
   * the signal's reason), buffered messages are discarded and the iterator
   * stops counting towards the read pause, as after `return()`.
   */
  messages(options?: { signal?: AbortSignal }): AsyncIterableIterator<ReceivedMessage> {
    return openStream(this.core, options?.signal);
  }

  /**
   * Registers interceptors: `send` sees each message given to {@link send}
   * before it is queued (bare data as a Message made for it), `receive` each
   * received message before any handler (receive hooks included: RPC and
   * publish/subscribe frames pass through it too), in order of registration.
   * Each returns a {@link Verdict} (`undefined`: forward unchanged) or a
   * Promise of one (the message, and the later ones to that identity or
   * from that connection, wait for it). Returns the remover (idempotent).
   * Without interceptors, sending and receiving cost what they did (one
   * field check each). See docs/interceptors.md.
   *
   * ```ts
   * const off = messaging.intercept({
   *   send: (ident, m) => (m.data.includes('secret') ? new Message(redact(m.data), { ttl: m.ttl, flags: m.flags }) : undefined),
   *   receive: (_connId, ident, m) => void received.inc(ident),
   * });
   * ```
   * @throws {@link InvalidOptionsError} for keys other than `send`/`receive` or values that are not functions.
   * @throws {@link InvalidArgumentError} when neither is given.
   * @throws {@link ClosedError} after {@link close}.
   */
  intercept(interceptor: Interceptor): () => void {
    return addInterceptor(this.core, interceptor);
  }

  // --- backpressure ------------------------------------------------------------

  /**
   * Whether a message for `ident` should be sent now: false once the
   * identity's queue (queued plus in flight, not yet acknowledged, as
   * {@link queueLength} counts) is at or above `highWaterMark` messages or
   * `highWaterMarkBytes`, and from then on until it has fallen to the
   * low-water mark, half of each (the `drain` event tells). Also false after
   * {@link close}. Advice only: `send()` never waits and is refused only at
   * `maxQueueMessages`/`maxQueueBytes`. The recommended streaming loop:
   *
   * ```ts
   * for (const item of items) {
   *   if (!messaging.writable('bob')) await messaging.drained('bob');
   *   messaging.send('bob', item);
   * }
   * ```
   */
  writable(ident: string): boolean {
    return writable(this.core, ident);
  }

  /**
   * Resolves once {@link writable}(`ident`) is true: at once if it is, else
   * at the `drain` of that identity (a peer that is away keeps it waiting
   * until it connects and acknowledges).
   * @throws (rejects) {@link AbortedError} when `signal` is aborted (`cause`: its reason).
   * @throws (rejects) {@link ClosedError} at or after {@link close}.
   */
  drained(ident: string, options?: { signal?: AbortSignal }): Promise<void> {
    return drained(this.core, ident, options?.signal);
  }

  /**
   * {@link send} once {@link writable}(`ident`) (see {@link drained}). Callers
   * waiting at the same time each send when the queue drains, so the queue may
   * exceed the mark by their number: one loop per identity keeps it exact.
   * @throws (rejects) {@link AbortedError} when `signal` is aborted before the message was queued.
   * @throws (rejects) what {@link send} throws, and {@link ClosedError} at or after {@link close}.
   */
  async sendWhenReady(ident: string, message: Message | Uint8Array | string, options?: { signal?: AbortSignal }): Promise<Delivery> {
    const signal = options?.signal;
    if (signal?.aborted || !writable(this.core, ident)) await drained(this.core, ident, signal);
    return enqueue(this.core, ident, message);
  }

  /**
   * Closes the whole stack below (packeter, link), after sending pending
   * acknowledgements, then the storage. Unfinished deliveries reject with
   * {@link ClosedError} (persistent ones stay in storage). Idempotent.
   */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    const s = this.core;
    s.isClosed = true;
    if (s.idleTimer !== null) clearTimeout(s.idleTimer);
    s.idleTimer = null;
    safeEmit(s, 'close');
    const closed = new ClosedError('messaging closed while waiting to drain');
    for (const queue of s.queues.values()) {
      queue.direct = false;
      rejectDrainWaiters(queue, closed);
    }
    releaseHeld(s, new ClosedError('messaging closed before an interceptor decided'));
    this.closing = (async () => {
      for (const conn of s.conns.values()) {
        sendAck(s, conn);
        if (conn.keepaliveTimer) clearTimeout(conn.keepaliveTimer);
      }
      await s.packeter.close();
      const reason = new ClosedError('messaging closed before delivery');
      for (const queue of s.queues.values()) {
        dropAllInFlight(s, queue, reason);
        for (const e of queue.items) e.drop(reason);
      }
      for (const stream of s.streams) stream.end();
      s.streams.clear();
      await this.ready.catch(() => undefined);
      if (s.storage !== null) await s.storage.close();
    })();
    return this.closing;
  }

  // --- listeners: kept in step with the mirror dispatch reads -------------------

  override on<T extends Names>(event: T, fn: Fn<T>, context?: unknown): this {
    super.on(event, fn, context);
    return this.added(event, fn as (...args: never[]) => void, context, false);
  }

  override addListener<T extends Names>(event: T, fn: Fn<T>, context?: unknown): this {
    super.addListener(event, fn, context);
    return this.added(event, fn as (...args: never[]) => void, context, false);
  }

  override once<T extends Names>(event: T, fn: Fn<T>, context?: unknown): this {
    super.once(event, fn, context);
    return this.added(event, fn as (...args: never[]) => void, context, true);
  }

  override removeListener<T extends Names>(event: T, fn?: Fn<T>, context?: unknown, once?: boolean): this {
    super.removeListener(event, fn, context, once);
    this.core.registered.remove(event, fn, context, once);
    listenersChanged(this.core, event);
    return this;
  }

  override off<T extends Names>(event: T, fn?: Fn<T>, context?: unknown, once?: boolean): this {
    return this.removeListener(event, fn, context, once);
  }

  override removeAllListeners(event?: Names): this {
    super.removeAllListeners(event);
    this.core.registered.clear(event);
    listenersChanged(this.core, event);
    return this;
  }

  private added(event: Names, fn: (...args: never[]) => void, context: unknown, once: boolean): this {
    if (typeof fn === 'function') {
      // eventemitter3 calls a listener with `context || emitter` as `this`.
      this.core.registered.add(event, fn, context || this, once);
      listenersChanged(this.core, event);
    }
    return this;
  }
}
