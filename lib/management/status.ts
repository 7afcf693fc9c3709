/**
 * The status snapshot management serves: what a Peer's layers report
 * (Link.endpoints, connection info and socket byte counters, Messaging.stats,
 * the storage's size, a relay's routes), gathered into one bounded,
 * plain-data object. Builds on the read-only accessors of lib/link,
 * lib/messaging and lib/storage.
 * @module
 */
import type { ConnectionInfo, ConnectorStatus, ListenerStatus } from '../link/index.js';
import type { PeerStats } from '../messaging/index.js';
import type { Peer } from '../peer/index.js';
import type { RelayRouteInfo } from '../relay/relay-transport.js';
import { MemoryQueuesStorage } from '../storage/index.js';
import { MAX_ERROR_MESSAGE_LENGTH, MAX_TLS_ALT_NAMES, type ResolvedManagementOptions } from './options.js';

/** Version of the {@link ManagementStatus} layout (bumped when a field changes meaning). */
export const MANAGEMENT_STATUS_VERSION = 1;

/** What a status tells of a connection's TLS peer: verification and names, not the whole certificate. */
export interface TlsPeerStatus {
  /** Negotiated protocol, e.g. `TLSv1.3`. */
  readonly protocol: string | null;
  /** Whether the peer's certificate was verified against the configured CAs. */
  readonly authorized: boolean;
  /** Why verification failed, or `null`. */
  readonly authorizationError: string | null;
  /** The certificate's subject common name, or `null` (no certificate, or none in it). */
  readonly subjectCN: string | null;
  /** Its subject alternative names (`DNS:…`, `IP Address:…`), at most {@link MAX_TLS_ALT_NAMES}. */
  readonly subjectAltNames: readonly string[];
}

/** One live connection in a status. */
export interface ConnectionStatus {
  readonly connId: number;
  /** The peer's identity once it identified (bound to its queue), else `null`. */
  readonly ident: string | null;
  /** `connector`: this peer dialled; `listener`: the remote peer did. */
  readonly side: 'connector' | 'listener';
  /** The listener or connector URL it belongs to. */
  readonly endpoint: string;
  readonly remoteAddress: string | null;
  readonly remotePort: number | null;
  readonly localAddress: string | null;
  readonly localPort: number | null;
  /** TLS details, `null` on a plain connection. */
  readonly tls: TlsPeerStatus | null;
  /** Bytes read from and written to its socket (TLS records included), read when the status is made. */
  readonly bytesRead: number;
  readonly bytesWritten: number;
  /** MESSAGE frames received and written on it (0 before it identified). */
  readonly messagesIn: number;
  readonly messagesOut: number;
}

/** What the storage holds, in a status. */
export interface StorageStatus {
  /** `memory` (MemoryQueuesStorage), `sqlite` (SqliteQueuesStorage) or `other`. */
  readonly kind: 'memory' | 'sqlite' | 'other';
  /** Whether it survives a restart. */
  readonly durable: boolean;
  /** Messages stored, `null` when the storage cannot tell. */
  readonly messages: number | null;
  /** Bytes of their data (memory), else `null`. */
  readonly bytes: number | null;
  /** Size of its files on disk (SQLite: database and WAL), else `null`. */
  readonly fileBytes: number | null;
  /** Why the size could not be read (the storage failed), else `null`. */
  readonly error: string | null;
}

/** Totals of a status: over everything, not only what is listed. */
export interface StatusTotals {
  /** Live connections (handshaking ones included). */
  readonly connections: number;
  /** Bytes read and written since the peer started, ended connections included. */
  readonly bytesRead: number;
  readonly bytesWritten: number;
  /** MESSAGE frames received and written since the peer started. */
  readonly messagesIn: number;
  readonly messagesOut: number;
  /** Messages counted in every queue (waiting and in flight). */
  readonly queued: number;
  /** Of them, in flight (written, waiting for their acknowledgement), over the identities listed. */
  readonly inFlight: number;
}

