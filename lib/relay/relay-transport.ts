/**
 * {@link RelayTransport}: relaying through a peer, as a
 * {@link PacketTransport} between the Packeter and Messaging. For the
 * connections of the Packeter it passes everything through (the receive
 * fast path of MESSAGE runs goes to Messaging untouched) except the two
 * relay frame types; on top it offers relayed connections, each a whole
 * snakeMQ connection with a peer reached through a relay. Messaging runs
 * its protocol over them end to end: the final receiver acknowledges, the
 * sender keeps the message (persistent ones in storage) until then, dedup
 * drops what a re-send after a route change brings twice, and RPC and
 * publish/subscribe work unchanged.
 * @module
 */
import { Buffer } from 'node:buffer';
import { ClosedError, RelayError, type SnakeMQError } from '../errors.js';
import type { ConnectionInfo, ConnId } from '../link/types.js';
import { FrameType } from '../messaging/frames.js';
import type { ConnPacketRun, ConnPacketSink, PacketTransport, PacketTransportEvents } from '../packeter/packet-transport.js';
import type { PacketerOptions } from '../packeter/packeter.js';
import type { Slab } from '../packeter/write-batch.js';
import { createLogger } from '../util/log.js';
import { closePair, dropRoutesOf, forward, forwardOn, onNextDrain, onRouteCredit } from './forward.js';
import { Control, decodeControl, decodeRelayHead, encodeHello, FRAME_RELAY, FRAME_RELAY_CONTROL, HELLO_FORWARDS, MAX_RELAY_HEAD } from './frames.js';
import type { RelayOptions, ResolvedRelayOptions } from './options.js';
import { resolveRelayOptions } from './options.js';
import { forgetRoutesVia, onPeerReady, onQuery, onRelayFound, onReply, relaysOf, unwant, want } from './routes.js';
import { isVirtual, RelayCore, type RealConn, type RelayCounters } from './state.js';
import {
  allocVirtual,
  closeVirtual,
  deliverRun,
  flushVirtual,
  onCarried,
  failVirtual,
  maybeDrain,
  onCredit,
  pauseReal,
  reasonName,
  receiveVirtual,
  resumeReal,
  sendable,
  sendVirtual,
  virtualWritable,
} from './virtual.js';

const log = createLogger('snakemq:relay');

/** A stream this peer forwards, as `RelayTransport.routes()` lists it. */
export interface RelayRouteInfo {
  readonly source: string;
  readonly destination: string;
  /** The neighbour it comes from. */
  readonly previous: string;
  /** The neighbour it goes to (the destination itself, or the next relay). */
  readonly next: string;
  /** Relays it passed before this one. */
  readonly hops: number;
  readonly packetsForwarded: number;
  readonly bytesForwarded: number;
  /** Bytes the next hop has not taken yet. */
  readonly held: number;
}

/** What `RelayTransport.stats()` returns: the counters and the current sizes. */
export interface RelayStats extends RelayCounters {
  /** Streams forwarded now. */
  readonly routes: number;
  /** Bytes held for them that next hops have not taken. */
  readonly held: number;
  /** Peers connected through a relay now. */
  readonly relayedConnections: number;
  readonly learnedRoutes: number;
  /** Peers looked for through relays (messages waiting, no route yet). */
  readonly wanted: number;
}

/** A peer reached through a relay (or reaching us through one), as `RelayTransport.relayedConnections()` lists it. */
export interface RelayedConnectionInfo {
  readonly connId: ConnId;
  readonly peer: string;
  readonly via: string;
  /** `connector`: this side opened it. */
  readonly side: 'connector' | 'listener';
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Bytes sent and not yet taken on by the relay (the flow-control window in use). */
  readonly inFlight: number;
}

