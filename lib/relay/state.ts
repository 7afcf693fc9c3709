/**
 * The state the relay's modules share (as Messaging's core does for its
 * own): the connections below as the relay sees them, the relayed
 * connections it offers Messaging above, the streams it forwards and the
 * routes it learned. The modules are functions of this state, in the order
 * a relayed packet meets them: relay-transport (the PacketTransport face
 * and the frame switch) → virtual (relayed connections: send, receive,
 * flow control at the sender) → forward (a relay's streams: forward,
 * credit, close) → routes (queries, replies, learned routes, peers wanted).
 * @module
 */
import type { Buffer } from 'node:buffer';
import type { SnakeMQError } from '../errors.js';
import type { ConnectionInfo, ConnId } from '../link/types.js';
import type { ConnPacketRun, ConnPacketSink, PacketTransport, PacketTransportEvents } from '../packeter/packet-transport.js';
import type { PacketDecoder } from '../packeter/decoder.js';
import type { Slab } from '../packeter/write-batch.js';
import type { Deque } from '../util/deque.js';
import type { ResolvedRelayOptions } from './options.js';

/** A connection of the Packeter below, as the relay sees it. */
export interface RealConn {
  readonly id: ConnId;
  readonly info: ConnectionInfo;
  /** Set once Messaging bound the connection to an identity. */
  ident: string | null;
  /** The peer sent EXTENSIONS (a snakemq-ts peer: relay frames may be sent to it). */
  extended: boolean;
  helloSent: boolean;
  /** The peer's HELLO flags; -1 before its HELLO. */
  peerHello: number;
  /** Whether this side believes the peer as a relay (`trust`), once identified. */
  trusted: boolean;
  /** Relayed connections that run over this one, by the remote identity. */
  readonly virtuals: Map<string, VirtualConn>;
  /** Streams forwarded from or to this connection. */
  readonly routes: Set<Route>;
  /** Streams opened by this neighbour (its share of `maxRoutesPerPeer`). */
  opened: number;
  pauses: number;
  closed: boolean;
  /** The head bytes (hops, src, dst) of the last RELAY frame from it, and what they led to. */
  lastKey: Buffer | null;
  lastTarget: Route | VirtualConn | null;
}

/** A connection offered to Messaging that runs through a relay. */
export interface VirtualConn {
  readonly kind: 'virtual';
  readonly id: ConnId;
  readonly remote: string;
  readonly real: RealConn;
  readonly info: ConnectionInfo;
  /** RELAY head for what this side sends (hops 0, src us, dst remote). */
  readonly head: Buffer;
  /** Bytes sent and not yet credited by the relay. */
  outstanding: number;
  /** `isWritable` returned false: `drain` is owed. */
  blocked: boolean;
  /** This side's batch of packets for the remote (Messaging writes into it), flushed as one RELAY frame per tick or when full. */
  slab: Slab | null;
  used: number;
  /** Where the part not yet handed to the real connection starts. */
  flushFrom: number;
  /** The id of the last packet written to this connection (ids of relayed connections are the relay's own). */
  lastPacketId: number;
  /** Ids of the real connection's packets carrying ours, with our last packet id in each, until they are written. */
  readonly carriers: Deque<[realId: number, lastId: number]>;
  /** Reads the inner packets that arrive, for Messaging's run of MESSAGE packets (its limit is the handshake limit). */
  readonly decoder: PacketDecoder;
  paused: boolean;
  closed: boolean;
  bytesIn: number;
  bytesOut: number;
}

/** One direction of a stream a relay forwards. */
export interface Route {
  readonly kind: 'route';
  readonly key: string;
  readonly src: string;
  readonly dst: string;
  readonly prev: RealConn;
  readonly next: RealConn;
  /** Relays the stream passed before this one. */
  readonly hops: number;
  /** The next hop is the destination itself (this relay gives the credit). */
  readonly last: boolean;
  readonly outHead: Buffer;
  /** Bytes forwarded and not yet taken by the next hop. */
  held: number;
  /** Credit owed to the previous hop. */
  credit: number;
  packets: number;
  bytes: number;
  closed: boolean;
}

/** A route learned from a neighbour's REPLY. */
export interface Learned {
  readonly conn: RealConn;
  readonly distance: number;
  readonly at: number;
}

/** Someone asked for a target this relay could not reach yet. */
export interface Waiter {
  readonly conn: RealConn;
  readonly id: Buffer;
  readonly at: number;
}

