/**
 * The {@link Link} facade: the public API of the link layer over its modules
 * (connection.ts: established connections and the write path; listener.ts;
 * connector.ts: dialling and reconnect backoff; tls-handshake.ts).
 * @module
 */
import { InvalidArgumentError, type SnakeMQError } from '../errors.js';
import { createLogger } from '../util/log.js';
import { Connections } from './connection.js';
import { Connectors } from './connector.js';
import { Datagrams, type LinkDatagramCounters } from './datagram.js';
import { parseEndpoint } from './endpoint.js';
import { TypedEventSource } from './event-source.js';
import { Listeners } from './listener.js';
import { bytesOf, connectorStatus, listenerStatus, type ByteCounts, type LinkEndpoints } from './status.js';
import { resolveLinkOptions, type ConnectorOptions, type LinkOptions, type ListenerOptions } from './options.js';
import type { ConnId, ConnectionInfo, Endpoint, ParsedEndpoint, Transport } from './types.js';

const log = createLogger('snakemq:link');

/**
 * The socket layer: any number of listeners and connectors over TCP, TLS and
 * Unix sockets, with symmetric connections (a peer does not care who dialled).
 * Connectors reconnect until removed. Failures are reported as events
 * ({@link LinkEvents}) carrying typed errors; nothing is ever emitted as
 * `'error'` and no socket error escapes to the process.
 *
 * Debug logging: `DEBUG=snakemq:link`.
 *
 * @example
 * ```ts
 * const link = new Link();
 * link.on('connect', (info) => link.send(info.id, Buffer.from('hello')));
 * const url = await link.addListener('tcp://127.0.0.1:0'); // e.g. tcp://127.0.0.1:41234
 * link.addConnector('tls://peer.example:4000', { tls: { ca, key, cert } });
 * ```
 */
export class Link extends TypedEventSource implements Transport, AsyncDisposable {
  readonly #conns: Connections;
  readonly #listeners: Listeners;
  readonly #connectors: Connectors;
  readonly #datagrams: Datagrams;
  #closed = false;
  #closing: Promise<void> | undefined;

  /** @throws InvalidOptionsError on unknown keys or bad values. */
  constructor(options?: LinkOptions) {
    super();
    const opts = resolveLinkOptions(options);
    const events = this.emitter;
    this.#conns = new Connections(opts, events, this, (c) => this.#connectors.connectionEnded(c));
    this.#listeners = new Listeners(opts, events, this, this.#conns);
    this.#connectors = new Connectors(events, this, this.#conns);
    this.#datagrams = new Datagrams(events, this);
  }

  /** Counters of the `udp://` listeners and connectors (a live object: read, do not write). */
  get datagramCounters(): Readonly<LinkDatagramCounters> {
    return this.#datagrams.counters;
  }

  /** Whether {@link close} (without an id) was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Listen on an endpoint. Any number of listeners may coexist. A `udp://`
   * listener is one datagram socket: no connections, each datagram within
   * `maxDatagramSize` and `allowSource` is a `datagram` event (docs/datagrams.md). A stale Unix
   * socket file (nobody accepting on it) is replaced; the file is removed again
   * by {@link removeListener} / {@link close}.
   *
   * @returns the bound address as a URL: port 0 is replaced by the port the OS
   *   picked, a host name by the address, e.g. `tcp://127.0.0.1:41234`.
   * @throws (rejects) InvalidEndpointError, InvalidOptionsError (including a
   *   missing or misspelt TLS option, or unusable key/cert), ConnectionError
   *   (e.g. `EADDRINUSE`, the Node error as `cause`), ClosedError after close().
   */
  addListener(endpoint: Endpoint, options?: ListenerOptions): Promise<string> {
    const udp = udpEndpoint(endpoint);
    if (udp !== null) return this.#datagrams.listen(udp, options);
    return this.#listeners.add(endpoint, options);
  }

