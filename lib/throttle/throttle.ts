import { nextTick } from 'node:process';
import { ClosedError, ConnectionError, InvalidArgumentError, InvalidOptionsError, UnknownConnectionError, type SnakeMQError } from '../errors.js';
import { TypedEventSource } from '../link/event-source.js';
import type { ConnectorOptions, ListenerOptions } from '../link/options.js';
import type { ConnId, ConnectionInfo, Endpoint, Transport } from '../link/types.js';
import { Deque } from '../util/deque.js';
import { createLogger } from '../util/log.js';
import { validateOptions, type OptionCheck } from '../util/options.js';

const log = createLogger('snakemq:throttle');

/** Options of a {@link Throttle}. */
export interface ThrottleOptions {
  /** Sustained limit of outgoing bytes per second, per connection. Required, > 0. */
  bytesPerSecond: number;
  /**
   * Token bucket size in bytes: how much may leave at once after an idle
   * period. Sends that fit pass straight through; larger ones are sliced.
   * @default Math.ceil(bytesPerSecond / 10), i.e. 100 ms worth of traffic. A
   * fixed floor (e.g. 64 KiB) was rejected: it would let a slow link burst far
   * beyond its rate (0.65 s worth at 100 kB/s).
   */
  burst?: number;
}

/** Called once bytes were handed to the kernel, or with the error that prevented it. */
export type OnWritten = (error?: SnakeMQError) => void;

interface Pending {
  data: Buffer;
  readonly onWritten: OnWritten | undefined;
}

interface Bucket {
  readonly id: ConnId;
  tokens: number;
  refilledAt: number;
  readonly queue: Deque<Pending>;
  timer: NodeJS.Timeout | undefined;
  /** send() returned false: a `drain` is owed. */
  needDrain: boolean;
  /** Queue is stalled on the link's own backpressure, not on tokens. */
  waitingForLink: boolean;
}

const positive: OptionCheck = (v) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? undefined : 'must be a finite number > 0');
const atLeastOne: OptionCheck = (v) => (typeof v === 'number' && Number.isFinite(v) && v >= 1 ? undefined : 'must be a finite number >= 1');

/**
 * Outgoing bandwidth limit (a token bucket per connection) over any
 * {@link Transport} (a Link, another Throttle, or your own), presenting the
 * same interface, so a Packeter sits on it as on a Link. Incoming data is not
 * limited.
 *
 * `send` passes data straight to the transport while the bucket has tokens for
 * it; otherwise the data is queued and trickles out in slices as tokens refill
 * (one timer per throttled connection, none while nothing is throttled).
 * While anything is queued for a connection `send` returns false, and `drain`
 * follows once the queue went out and the transport is writable. `onWritten`
 * fires when the transport wrote the last slice of that data.
 *
 * Events of the transport below are re-emitted; `addListener`, `addConnector`,
 * `markEstablished`, … are forwarded to it.
 *
 * A layer owns the layer it is built on: its close() closes it (Messaging →
 * Packeter → Throttle → Link).
 *
 * Timing uses the global `performance.now()` and `setTimeout` (so fake timers
 * drive it in tests).
 */
export class Throttle extends TypedEventSource implements Transport, AsyncDisposable {
  /** The wrapped transport (a Link, another Throttle, …). */
  readonly transport: Transport;
  readonly #rate: number;
  readonly #burst: number;
  /** Smallest partial slice worth a write: 50 ms of traffic (capped by the burst). */
  readonly #slice: number;
  readonly #buckets = new Map<ConnId, Bucket>();
  #timers = 0;
  #closed = false;
  #closing: Promise<void> | undefined;

