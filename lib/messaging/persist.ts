/**
 * Sending, second step: persistent messages go to storage ({@link
 * QueuesStorage}) when queued and leave it when delivered or dropped; at
 * start the stored queues are loaded back in front of the queues.
 * @module
 */
import { Buffer } from 'node:buffer';
import { QueueFullError, SnakeMQError, StorageError } from '../errors.js';
import type { QueuesStorage, StoredMessage } from '../storage/types.js';
import { createLogger } from '../util/log.js';
import type { MessagingCore } from './core.js';
import { QueueEntry } from './delivery.js';
import { Message } from './message.js';
import { dropEntry, markIdle, PeerQueue, queueOf, removeFromQueue, stopCountdown } from './peer-queue.js';
import { markLoaded } from './queue-age.js';
import { schedulePump } from './write-path.js';

const log = createLogger('snakemq:messaging');

export function persist(s: MessagingCore, queue: PeerQueue, entry: QueueEntry): void {
  entry.stored = true;
  const stored: StoredMessage = { uuid: entry.uuid, data: entry.data, flags: entry.flags, ttl: entry.ttl };
  s.storage!.push(queue.ident, [stored]).then(
    () => entry.markPersisted(),
    (error: unknown) => {
      entry.stored = false;
      const reason = error instanceof SnakeMQError ? error : new StorageError('storing the message failed', { cause: error });
      // Not sent yet: take it out, so that a caller who retries after the rejection does not deliver it twice.
      let unsent = false;
      queue.items.filter((e) => (e === entry ? !(unsent = true) : true));
      if (unsent) {
        removeFromQueue(s, queue, entry);
        dropEntry(s, entry, reason);
        if (queue.count === 0 && queue.conn === null) markIdle(s, queue);
      } else entry.failPersist(reason);
    },
  );
}

export function unstore(s: MessagingCore, ident: string, uuids: Buffer[]): void {
  if (uuids.length === 0) return;
  s.storage!.remove(ident, uuids).catch((error: unknown) => log(`storage remove failed: ${String(error)}`));
}

export async function load(s: MessagingCore, storage: QueuesStorage): Promise<void> {
  let stored;
  try {
    stored = await storage.load();
  } catch (error) {
    throw error instanceof SnakeMQError ? error : new StorageError('loading stored queues failed', { cause: error });
  } finally {
    s.loaded = true;
  }
  const now = Date.now();
  for (const sq of stored) {
    const queue = queueOf(s, sq.ident);
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
    fitLoaded(s, queue, front);
    queue.items.unshiftAll(front);
    queue.count += front.length;
    for (const e of front) queue.bytes += e.cost;
    if (front.length > 0) markLoaded(queue);
    // Downtime counts as away time when the peer was already away; otherwise the clock starts now.
    if (queue.conn === null) queue.awaySince = sq.awaySince ?? now;
    if (queue.conn !== null) stopCountdown(s, queue, sq.awaySince ?? now);
  }
  for (const queue of s.queues.values()) schedulePump(s, queue);
}

/**
 * Stored messages beyond the queue limits (the limits were lowered, or
 * sends were made while loading) are dropped like an overflow: the oldest
 * with `drop-oldest`, the newest with `reject` (what a sender would have
 * been refused); `drop` events tell, storage forgets them.
 */
export function fitLoaded(s: MessagingCore, queue: PeerQueue, front: QueueEntry[]): void {
  const { maxQueueMessages, maxQueueBytes, overflow } = s.options;
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
  unstore(
    s,
    queue.ident,
    dropped.map((e) => e.uuid),
  );
  for (const e of dropped) {
    e.stored = false;
    dropEntry(s, e, new QueueFullError(`stored message ${e.id} for ${queue.ident} dropped at load: over the queue limits`));
  }
}