/** A peer Messaging has messages for and no connection to. */
export interface Wanted {
  delay: number;
  due: number;
}

/** Counters of what the relay refused or dropped (see `RelayTransport.stats`). */
export interface RelayCounters {
  /** Packets forwarded for others. */
  forwardedPackets: number;
  forwardedBytes: number;
  /** Relay frames that did not parse, or came before identification. */
  malformed: number;
  /** Streams refused: source not allowed, relay not trusted, forwarding off, bounds. */
  refused: number;
  /** Streams for which no route was known. */
  unreachable: number;
  /** Streams stopped at the hop limit. */
  hopLimit: number;
  /** Streams cut off because a sender went past `maxHeldPerRoute`. */
  overflow: number;
  /** Route queries seen again (loops) and not passed on. */
  duplicateQueries: number;
  /** Relayed connections closed because the inner identity was not the relay's word. */
  forged: number;
}

/** */
export class RelayCore {
  readonly reals = new Map<ConnId, RealConn>();
  /** Identified real connections by identity. */
  readonly byIdent = new Map<string, RealConn>();
  readonly virtuals = new Map<ConnId, VirtualConn>();
  /** Relayed connections by remote identity: one per remote. */
  readonly virtualByRemote = new Map<string, VirtualConn>();
  readonly routes = new Map<string, Route>();
  readonly learned = new Map<string, Learned>();
  /** Query ids seen (hex), oldest first. */
  readonly seenQueries = new Map<string, number>();
  /** Query ids passed on, with who asked. */
  readonly pending = new Map<string, { asker: RealConn; target: string; at: number }>();
  readonly waiters = new Map<string, Waiter[]>();
  waiterCount = 0;
  readonly wanted = new Map<string, Wanted>();
  wantTimer: NodeJS.Timeout | null = null;
  readonly creditRoutes = new Set<Route>();
  /** Bytes held for all forwarded streams together. */
  held = 0;
  creditScheduled = false;
  nextVirtualId = VIRTUAL_BASE;
  /** Packet ids of relayed connections. */
  nextPacketId = 1;
  /** Relayed connections with packets not yet handed to their real connection. */
  readonly dirty = new Set<VirtualConn>();
  flushScheduled = false;
  /** Batches of relayed connections (not the Packeter's): `retain`/`release` of them stay here. */
  readonly ownSlabs = new WeakSet<Slab>();
  closed = false;
  readonly counters: RelayCounters = {
    forwardedPackets: 0,
    forwardedBytes: 0,
    malformed: 0,
    refused: 0,
    unreachable: 0,
    hopLimit: 0,
    overflow: 0,
    duplicateQueries: 0,
    forged: 0,
  };
  readonly handlers: { [E in keyof PacketTransportEvents]: PacketTransportEvents[E][] } = {
    connect: [],
    disconnect: [],
    sent: [],
    drain: [],
    protocolError: [],
  };
  sink: ConnPacketSink | null = null;
  run: ConnPacketRun | undefined;

  constructor(
    readonly identity: string,
    readonly below: PacketTransport,
    readonly options: ResolvedRelayOptions,
    /** The clock (ms); injectable for tests. */
    readonly now: () => number,
  ) {}

  emit<E extends keyof PacketTransportEvents>(event: E, ...args: Parameters<PacketTransportEvents[E]>): void {
    for (const fn of this.handlers[event]) (fn as (...a: unknown[]) => void)(...args);
  }

  /** Sends a control frame on a real connection; a connection that went away is skipped. */
  control(conn: RealConn, frame: Buffer): void {
    if (conn.closed) return;
    try {
      this.below.sendPacket(conn.id, frame);
    } catch {
      // It is closing below us: its disconnect follows and cleans up.
    }
  }
}

/**
 * Relayed connections' ids start here: above any the Link gives (its stream
 * connections count up from 1, its datagram ones down from -1).
 */
export const VIRTUAL_BASE = 2 ** 50;

/** Whether a connection id is one of a relayed connection. */
export function isVirtual(connId: ConnId): boolean {
  return connId >= VIRTUAL_BASE;
}

/** The key of a stream direction. */
export function routeKey(src: string, dst: string): string {
  return `${src}\u0000${dst}`;
}

/** Errors a relayed connection can end with. */
export type VirtualEnd = SnakeMQError | undefined;
