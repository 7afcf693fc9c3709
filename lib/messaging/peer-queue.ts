/**
 * Sending, first step: `send()` puts a message into its identity's
 * {@link PeerQueue} (limits and overflow, TTL counted down while the peer is
 * away), then hands it to persist and the write path. Also the lifetime of
 * identities that went idle (nothing queued, disconnected).
 * @module
 */
import { Buffer } from 'node:buffer';
import { ClosedError, InvalidArgumentError, MessageExpiredError, QueueFullError, SnakeMQError } from '../errors.js';
import { Deque } from '../util/deque.js';
import { createLogger } from '../util/log.js';
import { checkDrain, type DrainWaiter } from './backpressure.js';
import type { MessagingCore } from './core.js';
import { sendDatagram } from './datagram.js';
import { DeliveryTracker } from './delivery-tracker.js';
import { QueueEntry } from './delivery.js';
import { isValidIdent, MAX_IDENT_LENGTH } from './frames.js';
import type { PeerConn } from './handshake.js';
import { FrameRun } from './in-flight.js';
import { interceptSend } from './intercept.js';
import { FLAG_PERSISTENT, Message, toBuffer } from './message.js';
import { persist, unstore } from './persist.js';
import { currentTurn, mark } from './queue-age.js';
import type { Delivery } from './types.js';
import { schedulePump, writeNow } from './write-path.js';

const log = createLogger('snakemq:messaging');
type InFlight = QueueEntry | FrameRun;

/** */
export class PeerQueue {
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
  /** The transport was told this identity is wanted (relay) since it last went away. */
  wanted = false;
  /** Whether `send` may write straight to the connection: the last pump found it ready and emptied the queue. */
  direct = false;
  /** Bytes that may still go out before writability is checked again. */
  budget = 0;
  /** `writable()` said false: a `drain` is owed once the queue is down to the low-water mark (see backpressure). */
  blocked = false;
  /** `drained()` calls waiting for that. */
  drainWaiters: DrainWaiter[] | null = null;
  /** Messages ever counted into this queue, and the marks that date them (see queue-age). */
  admitted = 0;
  markTurn = -1;
  marks: number[] = [];

  constructor(ident: string) {
    this.ident = ident;
  }
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
export function enqueue(s: MessagingCore, ident: string, message: Message | Uint8Array | string): Delivery {
  if (s.isClosed) throw new ClosedError('messaging is closed');
  if (s.sendIntercept !== null && s.sendIntercept.passing !== message) return interceptSend(s, ident, message, checkDestination, enqueue);
  const udp = s.udpRoutes;
  if (udp !== null) {
    const connId = udp.get(ident);
    if (connId !== undefined) return sendDatagram(s, ident, connId, message);
  }
  let queue = s.lastQueue;
  if (queue === null || queue.ident !== ident) queue = destination(s, ident);
  if (message instanceof Message) return enqueueMessage(s, queue, ident, message);
  // Bare data: one object per send, no Message unless someone asks for it.
  return admit(s, queue, QueueEntry.ofData(ident, toBuffer(message), queue.tracker), false);
}

/** {@link enqueue} of a caller's Message: persistence and TTL 0 apply (kept apart so the bare-data path stays small enough to inline). */
function enqueueMessage(s: MessagingCore, queue: PeerQueue, ident: string, message: Message): Delivery {
  const stored = (message.flags & FLAG_PERSISTENT) !== 0 && s.storage !== null;
  const entry = QueueEntry.of(ident, message, message.ttl, !stored, queue.tracker);
  if (message.ttl === 0 && queue.conn === null) {
    if (queue.count === 0) markIdle(s, queue);
    dropEntry(s, entry, new MessageExpiredError(`message ${message.id} has TTL 0 and ${ident} is not connected`));
    return entry;
  }
  return admit(s, queue, entry, stored);
}

/** Counts `entry` into its queue (making room if full), persists it if `stored`, and writes it now or queues it. */
function admit(s: MessagingCore, queue: PeerQueue, entry: QueueEntry, stored: boolean): Delivery {
  const cost = entry.cost;
  if (queue.count >= s.options.maxQueueMessages || queue.bytes + cost > s.options.maxQueueBytes) makeRoom(s, queue, entry);
  if (queue.markTurn !== currentTurn) mark(queue);
  queue.admitted++;
  queue.count++;
  queue.bytes += cost;
  if (stored) persist(s, queue, entry);
  // Nothing waiting ahead of it on a ready connection: straight into the write batch.
  if (queue.direct && queue.items.length === 0 && writeNow(s, queue, entry)) return entry;
  queue.items.push(entry);
  schedulePump(s, queue);
  return entry;
}

/** The queue for a destination given to `send`, after checking it could ever be reached. */
export function destination(s: MessagingCore, ident: string): PeerQueue {
  checkDestination(s, ident);
  return queueOf(s, ident);
}

/** Throws what `send()` throws for a destination that could never be reached. */
export function checkDestination(s: MessagingCore, ident: string): void {
  if (!isValidIdent(ident)) {
    if (typeof ident !== 'string') throw new InvalidArgumentError('ident must be a string');
    throw new InvalidArgumentError(
      `identity '${(ident as string).slice(0, 60)}' is longer than ${MAX_IDENT_LENGTH} characters or holds a lone surrogate: no peer can have it`,
    );
  }
  if (ident === s.identity) throw new InvalidArgumentError(`'${ident}' is this peer's own identity`);
}

export function queueOf(s: MessagingCore, ident: string): PeerQueue {
  let queue = s.lastQueue;
  if (queue !== null && queue.ident === ident) return queue;
  queue = s.queues.get(ident) ?? null;
  if (queue === null) {
    queue = new PeerQueue(ident);
    s.queues.set(ident, queue);
  }
  return (s.lastQueue = queue);
}

export function makeRoom(s: MessagingCore, queue: PeerQueue, entry: QueueEntry): void {
  const { maxQueueMessages, maxQueueBytes, overflow } = s.options;
  while (queue.count + 1 > maxQueueMessages || queue.bytes + entry.cost > maxQueueBytes) {
    const victim = overflow === 'drop-oldest' ? queue.items.peek() : undefined;
    if (victim === undefined) {
      throw new QueueFullError(
        `queue for ${queue.ident} is full (${queue.count} messages, ${queue.bytes} bytes; limits ${maxQueueMessages}, ${maxQueueBytes})`,
      );
    }
    queue.items.shift();
    removeFromQueue(s, queue, victim);
    dropEntry(s, victim, new QueueFullError(`message ${victim.id} dropped: queue for ${queue.ident} overflowed`));
  }
}

export function removeFromQueue(s: MessagingCore, queue: PeerQueue, entry: QueueEntry): void {
  queue.count--;
  queue.bytes -= entry.cost;
  if (entry.stored) {
    entry.stored = false;
    unstore(s, queue.ident, [entry.uuid]);
  }
  if (queue.blocked) checkDrain(s, queue);
}

export function dropEntry(s: MessagingCore, entry: QueueEntry, reason: SnakeMQError): void {
  entry.drop(reason);
  log(`dropped ${entry.id} for ${entry.ident}: ${reason.message}`);
  s.emitter.emit('drop', entry.ident, entry.message, reason);
}

/** Bookkeeping of an entry that left its queue delivered; collects what storage must forget. */
export function retire(s: MessagingCore, queue: PeerQueue, entry: QueueEntry, removed: Buffer[]): void {
  queue.count--;
  queue.bytes -= entry.cost;
  if (entry.stored) {
    entry.stored = false;
    removed.push(entry.uuid);
  }
  entry.markDelivered();
}

/** Subtracts the away time from every TTL and drops what expired (reference §4). */
export function stopCountdown(s: MessagingCore, queue: PeerQueue, awaySince: number): void {
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
    removeFromQueue(s, queue, e);
    dropEntry(s, e, new MessageExpiredError(`message ${e.id} for ${queue.ident} expired`));
  }
  if (s.storage !== null && !s.isClosed) {
    const storage = s.storage;
    const fail = (error: unknown) => log(`storage update failed: ${String(error)}`);
    if (updates.length > 0) storage.updateTtl(queue.ident, updates).catch(fail);
    storage.setAwaySince(queue.ident, null).catch(fail);
  }
}

