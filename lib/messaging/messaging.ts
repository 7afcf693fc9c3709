import { nextTick } from 'node:process';
import { Buffer } from 'node:buffer';
import { EventEmitter } from 'eventemitter3';
import {
  ClosedError,
  DuplicateIdentityError,
  ErrorCode,
  HandlerError,
  IdentificationTimeoutError,
  IncompatibleProtocolError,
  InvalidArgumentError,
  KeepaliveTimeoutError,
  MessageExpiredError,
  NotSnakeMQPeerError,
  PacketTooLargeError,
  ProtocolError,
  QueueFullError,
  SnakeMQError,
  StorageError,
  TlsError,
  UnauthorizedError,
} from '../errors.js';
import type { ConnId, ConnectionInfo } from '../link/types.js';
import type { Packeter, Slab } from '../packeter/packeter.js';
import { HEADER_SIZE, wholePacketEnd, type PacketDecoder } from '../packeter/decoder.js';
import type { QueuesStorage, StoredMessage } from '../storage/types.js';
import { createLogger } from '../util/log.js';
import { is, validateOptions } from '../util/options.js';
import { DeliveryTracker, QUEUE_ENTRY_OVERHEAD, QueueEntry } from './delivery.js';
import { Deque } from '../util/deque.js';
import {
  FEATURE_ACK,
  FLAG_RESENT,
  FrameType,
  PROTOCOL_VERSION,
  decodeFrame,
  encodeAck,
  encodeExtensions,
  encodeIdentification,
  encodeIncompatibleProtocol,
  writeMessageFrame,
  writeMessageHeadOf,
  WIRE_TTL_INFINITE,
  encodePing,
  encodePong,
  encodeProtocolVersion,
  messageBeforeIdentification,
  MAX_IDENT_LENGTH,
  isValidIdent,
  truncateIdent,
} from './frames.js';
import { FRAME_REFUSED, decodeRefused, encodeRefused } from './refusal.js';
import { FLAG_PERSISTENT, Message, toBuffer, viewOf } from './message.js';
import { MessageStream, type ReceivedMessage } from './stream.js';
import { RecentUuids } from './uuid-window.js';
import type { Delivery, MessagingEvents } from './types.js';

const log = createLogger('snakemq:messaging');
const VIEW_CACHE_LIMIT = 1024 * 1024;
/** Fewer messages than this received in one go are acknowledged at once (after their handlers); more wait (see ackLater). */
const ACK_NOW_BELOW = 64;
/** A busy stream's ACK waits for more messages (one turn at a time, while they keep coming) up to this many. */
const ACK_BATCH = 8192;
/** ...but for at most this many turns. */
const ACK_MAX_DEFERS = 16;
const RESOLVED: Promise<void> = Promise.resolve();

/** Default per-identity queue limit in messages. */
export const DEFAULT_MAX_QUEUE_MESSAGES = 4_194_304;
/** Default per-identity queue limit in bytes (payloads plus `QUEUE_ENTRY_OVERHEAD` each): 512 MiB. */
export const DEFAULT_MAX_QUEUE_BYTES = 512 * 1024 * 1024;
/** Default number of recent message uuids remembered per identity to drop re-sent duplicates. */
export const DEFAULT_DEDUP_WINDOW = 65_536;
/** Default time to wait for any sign of life after a keepalive PING: 500 ms. */
export const DEFAULT_KEEPALIVE_WAIT = 500;
/** Default number of received messages an async iterator buffers before reading pauses. */
export const DEFAULT_STREAM_HIGH_WATER_MARK = 16_384;

/** Default time a new connection has to identify itself (PROTOCOL_VERSION and IDENTIFICATION): 10 s. */
export const DEFAULT_IDENTIFY_TIMEOUT = 10_000;
/** Default largest packet accepted from a connection before it identified itself: 4 KiB. */
export const DEFAULT_MAX_HANDSHAKE_PACKET_SIZE = 4096;
/** Default time the state of a disconnected identity with nothing queued is kept (for de-duplication after a reconnect): 5 minutes. */
export const DEFAULT_IDLE_IDENTITY_GRACE = 5 * 60_000;
/** Default number of disconnected identities with nothing queued whose state is kept (the least recently seen go first). */
export const DEFAULT_MAX_IDLE_IDENTITIES = 10_000;

/**
 * Decides whether a peer may take the identity it claims on a connection
 * (see {@link MessagingOptions.authorize}); `certificateIdentity()` is a
 * ready policy binding identities to TLS certificates.
 */
export type AuthorizePolicy = (identity: string, connection: ConnectionInfo) => boolean;

/** What to do when a send would exceed a queue's limits. */
export type OverflowPolicy = 'reject' | 'drop-oldest';

/** Options of {@link Messaging}. All times in milliseconds. */
export interface MessagingOptions {
  /**
   * Where persistent messages are kept so they survive a restart (e.g.
   * `SqliteQueuesStorage`). Without one, every queue lives in memory only.
   * @default null
   */
  storage?: QueuesStorage | null;
  /**
   * Send a PING when nothing was received on a connection for this long;
   * `null` turns keepalive off (snakeMQ's default).
   * @default null
   */
  keepaliveInterval?: number | null;
  /** After a PING, close the connection if nothing arrives within this time. @default 500 */
  keepaliveWait?: number;
  /**
   * Announce and use the acknowledged-delivery extension (docs/protocol.md).
   * Off, this peer behaves as a plain protocol-1 peer (messages leave the
   * queue once written to the socket).
   * @default true
   */
  acknowledgements?: boolean;
  /** Recent uuids remembered per identity to recognise re-sent messages. @default 65536 */
  dedupWindow?: number;
  /** Per-identity queue limit in messages. @default 4194304 */
  maxQueueMessages?: number;
  /** Per-identity queue limit in bytes (data + 128 per message). @default 536870912 */
  maxQueueBytes?: number;
  /** `reject`: `send` throws {@link QueueFullError}; `drop-oldest`: the oldest unsent message is dropped (`drop` event). @default 'reject' */
  overflow?: OverflowPolicy;
  /**
   * Messages an async iterator may buffer: when a message takes an iterator
   * to this mark, reading pauses on the connection that delivered it (and on
   * every other connection that delivers to a full iterator) until no
   * iterator is full. Other peers keep flowing.
   * @default 16384
   */
  streamHighWaterMark?: number;
  /**
   * A connection that has not sent PROTOCOL_VERSION and IDENTIFICATION
   * within this time is closed ({@link IdentificationTimeoutError}).
   * @default 10000
   */
  identifyTimeout?: number;
  /**
   * Largest packet accepted from a connection until it identified itself:
   * the handshake frames are a few bytes, so a peer cannot make us buffer
   * big packets before we know who it is. Partial packets of all such
   * connections together are also bounded by the Packeter's `restrictedBudget`.
   * @default 4096
   */
  maxHandshakePacketSize?: number;
  /**
   * An identity that disconnected with nothing queued keeps its state (queue,
   * de-duplication window, storage row) this long, so that a quick reconnect
   * still recognises re-sent messages; then it is freed.
   * @default 300000 (5 minutes)
   */
  idleIdentityGrace?: number;
  /**
   * At most this many such idle identities are kept; past it the least
   * recently disconnected one is freed at once, grace period or not.
   * @default 10000
   */
  maxIdleIdentities?: number;
  /**
   * Called at IDENTIFICATION, before the identity is bound and before any
   * later frame of the connection is decoded or acknowledged: returning
   * anything but `true` (or throwing) refuses the connection, which is
   * closed with an {@link UnauthorizedError} (`protocolError` here, and a
   * REFUSED frame tells the peer). Synchronous on purpose: frames read in the
   * same chunk are decided on before the next one is looked at.
   * `certificateIdentity()` requires the identity to be the verified TLS
   * peer certificate's CN or a DNS subject alternative name.
   * @default null (every identity is accepted)
   */
  authorize?: AuthorizePolicy | null;
}

/** {@link MessagingOptions} with every default filled in. */
export type ResolvedMessagingOptions = Required<MessagingOptions>;

/** A receive hook's handler. */
export type ReceiveHookHandler = (connId: ConnId, ident: string, message: Message) => void;

interface Hook {
  readonly prefix: Buffer | null;
  readonly regexp: RegExp | null;
  readonly handler: ReceiveHookHandler;
}

/** How eventemitter3 keeps a single listener (`_events[name]`; an array when there are several). */
interface Listener {
  fn?: (...args: unknown[]) => void;
  context?: unknown;
  once?: boolean;
}