  /** @throws InvalidOptionsError when `bytesPerSecond` is missing or options are invalid. */
  constructor(transport: Transport, options: ThrottleOptions) {
    super();
    if (typeof options !== 'object' || options === null || (options as Partial<ThrottleOptions>).bytesPerSecond === undefined) {
      throw new InvalidOptionsError("Throttle options: 'bytesPerSecond' is required");
    }
    const opts = validateOptions<ThrottleOptions>(
      'Throttle options',
      options,
      { bytesPerSecond: positive, burst: atLeastOne },
      { bytesPerSecond: options.bytesPerSecond },
    );
    this.transport = transport;
    this.#rate = opts.bytesPerSecond;
    this.#burst = opts.burst ?? Math.max(1, Math.ceil(opts.bytesPerSecond / 10));
    this.#slice = Math.max(1, Math.min(this.#burst, Math.ceil(opts.bytesPerSecond / 20)));

    transport.on('connect', (info) => this.emit('connect', info));
    transport.on('data', (id, chunk) => this.emit('data', id, chunk));
    transport.on('disconnect', (id, reason) => {
      const error =
        reason.error ?? (reason.by === 'local' ? new ClosedError(`connection ${id} closed`) : new ConnectionError(`connection ${id} closed by the peer`));
      this.#drop(id, error);
      this.emit('disconnect', id, reason);
    });
    transport.on('drain', (id) => this.#onLinkDrain(id));
    transport.on('connectFailed', (endpoint, error) => this.emit('connectFailed', endpoint, error));
    transport.on('reconnect', (endpoint, attempt, delay) => this.emit('reconnect', endpoint, attempt, delay));
    transport.on('acceptFailed', (endpoint, error) => this.emit('acceptFailed', endpoint, error));
    transport.on('datagram', (id, datagram, address, port) => this.emit('datagram', id, datagram, address, port));
  }

  /** Bucket size in bytes in effect. */
  get burst(): number {
    return this.#burst;
  }

  /** Number of connections with data waiting in the throttle. */
  get throttledConnections(): number {
    let n = 0;
    for (const b of this.#buckets.values()) if (b.queue.length > 0) n++;
    return n;
  }

  /** Number of armed refill timers (at most one per throttled connection; 0 when idle). */
  get activeTimers(): number {
    return this.#timers;
  }

  /**
   * Forwards to the transport's `addListener` (see {@link Link.addListener}).
   * @throws (rejects) InvalidArgumentError when the transport below has none.
   */
  async addListener(endpoint: Endpoint, options?: ListenerOptions): Promise<string> {
    return below(this.transport.addListener, 'addListener').call(this.transport, endpoint, options);
  }

  /**
   * Forwards to the transport's `removeListener` (see {@link Link.removeListener}).
   * @throws (rejects) InvalidArgumentError when the transport below has none.
   */
  async removeListener(endpoint: Endpoint): Promise<void> {
    return below(this.transport.removeListener, 'removeListener').call(this.transport, endpoint);
  }

  /**
   * Forwards to the transport's `addConnector` (see {@link Link.addConnector}).
   * @throws InvalidArgumentError when the transport below has none.
   */
  addConnector(endpoint: Endpoint, options?: ConnectorOptions): string {
    return below(this.transport.addConnector, 'addConnector').call(this.transport, endpoint, options);
  }

  /**
   * Forwards to the transport's `removeConnector` (see {@link Link.removeConnector}).
   * @throws (rejects) InvalidArgumentError when the transport below has none.
   */
  async removeConnector(endpoint: Endpoint): Promise<void> {
    return below(this.transport.removeConnector, 'removeConnector').call(this.transport, endpoint);
  }

  /** See {@link Transport.send}; returns false while data is queued in the throttle for this connection. */
  send(connId: ConnId, data: Buffer, onWritten?: OnWritten): boolean {
    if (!(data instanceof Uint8Array)) throw new InvalidArgumentError('send: data must be a Buffer');
    if (this.#closed) {
      if (onWritten) nextTick(onWritten, new ClosedError('throttle is closed'));
      return false;
    }
    // Unknown connections: let the transport report it.
    if (!this.transport.connection(connId)) return this.transport.send(connId, data, onWritten);
    const b = this.#bucket(connId);
    this.#refill(b);
    if (b.queue.length === 0 && b.tokens >= data.length) {
      b.tokens -= data.length;
      const ok = this.transport.send(connId, data, onWritten);
      if (!ok) b.needDrain = true;
      return ok;
    }
    b.queue.push({ data, onWritten });
    this.#pump(b);
    const ok = b.queue.length === 0 && this.transport.isWritable(connId);
    if (!ok) b.needDrain = true;
    return ok;
  }

  /** {@link send} of several buffers in order (paced like the rest), one `onWritten` for all. */
  sendv(connId: ConnId, chunks: readonly Buffer[], onWritten?: OnWritten): boolean {
    if (chunks.length === 0) throw new InvalidArgumentError('sendv: chunks must be Buffers');
    for (let i = 0; i < chunks.length - 1; i++) this.send(connId, chunks[i]!);
    return this.send(connId, chunks[chunks.length - 1]!, onWritten);
  }

  /** Whether {@link send} would currently return true for data the bucket can cover. */
  isWritable(connId: ConnId): boolean {
    return !this.#closed && !this.#buckets.get(connId)?.queue.length && this.transport.isWritable(connId);
  }

  /** Forwards to the transport's `pause`. */
  pause(connId: ConnId): void {
    this.transport.pause(connId);
  }

  /** Forwards to the transport's `resume`. */
  resume(connId: ConnId): void {
    this.transport.resume(connId);
  }

  /** Forwards to the transport's `connection`. */
  connection(connId: ConnId): ConnectionInfo | undefined {
    return this.transport.connection(connId);
  }

  /**
   * Forwards to the transport's `sendDatagram` (see {@link Link.sendDatagram}):
   * datagrams are not throttled (each is one message, sent at once or lost).
   * Without one below, `onWritten` gets an UnknownConnectionError.
   */
  sendDatagram(connId: ConnId, datagram: Buffer, onWritten?: OnWritten): void {
    if (this.transport.sendDatagram !== undefined) return this.transport.sendDatagram(connId, datagram, onWritten);
    if (onWritten) nextTick(onWritten, new UnknownConnectionError(`no datagram connection ${connId} below the throttle`));
  }

  /** Forwards to the transport's `markEstablished` (see {@link Link.markEstablished}); no-op when it has none. */
  markEstablished(connId: ConnId): void {
    this.transport.markEstablished?.(connId);
  }

  /**
   * Like {@link Link.close}; data still queued in the throttle for the closed
   * connection(s) is dropped and its `onWritten` gets a ClosedError. Without an
   * id it closes the transport below (the rule below) and is idempotent: every
   * call returns the same promise.
   *
   * A layer owns the layer it is built on: its close() closes it (Messaging →
   * Packeter → Throttle → Link).
   */
  close(connId?: ConnId, reason?: SnakeMQError): Promise<void> {
    if (connId !== undefined) {
      this.#drop(connId, new ClosedError(`connection ${connId} closed`));
      return this.transport.close(connId, reason);
    }
    if (!this.#closing) {
      this.#closed = true;
      for (const id of [...this.#buckets.keys()]) this.#drop(id, new ClosedError('throttle is closed'));
      this.#closing = this.transport.close();
    }
    return this.#closing;
  }

  /** `await using throttle = new Throttle(...)`: the same as {@link close} without an id (and the same promise). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #bucket(id: ConnId): Bucket {
    let b = this.#buckets.get(id);
    if (!b) {
      b = {
        id,
        tokens: this.#burst,
        refilledAt: performance.now(),
        queue: new Deque(),
        timer: undefined,
        needDrain: false,
        waitingForLink: false,
      };
      this.#buckets.set(id, b);
    }
    return b;
  }

  #refill(b: Bucket): void {
    const now = performance.now();
    b.tokens = Math.min(this.#burst, b.tokens + ((now - b.refilledAt) * this.#rate) / 1000);
    b.refilledAt = now;
  }

  #pump(b: Bucket): void {
    this.#disarm(b);
    this.#refill(b);
    b.waitingForLink = false;
    while (b.queue.length > 0) {
      if (!this.transport.isWritable(b.id)) {
        // The transport emits `drain` for it (it returned false), which pumps again.
        b.waitingForLink = true;
        return;
      }
      const head = b.queue.peek()!;
      const want = Math.min(head.data.length, this.#slice);
      if (b.tokens < want) break;
      const n = Math.min(head.data.length, Math.floor(b.tokens));
      b.tokens -= n;
      if (n === head.data.length) {
        b.queue.shift();
        this.transport.send(b.id, head.data, head.onWritten);
      } else {
        const part = head.data.subarray(0, n);
        head.data = head.data.subarray(n);
        this.transport.send(b.id, part);
      }
    }
    if (b.queue.length > 0) {
      const want = Math.min(b.queue.peek()!.data.length, this.#slice);
      const ms = Math.max(1, Math.ceil(((want - b.tokens) * 1000) / this.#rate));
      b.timer = setTimeout(() => {
        b.timer = undefined;
        this.#timers--;
        this.#pump(b);
      }, ms);
      this.#timers++;
      return;
    }
    if (b.needDrain && this.transport.isWritable(b.id)) {
      b.needDrain = false;
      this.emit('drain', b.id);
    }
  }

  #onLinkDrain(id: ConnId): void {
    const b = this.#buckets.get(id);
    if (b?.waitingForLink) {
      this.#pump(b);
      return;
    }
    if (b && (b.queue.length > 0 || !b.needDrain)) return;
    if (b) b.needDrain = false;
    this.emit('drain', id);
  }

  #disarm(b: Bucket): void {
    if (b.timer) {
      clearTimeout(b.timer);
      b.timer = undefined;
      this.#timers--;
    }
  }

  #drop(id: ConnId, error: SnakeMQError): void {
    const b = this.#buckets.get(id);
    if (!b) return;
    this.#disarm(b);
    this.#buckets.delete(id);
    if (b.queue.length > 0) log(`connection ${id}: dropping ${b.queue.length} throttled sends`);
    for (const p of b.queue.drain()) if (p.onWritten) nextTick(p.onWritten, error);
  }
}

/** An optional Transport method, or an InvalidArgumentError saying the transport below lacks it. */
function below<F>(method: F | undefined, name: string): F {
  if (method === undefined) throw new InvalidArgumentError(`Throttle.${name}: the transport below has no ${name}`);
  return method;
}