/**
 * The relay layer: give it to Messaging with the `relay` option
 * (`createPeer({ relay: {} })`, or `{ forward: true, allow: [...] }` on the
 * relay), never build it yourself. `messaging.relay` is this object:
 * {@link routes}, {@link relayedConnections} and {@link stats} tell what it
 * does.
 */
export class RelayTransport implements PacketTransport {
  readonly options: Readonly<Required<PacketerOptions>>;
  allocated: Buffer;
  allocatedOffset = 0;
  allocatedView: DataView;
  allocatedSlab: Slab | null = null;
  /** @internal */
  private readonly r: RelayCore;
  private closing: Promise<void> | null = null;

  /** @internal Made by Messaging. */
  constructor(below: PacketTransport, identity: string, options: RelayOptions | true, now: () => number = Date.now) {
    const resolved: ResolvedRelayOptions = resolveRelayOptions(options);
    const r = (this.r = new RelayCore(identity, below, resolved, now));
    // Room for a RELAY head in every packet Messaging writes into a batch, so a relayed one fits like a direct one.
    this.options = {
      ...below.options,
      writeBatchSize: below.options.writeBatchSize - MAX_RELAY_HEAD,
      maxPacketSize: below.options.maxPacketSize - MAX_RELAY_HEAD,
    };
    this.allocated = below.allocated;
    this.allocatedView = below.allocatedView;
    below.onEvent('connect', (info) => this.onConnect(info));
    below.onEvent('disconnect', (connId) => this.onDisconnect(connId));
    below.onEvent('sent', (connId, lastId) => this.onSent(connId, lastId));
    below.onEvent('drain', (connId) => this.onDrain(connId));
    below.onEvent('protocolError', (connId, error) => r.emit('protocolError', connId, error));
  }

  // --- what this relay does ------------------------------------------------------

  /** The streams this peer forwards for others now. */
  routes(): RelayRouteInfo[] {
    return [...this.r.routes.values()].map((route) => ({
      source: route.src,
      destination: route.dst,
      previous: route.prev.ident ?? '',
      next: route.next.ident ?? '',
      hops: route.hops,
      packetsForwarded: route.packets,
      bytesForwarded: route.bytes,
      held: route.held,
    }));
  }

  /** Peers this one is connected to through a relay. */
  relayedConnections(): RelayedConnectionInfo[] {
    return [...this.r.virtuals.values()].map((v) => ({
      connId: v.id,
      peer: v.remote,
      via: v.real.ident ?? '',
      side: v.info.side,
      bytesIn: v.bytesIn,
      bytesOut: v.bytesOut,
      inFlight: v.outstanding,
    }));
  }

  /** Neighbours that forward for this peer (and that it trusts). */
  relays(): string[] {
    return relaysOf(this.r).map((c) => c.ident!);
  }

  /** Counters of what was forwarded, refused and dropped. */
  stats(): RelayStats {
    const r = this.r;
    return { ...r.counters, routes: r.routes.size, held: r.held, relayedConnections: r.virtuals.size, learnedRoutes: r.learned.size, wanted: r.wanted.size };
  }

  // --- PacketTransport: events and receiving ---------------------------------------

  /** Part of {@link PacketTransport}. */
  onEvent<E extends keyof PacketTransportEvents>(event: E, fn: PacketTransportEvents[E]): void {
    this.r.handlers[event].push(fn);
  }

  /** Part of {@link PacketTransport}: Messaging's sink; its run taker goes to the Packeter as it is (it stops at relay frames). */
  setPacketSink(sink: ConnPacketSink, run?: ConnPacketRun): void {
    const r = this.r;
    r.sink = sink;
    r.run = run;
    r.below.setPacketSink((connId, buf, start, end) => this.onPacket(connId, buf, start, end), run);
  }

