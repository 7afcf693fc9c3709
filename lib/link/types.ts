import type { PeerCertificate } from 'node:tls';
import type { SnakeMQError } from '../errors.js';
import type { ConnectorOptions, ListenerOptions } from './options.js';

/** Connection id: unique for the life of one {@link Link} (never reused). */
export type ConnId = number;

/**
 * Where to listen or connect:
 * - `tcp://host:port`, `tls://host:port` (IPv6 as `tcp://[::1]:port`);
 * - `unix:///abs/path`, `unix://rel/path`, the Linux abstract namespace as
 *   `unix://\0name` or `unix://@name`; `unix+tls://path` for TLS over a Unix socket;
 * - `udp://host:port` (`udp://[::1]:port`): datagrams, see docs/datagrams.md;
 * - `{ host, port, tls? }` or `{ path, tls? }` objects.
 */
export type Endpoint = string | { host: string; port: number; tls?: boolean } | { path: string; tls?: boolean };

/** An endpoint after parsing and validation. */
export interface ParsedEndpoint {
  /** `tcp` for TCP sockets (plain or TLS), `unix` for Unix stream sockets, `udp` for datagrams. */
  readonly transport: 'tcp' | 'unix' | 'udp';
  /** Whether TLS runs over the socket. */
  readonly tls: boolean;
  /** Host for `tcp` (without brackets for IPv6). */
  readonly host?: string;
  /** Port for `tcp`. */
  readonly port?: number;
  /** Socket path for `unix`; abstract names start with `\0`. */
  readonly path?: string;
  /** The endpoint as a canonical URL (abstract names shown with `@`). */
  readonly url: string;
}

/** TLS details of a connection (see {@link ConnectionInfo.tls}). */
export interface TlsInfo {
  /** Negotiated protocol, e.g. `TLSv1.3`. */
  readonly protocol: string | null;
  /** Negotiated cipher name. */
  readonly cipher: string;
  /** Whether the peer certificate was verified against the configured CAs. */
  readonly authorized: boolean;
  /** Why verification failed, when it did (only seen with `rejectUnauthorized: false`). */
  readonly authorizationError?: string;
  /** The peer's certificate (snakeMQ's `getpeercert`); empty object when the peer sent none. */
  readonly peerCertificate: PeerCertificate | Record<string, never>;
}

/** What is known about one connection. */
export interface ConnectionInfo {
  readonly id: ConnId;
  /** `connector` when this Link connected out; `listener` when the peer connected to us. */
  readonly side: 'connector' | 'listener';
  /** The endpoint URL of the listener or connector this connection belongs to. */
  readonly endpoint: string;
  readonly remoteAddress?: string;
  readonly remotePort?: number;
  readonly localAddress?: string;
  readonly localPort?: number;
  /** Present on TLS connections. */
  readonly tls?: TlsInfo;
  /**
   * `true` for a `udp://` socket, or for one received datagram (then
   * `remoteAddress`/`remotePort` are its source): no handshake, no TLS, the
   * identity it carries is an unauthenticated claim.
   */
  readonly datagram?: true;
  /** A `udp://` connector: the identity of the peer behind it (the connector's `identity` option). */
  readonly identity?: string;
  /** A `udp://` connector: the largest datagram it sends (its `maxDatagramSize` option). */
  readonly maxDatagramSize?: number;
}

/** Why a connection ended. */
export interface DisconnectReason {
  /** `local`: closed by this process; `remote`: the peer closed; `error`: a failure. */
  readonly by: 'local' | 'remote' | 'error';
  /** The failure, when `by` is `error` (or a local close with a reason, e.g. a protocol error). */
  readonly error?: SnakeMQError;
}

/**
 * Events of a {@link Transport} (a Link, or a Throttle wrapping one).
 * No `'error'` event: every failure is reported through these.
 */