const enum Mode {
  Pending,
  Ack,
  Legacy,
}

interface PeerConn {
  readonly id: ConnId;
  ident: string | null;
  mode: Mode;
  peerAcks: boolean;
  /** Messages received and handed over, not yet acknowledged. */
  toAck: number;
  /** An ACK check is queued as a microtask (see onMessage). */
  ackQueued: boolean;
  /** Runs that check for this connection (made once: no closure per message). */
  readonly ackCheck: () => void;
  /** The pending ACK's turn, for a busy stream (cancelled when the ACK rides along with data first). */
  ackImmediate: NodeJS.Immediate | null;
  /** `toAck` when the pending ACK's turn was set: more since means the stream still flows. */
  ackSeen: number;
  /** Turns the pending ACK has waited for more messages. */
  ackDefers: number;
  alive: boolean;
  keepaliveTimer: NodeJS.Timeout | null;
  pinged: boolean;
  closing: boolean;
  /** The identity's recent uuids (kept across its connections in `dedup`), once known. */
  recent: RecentUuids | null;
  /** The listener or connector URL the connection belongs to. */
  readonly endpoint: string;
  /** Closes the connection when it does not identify in time; null once identified. */
  identifyTimer: NodeJS.Timeout | null;
  /** Why this side closed or failed the connection (reported as `handshakeFailed` when it ends unbound). */
  failure: SnakeMQError | null;
  /** This connection claims the identity of `claim` (probed with a PING); its packets wait in `stash`. */
  claim: PeerConn | null;
  claimIdent: string | null;
  stash: Buffer[] | null;
  /** A claimant waits for this (bound) connection to answer a PING. */
  probedBy: PeerConn | null;
  probeTimer: NodeJS.Timeout | null;
  /** Reading is paused because this connection's messages filled an iterator. */
  streamPaused: boolean;
  /** The peer sent REFUSED: why it is closing the connection. */
  refusal: SnakeMQError | null;
}

/**
 * Consecutive MESSAGE frames of detached entries (see `QueueEntry.detach`) in
 * flight, as written in a retained write batch: what a re-send needs is these
 * bytes, so no object per message stays alive until it is acknowledged.
 */
class FrameRun {
  constructor(
    readonly slab: Slab,
    /** Where the first frame not acknowledged yet starts (at its 4-byte header). */
    public start: number,
    /** Where the last frame ends. */
    public end: number,
    /** Sequence number of the first frame. */
    public firstSeq: number,
    public count: number,
    /** What the frames count against the queue's byte limit. */
    public cost: number,
    public lastPacketId: number,
  ) {}
}

type InFlight = QueueEntry | FrameRun;

class PeerQueue {
  readonly ident: string;
  readonly items = new Deque<QueueEntry>();
  readonly inflight = new Deque<InFlight>();
  /** Messages in flight (a FrameRun holds several). */
  inflightCount = 0;
  /** The run new detached frames extend, when it is the last thing in flight. */
  openRun: FrameRun | null = null;
  /** Fates of the entries let go of once written. */
  private trackerRef: DeliveryTracker | null = null;
  /** Made at the first message sent to this identity (a peer that only sends to us needs none). */
  get tracker(): DeliveryTracker {
    return (this.trackerRef ??= new DeliveryTracker());
  }
  /** The tracker, if one was made. */
  get trackerIfAny(): DeliveryTracker | null {
    return this.trackerRef;
  }
  /** The next detached entry's sequence number. */
  nextSeq = 1;
  /** How many inflight items (from the front) are known written. */
  written = 0;
  count = 0;
  bytes = 0;
  conn: PeerConn | null = null;
  awaySince: number = Date.now();
  pumpScheduled = false;
  /** Whether `send` may write straight to the connection: the last pump found it ready and emptied the queue. */
  direct = false;
  /** Bytes that may still go out before writability is checked again. */
  budget = 0;