  /** Part of {@link PacketTransport}: Messaging bound a connection to an identity. */
  identified(connId: ConnId, ident: string): void {
    const r = this.r;
    unwant(r, ident);
    const conn = r.reals.get(connId);
    if (conn === undefined) return;
    conn.ident = ident;
    r.byIdent.set(ident, conn);
    conn.trusted = r.options.trust(ident, conn.info);
    if (r.virtualByRemote.has(ident)) {
      // Directly connected now: the relayed connection is the one to let go.
      closeVirtual(r, r.virtualByRemote.get(ident)!, true, 'connected directly');
    }
    this.hello(conn);
    if (conn.peerHello >= 0) this.peerReady(conn);
  }

  /** Part of {@link PacketTransport}: Messaging has messages for `ident` and no connection to it. */
  wantPeer(ident: string): void {
    want(this.r, ident);
  }

  private onConnect(info: ConnectionInfo): void {
    const conn: RealConn = {
      id: info.id,
      info,
      ident: null,
      extended: false,
      helloSent: false,
      peerHello: -1,
      trusted: false,
      virtuals: new Map(),
      routes: new Set(),
      opened: 0,
      pauses: 0,
      closed: false,
      lastKey: null,
      lastTarget: null,
    };
    this.r.reals.set(info.id, conn);
    this.r.emit('connect', info);
  }

  private onDisconnect(connId: ConnId): void {
    const r = this.r;
    const conn = r.reals.get(connId);
    if (conn !== undefined) {
      conn.closed = true;
      r.reals.delete(connId);
      if (conn.ident !== null && r.byIdent.get(conn.ident) === conn) r.byIdent.delete(conn.ident);
      for (const v of [...conn.virtuals.values()]) closeVirtual(r, v, false, `connection to ${conn.ident} ended`);
      dropRoutesOf(r, conn);
      forgetRoutesVia(r, conn);
    }
    r.emit('disconnect', connId);
  }

  private onSent(connId: ConnId, lastId: number): void {
    const r = this.r;
    r.emit('sent', connId, lastId);
    const conn = r.reals.get(connId);
    if (conn === undefined || conn.virtuals.size === 0) return;
    for (const v of conn.virtuals.values()) if (v.carriers.length > 0) onCarried(r, v, lastId);
  }

  private onDrain(connId: ConnId): void {
    const r = this.r;
    r.emit('drain', connId);
    const conn = r.reals.get(connId);
    if (conn === undefined) return;
    if (conn.routes.size > 0) onNextDrain(r, conn);
    for (const v of conn.virtuals.values()) maybeDrain(r, v);
  }

  private onPacket(connId: ConnId, buf: Buffer, start: number, end: number): void {
    const type = buf[start];
    if (type === FRAME_RELAY) return this.onRelay(connId, buf, start, end);
    if (type === FRAME_RELAY_CONTROL) return this.onControl(connId, buf, start, end);
    if (type === FrameType.EXTENSIONS) {
      const conn = this.r.reals.get(connId);
      if (conn !== undefined && !conn.extended) {
        conn.extended = true;
        this.hello(conn);
      }
    }
    this.r.sink!(connId, buf, start, end);
  }

  private onRelay(connId: ConnId, buf: Buffer, start: number, end: number): void {
    const r = this.r;
    const conn = r.reals.get(connId);
    if (conn === undefined || conn.ident === null) {
      r.counters.malformed++;
      return;
    }
    // The same stream as the last frame from this neighbour (the common case): no decoding.
    const key = conn.lastKey;
    const target = conn.lastTarget;
    if (key !== null && target !== null && !target.closed) {
      const at = start + 1 + key.length;
      if (at + 4 <= end && buf.compare(key, 0, key.length, start + 1, at) === 0 && buf.readUInt32BE(at) <= end - at - 4) {
        if (target.kind === 'route') return forwardOn(r, target, buf, at, end);
        return deliverRun(r, target, buf, at, end);
      }
    }
    const head = decodeRelayHead(buf, start, end);
    if (head === null) {
      r.counters.malformed++;
      log(`conn ${connId}: malformed RELAY frame dropped`);
      return;
    }
    conn.lastKey = Buffer.from(buf.subarray(start + 1, head.at));
    conn.lastTarget = null;
    if (head.dst === r.identity) {
      receiveVirtual(r, conn, head, buf, end);
      const v = conn.virtuals.get(head.src);
      if (v !== undefined && !v.closed) conn.lastTarget = v;
      return;
    }
    forward(r, conn, head, buf, end);
  }

