/**
 * A relay's work: streams between two other peers, forwarded packet by
 * packet along one pinned path (so a loop cannot multiply them), with the
 * hop limit, the allow-list, per-neighbour and total bounds, and flow
 * control: what the next hop has not taken is held (at most
 * `maxHeldPerRoute` per stream) and credit goes back to the sender as the
 * next hop takes it. Nothing is stored.
 * @module
 */
import type { Buffer } from 'node:buffer';
import { FrameType } from '../messaging/frames.js';
import { createLogger } from '../util/log.js';
import { CloseReason, Control, encodePairControl, encodeRelayHead, HELLO_FORWARDS, type RelayHead } from './frames.js';
import { routeKey, type RealConn, type RelayCore, type Route } from './state.js';

const log = createLogger('snakemq:relay');

/** A RELAY frame from `prev` for someone else: along its stream's route, opened by the stream's first packet. */
export function forward(r: RelayCore, prev: RealConn, head: RelayHead, buf: Buffer, end: number): void {
  let route = r.routes.get(routeKey(head.src, head.dst));
  if (route === undefined) {
    route = openRoute(r, prev, head, buf[head.at + 4]!) ?? undefined;
    if (route === undefined) return;
  } else if (route.prev !== prev) {
    // The same stream from another neighbour: a stale or looping path. One path per stream.
    r.counters.refused++;
    r.control(prev, encodePairControl(Control.CLOSE, CloseReason.REFUSED, head.src, head.dst));
    return;
  }
  prev.lastTarget = route;
  forwardOn(r, route, buf, head.at, end);
}

/** Forwards one RELAY frame of an open route as it is, but for the hop count (its inner packets start at `at`). */
export function forwardOn(r: RelayCore, route: Route, buf: Buffer, at: number, end: number): void {
  const n = end - at;
  if (route.held >= r.options.maxHeldPerRoute || (route.held > 0 && r.held >= r.options.maxHeld)) {
    r.counters.overflow++;
    log(`stream ${route.src} -> ${route.dst}: ${route.held} bytes held for it, ${r.held} for all; closing it`);
    closePair(r, route.src, route.dst, CloseReason.OVERFLOW, null);
    return;
  }
  try {
    r.below.sendPacket(route.next.id, route.outHead, buf.subarray(at, end));
  } catch {
    closePair(r, route.src, route.dst, CloseReason.UNREACHABLE, null);
    return;
  }
  route.packets++;
  route.bytes += n;
  r.counters.forwardedPackets++;
  r.counters.forwardedBytes += n;
  if (route.last && r.below.isWritable(route.next.id)) addCredit(r, route, n);
  else {
    route.held += n;
    r.held += n;
  }
}

function openRoute(r: RelayCore, prev: RealConn, head: RelayHead, innerType: number): Route | null {
  const o = r.options;
  const refuse = (reason: number, why: string, counter: 'refused' | 'unreachable' | 'hopLimit'): null => {
    r.counters[counter]++;
    log(`stream ${head.src} -> ${head.dst} from ${prev.ident}: ${why}`);
    r.control(prev, encodePairControl(Control.CLOSE, reason, head.src, head.dst));
    return null;
  };
  if (!o.forward) return refuse(CloseReason.REFUSED, 'this peer does not forward', 'refused');
  for (const who of new Set([prev.ident!, head.src, head.dst])) {
    if (!o.allow(who)) return refuse(CloseReason.REFUSED, `${who} may not use this relay`, 'refused');
  }
  if (head.hops === 0 ? head.src !== prev.ident : !prev.trusted) {
    return refuse(CloseReason.REFUSED, head.hops === 0 ? `${prev.ident} sent it as ${head.src}` : `${prev.ident} is not a trusted relay`, 'refused');
  }
  if (head.hops + 1 > o.hopLimit) return refuse(CloseReason.HOP_LIMIT, `over the hop limit (${o.hopLimit})`, 'hopLimit');
  // Only a stream's first packet opens its route: anything else belongs to a stream that ended here.
  if (innerType !== FrameType.PROTOCOL_VERSION) return refuse(CloseReason.CLOSED, 'not the start of a stream', 'unreachable');
  if (r.routes.size >= o.maxRoutes) return refuse(CloseReason.REFUSED, `${r.routes.size} streams forwarded (maxRoutes)`, 'refused');
  if (prev.opened >= o.maxRoutesPerPeer) return refuse(CloseReason.REFUSED, `${prev.ident} has ${prev.opened} streams (maxRoutesPerPeer)`, 'refused');
  const next = nextHop(r, head.dst, prev);
  if (next === null) return refuse(CloseReason.UNREACHABLE, 'no route', 'unreachable');
  const route: Route = {
    kind: 'route',
    key: routeKey(head.src, head.dst),
    src: head.src,
    dst: head.dst,
    prev,
    next: next.conn,
    hops: head.hops,
    last: next.direct,
    outHead: encodeRelayHead(head.hops + 1, head.src, head.dst),
    held: 0,
    credit: 0,
    packets: 0,
    bytes: 0,
    closed: false,
  };
  r.routes.set(route.key, route);
  // The way back: the reverse stream opens along the same neighbours.
  if (head.hops > 0 && !r.byIdent.has(head.src)) learn(r, head.src, prev, head.hops);
  prev.routes.add(route);
  prev.opened++;
  next.conn.routes.add(route);
  log(`stream ${head.src} -> ${head.dst}: from ${prev.ident} to ${next.conn.ident}${next.direct ? '' : ' (a relay)'}`);
  return route;
}

