/**
 * Finding peers through relays: a peer that has messages for an identity it
 * has no connection to asks its relays (QUERY); a relay that has that peer
 * connected answers (REPLY), one that does not asks its own relays and
 * passes the answer back, remembering the route it learned. Queries carry a
 * random id: one seen before is not passed on again, so loops of relays
 * cannot multiply them. A relay that cannot answer yet remembers who asked
 * (for `routeTtl`) and answers when the peer connects. An asker retries
 * while it still wants the peer, from 1 s doubling to `retryInterval`.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { createLogger } from '../util/log.js';
import { Control, encodeQuery, HELLO_FORWARDS } from './frames.js';
import { learn, nextHop } from './forward.js';
import type { RealConn, RelayCore } from './state.js';
import { openVirtual } from './virtual.js';

const log = createLogger('snakemq:relay');
const FIRST_RETRY = 1000;
const MAX_SEEN_QUERIES = 4096;
const MAX_WAITERS_PER_TARGET = 64;

/** Neighbours this peer may use as relays: they said they forward for us, and we trust them. */
export function relaysOf(r: RelayCore): RealConn[] {
  const out: RealConn[] = [];
  for (const conn of r.byIdent.values()) if ((conn.peerHello & HELLO_FORWARDS) !== 0 && conn.trusted && !conn.closed) out.push(conn);
  return out;
}

/** Messaging has messages for `ident` and no connection to it: look for a relay that reaches it. */
export function want(r: RelayCore, ident: string): void {
  if (r.closed || r.byIdent.has(ident) || r.virtualByRemote.has(ident)) return;
  if (!r.wanted.has(ident)) {
    if (r.wanted.size >= r.options.maxLearnedRoutes) return;
    r.wanted.set(ident, { delay: FIRST_RETRY, due: r.now() + FIRST_RETRY });
  }
  ask(r, ident, null);
  armRetry(r);
}

/** Stops looking for `ident` (it is connected, one way or the other). */
export function unwant(r: RelayCore, ident: string): void {
  r.wanted.delete(ident);
  if (r.wanted.size === 0 && r.wantTimer !== null) {
    clearTimeout(r.wantTimer);
    r.wantTimer = null;
  }
}

/** Sends a fresh QUERY for `ident` to every relay (or to `only`). */
function ask(r: RelayCore, ident: string, only: RealConn | null): void {
  const id = randomBytes(8);
  remember(r, id.toString('hex'));
  const frame = encodeQuery(Control.QUERY, id, 0, ident);
  for (const conn of only === null ? relaysOf(r) : [only]) r.control(conn, frame);
}

/** A relay said HELLO (forwarding for us): ask it for everyone wanted. */
export function onRelayFound(r: RelayCore, conn: RealConn): void {
  for (const ident of r.wanted.keys()) ask(r, ident, conn);
}

function armRetry(r: RelayCore): void {
  if (r.wantTimer !== null || r.wanted.size === 0 || r.closed) return;
  let due = Infinity;
  for (const w of r.wanted.values()) due = Math.min(due, w.due);
  r.wantTimer = setTimeout(retry, Math.max(0, due - r.now()), r);
  r.wantTimer.unref();
}

function retry(r: RelayCore): void {
  r.wantTimer = null;
  const now = r.now();
  for (const [ident, w] of r.wanted) {
    if (r.byIdent.has(ident) || r.virtualByRemote.has(ident)) {
      r.wanted.delete(ident);
      continue;
    }
    if (w.due > now) continue;
    w.delay = Math.min(w.delay * 2, r.options.retryInterval);
    w.due = now + w.delay;
    ask(r, ident, null);
  }
  armRetry(r);
}

/** Records a query id as seen; false when it was seen before (a loop, or a second path). */
function remember(r: RelayCore, key: string): boolean {
  if (r.seenQueries.has(key)) return false;
  r.seenQueries.set(key, r.now());
  if (r.seenQueries.size > MAX_SEEN_QUERIES) r.seenQueries.delete(r.seenQueries.keys().next().value!);
  return true;
}