  private onControl(connId: ConnId, buf: Buffer, start: number, end: number): void {
    const r = this.r;
    const conn = r.reals.get(connId);
    const frame = conn === undefined ? null : decodeControl(buf, start, end);
    if (conn === undefined || frame === null) {
      r.counters.malformed++;
      return;
    }
    if (frame.kind === Control.HELLO) {
      const first = conn.peerHello < 0;
      conn.peerHello = frame.flags;
      if (first && conn.ident !== null) this.peerReady(conn);
      return;
    }
    if (conn.ident === null) {
      r.counters.malformed++;
      return;
    }
    switch (frame.kind) {
      case Control.QUERY:
        return onQuery(r, conn, frame.id, frame.count, frame.target);
      case Control.REPLY:
        return onReply(r, conn, frame.id, frame.count, frame.target);
      case Control.CREDIT:
        if (frame.src === r.identity) return onCredit(r, conn, frame.dst, frame.value);
        return onRouteCredit(r, conn, frame.src, frame.dst, frame.value);
      case Control.CLOSE: {
        const remote = frame.src === r.identity ? frame.dst : frame.dst === r.identity ? frame.src : null;
        if (remote !== null) {
          const v = conn.virtuals.get(remote);
          if (v !== undefined) {
            const reason = reasonName(frame.value);
            if (reason === 'closed') closeVirtual(r, v, false, `closed by ${remote}`);
            else failVirtual(r, v, new RelayError(reason as 'refused', `relayed connection to ${remote} via ${conn.ident}: ${reason}`));
          }
          return;
        }
        return closePair(r, frame.src, frame.dst, frame.value, conn);
      }
    }
  }

  private hello(conn: RealConn): void {
    if (conn.helloSent || conn.ident === null || !conn.extended) return;
    conn.helloSent = true;
    const o = this.r.options;
    this.r.control(conn, encodeHello(o.forward && o.allow(conn.ident) ? HELLO_FORWARDS : 0));
  }

  private peerReady(conn: RealConn): void {
    const r = this.r;
    if ((conn.peerHello & HELLO_FORWARDS) !== 0 && conn.trusted) {
      log(`${conn.ident} relays for us`);
      onRelayFound(r, conn);
    }
    onPeerReady(r, conn);
  }

  // --- PacketTransport: sending ------------------------------------------------------

  /** Part of {@link PacketTransport}. */
  sendPacket(connId: ConnId, payload: Uint8Array, tail?: Uint8Array): number {
    if (!isVirtual(connId)) return this.r.below.sendPacket(connId, payload, tail);
    return sendVirtual(this.r, sendable(this.r, connId), payload, tail);
  }

  /** Part of {@link PacketTransport}: a relayed connection's packet goes into the real one's batch behind its RELAY head. */
  allocPacket(connId: ConnId, size: number): number {
    const below = this.r.below;
    if (!isVirtual(connId)) {
      const id = below.allocPacket(connId, size);
      this.allocated = below.allocated;
      this.allocatedOffset = below.allocatedOffset;
      this.allocatedView = below.allocatedView;
      this.allocatedSlab = below.allocatedSlab;
      return id;
    }
    const v = sendable(this.r, connId);
    const id = allocVirtual(this.r, v, size);
    const slab = v.slab!;
    this.allocated = slab.buf;
    this.allocatedOffset = v.used - size;
    this.allocatedView = slab.view;
    this.allocatedSlab = slab;
    return id;
  }

