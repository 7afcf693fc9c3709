/**
 * Connections and their identities: the handshake (PROTOCOL_VERSION,
 * IDENTIFICATION, EXTENSIONS), the mode it settles on (acknowledged or plain
 * protocol 1), `authorize`, a second connection claiming a bound identity,
 * binding an identity to its queue and letting it go at a disconnect.
 * @module
 */
import { Buffer } from 'node:buffer';
import {
  DuplicateIdentityError,
  IdentificationTimeoutError,
  KeepaliveTimeoutError,
  NotSnakeMQPeerError,
  PacketTooLargeError,
  ProtocolError,
  SnakeMQError,
  TlsError,
  UnauthorizedError,
} from '../errors.js';
import type { ConnectionInfo, ConnId } from '../link/types.js';
import { createLogger } from '../util/log.js';
import type { MessagingCore } from './core.js';
import { onDatagramConnect, onDatagramDisconnect } from './datagram.js';
import { safeEmit } from './dispatch.js';
import { encodePing, truncateIdent } from './frames.js';
import { requeueInFlight } from './in-flight.js';
import { armKeepalive } from './keepalive.js';
import { markIdle, queueOf, stopCountdown, wantPeer } from './peer-queue.js';
import { ackSoon, onPacket } from './receive-path.js';
import { encodeRefused } from './refusal.js';
import { RecentUuids } from './uuid-window.js';
import { schedulePump } from './write-path.js';

const log = createLogger('snakemq:messaging');
/** How a connection's messages are delivered; decided by the first frame after IDENTIFICATION (see settleMode). */
export const Mode = { Pending: 0, Ack: 1, Legacy: 2 } as const;
/** One of {@link Mode}'s values. */
export type Mode = (typeof Mode)[keyof typeof Mode];

/** One connection as Messaging sees it. */
export interface PeerConn {
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
  /** MESSAGE frames received on (duplicates included) and written to (re-sends included) this connection: read by management. */
  messagesIn: number;
  messagesOut: number;
}

export function onConnect(s: MessagingCore, info: ConnectionInfo): void {
  if (info.datagram === true) return onDatagramConnect(s, info);
  const conn: PeerConn = {
    id: info.id,
    ident: null,
    mode: Mode.Pending,
    peerAcks: false,
    toAck: 0,
    ackQueued: false,
    ackCheck: () => ackSoon(s, conn),
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
    messagesIn: 0,
    messagesOut: 0,
  };
  s.conns.set(info.id, conn);
  // Before anything is read: until it identifies, a peer may only send small packets.
  s.packeter.restrict(info.id, s.options.maxHandshakePacketSize);
  for (const frame of s.handshake) s.packeter.sendPacket(info.id, frame);
  conn.identifyTimer = setTimeout(identifyExpired, s.options.identifyTimeout, s, conn);
  armKeepalive(s, conn);
}

export function identifyExpired(s: MessagingCore, conn: PeerConn): void {
  conn.identifyTimer = null;
  if (conn.ident !== null || conn.claim !== null || conn.closing) return;
  refuse(s, conn, new IdentificationTimeoutError(`connection ${conn.id} did not identify itself within ${s.options.identifyTimeout} ms`));
}

export function onDisconnect(s: MessagingCore, connId: ConnId): void {
  if (connId < 0) return onDatagramDisconnect(s, connId);
  const conn = s.conns.get(connId);
  if (conn === undefined) return;
  s.conns.delete(connId);
  s.closedMessagesIn += conn.messagesIn;
  s.closedMessagesOut += conn.messagesOut;
  if (s.lastConn === conn) s.lastConn = null;
  conn.closing = true;
  if (conn.keepaliveTimer) clearTimeout(conn.keepaliveTimer);
  if (conn.identifyTimer) clearTimeout(conn.identifyTimer);
  if (conn.ackImmediate !== null) clearImmediate(conn.ackImmediate);
  if (conn.streamPaused) s.streamPaused.delete(conn);
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
  if (ident === null || s.byIdent.get(ident) !== conn) {
    if (ident === null && !s.isClosed) safeEmit(s, 'handshakeFailed', connId, conn.endpoint, whyUnbound(s, conn));
    return;
  }
  unbind(s, conn);
  if (conn.refusal !== null && !s.isClosed) safeEmit(s, 'handshakeFailed', connId, conn.endpoint, conn.refusal);
  const claimant = conn.probedBy;
  if (claimant !== null) handOver(s, conn, claimant);
}