export interface LinkEvents {
  /** A connection is established (TCP connected, or TLS handshake finished). */
  connect: (info: ConnectionInfo) => void;
  /**
   * A connection ended. Emitted exactly once per `connect`. Any socket error
   * ends the connection (`by: 'error'`), including TLS errors on an established
   * one, e.g. a client forcing TLS 1.2 renegotiations (a {@link TlsError} with
   * cause code `ERR_TLS_SESSION_ATTACK`).
   */
  disconnect: (connId: ConnId, reason: DisconnectReason) => void;
  /** Bytes arrived on a connection. */
  data: (connId: ConnId, chunk: Buffer) => void;
  /** The connection's send buffer drained below its high-water mark after `send` returned false. */
  drain: (connId: ConnId) => void;
  /** A connect attempt failed (refused, TLS handshake failed…). A reconnect follows unless removed. */
  connectFailed: (endpoint: string, error: SnakeMQError) => void;
  /**
   * A reconnect is scheduled for a connector: attempt number (1-based; counts
   * failed attempts and connections that lived less than `stableAfter` since the
   * last stable one) and delay in ms.
   */
  reconnect: (endpoint: string, attempt: number, delayMs: number) => void;
  /**
   * An incoming connection failed before it was established, and its socket was
   * destroyed: a TLS handshake from a bad client or one that did not finish
   * within `handshakeTimeout` ({@link TlsError}), or a socket over
   * `maxConnections` ({@link ConnectionLimitError}; it never reaches `connect`).
   */
  acceptFailed: (endpoint: string, error: SnakeMQError) => void;
  /**
   * A `udp://` listener (connection id `connId`, negative) received a datagram
   * from `address`:`port` that passed its size limit and source policy. Its
   * content is not checked here: the layers above parse it.
   */
  datagram: (connId: ConnId, datagram: Buffer, address: string, port: number) => void;
}

/** Typed subscription methods shared by Link and Throttle. */
export interface TransportEventSource {
  on<E extends keyof LinkEvents>(event: E, fn: LinkEvents[E]): this;
  once<E extends keyof LinkEvents>(event: E, fn: LinkEvents[E]): this;
  off<E extends keyof LinkEvents>(event: E, fn?: LinkEvents[E]): this;
}

/**
 * What the Packeter needs from below: a Link, a Throttle presenting the same
 * interface (over a Link, another Throttle, or any Transport), or your own.
 * Only the non-optional members are required.
 */
export interface Transport extends TransportEventSource {
  /**
   * Queue bytes for a connection. Returns `false` when the connection's send
   * buffer is above its high-water mark: wait for `drain` before sending more
   * (sending anyway still works, it only buffers). `onWritten` is called once
   * the bytes were handed to the kernel (or with an error when the connection
   * ended first). Sending on an unknown connection calls `onWritten` with an
   * {@link UnknownConnectionError} and returns false.
   */
  send(connId: ConnId, data: Buffer, onWritten?: (error?: SnakeMQError) => void): boolean;
  /**
   * Optional: `send` of several buffers handed to the kernel together (one
   * vectored write), with one `onWritten` for all. The Packeter uses it, when
   * present, for a big payload sent by reference behind its header.
   */
  sendv?(connId: ConnId, chunks: readonly Buffer[], onWritten?: (error?: SnakeMQError) => void): boolean;
  /**
   * Optional: send `datagram` as one datagram on a `udp://` connector's
   * connection (see {@link ConnectionInfo.datagram}); `onWritten` is called
   * once it was handed to the kernel, or with the error (never synchronously).
   * @throws DatagramTooLargeError when it is over the connector's `maxDatagramSize`.
   */
  sendDatagram?(connId: ConnId, datagram: Buffer, onWritten?: (error?: SnakeMQError) => void): void;
  /** Whether `send` on this connection would currently return true. */
  isWritable(connId: ConnId): boolean;
  /** Stop reading from a connection (receive-side backpressure); `resume` starts again. */
  pause(connId: ConnId): void;
  /** Resume reading from a paused connection. */
  resume(connId: ConnId): void;
  /** Info of a live connection. */
  connection(connId: ConnId): ConnectionInfo | undefined;
  /**
   * Optional: the connection is known to be good (e.g. the peer identified
   * itself), so the connector that made it restarts its reconnect backoff now
   * instead of once the connection lived `stableAfter` ms. No-op for unknown
   * ids and accepted connections. A wrapping transport (Throttle) forwards it.
   */
  markEstablished?(connId: ConnId): void;
  /**
   * Optional, for a transport that opens its own connections (a Link): listen
   * on an endpoint, resolving with the bound URL (see {@link Link.addListener}).
   * A wrapping transport (Throttle) forwards it.
   */
  addListener?(endpoint: Endpoint, options?: ListenerOptions): Promise<string>;
  /** Optional: stop a listener (see {@link Link.removeListener}). A wrapping transport forwards it. */
  removeListener?(endpoint: Endpoint): Promise<void>;
  /**
   * Optional: connect to an endpoint and keep reconnecting, returning the
   * connector key (see {@link Link.addConnector}). A wrapping transport forwards it.
   */
  addConnector?(endpoint: Endpoint, options?: ConnectorOptions): string;
  /** Optional: stop a connector (see {@link Link.removeConnector}). A wrapping transport forwards it. */
  removeConnector?(endpoint: Endpoint): Promise<void>;
  /**
   * Close one connection (`disconnect` follows with `by: 'local'` and the
   * given reason), or with no id close everything: resolves once every socket
   * and server is closed. Idempotent.
   */
  close(connId?: ConnId, reason?: SnakeMQError): Promise<void>;
}
