/**
 * Read-only snapshots of a {@link Link} for management (lib/management):
 * its listeners and connectors with their state, and byte counters read
 * from the sockets when asked (nothing is counted per write). Builds on the
 * link's internal tables (listener.ts, connector.ts, connection.ts).
 * @module
 */
import type { Conn } from './connection.js';
import type { ConnectorEntry } from './connector.js';
import type { ListenerEntry } from './listener.js';
import type { ConnId } from './types.js';

/** A listener, as {@link Link.endpoints} reports it. */
export interface ListenerStatus {
  /** The bound URL (as `addListener` returned it). */
  readonly url: string;
  /** Whether it is a TLS listener. */
  readonly tls: boolean;
  /** Its established connections now. */
  readonly connections: number;
}

/** A connector, as {@link Link.endpoints} reports it. */
export interface ConnectorStatus {
  /** The connector key (the endpoint's canonical URL). */
  readonly endpoint: string;
  /** `connected`: a connection is up; `connecting`: an attempt is under way; `waiting`: a reconnect is scheduled. */
  readonly state: 'connecting' | 'connected' | 'waiting';
  /** Consecutive failed attempts since the last stable connection (the reconnect attempt number). */
  readonly attempts: number;
  /** The last failed attempt's error (code and message), kept after a later success; `null` when none failed. */
  readonly lastError: { readonly code: string; readonly message: string } | null;
  /** The connection's id while `connected`, else `null`. */
  readonly connId: ConnId | null;
}

/** Listeners and connectors of a Link ({@link Link.endpoints}). */
export interface LinkEndpoints {
  readonly listeners: readonly ListenerStatus[];
  readonly connectors: readonly ConnectorStatus[];
}

/** Bytes read from and written to sockets, as the sockets count them (TLS records included). */
export interface ByteCounts {
  readonly bytesRead: number;
  readonly bytesWritten: number;
}

/** @internal */
export function listenerStatus(l: ListenerEntry): ListenerStatus {
  return { url: l.url, tls: l.tls, connections: l.conns.size };
}

/** @internal */
export function connectorStatus(c: ConnectorEntry): ConnectorStatus {
  const e = c.lastError;
  return {
    endpoint: c.key,
    state: c.conn !== undefined ? 'connected' : c.attempt !== undefined ? 'connecting' : 'waiting',
    attempts: c.failures,
    lastError: e === undefined ? null : { code: e.code, message: e.message },
    connId: c.conn === undefined ? null : c.conn.id,
  };
}

/** @internal The socket's counters now (still readable once it closed). */
export function bytesOf(c: Conn): ByteCounts {
  return { bytesRead: c.socket.bytesRead, bytesWritten: c.socket.bytesWritten };
}