/** QUERY from a neighbour: answer, pass it on, or remember the asker. Only relays answer, and only to who may use them. */
export function onQuery(r: RelayCore, from: RealConn, id: Buffer, hops: number, target: string): void {
  const o = r.options;
  if (!o.forward || !o.allow(from.ident!) || target === from.ident || target === r.identity) return;
  const key = id.toString('hex');
  if (!remember(r, key)) {
    r.counters.duplicateQueries++;
    return;
  }
  const known = nextHop(r, target, from);
  if (known !== null) {
    const distance = known.direct ? 1 : r.learned.get(target)!.distance + 1;
    if (distance <= o.hopLimit) r.control(from, encodeQuery(Control.REPLY, id, distance, target));
    return;
  }
  addWaiter(r, target, from, id);
  if (hops + 1 >= o.hopLimit) return;
  const onward = encodeQuery(Control.QUERY, id, hops + 1, target);
  let asked = 0;
  for (const conn of relaysOf(r)) {
    if (conn === from) continue;
    r.control(conn, onward);
    asked++;
  }
  if (asked > 0) {
    r.pending.set(key, { asker: from, target, at: r.now() });
    if (r.pending.size > MAX_SEEN_QUERIES) r.pending.delete(r.pending.keys().next().value!);
  }
}

function addWaiter(r: RelayCore, target: string, conn: RealConn, id: Buffer): void {
  let list = r.waiters.get(target);
  if (list === undefined) {
    if (r.waiters.size >= r.options.maxLearnedRoutes) return;
    r.waiters.set(target, (list = []));
  }
  const now = r.now();
  // Drop what is stale or from the same neighbour: its newest query stands for it.
  for (let i = list.length - 1; i >= 0; i--) if (list[i]!.conn === conn || now - list[i]!.at >= r.options.routeTtl || list[i]!.conn.closed) list.splice(i, 1);
  if (list.length >= MAX_WAITERS_PER_TARGET) list.shift();
  list.push({ conn, id, at: now });
}

/** `ident` can now be reached `distance` hops away: tell who waited for it. */
function answerWaiters(r: RelayCore, ident: string, distance: number, via: RealConn | null): void {
  const list = r.waiters.get(ident);
  if (list === undefined) return;
  r.waiters.delete(ident);
  if (distance > r.options.hopLimit) return;
  const now = r.now();
  for (const w of list) {
    if (w.conn.closed || w.conn === via || now - w.at >= r.options.routeTtl) continue;
    r.control(w.conn, encodeQuery(Control.REPLY, w.id, distance, ident));
  }
}

/**
 * REPLY from a neighbour: `target` is `distance` hops from it. An asker
 * that still wants the target opens a relayed connection through it; a
 * relay learns the route and answers who asked it.
 */
export function onReply(r: RelayCore, from: RealConn, id: Buffer, distance: number, target: string): void {
  if (!from.trusted || (from.peerHello & HELLO_FORWARDS) === 0 || target === r.identity || distance === 0) return;
  if (r.wanted.has(target) && !r.byIdent.has(target) && !r.virtualByRemote.has(target)) {
    log(`${target} is reachable through ${from.ident} (${distance} hop${distance === 1 ? '' : 's'})`);
    openVirtual(r, from, target, 'connector');
  }
  if (!r.options.forward) return;
  learn(r, target, from, distance);
  const key = id.toString('hex');
  const p = r.pending.get(key);
  if (p !== undefined) {
    r.pending.delete(key);
    if (!p.asker.closed && distance + 1 <= r.options.hopLimit) r.control(p.asker, encodeQuery(Control.REPLY, id, distance + 1, target));
  }
  answerWaiters(r, target, distance + 1, from);
}

/** A peer connected to us directly and speaks relay (identified, HELLO seen): relays tell who waited for it. */
export function onPeerReady(r: RelayCore, conn: RealConn): void {
  if (r.options.forward) answerWaiters(r, conn.ident!, 1, conn);
}

/** Forgets the routes learned through a connection that ended. */
export function forgetRoutesVia(r: RelayCore, conn: RealConn): void {
  for (const [target, learned] of r.learned) if (learned.conn === conn) r.learned.delete(target);
}
