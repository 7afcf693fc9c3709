/**
 * Read-only snapshots of a Messaging's identities for management
 * (lib/management): queue lengths and bytes, messages in flight, the age of
 * the oldest queued message (queue-age), message counters per connection
 * and in total; and the one write management may do, dropping what waits
 * in a queue. Every snapshot is bounded by the `limit` asked for.
 * @module
 */
import type { Buffer } from 'node:buffer';
import type { SnakeMQError } from '../errors.js';
import type { ConnId } from '../link/types.js';
import { checkDrain } from './backpressure.js';
import type { MessagingCore } from './core.js';
import { dropEntry, markIdle, type PeerQueue } from './peer-queue.js';
import { unstore } from './persist.js';
import { oldestAge, unadmit } from './queue-age.js';

/** One identity's state, as {@link Messaging.peerStats} reports it. */
export interface PeerStats {
  /** The peer's identity. */
  readonly ident: string;
  /** Whether a connection is bound to it now. */
  readonly connected: boolean;
  /** That connection's id (`link.connection(connId)` for its addresses), or `null`. */
  readonly connId: ConnId | null;
  /** Messages counted in its queue: waiting, and written but not yet acknowledged (what `queueLength` counts). */
  readonly queued: number;
  /** Bytes they count against `maxQueueBytes` (data plus a fixed overhead each). */
  readonly queuedBytes: number;
  /** Of `queued`, the messages written and waiting for their acknowledgement. */
  readonly inFlight: number;
  /**
   * Milliseconds since the oldest of `queued` was sent, `null` when none:
   * exact to the event-loop turn while messages leave in order; stored
   * messages count from when they were loaded.
   */
  readonly oldestAgeMs: number | null;
  /** When it went away (ms since the epoch), `null` while connected. */
  readonly awaySince: number | null;
  /** MESSAGE frames received on the current connection (0 when none). */
  readonly messagesIn: number;
  /** MESSAGE frames written to the current connection, re-sends included (0 when none). */
  readonly messagesOut: number;
}

/** A bounded snapshot of every identity, as {@link Messaging.stats} reports it. */
export interface MessagingStats {
  /** Identities whose state is kept (connected, with messages queued, or idle within their grace). */
  readonly identities: number;
  /** Connections, identified or still handshaking. */
  readonly connections: number;
  /** Up to `limit` identities, in the order their state was made. */
  readonly peers: readonly PeerStats[];
  /** Whether `peers` stopped at `limit`. */
  readonly truncated: boolean;
  /** Messages counted in every queue (not only the ones listed). Bounded work: one addition per identity kept. */
  readonly queued: number;
  /** MESSAGE frames received and written since the Messaging was made (every connection, ended ones included). */
  readonly messagesIn: number;
  readonly messagesOut: number;
}

/** @internal */
export function peerStatsOf(queue: PeerQueue, now: number): PeerStats {
  const conn = queue.conn;
  return {
    ident: queue.ident,
    connected: conn !== null,
    connId: conn === null ? null : conn.id,
    queued: queue.count,
    queuedBytes: queue.bytes,
    inFlight: queue.inflightCount,
    oldestAgeMs: oldestAge(queue, now),
    awaySince: conn === null ? queue.awaySince : null,
    messagesIn: conn === null ? 0 : conn.messagesIn,
    messagesOut: conn === null ? 0 : conn.messagesOut,
  };
}

/** @internal See {@link Messaging.stats}. */
export function statsOf(s: MessagingCore, limit: number, now: number): MessagingStats {
  const peers: PeerStats[] = [];
  let queued = 0;
  for (const queue of s.queues.values()) {
    queued += queue.count;
    if (peers.length < limit) peers.push(peerStatsOf(queue, now));
  }
  let messagesIn = s.closedMessagesIn;
  let messagesOut = s.closedMessagesOut;
  for (const conn of s.conns.values()) {
    messagesIn += conn.messagesIn;
    messagesOut += conn.messagesOut;
  }
  return {
    identities: s.queues.size,
    connections: s.conns.size,
    peers,
    truncated: s.queues.size > peers.length,
    queued,
    messagesIn,
    messagesOut,
  };
}

/** @internal See {@link Messaging.dropQueued}. */
export function dropQueued(s: MessagingCore, ident: string, reason: SnakeMQError): number {
  const queue = s.queues.get(ident);
  if (queue === undefined) return 0;
  const entries = queue.items.drain();
  const uuids: Buffer[] = [];
  for (const e of entries) {
    queue.count--;
    queue.bytes -= e.cost;
    if (e.stored) {
      e.stored = false;
      uuids.push(e.uuid);
    }
  }
  unadmit(queue, entries.length);
  if (uuids.length > 0) unstore(s, ident, uuids);
  for (const e of entries) dropEntry(s, e, reason);
  if (queue.blocked) checkDrain(s, queue);
  if (queue.count === 0 && queue.conn === null) markIdle(s, queue);
  return entries.length;
}