/**
 * A peer's status, as the management object's `status()` returns it. Plain
 * data (every absent value is `null`): it goes over RPC as it is. Every list
 * is bounded (`maxPeers`, `maxEndpoints`); its `…Truncated` flag tells when
 * more exist.
 */
export interface ManagementStatus {
  /** {@link MANAGEMENT_STATUS_VERSION}. */
  readonly version: number;
  /** The peer's identity. */
  readonly identity: string;
  /** When the status was made (ms since the epoch). */
  readonly time: number;
  readonly listeners: readonly ListenerStatus[];
  readonly listenersTruncated: boolean;
  readonly connectors: readonly ConnectorStatus[];
  readonly connectorsTruncated: boolean;
  readonly connections: readonly ConnectionStatus[];
  readonly connectionsTruncated: boolean;
  /** Identities with state kept (connected, queued for, or idle within their grace): queues, in flight, oldest age. */
  readonly peers: readonly PeerStats[];
  readonly peersTruncated: boolean;
  /** How many identities have state kept (`peers` lists at most `maxPeers`). */
  readonly identities: number;
  readonly totals: StatusTotals;
  /** `null` without storage. */
  readonly storage: StorageStatus | null;
  /** A relay's routes (`relayRoutes` option), `[]` without one. */
  readonly relayRoutes: readonly RelayRouteInfo[];
  readonly relayRoutesTruncated: boolean;
}

function cut(text: string): string {
  return text.length > MAX_ERROR_MESSAGE_LENGTH ? `${text.slice(0, MAX_ERROR_MESSAGE_LENGTH - 1)}…` : text;
}

/** @internal The TLS part of a connection, without the certificate itself. */
export function tlsPeerOf(info: ConnectionInfo): TlsPeerStatus | null {
  const t = info.tls;
  if (t === undefined) return null;
  const cert = t.peerCertificate as { subject?: { CN?: unknown }; subjectaltname?: unknown };
  const cn = cert.subject?.CN;
  const alt = typeof cert.subjectaltname === 'string' && cert.subjectaltname !== '' ? cert.subjectaltname.split(', ') : [];
  return {
    protocol: t.protocol,
    authorized: t.authorized,
    authorizationError: t.authorizationError === undefined ? null : cut(String(t.authorizationError)),
    subjectCN: typeof cn === 'string' ? cn : Array.isArray(cn) && typeof cn[0] === 'string' ? cn[0] : null,
    subjectAltNames: alt.slice(0, MAX_TLS_ALT_NAMES).map(cut),
  };
}

async function storageOf(peer: Peer): Promise<StorageStatus | null> {
  const storage = peer.storage;
  if (storage === null) return null;
  const s = storage as { path?: unknown; settings?: unknown };
  const kind = storage instanceof MemoryQueuesStorage ? 'memory' : typeof s.path === 'string' && typeof s.settings === 'function' ? 'sqlite' : 'other';
  const base = { kind, durable: storage.durable } as const;
  if (storage.size === undefined) return { ...base, messages: null, bytes: null, fileBytes: null, error: null };
  try {
    const size = await storage.size();
    return { ...base, messages: size.messages, bytes: size.bytes, fileBytes: size.fileBytes, error: null };
  } catch (error) {
    return { ...base, messages: null, bytes: null, fileBytes: null, error: cut(error instanceof Error ? error.message : String(error)) };
  }
}

function take<T>(items: Iterable<T>, limit: number): { list: T[]; truncated: boolean } {
  const list: T[] = [];
  for (const item of items) {
    if (list.length === limit) return { list, truncated: true };
    list.push(item);
  }
  return { list, truncated: false };
}

function relayRoutesOf(o: ResolvedManagementOptions): { list: RelayRouteInfo[]; truncated: boolean } {
  if (o.relayRoutes === null) return { list: [], truncated: false };
  const routes = o.relayRoutes();
  const { list, truncated } = take(routes, o.maxPeers);
  // Copied field by field: only these go out, whatever else the provider's objects hold.
  return {
    list: list.map((r) => ({
      source: r.source,
      destination: r.destination,
      previous: r.previous,
      next: r.next,
      hops: r.hops,
      packetsForwarded: r.packetsForwarded,
      bytesForwarded: r.bytesForwarded,
      held: r.held,
    })),
    truncated,
  };
}