  /**
   * Stop listening: no new connections are accepted and the ones accepted by
   * this listener are closed (`disconnect` with `by: 'local'`). Resolves once
   * the server and those sockets are closed.
   *
   * @param endpoint the URL returned by {@link addListener}, or the endpoint
   *   passed to it (when that is unambiguous).
   * @throws (rejects) InvalidEndpointError, InvalidArgumentError when no such listener exists.
   */
  async removeListener(endpoint: Endpoint): Promise<void> {
    if (this.#closing) return this.#closing;
    const udp = udpEndpoint(endpoint);
    if (udp !== null) return this.#datagrams.close(this.#datagramOf('listener', udp.url));
    await this.#listeners.remove(endpoint);
  }

  /**
   * Connect to an endpoint, now and again after every disconnect or failed
   * attempt until {@link removeConnector}. Each failed attempt emits
   * `connectFailed` (ConnectionError, or TlsError when the TLS handshake
   * failed, with the Node error as `cause`); each scheduled retry emits
   * `reconnect(key, attempt, delayMs)`. A connection that ends before it lived
   * `stableAfter` ms (and was not confirmed with {@link markEstablished})
   * counts as a failed attempt, so the delays keep growing.
   *
   * A `udp://` connector (option `identity` required) is a connection at
   * once (`connect` is emitted in the call) that only sends datagrams
   * ({@link sendDatagram}); it never reconnects and ends at removeConnector.
   *
   * @returns the connector key: the endpoint's canonical URL.
   * @throws InvalidEndpointError (also for port 0), InvalidOptionsError,
   *   InvalidArgumentError when a connector for this endpoint exists,
   *   ClosedError after close().
   */
  addConnector(endpoint: Endpoint, options?: ConnectorOptions): string {
    const udp = udpEndpoint(endpoint);
    if (udp !== null) return this.#datagrams.connect(udp, options);
    return this.#connectors.add(endpoint, options);
  }

  /**
   * Stop a connector: no more attempts, pending timers cancelled, its
   * connection (if any) closed with `by: 'local'`. Resolves once its socket is closed.
   * @param endpoint the key returned by {@link addConnector}, or the same endpoint.
   * @throws (rejects) InvalidEndpointError, InvalidArgumentError when no such connector exists.
   */
  async removeConnector(endpoint: Endpoint): Promise<void> {
    if (this.#closing) return this.#closing;
    const udp = udpEndpoint(endpoint);
    if (udp !== null) return this.#datagrams.close(this.#datagramOf('connector', udp.url));
    await this.#connectors.remove(endpoint);
  }

  /**
   * Sends one datagram on a `udp://` connector's connection (see
   * {@link Transport.sendDatagram}); `onWritten` runs once it was handed to
   * the kernel, or with UnknownConnectionError / ClosedError / ConnectionError.
   * @throws DatagramTooLargeError over the connector's `maxDatagramSize`.
   */
  sendDatagram(connId: ConnId, datagram: Buffer, onWritten?: (error?: SnakeMQError) => void): void {
    this.#datagrams.send(connId, datagram, onWritten);
  }

  #datagramOf(kind: 'listener' | 'connector', url: string): ConnId {
    const id = this.#datagrams.find(kind, url);
    if (id === undefined) throw new InvalidArgumentError(`no ${kind} for ${url}`);
    return id;
  }

  /**
   * Queue bytes on a connection. Returns false once the connection's unsent
   * bytes reach `highWaterMark` (a `drain` event follows when they fall below
   * it); the data is queued anyway. `onWritten` runs once the bytes were handed
   * to the kernel, or with an error (never synchronously): UnknownConnectionError
   * for an unknown id, ClosedError when the link or connection is closing,
   * ConnectionError when the socket failed first.
   * @throws InvalidArgumentError when `data` is not a Buffer/Uint8Array.
   */
  send(connId: ConnId, data: Buffer, onWritten?: (error?: SnakeMQError) => void): boolean {
    return this.#conns.send(connId, data, onWritten);
  }

  /**
   * {@link send} of several buffers, in order, handed to the kernel together
   * (one vectored write): a small header and a big payload sent by reference
   * leave as one write, not a tiny one and a big one. `onWritten` runs once for all.
   * @throws InvalidArgumentError when a chunk is not a Buffer/Uint8Array.
   */
  sendv(connId: ConnId, chunks: readonly Buffer[], onWritten?: (error?: SnakeMQError) => void): boolean {
    return this.#conns.sendv(connId, chunks, onWritten);
  }

  /** Whether {@link send} on this connection would currently return true. */
  isWritable(connId: ConnId): boolean {
    return this.#conns.isWritable(connId);
  }

  /** Stop reading from a connection (receive-side backpressure). Unknown ids are ignored. */
  pause(connId: ConnId): void {
    this.#conns.pause(connId);
  }

  /** Resume reading from a paused connection. Unknown ids are ignored. */
  resume(connId: ConnId): void {
    this.#conns.resume(connId);
  }

  /** Info of a connection, until its `disconnect` event. */
  connection(connId: ConnId): ConnectionInfo | undefined {
    return connId < 0 ? this.#datagrams.info(connId) : this.#conns.get(connId)?.info;
  }

  /** Ids of the live connections, in creation order. */
  connectionIds(): ConnId[] {
    return this.#conns.ids();
  }

  /** The listeners and connectors with their state now (a read-only snapshot, for management). */
  endpoints(): LinkEndpoints {
    return { listeners: [...this.#listeners.list()].map(listenerStatus), connectors: [...this.#connectors.list()].map(connectorStatus) };
  }

  /** Bytes read and written on a live connection, as its socket counts them; `undefined` for an unknown id. */
  connectionBytes(connId: ConnId): ByteCounts | undefined {
    const c = this.#conns.get(connId);
    return c === undefined ? undefined : bytesOf(c);
  }

  /** Bytes read and written on every connection since the Link was made, ended ones included (read from the live sockets now). */
  totalBytes(): ByteCounts {
    let bytesRead = this.#conns.closedBytesRead;
    let bytesWritten = this.#conns.closedBytesWritten;
    for (const c of this.#conns.values()) {
      bytesRead += c.socket.bytesRead;
      bytesWritten += c.socket.bytesWritten;
    }
    return { bytesRead, bytesWritten };
  }

  /**
   * Tell the Link that a connection it made is known to be good (say the peer
   * identified itself), before it lived `stableAfter` ms: its connector's
   * reconnect backoff restarts now, and when this connection ends the next
   * attempt is attempt 1. No-op for unknown ids and for accepted
   * (listener-side) connections.
   */
  markEstablished(connId: ConnId): void {
    this.#connectors.markEstablished(this.#conns.get(connId));
  }

  /**
   * With an id: close that connection (`disconnect` with `by: 'local'` and
   * `reason` as `error`), after trying for `closeTimeout` ms to flush what was
   * sent; resolves when its socket is closed (at once for unknown or closed ids).
   *
   * A connector whose connection is closed this way reconnects, as after any
   * disconnect; use {@link removeConnector} to stop it.
   *
   * Without an id: close everything (listeners, connectors, reconnect timers,
   * connections) and resolve once every socket and server is closed. Idempotent
   * (every call returns the same promise); afterwards `addListener`/`addConnector`
   * fail with ClosedError and `send` returns false.
   *
   * A layer owns the layer it is built on: its close() closes it (Messaging →
   * Packeter → Throttle → Link). The Link, at the bottom, owns its sockets and servers.
   */
  close(connId?: ConnId, reason?: SnakeMQError): Promise<void> {
    if (connId !== undefined) {
      if (connId < 0) return this.#datagrams.close(connId);
      const c = this.#conns.get(connId);
      return c ? this.#conns.close(c, reason) : Promise.resolve();
    }
    if (!this.#closing) {
      this.#closed = true;
      this.#closing = this.#closeAll();
    }
    return this.#closing;
  }

  /** `await using link = new Link()`: the same as {@link close} without an id (and the same promise). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #closeAll(): Promise<void> {
    log('closing link');
    const waits: Promise<unknown>[] = [...this.#connectors.stopAll(), ...this.#listeners.stopAll(), ...this.#datagrams.stopAll()];
    for (const c of this.#conns.values()) waits.push(this.#conns.close(c));
    // addListener calls in flight stop their own server when they see the link closed.
    waits.push(...this.#listeners.pendingStarts());
    await Promise.all(waits);
    log('link closed');
  }
}

/** The parsed endpoint when it is `udp://` (a string starting so, or parsing so), else null (parsed again by the stream code). */
function udpEndpoint(endpoint: Endpoint): ParsedEndpoint | null {
  if (typeof endpoint !== 'string' || !/^udp:/i.test(endpoint)) return null;
  return parseEndpoint(endpoint);
}