/** Where a packet for `dst` goes: its own connection (if it speaks relay), else a fresh learned route not back where it came from. */
export function nextHop(r: RelayCore, dst: string, from: RealConn | null): { conn: RealConn; direct: boolean } | null {
  const direct = r.byIdent.get(dst);
  if (direct !== undefined && direct.peerHello >= 0 && !direct.closed) return { conn: direct, direct: true };
  const learned = r.learned.get(dst);
  if (learned !== undefined && learned.conn !== from && !learned.conn.closed && r.now() - learned.at < r.options.routeTtl) {
    if ((learned.conn.peerHello & HELLO_FORWARDS) !== 0 && learned.conn.trusted) return { conn: learned.conn, direct: false };
  }
  return null;
}

/** Credit from `next` for a stream we forward: it goes on to the previous hop. */
export function onRouteCredit(r: RelayCore, next: RealConn, src: string, dst: string, bytes: number): void {
  const route = r.routes.get(routeKey(src, dst));
  if (route === undefined || route.next !== next || route.last) return;
  const k = Math.min(bytes, route.held);
  route.held -= k;
  r.held -= k;
  addCredit(r, route, k);
}

/** The next hop's socket drained: what it held for the streams whose destination it is was taken. */
export function onNextDrain(r: RelayCore, next: RealConn): void {
  for (const route of next.routes) {
    if (route.next === next && route.last && route.held > 0) {
      const k = route.held;
      route.held = 0;
      r.held -= k;
      addCredit(r, route, k);
    }
  }
}

export function addCredit(r: RelayCore, route: Route, bytes: number): void {
  if (bytes <= 0) return;
  route.credit += bytes;
  r.creditRoutes.add(route);
  if (!r.creditScheduled) {
    r.creditScheduled = true;
    setImmediate(flushCredits, r);
  }
}

/** Once per turn: one CREDIT per stream that got any. */
function flushCredits(r: RelayCore): void {
  r.creditScheduled = false;
  for (const route of r.creditRoutes) {
    if (!route.closed && route.credit > 0) r.control(route.prev, encodePairControl(Control.CREDIT, route.credit, route.src, route.dst));
    route.credit = 0;
  }
  r.creditRoutes.clear();
}

/**
 * Ends the stream between `a` and `b` (both directions): each neighbour on
 * it other than `from` (who told us) is sent CLOSE.
 */
export function closePair(r: RelayCore, a: string, b: string, reason: number, from: RealConn | null): void {
  const told = new Set<RealConn>();
  if (from !== null) told.add(from);
  for (const key of [routeKey(a, b), routeKey(b, a)]) {
    const route = r.routes.get(key);
    if (route === undefined) continue;
    removeRoute(r, route);
    for (const conn of [route.prev, route.next]) {
      if (told.has(conn)) continue;
      told.add(conn);
      r.control(conn, encodePairControl(Control.CLOSE, reason, a, b));
    }
  }
}

function removeRoute(r: RelayCore, route: Route): void {
  route.closed = true;
  r.held -= route.held;
  route.held = 0;
  r.routes.delete(route.key);
  route.prev.routes.delete(route);
  route.prev.opened--;
  route.next.routes.delete(route);
  if (route.prev.lastTarget === route) route.prev.lastTarget = null;
  r.creditRoutes.delete(route);
}

/** A neighbour's connection ended: every stream through it ends, the other side is told. */
export function dropRoutesOf(r: RelayCore, conn: RealConn): void {
  for (const route of [...conn.routes]) {
    if (!route.closed) closePair(r, route.src, route.dst, conn === route.next ? CloseReason.UNREACHABLE : CloseReason.CLOSED, conn);
  }
}

/** Remembers that `target` is `distance` hops beyond `conn` (a fresher or shorter route replaces an older one). */
export function learn(r: RelayCore, target: string, conn: RealConn, distance: number): void {
  const current = r.learned.get(target);
  const now = r.now();
  if (current !== undefined && !current.conn.closed && current.distance < distance && now - current.at < r.options.routeTtl) return;
  if (current === undefined && r.learned.size >= r.options.maxLearnedRoutes) r.learned.delete(r.learned.keys().next().value!);
  r.learned.delete(target);
  r.learned.set(target, { conn, distance, at: now });
}