/** @internal Makes the status of `peer`: bounded work (every loop stops at a limit, or at the live connections). */
export async function statusOf(peer: Peer, o: ResolvedManagementOptions): Promise<ManagementStatus> {
  const time = Date.now();
  const link = peer.link;
  const messaging = peer.messaging;
  const endpoints = link.endpoints();
  const listeners = take(endpoints.listeners, o.maxEndpoints);
  const connectors = take(endpoints.connectors, o.maxEndpoints);
  const stats = messaging.stats(o.maxPeers);
  // Connected identities are at most the live connections: their stats give each connection its identity.
  const byConn = new Map<number, PeerStats>();
  for (const ident of messaging.connectedPeers()) {
    const p = messaging.peerStats(ident);
    if (p !== undefined && p.connId !== null) byConn.set(p.connId, p);
  }
  const ids = take(link.connectionIds(), o.maxPeers);
  const connections: ConnectionStatus[] = [];
  for (const id of ids.list) {
    const info = link.connection(id);
    if (info === undefined) continue;
    const bytes = link.connectionBytes(id);
    const p = byConn.get(id);
    connections.push({
      connId: id,
      ident: p === undefined ? null : p.ident,
      side: info.side,
      endpoint: info.endpoint,
      remoteAddress: info.remoteAddress ?? null,
      remotePort: info.remotePort ?? null,
      localAddress: info.localAddress ?? null,
      localPort: info.localPort ?? null,
      tls: tlsPeerOf(info),
      bytesRead: bytes?.bytesRead ?? 0,
      bytesWritten: bytes?.bytesWritten ?? 0,
      messagesIn: p?.messagesIn ?? 0,
      messagesOut: p?.messagesOut ?? 0,
    });
  }
  // Peers reached through a relay: connections of their own, whose bytes travel inside the one to the relay.
  let relayedTruncated = false;
  for (const v of messaging.relay?.relayedConnections() ?? []) {
    if (connections.length >= o.maxPeers) {
      relayedTruncated = true;
      break;
    }
    const p = byConn.get(v.connId);
    connections.push({
      connId: v.connId,
      ident: p === undefined ? null : p.ident,
      side: v.side,
      endpoint: `relay://${v.via}/${v.peer}`,
      remoteAddress: null,
      remotePort: null,
      localAddress: null,
      localPort: null,
      tls: null,
      bytesRead: v.bytesIn,
      bytesWritten: v.bytesOut,
      messagesIn: p?.messagesIn ?? 0,
      messagesOut: p?.messagesOut ?? 0,
    });
  }
  const bytes = link.totalBytes();
  const relay = relayRoutesOf(o);
  const storage = await storageOf(peer);
  let inFlight = 0;
  for (const p of stats.peers) inFlight += p.inFlight;
  return {
    version: MANAGEMENT_STATUS_VERSION,
    identity: peer.identity,
    time,
    listeners: listeners.list,
    listenersTruncated: listeners.truncated,
    connectors: connectors.list.map((c) => (c.lastError === null ? c : { ...c, lastError: { code: c.lastError.code, message: cut(c.lastError.message) } })),
    connectorsTruncated: connectors.truncated,
    connections,
    connectionsTruncated: ids.truncated || relayedTruncated,
    peers: stats.peers,
    peersTruncated: stats.truncated,
    identities: stats.identities,
    totals: {
      connections: stats.connections,
      bytesRead: bytes.bytesRead,
      bytesWritten: bytes.bytesWritten,
      messagesIn: stats.messagesIn,
      messagesOut: stats.messagesOut,
      queued: stats.queued,
      inFlight,
    },
    storage,
    relayRoutes: relay.list,
    relayRoutesTruncated: relay.truncated,
  };
}