/**
 * A disconnected identity with nothing queued: its state is freed after
 * `idleIdentityGrace`, or at once when more than `maxIdleIdentities` are
 * idle (least recently idle first). One timer for all, set for the oldest.
 */
export function markIdle(s: MessagingCore, queue: PeerQueue): void {
  if (queue.blocked) checkDrain(s, queue);
  const ident = queue.ident;
  s.idle.delete(ident);
  s.idle.set(ident, Date.now());
  while (s.idle.size > s.options.maxIdleIdentities) {
    const oldest = s.idle.keys().next().value!;
    s.idle.delete(oldest);
    freeIdentity(s, oldest);
  }
  if (s.idleTimer === null && s.idle.size > 0 && !s.isClosed) armIdleTimer(s);
}

export function armIdleTimer(s: MessagingCore): void {
  const first = s.idle.values().next();
  if (first.done) return;
  const wait = Math.max(0, first.value + s.options.idleIdentityGrace - Date.now());
  s.idleTimer = setTimeout(sweepIdle, wait, s);
  s.idleTimer.unref();
}

export function sweepIdle(s: MessagingCore): void {
  s.idleTimer = null;
  const limit = Date.now() - s.options.idleIdentityGrace;
  for (const [ident, since] of s.idle) {
    if (since > limit) break;
    s.idle.delete(ident);
    freeIdentity(s, ident);
  }
  if (!s.isClosed) armIdleTimer(s);
}

/** Forgets an identity's queue, de-duplication window and storage row, if it is still idle. */
export function freeIdentity(s: MessagingCore, ident: string): void {
  const queue = s.queues.get(ident);
  if (queue !== undefined) {
    if (queue.conn !== null || queue.count > 0 || queue.items.length > 0 || queue.inflight.length > 0) return;
    s.queues.delete(ident);
    s.dirty.delete(queue);
    if (s.lastQueue === queue) s.lastQueue = null;
  }
  s.dedup.delete(ident);
  log(`${ident}: idle, state freed`);
  if (s.storage !== null && !s.isClosed) {
    s.storage.forget(ident).catch((error: unknown) => log(`storage forget failed: ${String(error)}`));
  }
}

/** Tells the transport (the relay) that `queue` has messages and no connection: once per time away. */
export function wantPeer(s: MessagingCore, queue: PeerQueue): void {
  if (queue.wanted || s.wantPeer === null || s.isClosed) return;
  queue.wanted = true;
  s.wantPeer(queue.ident);
}

/** After loading stored queues: every identity with messages and no connection is wanted. */
export function wantQueued(s: MessagingCore): void {
  for (const queue of s.queues.values()) if (queue.count > 0 && queue.conn === null) wantPeer(s, queue);
}
