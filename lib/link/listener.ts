/**
 * Listeners of a {@link Link}: binding servers (TCP, TLS, Unix; stale Unix
 * socket files replaced), admitting accepted sockets under `maxConnections`,
 * and stopping. Accepted sockets become connections through
 * {@link Connections.adopt}; TLS servers are wired by tls-handshake.ts.
 * Builds on node:net.
 * @module
 */
import { lstat, unlink } from 'node:fs/promises';
import net from 'node:net';
import type tls from 'node:tls';
import { ClosedError, ConnectionError, ConnectionLimitError, InvalidArgumentError } from '../errors.js';
import { createLogger } from '../util/log.js';
import type { Conn, Connections, LinkState } from './connection.js';
import { parseEndpoint } from './endpoint.js';
import type { LinkEmitter } from './event-source.js';
import { resolveListenerOptions, type LinkOptions, type ListenerOptions } from './options.js';
import { messageOf } from './socket-util.js';
import { clientHandshakeError, createTlsServer, wireTlsServer } from './tls-handshake.js';
import type { Endpoint, ParsedEndpoint } from './types.js';

const log = createLogger('snakemq:link');

/** One listener. @internal */
export interface ListenerEntry {
  readonly kind: 'listener';
  readonly requested: ParsedEndpoint;
  url: string;
  readonly server: net.Server;
  readonly tls: boolean;
  readonly conns: Set<Conn>;
  /** Raw sockets of a TLS listener whose handshake has not finished. */
  readonly handshaking: Set<net.Socket>;
  stopped: boolean;
  stopping: Promise<void> | undefined;
}

/** The listeners of one Link. @internal */
export class Listeners {
  readonly #opts: Required<LinkOptions>;
  readonly #events: LinkEmitter;
  readonly #link: LinkState;
  readonly #conns: Connections;
  readonly #listeners = new Set<ListenerEntry>();
  /** addListener calls still in progress; close() waits for them. */
  readonly #starting = new Set<Promise<unknown>>();
  /** Accepted sockets (all listeners, TLS handshakes included) not yet closed: what maxConnections bounds. */
  #accepted = 0;

  constructor(opts: Required<LinkOptions>, events: LinkEmitter, link: LinkState, conns: Connections) {
    this.#opts = opts;
    this.#events = events;
    this.#link = link;
    this.#conns = conns;
  }

