/**
 * Established connections of a {@link Link}: the table of live sockets, the
 * write path (`send`, `sendv`, `drain`), read pausing, and a connection's end
 * (graceful local close, `disconnect` exactly once). Listeners and connectors
 * hand their sockets over with {@link Connections.adopt}. Builds on node:net
 * sockets (plain or TLS).
 * @module
 */
import type net from 'node:net';
import tls from 'node:tls';
import { ClosedError, InvalidArgumentError, UnknownConnectionError, type SnakeMQError } from '../errors.js';
import { createLogger } from '../util/log.js';
import type { ConnectorEntry } from './connector.js';
import type { LinkEmitter } from './event-source.js';
import type { ListenerEntry } from './listener.js';
import type { LinkOptions } from './options.js';
import { definedOnly, wrapSocketError } from './socket-util.js';
import { tlsInfo } from './tls-handshake.js';
import type { ConnId, ConnectionInfo, DisconnectReason } from './types.js';

const log = createLogger('snakemq:link');

type Side = ConnectionInfo['side'];

/** What the link modules read of the Link itself. @internal */
export interface LinkState {
  /** Whether the Link's close() (without an id) was called. */
  readonly closed: boolean;
}

/** One established connection. @internal */
export interface Conn {
  readonly id: ConnId;
  readonly socket: net.Socket;
  readonly info: ConnectionInfo;
  readonly owner: ListenerEntry | ConnectorEntry;
  needDrain: boolean;
  closing: boolean;
  localReason: SnakeMQError | undefined;
  error: SnakeMQError | undefined;
  graceTimer: NodeJS.Timeout | undefined;
  gone: boolean;
  /** performance.now() when it was established. */
  readonly since: number;
  /** Confirmed good by {@link Link.markEstablished}: its end restarts the backoff whatever its age. */
  confirmed: boolean;
  /** Made when someone waits for the close (most connections just end: no promise per connection). */
  closed: Promise<void> | undefined;
  resolveClosed: (() => void) | undefined;
}

/** The live connections of one Link and everything done on them. @internal */
export class Connections {
  readonly #opts: Required<LinkOptions>;
  readonly #events: LinkEmitter;
  readonly #link: LinkState;
  /** Called after a connection's `disconnect` (a connector then schedules its reconnect). */
  readonly #onEnded: (c: Conn) => void;
  readonly #conns = new Map<ConnId, Conn>();
  #nextId: ConnId = 1;
  /** Bytes of the connections that ended (management totals). */
  closedBytesRead = 0;
  closedBytesWritten = 0;

  constructor(opts: Required<LinkOptions>, events: LinkEmitter, link: LinkState, onEnded: (c: Conn) => void) {
    this.#opts = opts;
    this.#events = events;
    this.#link = link;
    this.#onEnded = onEnded;
  }

  get(connId: ConnId): Conn | undefined {
    return this.#conns.get(connId);
  }