/**
 * Lets go of a connection's identity: its in-flight messages go back to the
 * front of the queue for the next connection, `disconnect` is emitted.
 */
export function unbind(s: MessagingCore, conn: PeerConn): void {
  const ident = conn.ident!;
  const connId = conn.id;
  s.byIdent.delete(ident);
  const queue = queueOf(s, ident);
  queue.conn = null;
  queue.direct = false;
  queue.budget = 0;
  queue.awaySince = Date.now();
  requeueInFlight(s, queue);
  // Also while closing: the storage closes after the connections, so a restart knows when the peer went away.
  if (s.storage !== null) {
    s.storage.setAwaySince(ident, queue.awaySince).catch((error: unknown) => log(`storage update failed: ${String(error)}`));
  }
  log(`${ident} disconnected (conn ${connId}), ${queue.count} queued`);
  if (queue.count === 0) markIdle(s, queue);
  queue.wanted = false;
  safeEmit(s, 'disconnect', connId, ident);
  if (queue.count > 0 && queue.conn === null) wantPeer(s, queue);
}

/** Why a connection that ends without having been bound to an identity failed. */
export function whyUnbound(s: MessagingCore, conn: PeerConn): SnakeMQError {
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

export function fail(s: MessagingCore, conn: PeerConn, error: SnakeMQError): void {
  if (conn.closing) return;
  conn.closing = true;
  conn.failure ??= error;
  if (conn.ident !== null && s.byIdent.get(conn.ident) === conn) queueOf(s, conn.ident).direct = false;
  log(`conn ${conn.id}: ${error.message}; closing`);
  safeEmit(s, 'protocolError', conn.id, error);
  void s.packeter.close(conn.id, error);
}

/** Closes a connection this peer will not bind, telling the peer why first (REFUSED frame). */
export function refuse(s: MessagingCore, conn: PeerConn, error: SnakeMQError): void {
  if (conn.closing) return;
  try {
    s.packeter.sendPacket(conn.id, encodeRefused(error));
  } catch {
    // Already going: nothing to tell.
  }
  fail(s, conn, error);
}

/** A framing failure found by the Packeter (oversized packet, buffer budget): it closes the connection. */
export function onFramingError(s: MessagingCore, connId: ConnId, error: SnakeMQError): void {
  const conn = s.conns.get(connId);
  if (conn !== undefined && !conn.closing) {
    conn.closing = true;
    conn.failure ??= error;
    if (conn.ident !== null && s.byIdent.get(conn.ident) === conn) queueOf(s, conn.ident).direct = false;
  }
  safeEmit(s, 'protocolError', connId, error);
}

export function onIdentification(s: MessagingCore, conn: PeerConn, rawIdent: string): void {
  if (conn.ident !== null || conn.claim !== null) return;
  const ident = truncateIdent(rawIdent);
  const authorize = s.options.authorize;
  if (authorize !== null) {
    const info = s.packeter.connection(conn.id);
    let allowed = false;
    let cause: unknown;
    try {
      allowed = info !== undefined && authorize(ident, info) === true;
    } catch (error) {
      cause = error;
    }
    if (!allowed) {
      return refuse(s, conn, new UnauthorizedError(`identity '${ident}' refused on ${conn.endpoint}`, cause === undefined ? undefined : { cause }));
    }
  }
  const holder = s.byIdent.get(ident);
  if (holder !== undefined) return claim(s, conn, holder, ident);
  bind(s, conn, ident);
}

export function bind(s: MessagingCore, conn: PeerConn, ident: string): void {
  if (conn.identifyTimer !== null) clearTimeout(conn.identifyTimer);
  conn.identifyTimer = null;
  s.packeter.unrestrict(conn.id);
  conn.ident = ident;
  s.byIdent.set(ident, conn);
  s.idle.delete(ident);
  if (!s.options.acknowledgements) conn.mode = Mode.Legacy;
  const queue = queueOf(s, ident);
  queue.conn = conn;
  queue.wanted = false;
  s.packeter.identified?.(conn.id, ident);
  if (s.loaded) stopCountdown(s, queue, queue.awaySince);
  log(`${ident} connected (conn ${conn.id}), ${queue.count} queued`);
  safeEmit(s, 'connect', conn.id, ident);
  schedulePump(s, queue);
}

/**
 * A second connection claims an identity that is bound: after a NAT rebind
 * the old connection may be half-open and never answer again. The holder is
 * sent a PING; anything it sends within `keepaliveWait` keeps it and refuses
 * the claimant (DuplicateIdentityError); silence hands the identity over.
 * Meanwhile the claimant is paused and what it already sent is kept aside
 * (at most the rest of one read), undecoded and unacknowledged.
 */
export function claim(s: MessagingCore, conn: PeerConn, holder: PeerConn, ident: string): void {
  // A holder we paused cannot show it is alive; a second claimant waits for no one.
  if (holder.probedBy !== null || holder.streamPaused) {
    return refuse(s, conn, new DuplicateIdentityError(`identity '${ident}' is already connected`));
  }
  if (conn.identifyTimer !== null) clearTimeout(conn.identifyTimer);
  conn.identifyTimer = null;
  conn.claim = holder;
  conn.claimIdent = ident;
  conn.stash = [];
  s.packeter.unrestrict(conn.id);
  s.packeter.pause(conn.id);
  holder.probedBy = conn;
  log(`conn ${conn.id} claims '${ident}', held by conn ${holder.id}: probing it`);
  // A holder already being closed is not probed: its disconnect (or the timer) hands over.
  if (!holder.closing) {
    s.packeter.sendPacket(holder.id, encodePing());
    s.packeter.flushConnection(holder.id);
  }
  holder.probeTimer = setTimeout(probeExpired, s.options.keepaliveWait, s, holder);
}

/** The holder answered the probe: it keeps its identity; the claimant is refused. */
export function probeAnswered(s: MessagingCore, holder: PeerConn): void {
  const claimant = holder.probedBy!;
  holder.probedBy = null;
  if (holder.probeTimer !== null) clearTimeout(holder.probeTimer);
  holder.probeTimer = null;
  claimant.claim = null;
  claimant.stash = null;
  refuse(s, claimant, new DuplicateIdentityError(`identity '${holder.ident}' is already connected (and answered a PING)`));
}

export function probeExpired(s: MessagingCore, holder: PeerConn): void {
  holder.probeTimer = null;
  const claimant = holder.probedBy;
  if (claimant === null) return;
  log(`conn ${holder.id} (${holder.ident}) did not answer within ${s.options.keepaliveWait} ms: conn ${claimant.id} takes over`);
  unbind(s, holder);
  fail(s, holder, new KeepaliveTimeoutError(`no answer within ${s.options.keepaliveWait} ms of a PING; identity '${holder.ident}' handed to a new connection`));
  handOver(s, holder, claimant);
}

/** Binds the identity `holder` had to its claimant, then handles what the claimant sent meanwhile. */
export function handOver(s: MessagingCore, holder: PeerConn, claimant: PeerConn): void {
  holder.probedBy = null;
  if (holder.probeTimer !== null) clearTimeout(holder.probeTimer);
  holder.probeTimer = null;
  const ident = claimant.claimIdent!;
  const stash = claimant.stash ?? [];
  claimant.claim = null;
  claimant.claimIdent = null;
  claimant.stash = null;
  if (claimant.closing || !s.conns.has(claimant.id)) return;
  bind(s, claimant, ident);
  for (const packet of stash) {
    if (claimant.closing) break;
    onPacket(s, claimant.id, packet, 0, packet.length);
  }
  if (!claimant.closing && !claimant.streamPaused) s.packeter.resume(claimant.id);
}

/**
 * The mode is decided by the first frame after IDENTIFICATION: our peers
 * send EXTENSIONS right after it, so anything else (at the latest the PONG
 * answering our handshake PING) means a plain protocol-1 peer.
 */
export function settleMode(s: MessagingCore, conn: PeerConn, mode: Mode): void {
  if (conn.mode !== Mode.Pending || conn.ident === null) return;
  conn.mode = mode;
  log(`conn ${conn.id} (${conn.ident}): ${mode === Mode.Ack ? 'acknowledged delivery' : 'plain protocol 1'}`);
  schedulePump(s, queueOf(s, conn.ident));
}