  /** See {@link Link.addListener}. */
  async add(endpoint: Endpoint, options?: ListenerOptions): Promise<string> {
    if (this.#link.closed) throw new ClosedError('link is closed');
    const parsed = parseEndpoint(endpoint);
    const opts = resolveListenerOptions(parsed, options);
    const server: net.Server = opts.tls ? createTlsServer(parsed, opts.tls) : net.createServer();
    const entry: ListenerEntry = {
      kind: 'listener',
      requested: parsed,
      url: parsed.url,
      server,
      tls: parsed.tls,
      conns: new Set(),
      handshaking: new Set(),
      stopped: false,
      stopping: undefined,
    };
    this.#wireServer(entry, opts.tls?.requestCert === true && opts.tls.rejectUnauthorized);

    const start = (async () => {
      await listen(server, parsed, opts.backlog);
      entry.url = boundUrl(server, parsed);
      this.#listeners.add(entry);
      if (this.#link.closed) {
        await this.#stop(entry);
        throw new ClosedError('link is closed');
      }
      log(`listening on ${entry.url}`);
      return entry.url;
    })();
    this.#starting.add(start);
    try {
      return await start;
    } finally {
      this.#starting.delete(start);
    }
  }

  /** See {@link Link.removeListener}. */
  async remove(endpoint: Endpoint): Promise<void> {
    const parsed = parseEndpoint(endpoint);
    const all = [...this.#listeners];
    let entry = all.find((l) => l.url === parsed.url);
    if (!entry) {
      const byRequest = all.filter((l) => l.requested.url === parsed.url);
      if (byRequest.length > 1) {
        throw new InvalidArgumentError(`${parsed.url} matches several listeners; pass the URL addListener returned`);
      }
      entry = byRequest[0];
    }
    if (!entry) throw new InvalidArgumentError(`no listener on ${parsed.url}`);
    await this.#stop(entry);
  }

  /** The bound listeners, in the order they were bound. */
  list(): IterableIterator<ListenerEntry> {
    return this.#listeners.values();
  }

  /** Stops every listener; the promises resolve once each server and its connections are closed. */
  stopAll(): Promise<void>[] {
    return [...this.#listeners].map((l) => this.#stop(l));
  }

  /** addListener calls in flight (they stop their own server when they see the link closed). */
  pendingStarts(): Promise<unknown>[] {
    return [...this.#starting].map((s) => s.catch(() => undefined));
  }

  #wireServer(entry: ListenerEntry, mustAuthorize: boolean): void {
    const server = entry.server;
    server.on('error', (err) => {
      // Errors while starting to listen are reported by addListener itself.
      if (server.listening) log(`listener ${entry.url}: ${messageOf(err)}`);
    });
    if (!entry.tls) {
      server.on('connection', (socket: net.Socket) => {
        if (this.#admit(entry, socket)) this.#accept(entry, socket);
      });
      return;
    }
    wireTlsServer(server, mustAuthorize, {
      handshaking: entry.handshaking,
      admit: (raw) => this.#admit(entry, raw),
      accept: (socket) => this.#accept(entry, socket),
      failed: (socket, err) => this.#acceptFailed(entry, socket, err),
    });
  }

  /**
   * Counts an accepted socket against maxConnections, or destroys it at once
   * (`acceptFailed` with ConnectionLimitError) when the Link holds that many.
   */
  #admit(entry: ListenerEntry, socket: net.Socket): boolean {
    const limit = this.#opts.maxConnections;
    if (this.#accepted >= limit && !entry.stopped && !this.#link.closed) {
      socket.on('error', () => undefined);
      socket.destroy();
      const error = new ConnectionLimitError(limit, `${entry.url}: connection refused: ${limit} accepted connections already open (maxConnections)`);
      log(error.message);
      this.#events.emit('acceptFailed', entry.url, error);
      return false;
    }
    this.#accepted++;
    socket.once('close', () => this.#accepted--);
    return true;
  }

  #acceptFailed(entry: ListenerEntry, socket: tls.TLSSocket, err: Error): void {
    if (entry.stopped || this.#link.closed) return;
    const error = clientHandshakeError(entry.url, socket, err);
    log(error.message);
    this.#events.emit('acceptFailed', entry.url, error);
  }

  #accept(entry: ListenerEntry, socket: net.Socket): void {
    if (entry.stopped || this.#link.closed) {
      socket.on('error', () => undefined);
      socket.destroy();
      return;
    }
    this.#conns.adopt(socket, 'listener', entry);
  }

  #stop(entry: ListenerEntry): Promise<void> {
    if (entry.stopping) return entry.stopping;
    entry.stopped = true;
    entry.stopping = (async () => {
      this.#listeners.delete(entry);
      const serverClosed = new Promise<void>((resolve) => entry.server.close(() => resolve()));
      for (const raw of entry.handshaking) raw.destroy();
      await Promise.all([serverClosed, ...[...entry.conns].map((c) => this.#conns.close(c))]);
      log(`stopped listening on ${entry.url}`);
    })();
    return entry.stopping;
  }
}

/** Listen, replacing a stale Unix socket file once. Node errors are wrapped. */
async function listen(server: net.Server, p: ParsedEndpoint, backlog: number): Promise<void> {
  const opts: net.ListenOptions = p.transport === 'tcp' ? { host: p.host!, port: p.port!, backlog } : { path: p.path!, backlog };
  try {
    await listenOnce(server, opts);
    return;
  } catch (err) {
    const path = p.path;
    const retry = path !== undefined && !path.startsWith('\0') && (err as NodeJS.ErrnoException).code === 'EADDRINUSE' && (await isStaleSocket(path));
    if (!retry) throw new ConnectionError(`cannot listen on ${p.url}: ${messageOf(err)}`, { cause: err });
    await unlink(path).catch(() => undefined);
    log(`removed stale socket file ${path}`);
  }
  try {
    await listenOnce(server, opts);
  } catch (err) {
    throw new ConnectionError(`cannot listen on ${p.url}: ${messageOf(err)}`, { cause: err });
  }
}

function listenOnce(server: net.Server, opts: net.ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(opts);
  });
}

/** A socket file nobody accepts on (left behind by a crashed process). */
async function isStaleSocket(path: string): Promise<boolean> {
  try {
    if (!(await lstat(path)).isSocket()) return false;
  } catch {
    return false;
  }
  return new Promise((resolve) => {
    const probe = net.connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(false);
    });
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED' || err.code === 'ENOENT'));
  });
}

function boundUrl(server: net.Server, p: ParsedEndpoint): string {
  const addr = server.address();
  if (p.transport !== 'tcp' || addr === null || typeof addr === 'string') return p.url;
  const host = net.isIPv6(addr.address) ? `[${addr.address}]` : addr.address;
  return `${p.tls ? 'tls' : 'tcp'}://${host}:${addr.port}`;
}