  /** Part of {@link PacketTransport}. */
  retain(slab: Slab): void {
    if (this.r.ownSlabs.has(slab)) slab.retained++;
    else this.r.below.retain(slab);
  }

  /** Part of {@link PacketTransport}. */
  release(slab: Slab): void {
    if (this.r.ownSlabs.has(slab)) slab.retained--;
    else this.r.below.release(slab);
  }

  /** Part of {@link PacketTransport}: a relayed connection is writable while its window is not used up. */
  isWritable(connId: ConnId): boolean {
    if (!isVirtual(connId)) return this.r.below.isWritable(connId);
    const v = this.r.virtuals.get(connId);
    return v !== undefined && virtualWritable(this.r, v);
  }

  /** Part of {@link PacketTransport}. */
  flushConnection(connId: ConnId): void {
    if (!isVirtual(connId)) return this.r.below.flushConnection(connId);
    const v = this.r.virtuals.get(connId);
    if (v === undefined || v.real.closed) return;
    flushVirtual(this.r, v);
    this.r.below.flushConnection(v.real.id);
  }

  // --- PacketTransport: connection control --------------------------------------------

  /** Part of {@link PacketTransport}. */
  restrict(connId: ConnId, maxPacketSize: number): void {
    if (!isVirtual(connId)) return this.r.below.restrict(connId, maxPacketSize);
    const v = this.r.virtuals.get(connId);
    if (v !== undefined) v.decoder.maxPacketSize = Math.min(maxPacketSize, this.r.below.options.maxPacketSize);
  }

  /** Part of {@link PacketTransport}. */
  unrestrict(connId: ConnId): void {
    if (!isVirtual(connId)) return this.r.below.unrestrict(connId);
    const v = this.r.virtuals.get(connId);
    if (v !== undefined) v.decoder.maxPacketSize = this.r.below.options.maxPacketSize;
  }

  /** Part of {@link PacketTransport}: pausing a relayed connection pauses the connection to its relay (reads are per socket). */
  pause(connId: ConnId): void {
    const r = this.r;
    if (!isVirtual(connId)) {
      const conn = r.reals.get(connId);
      if (conn === undefined) return r.below.pause(connId);
      return pauseReal(r, conn);
    }
    const v = r.virtuals.get(connId);
    if (v === undefined || v.paused) return;
    v.paused = true;
    pauseReal(r, v.real);
  }

  /** Part of {@link PacketTransport}. */
  resume(connId: ConnId): void {
    const r = this.r;
    if (!isVirtual(connId)) {
      const conn = r.reals.get(connId);
      if (conn === undefined) return r.below.resume(connId);
      return resumeReal(r, conn);
    }
    const v = r.virtuals.get(connId);
    if (v === undefined || !v.paused) return;
    v.paused = false;
    resumeReal(r, v.real);
  }

  /** Part of {@link PacketTransport}. */
  connection(connId: ConnId): ConnectionInfo | undefined {
    if (!isVirtual(connId)) return this.r.below.connection(connId);
    return this.r.virtuals.get(connId)?.info;
  }

  /** Part of {@link PacketTransport}: one connection (a relayed one is closed end to end), or everything, the Packeter included. */
  close(connId?: ConnId, reason?: SnakeMQError): Promise<void> {
    const r = this.r;
    if (connId !== undefined) {
      if (!isVirtual(connId)) return r.below.close(connId, reason);
      const v = r.virtuals.get(connId);
      if (v !== undefined) closeVirtual(r, v, true, reason?.message ?? 'closed');
      return Promise.resolve();
    }
    if (this.closing !== null) return this.closing;
    r.closed = true;
    if (r.wantTimer !== null) clearTimeout(r.wantTimer);
    r.wantTimer = null;
    for (const v of [...r.virtuals.values()]) closeVirtual(r, v, true, new ClosedError('closing').message);
    this.closing = r.below.close();
    return this.closing;
  }
}