  constructor(ident: string) {
    this.ident = ident;
  }
}

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
  /** Options in force. */
  readonly options: Readonly<ResolvedMessagingOptions>;
  /** Settles once stored queues are loaded (at once without storage); rejects with a StorageError. */
  readonly ready: Promise<void>;

  private readonly conns = new Map<ConnId, PeerConn>();
  private lastConn: PeerConn | null = null;
  private inBuf: Buffer | null = null;
  private inView: DataView = viewOf(Buffer.alloc(0));
  private readonly byIdent = new Map<string, PeerConn>();
  private readonly queues = new Map<string, PeerQueue>();
  private lastQueue: PeerQueue | null = null;
  private readonly dedup = new Map<string, RecentUuids>();
  private readonly hooks: Hook[] = [];
  private readonly streams = new Set<MessageStream>();
  private readonly dirty = new Set<PeerQueue>();
  private pumpTick = false;
  private loaded: boolean;
  private isClosed = false;
  /** Disconnected identities with nothing queued, oldest first, with when they became idle. */
  private readonly idle = new Map<string, number>();
  private idleTimer: NodeJS.Timeout | null = null;
  /** Connections paused because their messages filled an iterator. */
  private readonly streamPaused = new Set<PeerConn>();
  private closing: Promise<void> | null = null;
  private readonly storage: QueuesStorage | null;
  private readonly handshake: Buffer[];
  private handlerWarned = false;

  constructor(identity: string, packeter: Packeter, options?: MessagingOptions) {
    super();
    if (typeof identity !== 'string') throw new InvalidArgumentError('identity must be a string');
    this.identity = truncateIdent(identity);
    this.packeter = packeter;
    this.options = validateOptions<ResolvedMessagingOptions>(
      'Messaging',
      options,
      {
        storage: (v) => (v === null || (typeof v === 'object' && typeof (v as QueuesStorage).push === 'function') ? undefined : 'must be a QueuesStorage'),
        keepaliveInterval: is.nullableNumber(1),
        keepaliveWait: is.number(1),
        acknowledgements: is.boolean(),
        dedupWindow: is.integer(0, 1 << 24),
        maxQueueMessages: is.integer(1),
        maxQueueBytes: is.integer(1),
        overflow: is.oneOf('reject', 'drop-oldest'),
        streamHighWaterMark: is.integer(1),
        identifyTimeout: is.integer(1, 2 ** 31 - 1),
        maxHandshakePacketSize: is.integer(64),
        idleIdentityGrace: is.integer(0, 2 ** 31 - 1),
        maxIdleIdentities: is.integer(0),
        authorize: (v) => (v === null || typeof v === 'function' ? undefined : 'must be a function or null'),
      },
      {
        storage: null,
        keepaliveInterval: null,
        keepaliveWait: DEFAULT_KEEPALIVE_WAIT,
        acknowledgements: true,
        dedupWindow: DEFAULT_DEDUP_WINDOW,
        maxQueueMessages: DEFAULT_MAX_QUEUE_MESSAGES,
        maxQueueBytes: DEFAULT_MAX_QUEUE_BYTES,
        overflow: 'reject',
        streamHighWaterMark: DEFAULT_STREAM_HIGH_WATER_MARK,
        identifyTimeout: DEFAULT_IDENTIFY_TIMEOUT,
        maxHandshakePacketSize: DEFAULT_MAX_HANDSHAKE_PACKET_SIZE,
        idleIdentityGrace: DEFAULT_IDLE_IDENTITY_GRACE,
        maxIdleIdentities: DEFAULT_MAX_IDLE_IDENTITIES,
        authorize: null,
      },
    );
    this.storage = this.options.storage;
    this.handshake = [encodeProtocolVersion(), encodeIdentification(this.identity)];
    if (this.options.acknowledgements) this.handshake.push(encodeExtensions(FEATURE_ACK), encodePing());

    packeter.on('connect', (info) => this.onConnect(info));
    packeter.on('disconnect', (connId) => this.onDisconnect(connId));
    packeter.setPacketSink(
      (connId, buf, start, end) => this.onPacket(connId, buf, start, end),
      (connId, chunk, off, decoder) => this.onRun(connId, chunk, off, decoder),
    );
    packeter.on('sent', (connId, lastId) => this.onSent(connId, lastId));
    packeter.on('drain', (connId) => this.onDrain(connId));
    packeter.on('protocolError', (connId, error) => this.onFramingError(connId, error));

    this.loaded = this.storage === null;
    this.ready = this.storage === null ? Promise.resolve() : this.load(this.storage);
    // Callers that never await `ready` still get the failure through drop events, not an unhandled rejection.
    this.ready.catch(() => undefined);
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
   */
  send(ident: string, message: Message | Uint8Array | string): Delivery {
    if (this.isClosed) throw new ClosedError('messaging is closed');
    let queue = this.lastQueue;
    if (queue === null || queue.ident !== ident) queue = this.destination(ident);
    let entry: QueueEntry;
    let stored = false;
    if (message instanceof Message) {
      stored = (message.flags & FLAG_PERSISTENT) !== 0 && this.storage !== null;
      entry = QueueEntry.of(ident, message, message.ttl, !stored, queue.tracker);
      if (message.ttl === 0 && queue.conn === null) {
        if (queue.count === 0) this.markIdle(queue);
        this.dropEntry(entry, new MessageExpiredError(`message ${message.id} has TTL 0 and ${ident} is not connected`));
        return entry;
      }
    } else {
      // Bare data: one object per send, no Message unless someone asks for it.
      entry = QueueEntry.ofData(ident, toBuffer(message), queue.tracker);
    }
    const cost = entry.cost;
    if (queue.count >= this.options.maxQueueMessages || queue.bytes + cost > this.options.maxQueueBytes) this.makeRoom(queue, entry);
    queue.count++;
    queue.bytes += cost;
    if (stored) this.persist(queue, entry);
    // Nothing waiting ahead of it on a ready connection: straight into the write batch.
    if (queue.direct && queue.items.length === 0 && this.writeNow(queue, entry)) return entry;
    queue.items.push(entry);
    this.schedulePump(queue);
    return entry;
  }

  /** Whether {@link close} was called. */
  get closed(): boolean {
    return this.isClosed;
  }

  /**
   * Identities whose state is kept: connected, with messages queued, or
   * idle within their grace period (see `idleIdentityGrace`).
   */
  get identityCount(): number {
    return this.queues.size;
  }

  /** Whether a peer with this identity is connected now. */
  isConnected(ident: string): boolean {
    return this.byIdent.has(ident);
  }

  /** Identities of the connected peers. */
  connectedPeers(): string[] {
    return [...this.byIdent.keys()];
  }

  /** Number of messages queued for `ident` (sent but unacknowledged included). */
  queueLength(ident: string): number {
    return this.queues.get(ident)?.count ?? 0;
  }

  /**
   * Routes received messages whose data starts with `prefix` (or matches a
   * regular expression, tested on the data as latin1 text) to `handler`
   * instead of the `message` event and iterators (snakeMQ's `ReceiveHook`).
   * Returns a function that removes the hook.
   */
  addReceiveHook(matcher: string | Uint8Array | RegExp, handler: ReceiveHookHandler): () => void {
    if (typeof handler !== 'function') throw new InvalidArgumentError('hook handler must be a function');
    let hook: Hook;
    if (matcher instanceof RegExp) hook = { prefix: null, regexp: matcher, handler };
    else if (typeof matcher === 'string') hook = { prefix: Buffer.from(matcher, 'utf8'), regexp: null, handler };
    else if (matcher instanceof Uint8Array) hook = { prefix: Buffer.from(matcher), regexp: null, handler };
    else throw new InvalidArgumentError('hook matcher must be a string, bytes or a RegExp');
    this.hooks.push(hook);
    return () => {
      const i = this.hooks.indexOf(hook);
      if (i >= 0) this.hooks.splice(i, 1);
    };
  }

  /**
   * Received messages as an async iterator (in addition to the `message`
   * event). Reading from peers pauses while an iterator holds more than
   * `streamHighWaterMark` unread messages. Ends when messaging closes.
   */
  messages(): AsyncIterableIterator<ReceivedMessage> {
    const stream = new MessageStream(
      this.options.streamHighWaterMark,
      () => this.updateReadPause(),
      () => {
        this.streams.delete(stream);
        this.updateReadPause();
      },
    );
    if (this.isClosed) stream.end();
    else this.streams.add(stream);
    return stream;
  }

  /**
   * Closes the whole stack below (packeter, link), after sending pending
   * acknowledgements, then the storage. Unfinished deliveries reject with
   * {@link ClosedError} (persistent ones stay in storage). Idempotent.
   */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    this.isClosed = true;
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    this.safeEmit('close');
    for (const queue of this.queues.values()) queue.direct = false;
    this.closing = (async () => {
      for (const conn of this.conns.values()) {
        this.sendAck(conn);
        if (conn.keepaliveTimer) clearTimeout(conn.keepaliveTimer);
      }
      await this.packeter.close();
      const reason = new ClosedError('messaging closed before delivery');
      for (const queue of this.queues.values()) {
        for (const item of queue.inflight.drain()) {
          if (item instanceof FrameRun) {
            queue.tracker.dropped(item.firstSeq, item.firstSeq + item.count - 1, reason);
            this.packeter.release(item.slab);
          } else item.drop(reason);
        }
        queue.openRun = null;
        queue.inflightCount = 0;
        for (const e of queue.items) e.drop(reason);
      }
      for (const stream of this.streams) stream.end();
      this.streams.clear();
      await this.ready.catch(() => undefined);
      if (this.storage !== null) await this.storage.close();
    })();
    return this.closing;
  }

  // --- queues -------------------------------------------------------------

  /** The queue for a destination given to `send`, after checking it could ever be reached. */
  private destination(ident: string): PeerQueue {
    if (!isValidIdent(ident)) {
      if (typeof ident !== 'string') throw new InvalidArgumentError('ident must be a string');
      throw new InvalidArgumentError(
        `identity '${(ident as string).slice(0, 60)}' is longer than ${MAX_IDENT_LENGTH} characters or holds a lone surrogate: no peer can have it`,
      );
    }
    if (ident === this.identity) throw new InvalidArgumentError(`'${ident}' is this peer's own identity`);
    return this.queue(ident);
  }

  private queue(ident: string): PeerQueue {
    let queue = this.lastQueue;
    if (queue !== null && queue.ident === ident) return queue;
    queue = this.queues.get(ident) ?? null;
    if (queue === null) {
      queue = new PeerQueue(ident);
      this.queues.set(ident, queue);
    }
    return (this.lastQueue = queue);
  }

  private makeRoom(queue: PeerQueue, entry: QueueEntry): void {
    const { maxQueueMessages, maxQueueBytes, overflow } = this.options;
    while (queue.count + 1 > maxQueueMessages || queue.bytes + entry.cost > maxQueueBytes) {
      const victim = overflow === 'drop-oldest' ? queue.items.peek() : undefined;
      if (victim === undefined) {
        throw new QueueFullError(
          `queue for ${queue.ident} is full (${queue.count} messages, ${queue.bytes} bytes; limits ${maxQueueMessages}, ${maxQueueBytes})`,
        );
      }
      queue.items.shift();
      this.removeFromQueue(queue, victim);
      this.dropEntry(victim, new QueueFullError(`message ${victim.id} dropped: queue for ${queue.ident} overflowed`));
    }
  }

  private persist(queue: PeerQueue, entry: QueueEntry): void {
    entry.stored = true;
    const stored: StoredMessage = { uuid: entry.uuid, data: entry.data, flags: entry.flags, ttl: entry.ttl };
    this.storage!.push(queue.ident, [stored]).then(
      () => entry.markPersisted(),
      (error: unknown) => {
        entry.stored = false;
        const reason = error instanceof SnakeMQError ? error : new StorageError('storing the message failed', { cause: error });
        // Not sent yet: take it out, so that a caller who retries after the rejection does not deliver it twice.
        let unsent = false;
        queue.items.filter((e) => (e === entry ? !(unsent = true) : true));
        if (unsent) {
          this.removeFromQueue(queue, entry);
          this.dropEntry(entry, reason);
          if (queue.count === 0 && queue.conn === null) this.markIdle(queue);
        } else entry.failPersist(reason);
      },
    );
  }

  private removeFromQueue(queue: PeerQueue, entry: QueueEntry): void {
    queue.count--;
    queue.bytes -= entry.cost;
    if (entry.stored) {
      entry.stored = false;
      this.unstore(queue.ident, [entry.uuid]);
    }
  }

  // --- idle identities ------------------------------------------------------

  /**
   * A disconnected identity with nothing queued: its state is freed after
   * `idleIdentityGrace`, or at once when more than `maxIdleIdentities` are
   * idle (least recently idle first). One timer for all, set for the oldest.
   */
  private markIdle(queue: PeerQueue): void {
    const ident = queue.ident;
    this.idle.delete(ident);
    this.idle.set(ident, Date.now());
    while (this.idle.size > this.options.maxIdleIdentities) {
      const oldest = this.idle.keys().next().value!;
      this.idle.delete(oldest);
      this.freeIdentity(oldest);
    }
    if (this.idleTimer === null && this.idle.size > 0 && !this.isClosed) this.armIdleTimer();
  }

  private armIdleTimer(): void {
    const first = this.idle.values().next();
    if (first.done) return;
    const wait = Math.max(0, first.value + this.options.idleIdentityGrace - Date.now());
    this.idleTimer = setTimeout(this.sweepIdle, wait);
    this.idleTimer.unref();
  }

  private readonly sweepIdle = (): void => {
    this.idleTimer = null;
    const limit = Date.now() - this.options.idleIdentityGrace;
    for (const [ident, since] of this.idle) {
      if (since > limit) break;
      this.idle.delete(ident);
      this.freeIdentity(ident);
    }
    if (!this.isClosed) this.armIdleTimer();
  };

  /** Forgets an identity's queue, de-duplication window and storage row, if it is still idle. */
  private freeIdentity(ident: string): void {
    const queue = this.queues.get(ident);
    if (queue !== undefined) {
      if (queue.conn !== null || queue.count > 0 || queue.items.length > 0 || queue.inflight.length > 0) return;
      this.queues.delete(ident);
      this.dirty.delete(queue);
      if (this.lastQueue === queue) this.lastQueue = null;
    }
    this.dedup.delete(ident);
    log(`${ident}: idle, state freed`);
    if (this.storage !== null && !this.isClosed) {
      this.storage.forget(ident).catch((error: unknown) => log(`storage forget failed: ${String(error)}`));
    }
  }

  /** Bookkeeping of an entry that left its queue delivered; collects what storage must forget. */
  private retire(queue: PeerQueue, entry: QueueEntry, removed: Buffer[]): void {
    queue.count--;
    queue.bytes -= entry.cost;
    if (entry.stored) {
      entry.stored = false;
      removed.push(entry.uuid);
    }
    entry.markDelivered();
  }

  private unstore(ident: string, uuids: Buffer[]): void {
    if (uuids.length === 0) return;
    this.storage!.remove(ident, uuids).catch((error: unknown) => log(`storage remove failed: ${String(error)}`));
  }

  private dropEntry(entry: QueueEntry, reason: SnakeMQError): void {
    entry.drop(reason);
    log(`dropped ${entry.id} for ${entry.ident}: ${reason.message}`);
    this.emit('drop', entry.ident, entry.message, reason);
  }

  private async load(storage: QueuesStorage): Promise<void> {
    let stored;
    try {
      stored = await storage.load();
    } catch (error) {
      throw error instanceof SnakeMQError ? error : new StorageError('loading stored queues failed', { cause: error });
    } finally {
      this.loaded = true;
    }
    const now = Date.now();
    for (const sq of stored) {
      const queue = this.queue(sq.ident);
      const front: QueueEntry[] = [];
      // Sends made while loading may already be in what was loaded.
      const early = new Set<string>();
      for (const e of queue.items) early.add(e.uuid.toString('latin1'));
      for (const sm of sq.messages) {
        if (early.has(sm.uuid.toString('latin1'))) continue;
        const msg = new Message(sm.data, { uuid: sm.uuid, flags: sm.flags, ttl: sm.ttl });
        const entry = QueueEntry.of(sq.ident, msg, sm.ttl, false, queue.tracker);
        entry.stored = true;
        entry.resent = true;
        entry.markPersisted();
        front.push(entry);
      }
      this.fitLoaded(queue, front);
      queue.items.unshiftAll(front);
      queue.count += front.length;
      for (const e of front) queue.bytes += e.cost;
      // Downtime counts as away time when the peer was already away; otherwise the clock starts now.
      if (queue.conn === null) queue.awaySince = sq.awaySince ?? now;
      if (queue.conn !== null) this.stopCountdown(queue, sq.awaySince ?? now);
    }
    for (const queue of this.queues.values()) this.schedulePump(queue);
  }

  /**
   * Stored messages beyond the queue limits (the limits were lowered, or
   * sends were made while loading) are dropped like an overflow: the oldest
   * with `drop-oldest`, the newest with `reject` (what a sender would have
   * been refused); `drop` events tell, storage forgets them.
   */
  private fitLoaded(queue: PeerQueue, front: QueueEntry[]): void {
    const { maxQueueMessages, maxQueueBytes, overflow } = this.options;
    let count = queue.count + front.length;
    let bytes = queue.bytes;
    for (const e of front) bytes += e.cost;
    if (count <= maxQueueMessages && bytes <= maxQueueBytes) return;
    const dropped: QueueEntry[] = [];
    while (front.length > 0 && (count > maxQueueMessages || bytes > maxQueueBytes)) {
      const victim = overflow === 'drop-oldest' ? front.shift()! : front.pop()!;
      count--;
      bytes -= victim.cost;
      dropped.push(victim);
    }
    this.unstore(queue.ident, dropped.map((e) => e.uuid));
    for (const e of dropped) {
      e.stored = false;
      this.dropEntry(e, new QueueFullError(`stored message ${e.id} for ${queue.ident} dropped at load: over the queue limits`));
    }
  }

  /** Subtracts the away time from every TTL and drops what expired (reference §4). */
  private stopCountdown(queue: PeerQueue, awaySince: number): void {
    const away = (Date.now() - awaySince) / 1000;
    const updates: { uuid: Buffer; ttl: number | null }[] = [];
    const expired: QueueEntry[] = [];
    queue.items.filter((e) => {
      if (e.ttl === null) return true;
      // A TTL-0 message never outlives the connection it was queued on, however quick the reconnect.
      const gone = e.ttl === 0 || e.ttl < away;
      e.ttl -= away;
      if (gone) {
        expired.push(e);
        return false;
      }
      if (e.stored) updates.push({ uuid: e.uuid, ttl: e.ttl });
      return true;
    });
    for (const e of expired) {
      this.removeFromQueue(queue, e);
      this.dropEntry(e, new MessageExpiredError(`message ${e.id} for ${queue.ident} expired`));
    }
    if (this.storage !== null && !this.isClosed) {
      const s = this.storage;
      const fail = (error: unknown) => log(`storage update failed: ${String(error)}`);
      if (updates.length > 0) s.updateTtl(queue.ident, updates).catch(fail);
      s.setAwaySince(queue.ident, null).catch(fail);
    }
  }

  private schedulePump(queue: PeerQueue): void {
    if (queue.pumpScheduled || queue.conn === null) return;
    queue.pumpScheduled = true;
    this.dirty.add(queue);
    if (this.pumpTick) return;
    this.pumpTick = true;
    nextTick(() => {
      this.pumpTick = false;
      for (const q of this.dirty) {
        q.pumpScheduled = false;
        this.pump(q);
      }
      this.dirty.clear();
    });
  }

  private pump(queue: PeerQueue): void {
    queue.direct = false;
    const conn = queue.conn;
    if (conn === null || conn.mode === Mode.Pending || conn.closing || !this.loaded || this.isClosed) return;
    const items = queue.items;
    // Piggyback a pending acknowledgement on the data going out anyway: one write instead of two.
    if (conn.toAck > 0 && items.length > 0) this.sendAck(conn);
    const resentFlag = conn.mode === Mode.Ack ? FLAG_RESENT : 0;
    const connId = conn.id;
    // Writability only changes when the packeter hands a batch to the socket: check once per batch's worth.
    const recheck = this.packeter.options.writeBatchSize;
    let budget = queue.budget;
    while (items.length > 0) {
      if (budget <= 0) {
        if (!this.packeter.isWritable(connId)) break;
        budget = recheck;
      }
      budget -= this.write(queue, connId, items.shift()!, resentFlag);
    }
    queue.budget = budget;
    queue.direct = items.length === 0;
  }

  /** Writes `entry` at once if the connection still takes data without buffering more. */
  private writeNow(queue: PeerQueue, entry: QueueEntry): boolean {
    const conn = queue.conn!;
    if (conn.closing) return (queue.direct = false);
    if (queue.budget <= 0) {
      if (!this.packeter.isWritable(conn.id)) return false;
      queue.budget = this.packeter.options.writeBatchSize;
    }
    if (conn.toAck > 0) this.sendAck(conn);
    queue.budget -= this.write(queue, conn.id, entry, conn.mode === Mode.Ack ? FLAG_RESENT : 0);
    return true;
  }

  /** Hands one entry's MESSAGE frame to the packeter and moves it in flight; returns the bytes written. */
  private write(queue: PeerQueue, connId: ConnId, entry: QueueEntry, resentFlag: number): number {
    const data = entry.data;
    const size = data.length + 25;
    const extraFlags = entry.resent ? resentFlag : 0;
    const packeter = this.packeter;
    if (size + 4 > packeter.options.writeBatchSize) {
      // Big data goes to the socket by reference, behind its 25-byte head.
      const head = Buffer.allocUnsafe(25);
      writeMessageHeadOf(head, entry.flags, entry.uuidView, entry.uuidOffset, entry.ttl, extraFlags);
      entry.packetId = packeter.sendPacket(connId, head, data);
    } else {
      const id = (entry.packetId = packeter.allocPacket(connId, size));
      const offset = packeter.allocatedOffset;
      writeMessageFrame(packeter.allocated, packeter.allocatedView, offset, data, entry.flags, entry.uuidView, entry.uuidOffset, entry.ttl, extraFlags);
      // Acknowledged mode, and nothing needs the entry until the ACK: keep its frame only (no object alive per message in flight).
      if (resentFlag !== 0 && entry.detachable && queue.tracker.writtenWaiters === 0 && this.noDeliveryListeners()) {
        this.keepFrame(queue, entry, id, offset - HEADER_SIZE, offset + size);
        return size + 4;
      }
    }
    queue.inflight.push(entry);
    queue.openRun = null;
    queue.inflightCount++;
    return size + 4;
  }

  /** Keeps the frame just written at `[start, end)` of the packeter's batch as the entry's place in flight, and lets the entry go. */
  private keepFrame(queue: PeerQueue, entry: QueueEntry, packetId: number, start: number, end: number): void {
    const slab = this.packeter.allocatedSlab!;
    const seq = entry.seq > 0 ? entry.seq : queue.nextSeq++;
    const cost = entry.data.length + QUEUE_ENTRY_OVERHEAD;
    const run = queue.openRun;
    if (run !== null && run.end === start && run.slab === slab && run.firstSeq + run.count === seq) {
      run.end = end;
      run.count++;
      run.cost += cost;
      run.lastPacketId = packetId;
    } else {
      this.packeter.retain(slab);
      queue.inflight.push((queue.openRun = new FrameRun(slab, start, end, seq, 1, cost, packetId)));
    }
    queue.inflightCount++;
    queue.tracker.wrote(packetId);
    entry.detach(queue.tracker, seq);
  }

  /** Whether nobody listens to `sent` or `acknowledged` (they need each message's object). */
  private noDeliveryListeners(): boolean {
    const events = (this as unknown as { _events: Record<string, unknown> })._events;
    return events.sent === undefined && events.acknowledged === undefined;
  }

  /**
   * Entries for the first `k` frames of a run, copied out of its write batch,
   * with the sequence numbers of the detached entries (which learn their fate
   * from them).
   */
  private runEntries(queue: PeerQueue, run: FrameRun, k: number): QueueEntry[] {
    const slabView = run.slab.view;
    let to = run.start;
    for (let i = 0; i < k; i++) to += HEADER_SIZE + slabView.getUint32(to);
    const buf = Buffer.from(run.slab.buf.subarray(run.start, to));
    const view = viewOf(buf);
    const out: QueueEntry[] = [];
    let off = 0;
    for (let i = 0; i < k; i++) {
      const start = off + HEADER_SIZE;
      const end = start + view.getUint32(off);
      out.push(QueueEntry.ofFrame(queue.ident, buf, view, start, end, run.firstSeq + i, queue.tracker));
      off = end;
    }
    return out;
  }

  /**
   * Acknowledges the first `k` messages of the run at the front of the
   * in-flight list; calls `each` (when given) with each one's message.
   */
  private ackRun(queue: PeerQueue, run: FrameRun, k: number, each: ((message: Message) => void) | null): void {
    if (each !== null) for (const e of this.runEntries(queue, run, k)) each(e.message);
    const lastSeq = run.firstSeq + k - 1;
    if (k === run.count) {
      queue.inflight.shift();
      if (queue.openRun === run) queue.openRun = null;
      if (queue.written > 0) queue.written--;
      queue.bytes -= run.cost;
      this.packeter.release(run.slab);
    } else {
      const view = run.slab.view;
      let off = run.start;
      let cost = 0;
      for (let i = 0; i < k; i++) {
        const size = view.getUint32(off);
        cost += size - 25 + QUEUE_ENTRY_OVERHEAD;
        off += HEADER_SIZE + size;
      }
      run.start = off;
      run.cost -= cost;
      queue.bytes -= cost;
      run.firstSeq += k;
      run.count -= k;
    }
    queue.count -= k;
    queue.inflightCount -= k;
    queue.tracker.acked(lastSeq);
  }

  // --- connections ----------------------------------------------------------

  private onConnect(info: ConnectionInfo): void {
    const conn: PeerConn = {
      id: info.id,
      ident: null,
      mode: Mode.Pending,
      peerAcks: false,
      toAck: 0,
      ackQueued: false,
      ackCheck: () => this.ackSoon(conn),
      ackImmediate: null,
      ackSeen: 0,
      ackDefers: 0,
      alive: true,
      keepaliveTimer: null,
      pinged: false,
      closing: false,
      recent: null,
      endpoint: info.endpoint,
      identifyTimer: null,
      failure: null,
      claim: null,
      claimIdent: null,
      stash: null,
      probedBy: null,
      probeTimer: null,
      streamPaused: false,
      refusal: null,
    };
    this.conns.set(info.id, conn);
    // Before anything is read: until it identifies, a peer may only send small packets.
    this.packeter.restrict(info.id, this.options.maxHandshakePacketSize);
    for (const frame of this.handshake) this.packeter.sendPacket(info.id, frame);
    conn.identifyTimer = setTimeout(this.identifyExpired, this.options.identifyTimeout, conn);
    this.armKeepalive(conn);
  }

  private readonly identifyExpired = (conn: PeerConn): void => {
    conn.identifyTimer = null;
    if (conn.ident !== null || conn.claim !== null || conn.closing) return;
    this.refuse(conn, new IdentificationTimeoutError(`connection ${conn.id} did not identify itself within ${this.options.identifyTimeout} ms`));
  };

  private onDisconnect(connId: ConnId): void {
    const conn = this.conns.get(connId);
    if (conn === undefined) return;
    this.conns.delete(connId);
    if (this.lastConn === conn) this.lastConn = null;
    conn.closing = true;
    if (conn.keepaliveTimer) clearTimeout(conn.keepaliveTimer);
    if (conn.identifyTimer) clearTimeout(conn.identifyTimer);
    if (conn.ackImmediate !== null) clearImmediate(conn.ackImmediate);
    if (conn.streamPaused) this.streamPaused.delete(conn);
    const holder = conn.claim;
    if (holder !== null) {
      // A claimant left while its claim was being checked: the holder stays.
      conn.claim = null;
      conn.stash = null;
      holder.probedBy = null;
      if (holder.probeTimer !== null) clearTimeout(holder.probeTimer);
      holder.probeTimer = null;
    }
    const ident = conn.ident;
    if (ident === null || this.byIdent.get(ident) !== conn) {
      if (ident === null && !this.isClosed) this.safeEmit('handshakeFailed', connId, conn.endpoint, this.whyUnbound(conn));
      return;
    }
    this.unbind(conn);
    if (conn.refusal !== null && !this.isClosed) this.safeEmit('handshakeFailed', connId, conn.endpoint, conn.refusal);
    const claimant = conn.probedBy;
    if (claimant !== null) this.handOver(conn, claimant);
  }

  /**
   * Lets go of a connection's identity: its in-flight messages go back to the
   * front of the queue for the next connection, `disconnect` is emitted.
   */
  private unbind(conn: PeerConn): void {
    const ident = conn.ident!;
    const connId = conn.id;
    this.byIdent.delete(ident);
    const queue = this.queue(ident);
    queue.conn = null;
    queue.direct = false;
    queue.budget = 0;
    queue.awaySince = Date.now();
    // Everything not known delivered goes back to the front, in order, for the next connection.
    const back: QueueEntry[] = [];
    for (const item of queue.inflight.drain()) {
      if (item instanceof FrameRun) {
        // Detached messages: made again from their frames, which the write batch kept.
        for (const e of this.runEntries(queue, item, item.count)) back.push(e);
        this.packeter.release(item.slab);
      } else {
        item.resent = true;
        back.push(item);
      }
    }
    queue.openRun = null;
    queue.inflightCount = 0;
    queue.written = 0;
    queue.trackerIfAny?.disconnected();
    queue.items.unshiftAll(back);
    // Also while closing: the storage closes after the connections, so a restart knows when the peer went away.
    if (this.storage !== null) {
      this.storage.setAwaySince(ident, queue.awaySince).catch((error: unknown) => log(`storage update failed: ${String(error)}`));
    }
    log(`${ident} disconnected (conn ${connId}), ${queue.count} queued`);
    if (queue.count === 0) this.markIdle(queue);
    this.safeEmit('disconnect', connId, ident);
  }

  /** Why a connection that ends without having been bound to an identity failed. */
  private whyUnbound(conn: PeerConn): SnakeMQError {
    const f = conn.failure;
    if (f instanceof PacketTooLargeError || f instanceof ProtocolError) {
      // A TLS record starts with 0x15 (alert) or 0x16 (handshake), then version 3.x.
      const head = f instanceof PacketTooLargeError ? f.size >>> 16 : -1;
      if (head === 0x1503 || head === 0x1603) {
        return new TlsError(`the peer on ${conn.endpoint} speaks TLS: use a tls:// endpoint`, { cause: f });
      }
      return new NotSnakeMQPeerError(`the peer on ${conn.endpoint} is not a snakeMQ peer: ${f.message}`, { cause: f });
    }
    if (f !== null) return f;
    return new NotSnakeMQPeerError(`the peer on ${conn.endpoint} closed the connection before identifying itself`);
  }

  private fail(conn: PeerConn, error: SnakeMQError): void {
    if (conn.closing) return;
    conn.closing = true;
    conn.failure ??= error;
    if (conn.ident !== null && this.byIdent.get(conn.ident) === conn) this.queue(conn.ident).direct = false;
    log(`conn ${conn.id}: ${error.message}; closing`);
    this.safeEmit('protocolError', conn.id, error);
    void this.packeter.close(conn.id, error);
  }

  /** Closes a connection this peer will not bind, telling the peer why first (REFUSED frame). */
  private refuse(conn: PeerConn, error: SnakeMQError): void {
    if (conn.closing) return;
    try {
      this.packeter.sendPacket(conn.id, encodeRefused(error));
    } catch {
      // Already going: nothing to tell.
    }
    this.fail(conn, error);
  }

  /** A framing failure found by the Packeter (oversized packet, buffer budget): it closes the connection. */
  private onFramingError(connId: ConnId, error: SnakeMQError): void {
    const conn = this.conns.get(connId);
    if (conn !== undefined && !conn.closing) {
      conn.closing = true;
      conn.failure ??= error;
      if (conn.ident !== null && this.byIdent.get(conn.ident) === conn) this.queue(conn.ident).direct = false;
    }
    this.safeEmit('protocolError', connId, error);
  }

  private onPacket(connId: ConnId, buf: Buffer, start: number, end: number): void {
    let conn = this.lastConn;
    if (conn === null || conn.id !== connId) {
      conn = this.conns.get(connId) ?? null;
      if (conn === null) return;
      this.lastConn = conn;
    }
    if (conn.closing) return;
    conn.alive = true;
    if (conn.stash !== null) {
      // Its identity is being checked: nothing of it is looked at before that is decided (see claim).
      conn.stash.push(Buffer.from(buf.subarray(start, end)));
      return;
    }
    if (conn.probedBy !== null) this.probeAnswered(conn);
    if (end - start >= 25 && buf[start] === FrameType.MESSAGE && conn.ident !== null) {
      if (conn.mode === Mode.Pending) this.settleMode(conn, Mode.Legacy);
      const view = this.viewFor(buf);
      const ttl = view.getUint32(start + 17);
      return this.onMessage(conn, conn.ident, buf, view, start, end, ttl === WIRE_TTL_INFINITE ? null : ttl, view.getUint32(start + 21));
    }
    const payload = buf.subarray(start, end);
    let frame;
    try {
      frame = decodeFrame(payload);
    } catch (error) {
      this.fail(conn, error as SnakeMQError);
      return;
    }
    switch (frame.type) {
      case FrameType.MESSAGE:
        // Well-formed messages from identified peers took the fast path above.
        return this.fail(conn, messageBeforeIdentification());
      case FrameType.ACK:
        return this.onAck(conn, frame.count);
      case FrameType.PROTOCOL_VERSION:
        if (frame.version !== PROTOCOL_VERSION) {
          this.packeter.sendPacket(connId, encodeIncompatibleProtocol());
          return this.fail(conn, new IncompatibleProtocolError(`peer speaks protocol version ${frame.version}, not ${PROTOCOL_VERSION}`));
        }
        return;
      case FrameType.INCOMPATIBLE_PROTOCOL:
        return this.fail(conn, new IncompatibleProtocolError('peer reported our protocol version as incompatible'));
      case FrameType.IDENTIFICATION:
        return this.onIdentification(conn, frame.ident);
      case FrameType.PING:
        this.settleMode(conn, Mode.Legacy);
        this.packeter.sendPacket(connId, encodePong());
        return;
      case FrameType.PONG:
        this.settleMode(conn, Mode.Legacy);
        return;
      case FrameType.EXTENSIONS:
        if (conn.ident !== null && conn.mode === Mode.Pending) {
          conn.peerAcks = (frame.features & FEATURE_ACK) !== 0 && this.options.acknowledgements;
          this.settleMode(conn, conn.peerAcks ? Mode.Ack : Mode.Legacy);
        }
        return;
      default:
        if (frame.code === FRAME_REFUSED) {
          // The peer is about to close: remember why, for handshakeFailed.
          conn.failure = conn.refusal = decodeRefused(payload, conn.ident ?? conn.endpoint);
          return;
        }
        if (conn.ident !== null) this.settleMode(conn, Mode.Legacy);
        log(`conn ${connId}: ignoring unknown frame type ${frame.code}`);
    }
  }

  /**
   * The common case of {@link onPacket} in one loop: consecutive whole MESSAGE
   * packets of a chunk from an identified peer. Stops (for the general path) at
   * anything else: another frame type, a short or re-sent message, a packet
   * not wholly in the chunk or over the size limit.
   */
  private onRun(connId: ConnId, chunk: Buffer, off: number, decoder: PacketDecoder): number {
    const conn = this.lastConn;
    if (conn === null || conn.id !== connId) return off;
    const ident = conn.ident;
    if (ident === null || conn.closing || conn.mode === Mode.Pending) return off;
    const view = this.viewFor(chunk);
    const len = chunk.length;
    const max = decoder.maxPacketSize;
    const acks = conn.peerAcks;
    const recent = acks && this.options.dedupWindow > 0 ? (conn.recent ?? this.recentOf(conn, ident)) : null;
    const from = off;
    for (;;) {
      const end = wholePacketEnd(view, len, off, max);
      const start = off + HEADER_SIZE;
      if (end < 0 || end - start < 25 || chunk[start] !== FrameType.MESSAGE) break;
      const flags = view.getUint32(start + 21);
      if (acks && (flags & FLAG_RESENT) !== 0) break;
      off = end;
      if (recent !== null) recent.record(view, start + 1);
      if (acks && conn.toAck++ === 0 && !conn.ackQueued && conn.ackImmediate === null) {
        conn.ackQueued = true;
        RESOLVED.then(conn.ackCheck);
      }
      const ttl = view.getUint32(start + 17);
      this.deliver(connId, ident, Message.fromFrame(chunk, view, start, end, ttl === WIRE_TTL_INFINITE ? null : ttl, flags));
      if (conn.closing || decoder.stopped) break;
    }
    if (off !== from) {
      conn.alive = true;
      if (conn.probedBy !== null) this.probeAnswered(conn);
    }
    return off;
  }

  /**
   * A DataView over a received buffer. Packets of one socket read share its
   * buffer: one view serves them all (not kept for a big buffer, which holds
   * one message and should not outlive it).
   */
  private viewFor(buf: Buffer): DataView {
    if (buf === this.inBuf) return this.inView;
    const view = viewOf(buf);
    if (buf.length <= VIEW_CACHE_LIMIT) {
      this.inView = view;
      this.inBuf = buf;
    }
    return view;
  }

  /** The identity's recent uuids, kept across its connections. */
  private recentOf(conn: PeerConn, ident: string): RecentUuids {
    let recent = this.dedup.get(ident);
    if (recent === undefined) this.dedup.set(ident, (recent = new RecentUuids(this.options.dedupWindow)));
    conn.recent = recent;
    return recent;
  }

  private onIdentification(conn: PeerConn, rawIdent: string): void {
    if (conn.ident !== null || conn.claim !== null) return;
    const ident = truncateIdent(rawIdent);
    const authorize = this.options.authorize;
    if (authorize !== null) {
      const info = this.packeter.connection(conn.id);
      let allowed = false;
      let cause: unknown;
      try {
        allowed = info !== undefined && authorize(ident, info) === true;
      } catch (error) {
        cause = error;
      }
      if (!allowed) {
        return this.refuse(conn, new UnauthorizedError(`identity '${ident}' refused on ${conn.endpoint}`, cause === undefined ? undefined : { cause }));
      }
    }
    const holder = this.byIdent.get(ident);
    if (holder !== undefined) return this.claim(conn, holder, ident);
    this.bind(conn, ident);
  }

  private bind(conn: PeerConn, ident: string): void {
    if (conn.identifyTimer !== null) clearTimeout(conn.identifyTimer);
    conn.identifyTimer = null;
    this.packeter.unrestrict(conn.id);
    conn.ident = ident;
    this.byIdent.set(ident, conn);
    this.idle.delete(ident);
    if (!this.options.acknowledgements) conn.mode = Mode.Legacy;
    const queue = this.queue(ident);
    queue.conn = conn;
    if (this.loaded) this.stopCountdown(queue, queue.awaySince);
    log(`${ident} connected (conn ${conn.id}), ${queue.count} queued`);
    this.safeEmit('connect', conn.id, ident);
    this.schedulePump(queue);
  }

  /**
   * A second connection claims an identity that is bound: after a NAT rebind
   * the old connection may be half-open and never answer again. The holder is
   * sent a PING; anything it sends within `keepaliveWait` keeps it and refuses
   * the claimant (DuplicateIdentityError); silence hands the identity over.
   * Meanwhile the claimant is paused and what it already sent is kept aside
   * (at most the rest of one read), undecoded and unacknowledged.
   */
  private claim(conn: PeerConn, holder: PeerConn, ident: string): void {
    // A holder we paused cannot show it is alive; a second claimant waits for no one.
    if (holder.probedBy !== null || holder.streamPaused) {
      return this.refuse(conn, new DuplicateIdentityError(`identity '${ident}' is already connected`));
    }
    if (conn.identifyTimer !== null) clearTimeout(conn.identifyTimer);
    conn.identifyTimer = null;
    conn.claim = holder;
    conn.claimIdent = ident;
    conn.stash = [];
    this.packeter.unrestrict(conn.id);
    this.packeter.pause(conn.id);
    holder.probedBy = conn;
    log(`conn ${conn.id} claims '${ident}', held by conn ${holder.id}: probing it`);
    // A holder already being closed is not probed: its disconnect (or the timer) hands over.
    if (!holder.closing) {
      this.packeter.sendPacket(holder.id, encodePing());
      this.packeter.flushConnection(holder.id);
    }
    holder.probeTimer = setTimeout(this.probeExpired, this.options.keepaliveWait, holder);
  }

  /** The holder answered the probe: it keeps its identity; the claimant is refused. */
  private probeAnswered(holder: PeerConn): void {
    const claimant = holder.probedBy!;
    holder.probedBy = null;
    if (holder.probeTimer !== null) clearTimeout(holder.probeTimer);
    holder.probeTimer = null;
    claimant.claim = null;
    claimant.stash = null;
    this.refuse(claimant, new DuplicateIdentityError(`identity '${holder.ident}' is already connected (and answered a PING)`));
  }

  private readonly probeExpired = (holder: PeerConn): void => {
    holder.probeTimer = null;
    const claimant = holder.probedBy;
    if (claimant === null) return;
    log(`conn ${holder.id} (${holder.ident}) did not answer within ${this.options.keepaliveWait} ms: conn ${claimant.id} takes over`);
    this.unbind(holder);
    this.fail(holder, new KeepaliveTimeoutError(`no answer within ${this.options.keepaliveWait} ms of a PING; identity '${holder.ident}' handed to a new connection`));
    this.handOver(holder, claimant);
  };

  /** Binds the identity `holder` had to its claimant, then handles what the claimant sent meanwhile. */
  private handOver(holder: PeerConn, claimant: PeerConn): void {
    holder.probedBy = null;
    if (holder.probeTimer !== null) clearTimeout(holder.probeTimer);
    holder.probeTimer = null;
    const ident = claimant.claimIdent!;
    const stash = claimant.stash ?? [];
    claimant.claim = null;
    claimant.claimIdent = null;
    claimant.stash = null;
    if (claimant.closing || !this.conns.has(claimant.id)) return;
    this.bind(claimant, ident);
    for (const packet of stash) {
      if (claimant.closing) break;
      this.onPacket(claimant.id, packet, 0, packet.length);
    }
    if (!claimant.closing && !claimant.streamPaused) this.packeter.resume(claimant.id);
  }

  /**
   * The mode is decided by the first frame after IDENTIFICATION: our peers
   * send EXTENSIONS right after it, so anything else (at the latest the PONG
   * answering our handshake PING) means a plain protocol-1 peer.
   */
  private settleMode(conn: PeerConn, mode: Mode): void {
    if (conn.mode !== Mode.Pending || conn.ident === null) return;
    conn.mode = mode;
    log(`conn ${conn.id} (${conn.ident}): ${mode === Mode.Ack ? 'acknowledged delivery' : 'plain protocol 1'}`);
    this.schedulePump(this.queue(conn.ident));
  }

  private onMessage(conn: PeerConn, ident: string, buf: Buffer, view: DataView, start: number, end: number, ttl: number | null, flags: number): void {
    if (conn.peerAcks) {
      let fresh = true;
      const resent = (flags & FLAG_RESENT) !== 0;
      if (resent) flags = (flags & ~FLAG_RESENT) >>> 0;
      if (this.options.dedupWindow > 0) {
        const recent = conn.recent ?? this.recentOf(conn, ident);
        if (resent) fresh = recent.checkResent(view, start + 1);
        else recent.record(view, start + 1);
      }
      if (conn.toAck++ === 0 && !conn.ackQueued && conn.ackImmediate === null) {
        conn.ackQueued = true;
        RESOLVED.then(conn.ackCheck);
      }
      if (!fresh) {
        log(`conn ${conn.id}: duplicate ${buf.toString('hex', start + 1, start + 17)} from ${ident} not delivered again`);
        return;
      }
    }
    this.deliver(conn.id, ident, Message.fromFrame(buf, view, start, end, ttl, flags));
  }

  /**
   * Hands a received message to its hook, or to `message` listeners and
   * iterators. A handler that throws is reported (`handlerError`) and the
   * others still get the message: the read goes on, the message counts as
   * received (it is acknowledged).
   */
  private deliver(connId: ConnId, ident: string, message: Message): void {
    const hooks = this.hooks;
    if (hooks.length > 0) {
      const data = message.data;
      for (let i = 0; i < hooks.length; i++) {
        const hook = hooks[i]!;
        if (hook.prefix !== null ? startsWith(data, hook.prefix) : hook.regexp!.test(data.toString('latin1'))) {
          try {
            hook.handler(connId, ident, message);
          } catch (error) {
            this.handlerFailed('a receive hook', error);
          }
          return;
        }
      }
    }
    // One plain listener (the common case) is called directly: eventemitter3's emit costs more than the call.
    const listener = (this as unknown as { _events: { message?: Listener } })._events.message;
    if (listener !== undefined) {
      // Several listeners are kept as an array (no `fn`): each gets called on its own.
      if (listener.fn !== undefined && !listener.once) {
        try {
          listener.fn.call(listener.context, connId, ident, message);
        } catch (error) {
          this.handlerFailed('a message listener', error);
        }
      } else this.emitEach('message', connId, ident, message);
    }
    if (this.streams.size > 0) {
      let full = false;
      for (const stream of this.streams) if (stream.push({ connId, ident, message })) full = true;
      if (full) this.pauseForStreams(connId);
    }
  }

  /** Emits an event to each listener on its own: one that throws is reported and does not keep the message from the others. */
  private emitEach<E extends keyof MessagingEvents>(event: E, ...args: Parameters<MessagingEvents[E]>): void {
    const raw = (this as unknown as { _events: Record<string, Listener | Listener[] | undefined> })._events[event];
    if (raw === undefined) return;
    const listeners = Array.isArray(raw) ? raw.slice() : [raw];
    for (const l of listeners) {
      if (l.once) this.removeListener(event, l.fn as never, l.context, true);
      try {
        l.fn!.apply(l.context, args);
      } catch (error) {
        this.handlerFailed(`a '${event}' listener`, error);
      }
    }
  }

  /** Emits an event to the application, isolating it from a listener that throws. */
  private safeEmit<E extends keyof MessagingEvents>(event: E, ...args: Parameters<MessagingEvents[E]>): void {
    if (this.listenerCount(event) === 0) return;
    this.emitEach(event, ...args);
  }

  private handlerFailed(what: string, thrown: unknown): void {
    const error = new HandlerError(`${what} threw: ${thrown instanceof Error ? thrown.message : String(thrown)}`, { cause: thrown });
    log(error.message);
    if (this.listenerCount('handlerError') > 0) {
      try {
        this.emit('handlerError', error);
        return;
      } catch {
        // A handlerError listener that throws too: fall through to the warning.
      }
    }
    if (!this.handlerWarned) {
      this.handlerWarned = true;
      process.emitWarning(`${error.message} (listen to 'handlerError' to handle these; further ones are not warned about)`, { code: ErrorCode.HANDLER });
    }
  }

  /** Pauses reading from a connection whose message took an iterator to its high-water mark. */
  private pauseForStreams(connId: ConnId): void {
    const conn = this.conns.get(connId);
    if (conn === undefined || conn.streamPaused) return;
    conn.streamPaused = true;
    this.streamPaused.add(conn);
    this.packeter.pause(connId);
  }

  /** An iterator's level fell below the mark (or it ended): resume the paused connections once none is full. */
  private updateReadPause(): void {
    if (this.streamPaused.size === 0) return;
    const mark = this.options.streamHighWaterMark;
    for (const s of this.streams) if (s.buffered >= mark) return;
    for (const conn of this.streamPaused) {
      conn.streamPaused = false;
      if (!conn.closing && conn.stash === null) this.packeter.resume(conn.id);
    }
    this.streamPaused.clear();
  }

  /**
   * Right after the code that handled the messages of a read (and its
   * microtasks: a reply made there has taken the ACK along already): a few
   * messages are acknowledged now, in the same write batch; a busy stream
   * once per event-loop turn.
   */
  private ackSoon(conn: PeerConn): void {
    conn.ackQueued = false;
    if (conn.toAck === 0 || conn.closing) return;
    if (conn.toAck < ACK_NOW_BELOW) this.sendAck(conn);
    else if (conn.ackImmediate === null) {
      // The turn's check phase comes before the next read could tell whether the stream goes on: wait for one.
      conn.ackSeen = -1;
      conn.ackImmediate = setImmediate(this.ackLater, conn);
    }
  }

  private readonly ackLater = (conn: PeerConn): void => {
    conn.ackImmediate = null;
    // Messages still arriving: one ACK for several reads' worth saves writes on both sides.
    // It goes out at the first turn that brought nothing new, so a sender waiting for it waits one turn at most.
    const n = conn.toAck;
    if (n > conn.ackSeen && n < ACK_BATCH && conn.ackDefers < ACK_MAX_DEFERS && !conn.closing) {
      conn.ackSeen = n;
      conn.ackDefers++;
      conn.ackImmediate = setImmediate(this.ackLater, conn);
      return;
    }
    this.sendAck(conn);
  };

  private sendAck(conn: PeerConn): void {
    if (conn.ackImmediate !== null) {
      clearImmediate(conn.ackImmediate);
      conn.ackImmediate = null;
    }
    conn.ackDefers = 0;
    if (conn.toAck === 0 || conn.closing || !this.conns.has(conn.id)) return;
    const count = conn.toAck;
    conn.toAck = 0;
    try {
      this.packeter.sendPacket(conn.id, encodeAck(count));
    } catch (error) {
      // The packeter already let the connection go (closed below Messaging): nothing to acknowledge to.
      log(`conn ${conn.id}: ACK not sent: ${(error as Error).message}`);
    }
  }

  private onAck(conn: PeerConn, count: number): void {
    if (conn.ident === null || conn.mode !== Mode.Ack) return;
    const queue = this.queue(conn.ident);
    if (count > queue.inflightCount) {
      return this.fail(conn, new ProtocolError(`peer acknowledged ${count} messages, only ${queue.inflightCount} in flight`));
    }
    const emitAck = this.listenerCount('acknowledged') > 0;
    const emitSent = this.listenerCount('sent') > 0;
    const inflight = queue.inflight;
    const ident = conn.ident;
    const each = emitAck ? (message: Message) => this.emit('acknowledged', ident, message) : null;
    const removed: Buffer[] = [];
    while (count > 0) {
      const item = inflight.peek()!;
      if (item instanceof FrameRun) {
        const k = Math.min(count, item.count);
        this.ackRun(queue, item, k, each);
        count -= k;
        continue;
      }
      inflight.shift();
      queue.inflightCount--;
      count--;
      if (queue.written > 0) queue.written--;
      else if (emitSent) this.emit('sent', ident, item.message);
      this.retire(queue, item, removed);
      if (emitAck) this.emit('acknowledged', ident, item.message);
    }
    this.unstore(ident, removed);
  }

  private onSent(connId: ConnId, lastId: number): void {
    const conn = this.conns.get(connId);
    if (conn === undefined || conn.ident === null || this.byIdent.get(conn.ident) !== conn) return;
    const queue = this.queue(conn.ident);
    const inflight = queue.inflight;
    const emitSent = this.listenerCount('sent') > 0;
    if (conn.mode === Mode.Legacy) {
      // A plain protocol-1 peer cannot acknowledge: a message leaves the queue once its bytes were written.
      const removed: Buffer[] = [];
      let entry;
      while ((entry = inflight.peek()) !== undefined && !(entry instanceof FrameRun) && entry.packetId <= lastId) {
        inflight.shift();
        queue.inflightCount--;
        this.retire(queue, entry, removed);
        if (emitSent) this.emit('sent', conn.ident, entry.message);
      }
      this.unstore(conn.ident, removed);
      return;
    }
    const tracker = queue.trackerIfAny;
    if (tracker !== null) tracker.sent(lastId);
    // Writes are tracked one by one only for someone who asked (acknowledgements settle the rest).
    if (!emitSent && (tracker === null || tracker.writtenWaiters === 0)) return;
    let item;
    while ((item = inflight.at(queue.written)) !== undefined) {
      if (item instanceof FrameRun) {
        // Detached frames: their entries learn it from the tracker.
        if (item.lastPacketId > lastId) break;
        queue.written++;
        continue;
      }
      if (item.packetId > lastId) break;
      queue.written++;
      item.markWritten();
      if (emitSent) this.emit('sent', conn.ident, item.message);
    }
  }

  private onDrain(connId: ConnId): void {
    const conn = this.conns.get(connId);
    if (conn?.ident != null) this.schedulePump(this.queue(conn.ident));
  }

  // --- keepalive and receive backpressure ----------------------------------

  private armKeepalive(conn: PeerConn): void {
    const interval = this.options.keepaliveInterval;
    if (interval === null) return;
    conn.alive = false;
    conn.pinged = false;
    conn.keepaliveTimer = setTimeout(() => this.checkKeepalive(conn), interval);
  }

  private checkKeepalive(conn: PeerConn): void {
    conn.keepaliveTimer = null;
    if (conn.closing || !this.conns.has(conn.id)) return;
    if (conn.alive) return this.armKeepalive(conn);
    if (conn.pinged) {
      return this.fail(conn, new KeepaliveTimeoutError(`no answer within ${this.options.keepaliveWait} ms of a PING`));
    }
    conn.pinged = true;
    this.packeter.sendPacket(conn.id, encodePing());
    conn.keepaliveTimer = setTimeout(() => this.checkKeepalive(conn), this.options.keepaliveWait);
  }


}

function startsWith(data: Buffer, prefix: Buffer): boolean {
  const n = prefix.length;
  if (data.length < n) return false;
  for (let i = 0; i < n; i++) if (data[i] !== prefix[i]) return false;
  return true;
}