  ids(): ConnId[] {
    return [...this.#conns.keys()];
  }

  values(): IterableIterator<Conn> {
    return this.#conns.values();
  }

  send(connId: ConnId, data: Buffer, onWritten?: (error?: SnakeMQError) => void): boolean {
    if (!(data instanceof Uint8Array)) throw new InvalidArgumentError('send: data must be a Buffer');
    if (this.#link.closed) return failSend(onWritten, new ClosedError('link is closed'));
    const c = this.#conns.get(connId);
    if (!c) return failSend(onWritten, new UnknownConnectionError(`no connection ${connId}`));
    const s = c.socket;
    if (c.closing || s.destroyed || s.writableEnded) {
      return failSend(onWritten, new ClosedError(`connection ${connId} is closing`));
    }
    s.write(data, (err?: Error | null) => this.#afterWrite(c, err, onWritten));
    if (s.writableLength >= this.#opts.highWaterMark) {
      c.needDrain = true;
      return false;
    }
    return true;
  }

  sendv(connId: ConnId, chunks: readonly Buffer[], onWritten?: (error?: SnakeMQError) => void): boolean {
    if (chunks.length === 0 || !chunks.every((d) => d instanceof Uint8Array)) throw new InvalidArgumentError('sendv: chunks must be Buffers');
    const c = this.#conns.get(connId);
    if (this.#link.closed || c === undefined || c.closing || c.socket.destroyed || c.socket.writableEnded) return this.send(connId, chunks[0]!, onWritten);
    const s = c.socket;
    s.cork();
    for (let i = 0; i < chunks.length - 1; i++) s.write(chunks[i]!);
    const ok = this.send(connId, chunks[chunks.length - 1]!, onWritten);
    s.uncork();
    return ok;
  }

  isWritable(connId: ConnId): boolean {
    const c = this.#conns.get(connId);
    if (!c || this.#link.closed || c.closing) return false;
    const s = c.socket;
    return !s.destroyed && !s.writableEnded && s.writableLength < this.#opts.highWaterMark;
  }

  pause(connId: ConnId): void {
    const c = this.#conns.get(connId);
    if (c && !c.closing) c.socket.pause();
  }

  resume(connId: ConnId): void {
    this.#conns.get(connId)?.socket.resume();
  }

  /** Makes an established socket a connection: `connect` is emitted before this returns. */
  adopt(socket: net.Socket, side: Side, owner: ListenerEntry | ConnectorEntry): Conn {
    const id = this.#nextId++;
    const tcp = (owner.kind === 'listener' ? owner.requested : owner.parsed).transport === 'tcp';
    if (tcp) {
      socket.setNoDelay(this.#opts.noDelay);
      socket.setKeepAlive(this.#opts.keepAlive, this.#opts.keepAliveInitialDelay);
    }
    const info: ConnectionInfo = Object.freeze({
      id,
      side,
      endpoint: owner.kind === 'listener' ? owner.url : owner.key,
      ...(tcp
        ? definedOnly({
            remoteAddress: socket.remoteAddress,
            remotePort: socket.remotePort,
            localAddress: socket.localAddress,
            localPort: socket.localPort,
          })
        : {}),
      ...(socket instanceof tls.TLSSocket ? { tls: tlsInfo(socket) } : {}),
    });
    const conn: Conn = {
      id,
      socket,
      info,
      owner,
      needDrain: false,
      closing: false,
      localReason: undefined,
      error: undefined,
      graceTimer: undefined,
      gone: false,
      since: performance.now(),
      confirmed: false,
      closed: undefined,
      resolveClosed: undefined,
    };
    const events = this.#events;
    socket.on('data', (chunk: Buffer) => {
      if (!conn.closing) events.emit('data', id, chunk);
    });
    socket.on('error', (err) => {
      conn.error ??= wrapSocketError(err, `connection ${id} (${info.endpoint})`);
      // Node keeps some sockets open after an error (a TLS renegotiation
      // attack, ERR_TLS_SESSION_ATTACK, among them): a failed connection ends here.
      socket.destroy();
    });
    socket.on('close', () => this.#onConnClose(conn));
    this.#conns.set(id, conn);
    if (owner.kind === 'listener') owner.conns.add(conn);
    else owner.conn = conn;
    if (log.enabled) log(`connect #${id} ${side} ${info.endpoint} ${describePeer(info)}`);
    events.emit('connect', info);
    return conn;
  }

  #afterWrite(c: Conn, err: Error | null | undefined, onWritten?: (error?: SnakeMQError) => void): void {
    if (onWritten) {
      onWritten(err ? (c.error ?? wrapSocketError(err, `connection ${c.id}: write failed`)) : undefined);
    }
    if (!err && c.needDrain && !c.closing && !c.gone && c.socket.writableLength < this.#opts.highWaterMark) {
      c.needDrain = false;
      this.#events.emit('drain', c.id);
    }
  }

  /** Graceful local close: flush for up to `closeTimeout` ms, then destroy. Resolves once the socket closed. */
  close(c: Conn, reason?: SnakeMQError): Promise<void> {
    if (c.closing || c.gone) return closedOf(c);
    c.closing = true;
    c.localReason = reason;
    if (log.enabled) log(`closing #${c.id}${reason ? `: ${reason.message}` : ''}`);
    // Keep reading so the peer's FIN is seen; incoming data is dropped from now on.
    c.socket.resume();
    c.socket.end();
    c.graceTimer = setTimeout(() => c.socket.destroy(), this.#opts.closeTimeout);
    return closedOf(c);
  }

  #onConnClose(c: Conn): void {
    if (c.gone) return;
    c.gone = true;
    clearTimeout(c.graceTimer);
    this.#conns.delete(c.id);
    this.closedBytesRead += c.socket.bytesRead;
    this.closedBytesWritten += c.socket.bytesWritten;
    const owner = c.owner;
    if (owner.kind === 'listener') owner.conns.delete(c);
    else if (owner.conn === c) owner.conn = undefined;
    let reason: DisconnectReason;
    if (c.closing) reason = c.localReason ? { by: 'local', error: c.localReason } : { by: 'local' };
    else if (c.error) reason = { by: 'error', error: c.error };
    else reason = { by: 'remote' };
    if (log.enabled) log(`disconnect #${c.id} ${c.info.endpoint} by ${reason.by}${reason.error ? `: ${reason.error.message}` : ''}`);
    this.#events.emit('disconnect', c.id, reason);
    c.resolveClosed?.();
    this.#onEnded(c);
  }
}

/** Resolves once the connection's socket closed. */
function closedOf(c: Conn): Promise<void> {
  if (c.gone) return Promise.resolve();
  return (c.closed ??= new Promise<void>((resolve) => (c.resolveClosed = resolve)));
}

function failSend(onWritten: ((error?: SnakeMQError) => void) | undefined, error: SnakeMQError): false {
  if (onWritten) process.nextTick(onWritten, error);
  return false;
}

function describePeer(info: ConnectionInfo): string {
  const peer = info.remoteAddress !== undefined ? `${info.remoteAddress}:${info.remotePort}` : 'unix';
  return info.tls ? `${peer} ${info.tls.protocol} authorized=${info.tls.authorized}` : peer;
}
