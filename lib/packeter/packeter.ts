import { nextTick } from 'node:process';
import { Buffer } from 'node:buffer';
import { EventEmitter } from 'eventemitter3';
import { BufferLimitError, InvalidArgumentError, PacketTooLargeError, UnknownConnectionError, type SnakeMQError } from '../errors.js';
import type { ConnId, ConnectionInfo, DisconnectReason, Transport } from '../link/types.js';
import { createLogger, preview } from '../util/log.js';
import { is, validateOptions } from '../util/options.js';
import { HEADER_SIZE, PacketDecoder, type PacketRun, type PacketSink } from './decoder.js';
import type { ConnPacketRun, ConnPacketSink, PacketTransport, PacketTransportEvents } from './packet-transport.js';
import { MIN_BATCH_TAIL, SlabPool, type Slab } from './write-batch.js';

const log = createLogger('snakemq:packeter');

/** Default largest packet payload: 64 MiB. */
export const DEFAULT_MAX_PACKET_SIZE = 64 * 1024 * 1024;
/** Default size of one coalesced socket write of small packets: 64 KiB. */
export const DEFAULT_WRITE_BATCH_SIZE = 64 * 1024;
/** Default budget for the partial packets of all restricted connections together: 1 MiB. */
export const DEFAULT_RESTRICTED_BUDGET = 1024 * 1024;

/** Options of a {@link Packeter}. */
export interface PacketerOptions {
  /**
   * Largest payload in bytes, both ways. A peer announcing more gets its
   * connection closed with a {@link PacketTooLargeError} before any buffer of
   * that size exists; a larger `sendPacket` throws it.
   * @default 67108864 (64 MiB)
   */
  maxPacketSize?: number;
  /**
   * Small packets sent in one tick are copied into write batches of up to
   * this many bytes, so that many packets go out in few socket writes. A
   * connection that fills a batch within one tick (a stream) gets batches
   * four times as large, until a tick's traffic fits one of this size again.
   * Packets at least this large are written without a copy.
   * @default 65536
   */
  writeBatchSize?: number;
  /**
   * Bytes of partial packets held for all {@link Packeter.restrict | restricted}
   * connections together (Messaging restricts a connection until its peer
   * identified). A restricted connection whose buffered bytes would take the
   * total above it is closed with a {@link BufferLimitError}
   * (`protocolError`), so that unidentified peers cannot make the process
   * hold more than this between them.
   * @default 1048576 (1 MiB, `DEFAULT_RESTRICTED_BUDGET`)
   */
  restrictedBudget?: number;
}

/** Events of a {@link Packeter}. */
export interface PacketerEvents {
  /** A connection is established below. */
  connect: (info: ConnectionInfo) => void;
  /** A connection ended. */
  disconnect: (connId: ConnId, reason: DisconnectReason) => void;
  /** A complete packet payload arrived. The buffer may be a view of a larger chunk: copy it to keep it long. */
  packet: (connId: ConnId, payload: Buffer) => void;
  /**
   * Every packet of `connId` with an id up to and including `lastPacketId` was
   * handed to the kernel (snakeMQ's `on_packet_sent`, cumulative: one event per socket write).
   */
  sent: (connId: ConnId, lastPacketId: number) => void;
  /** The connection can take more packets after `isWritable` was false. */
  drain: (connId: ConnId) => void;
  /**
   * A peer broke the framing (announced an oversize packet: {@link PacketTooLargeError}),
   * or a restricted connection went over the budget ({@link BufferLimitError}); the
   * connection is being closed.
   */
  protocolError: (connId: ConnId, error: SnakeMQError) => void;
  /** A `udp://` listener received a datagram (forwarded from the transport, unparsed: see docs/protocol.md "Datagrams"). */
  datagram: (connId: ConnId, datagram: Buffer, address: string, port: number) => void;
}

export type { ConnPacketRun, ConnPacketSink } from './packet-transport.js';
export type { Slab } from './write-batch.js';

/**
 * A streaming connection keeps its (big) batch buffer between ticks; one that
 * wrote nothing for a whole sweep interval gives it back (one timer per
 * Packeter, armed only while some connection streams).
 */
const STREAM_IDLE_SWEEP_MS = 1000;

interface ConnState {
  readonly id: ConnId;
  readonly decoder: PacketDecoder;
  readonly sink: PacketSink;
  readonly run: PacketRun;
  /** The batch buffer being filled (or null). */
  slab: Slab | null;
  /** Where the data not yet flushed starts in `slab.buf`. */
  batchStart: number;
  /** Where it ends. */
  batchUsed: number;
  batchLastId: number;
  /** The connection streams: it filled a batch within a tick, so it gets stream-sized batch buffers. */
  streaming: boolean;
  /** A batch filled up during this tick. */
  filledInTick: boolean;
  /** It is in the list of streaming connections the idle sweep looks at. */
  swept: boolean;
  /** It ended a tick with writes since the last idle sweep. */
  wroteSinceSweep: boolean;
  flushScheduled: boolean;
  closing: boolean;
  /** Its partial packets count against `restrictedBudget`. */
  restricted: boolean;
  /** Bytes of it counted in the restricted total. */
  counted: number;
}

const emptyBuffer = Buffer.alloc(0);

type Names = EventEmitter.EventNames<PacketerEvents>;
type Fn<T extends Names> = EventEmitter.EventListener<PacketerEvents, T>;

/**
 * Packet framing over a {@link Transport} (a Link or a Throttle): 4-byte
 * big-endian length prefix, packet ids, and "packet sent" notification.
 *
 * ```ts
 * const packeter = new Packeter(link);
 * packeter.on('packet', (connId, payload) => …);
 * const id = packeter.sendPacket(connId, Buffer.from('hi'));
 * packeter.on('sent', (connId, lastId) => { if (lastId >= id) … });
 * ```
 */
export class Packeter extends EventEmitter<PacketerEvents> implements PacketTransport {
  /** The transport below (Link or Throttle). */
  readonly transport: Transport;
  /** Options in force. */
  readonly options: Readonly<Required<PacketerOptions>>;
  private readonly conns = new Map<ConnId, ConnState>();
  private last: ConnState | null = null;
  private nextPacketId = 1;
  /** Write-batch buffers for reuse. */
  private readonly slabs: SlabPool;
  /** Partial-packet bytes of the restricted connections. */
  private restrictedBytes = 0;
  private packetSink: ConnPacketSink | null = null;
  private packetRun: ConnPacketRun | null = null;
  /** Someone listens to `packet` (kept by the listener overrides below: a field read per packet is far cheaper than listenerCount()). */
  private packetListened = false;
  /** Connections with a flush due at the end of this tick (not all of them: many may be idle). */
  private scheduled: ConnState[] = [];
  private readonly flushAll = (): void => {
    this.flushTick = false;
    const due = this.scheduled;
    this.scheduled = [];
    for (let i = 0; i < due.length; i++) {
      const state = due[i]!;
      if (state.flushScheduled) this.flushTickEnd(state.id, state);
    }
  };
  private flushTick = false;
  /** Streaming connections, for the idle sweep. */
  private streamers: ConnState[] = [];
  private sweepTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly sweep = (): void => {
    this.sweepTimer = null;
    const kept: ConnState[] = [];
    for (const state of this.streamers) {
      if (state.streaming && (state.wroteSinceSweep || state.flushScheduled)) {
        state.wroteSinceSweep = false;
        kept.push(state);
        continue;
      }
      state.swept = false;
      if (state.streaming) {
        state.streaming = false;
        this.closeSlab(state);
      }
    }
    this.streamers = kept;
    if (kept.length > 0) this.armSweep();
  };

  constructor(transport: Transport, options?: PacketerOptions) {
    super();
    this.transport = transport;
    this.options = validateOptions<Required<PacketerOptions>>(
      'Packeter',
      options,
      { maxPacketSize: is.integer(1, 0xffffffff), writeBatchSize: is.integer(64, 64 * 1024 * 1024), restrictedBudget: is.integer(0) },
      { maxPacketSize: DEFAULT_MAX_PACKET_SIZE, writeBatchSize: DEFAULT_WRITE_BATCH_SIZE, restrictedBudget: DEFAULT_RESTRICTED_BUDGET },
    );
    this.slabs = new SlabPool(this.options.writeBatchSize);
    transport.on('connect', (info) => this.onConnect(info));
    transport.on('disconnect', (connId, reason) => this.onDisconnect(connId, reason));
    transport.on('data', (connId, chunk) => this.onData(connId, chunk));
    transport.on('drain', (connId) => this.emit('drain', connId));
    transport.on('datagram', (connId, datagram, address, port) => this.emit('datagram', connId, datagram, address, port));
  }

  /** Part of {@link PacketTransport}: subscribes to the `datagram` event (a `udp://` listener's datagrams). */
  onDatagram(fn: (connId: ConnId, datagram: Buffer, address: string, port: number) => void): void {
    this.on('datagram', fn);
  }

  /**
   * Part of {@link PacketTransport}: one datagram on a `udp://` connector's
   * connection, as is (no packet framing added: the caller built the
   * datagram's packets), through the transport's `sendDatagram`; without one,
   * `onWritten` gets an UnknownConnectionError.
   * @throws DatagramTooLargeError from the transport.
   */
  sendDatagram(connId: ConnId, datagram: Buffer, onWritten?: (error?: SnakeMQError) => void): void {
    const transport = this.transport;
    if (transport.sendDatagram !== undefined) return transport.sendDatagram(connId, datagram, onWritten);
    if (onWritten) nextTick(onWritten, new UnknownConnectionError(`the transport below sends no datagrams (conn ${connId})`));
  }

  /**
   * Queues one packet for a connection and returns its packet id (increasing
   * for the life of this Packeter). Packets sent in one tick are coalesced.
   * The packet's payload is `payload` followed by `tail` when given (saves the
   * caller a concatenation). Small packets are copied into the write batch;
   * for a big one, `tail` (or `payload` when there is no tail) is written by
   * reference: do not modify it until the packet is reported sent.
   * @throws {@link PacketTooLargeError} when the payload exceeds `maxPacketSize`.
   * @throws {@link UnknownConnectionError} when the connection does not exist.
   */
  sendPacket(connId: ConnId, payload: Uint8Array, tail?: Uint8Array): number {
    let state = this.last;
    if (state === null || state.id !== connId) state = this.last = this.conns.get(connId) ?? null;
    if (state === null || state.closing) throw new UnknownConnectionError(`no connection ${connId}`);
    const headSize = payload.byteLength;
    const size = tail === undefined ? headSize : headSize + tail.byteLength;
    if (size > this.options.maxPacketSize) throw new PacketTooLargeError(size, this.options.maxPacketSize);
    const id = this.nextPacketId++;
    if (size + HEADER_SIZE > this.options.writeBatchSize) {
      this.flush(connId, state);
      // Big payloads go to the socket by reference: only the header (and a small head part) is copied.
      const body = tail === undefined ? payload : tail;
      const headLen = tail === undefined ? 0 : headSize;
      const head = Buffer.allocUnsafe(HEADER_SIZE + headLen);
      head.writeUInt32BE(size, 0);
      if (headLen > 0) head.set(payload, HEADER_SIZE);
      const transport = this.transport;
      if (transport.sendv !== undefined) transport.sendv(connId, [head, toBuffer(body)], this.sentCallback(connId, id));
      else {
        transport.send(connId, head);
        transport.send(connId, toBuffer(body), this.sentCallback(connId, id));
      }
      return id;
    }
    const off = this.reserve(connId, state, size);
    const batch = state.slab!.buf;
    batch.set(payload, off);
    if (tail !== undefined) batch.set(tail, off + headSize);
    state.batchLastId = id;
    if (log.enabled) log(`conn ${connId} packet ${id} queued: ${preview(tail ?? payload)}`);
    return id;
  }

  /**
   * Like {@link sendPacket}, for a payload the caller writes itself straight
   * into the write batch: `write(buf, offset, arg)` must fill exactly `size`
   * bytes at `offset`. Saves building the payload first (Messaging uses it for
   * MESSAGE frames). `write` should be a function defined once, with what it
   * needs passed as `arg`, so that no closure is made per packet.
   */
  sendPacketWith<A>(connId: ConnId, size: number, write: (buf: Buffer, offset: number, arg: A) => void, arg: A): number {
    if (size + HEADER_SIZE > this.options.writeBatchSize) {
      const payload = Buffer.allocUnsafe(size);
      write(payload, 0, arg);
      return this.sendPacket(connId, payload);
    }
    const id = this.allocPacket(connId, size);
    write(this.allocated, this.allocatedOffset, arg);
    return id;
  }

  /**
   * Part of {@link PacketTransport}: The buffer and offset where the caller of {@link allocPacket}
   * writes the payload (valid until the next call into this Packeter).
   */
  allocated: Buffer = emptyBuffer;
  /** Part of {@link PacketTransport}: See {@link allocated}. */
  allocatedOffset = 0;
  /** Part of {@link PacketTransport}: A DataView over all of {@link allocated}. */
  allocatedView: DataView = new DataView(emptyBuffer.buffer, emptyBuffer.byteOffset, 0);
  /** Part of {@link PacketTransport}: The write batch {@link allocated} belongs to (to {@link retain} it). */
  allocatedSlab: Slab | null = null;

  /**
   * Part of {@link PacketTransport}: Keeps a write batch's bytes as they are after its writes: it is
   * not reused until {@link release}d (once per retain). Messaging keeps the
   * frames of messages in flight this way instead of their objects.
   */
  retain(slab: Slab): void {
    slab.retained++;
  }

  /** Part of {@link PacketTransport}: Ends one {@link retain}. */
  release(slab: Slab): void {
    slab.retained--;
    this.slabs.recycle(slab);
  }

  /**
   * Part of {@link PacketTransport}: Reserves a packet of `size` payload bytes in the connection's
   * write batch and returns its id; the caller must fill `allocated` from
   * `allocatedOffset` at once. Only for packets that fit a batch
   * (`size + 4 <= writeBatchSize`). The leanest way to send: Messaging writes
   * MESSAGE frames straight into the batch with it.
   * @throws {@link InvalidArgumentError} for a packet that does not fit a batch.
   */
  allocPacket(connId: ConnId, size: number): number {
    if (size + HEADER_SIZE > this.options.writeBatchSize) {
      throw new InvalidArgumentError(`allocPacket takes packets up to ${this.options.writeBatchSize - HEADER_SIZE} bytes, not ${size}`);
    }
    let state = this.last;
    if (state === null || state.id !== connId) state = this.last = this.conns.get(connId) ?? null;
    if (state === null || state.closing) throw new UnknownConnectionError(`no connection ${connId}`);
    const id = this.nextPacketId++;
    this.allocatedOffset = this.reserve(connId, state, size);
    // After reserve: a flush there reports the previous batch's last id.
    state.batchLastId = id;
    const slab = state.slab!;
    if (this.allocatedSlab !== slab) {
      this.allocated = slab.buf;
      this.allocatedView = slab.view;
      this.allocatedSlab = slab;
    }
    return id;
  }

  /** Makes room for a packet of `size` in the connection's batch, writes its header; returns the payload offset. */
  private reserve(connId: ConnId, state: ConnState, size: number): number {
    if (state.slab !== null && state.batchUsed + HEADER_SIZE + size > state.slab.buf.length) {
      state.filledInTick = state.streaming = true;
      this.flush(connId, state);
      if (state.slab !== null && state.batchUsed + HEADER_SIZE + size > state.slab.buf.length) this.closeSlab(state);
    }
    const batch = state.slab !== null ? state.slab.buf : this.openSlab(state, HEADER_SIZE + size);
    const off = state.batchUsed;
    batch[off] = size >>> 24;
    batch[off + 1] = size >>> 16;
    batch[off + 2] = size >>> 8;
    batch[off + 3] = size;
    state.batchUsed = off + HEADER_SIZE + size;
    if (!state.flushScheduled) {
      state.flushScheduled = true;
      this.scheduled.push(state);
      if (!this.flushTick) {
        this.flushTick = true;
        nextTick(this.flushAll);
      }
    }
    return off + HEADER_SIZE;
  }

  /**
   * Part of {@link PacketTransport}: Routes every received packet to `sink` as a buffer range,
   * without making a view per packet (Messaging uses this; `packet` events are
   * still emitted to listeners). One sink per Packeter. While nobody listens
   * to `packet`, `run` (if given) is offered the runs of whole packets of each
   * chunk first: one call handles many packets.
   */
  setPacketSink(sink: ConnPacketSink, run?: ConnPacketRun): void {
    if (this.packetSink !== null) throw new InvalidArgumentError('this Packeter already feeds a Messaging');
    this.packetSink = sink;
    this.packetRun = run ?? null;
  }

  /** Part of {@link PacketTransport}: Subscribes the layer above to one of the events of {@link PacketTransport}. */
  onEvent<E extends keyof PacketTransportEvents>(event: E, fn: PacketTransportEvents[E]): void {
    this.on(event, fn as never);
  }

  /**
   * Restricts a connection: from now on it accepts packets of at most
   * `maxPacketSize` bytes (capped at `options.maxPacketSize`; a peer announcing
   * more is closed with {@link PacketTooLargeError}), and the bytes of its
   * partial packet count against `restrictedBudget` (a connection that would
   * take the total above it is closed with {@link BufferLimitError}; both on
   * `protocolError`). Messaging restricts a connection in its `connect`
   * handler, before any data, until the peer identified. Restricting again
   * changes the limit. Does nothing for a connection that is not open.
   * @throws {@link InvalidArgumentError} when `maxPacketSize` is not an integer >= 0.
   */
  restrict(connId: ConnId, maxPacketSize: number): void {
    if (!Number.isInteger(maxPacketSize) || maxPacketSize < 0) {
      throw new InvalidArgumentError(`restrict: maxPacketSize must be an integer >= 0, not ${maxPacketSize}`);
    }
    const state = this.conns.get(connId);
    if (state === undefined || state.closing) return;
    state.decoder.maxPacketSize = Math.min(maxPacketSize, this.options.maxPacketSize);
    state.restricted = true;
    this.account(state);
  }

  /**
   * Lifts {@link restrict}: the connection accepts packets up to
   * `options.maxPacketSize` again and leaves the budget. Does nothing for a
   * connection that is not open or not restricted.
   */
  unrestrict(connId: ConnId): void {
    const state = this.conns.get(connId);
    if (state === undefined || !state.restricted) return;
    this.unaccount(state);
    state.decoder.maxPacketSize = this.options.maxPacketSize;
  }

  /** Bytes of partial packets currently held for all restricted connections (what `restrictedBudget` bounds). */
  get restrictedBufferedBytes(): number {
    return this.restrictedBytes;
  }

  /** Whether the connection takes more packets without buffering above the transport's high-water mark. */
  isWritable(connId: ConnId): boolean {
    const state = this.conns.get(connId);
    return state !== undefined && !state.closing && this.transport.isWritable(connId);
  }

  /** Writes out the packets queued for a connection now, instead of at the end of the tick. */
  flushConnection(connId: ConnId): void {
    const state = this.conns.get(connId);
    if (state !== undefined) this.flush(connId, state);
  }

  /** Stops reading from a connection (receive-side backpressure). */
  pause(connId: ConnId): void {
    this.transport.pause(connId);
  }

  /** Resumes reading from a paused connection. */
  resume(connId: ConnId): void {
    this.transport.resume(connId);
  }

  /** Info of a live connection. */
  connection(connId: ConnId): ConnectionInfo | undefined {
    return this.transport.connection(connId);
  }

  /**
   * Closes one connection after writing out what is queued for it (with the
   * reason reported in `disconnect`), or with no id closes the transport.
   */
  close(connId?: ConnId, reason?: SnakeMQError): Promise<void> {
    if (connId === undefined) {
      for (const [id, state] of this.conns) this.flush(id, state);
      return this.transport.close();
    }
    const state = this.conns.get(connId);
    if (state !== undefined) {
      this.flush(connId, state);
      state.closing = true;
      state.decoder.stop();
      this.unaccount(state);
    }
    return this.transport.close(connId, reason);
  }

  // --- listeners: `packetListened` kept in step --------------------------------

  override on<T extends Names>(event: T, fn: Fn<T>, context?: unknown): this {
    super.on(event, fn, context);
    return this.listenersChanged();
  }

  override addListener<T extends Names>(event: T, fn: Fn<T>, context?: unknown): this {
    super.addListener(event, fn, context);
    return this.listenersChanged();
  }

  override once<T extends Names>(event: T, fn: Fn<T>, context?: unknown): this {
    super.once(event, fn, context);
    return this.listenersChanged();
  }

  override removeListener<T extends Names>(event: T, fn?: Fn<T>, context?: unknown, once?: boolean): this {
    super.removeListener(event, fn, context, once);
    return this.listenersChanged();
  }

  override off<T extends Names>(event: T, fn?: Fn<T>, context?: unknown, once?: boolean): this {
    super.removeListener(event, fn, context, once);
    return this.listenersChanged();
  }

  override removeAllListeners(event?: Names): this {
    super.removeAllListeners(event);
    return this.listenersChanged();
  }

  private listenersChanged(): this {
    this.packetListened = this.listenerCount('packet') > 0;
    return this;
  }

  private flush(connId: ConnId, state: ConnState): void {
    state.flushScheduled = false;
    const slab = state.slab;
    if (slab === null || state.batchUsed === state.batchStart) return;
    const data = slab.buf.subarray(state.batchStart, state.batchUsed);
    const lastId = state.batchLastId;
    slab.pending++;
    // The rest of the buffer takes the next batches: one buffer serves many ticks.
    if (slab.buf.length - state.batchUsed >= MIN_BATCH_TAIL) state.batchStart = state.batchUsed;
    else this.closeSlab(state);
    this.transport.send(connId, data, this.slabWritten(connId, lastId, slab));
  }

  /**
   * The end-of-tick flush. A connection that filled a batch during the tick
   * streams: its next batch buffers are bigger (fewer socket writes, and fewer
   * wakeups of the reader). Once a tick's traffic fits a small batch again, it
   * gives the big buffer back. A connection that does not stream gives its
   * buffer back at every end of tick (its free rest serves whichever
   * connection writes next): an idle connection holds no batch buffer.
   */
  private flushTickEnd(connId: ConnId, state: ConnState): void {
    const light = state.batchUsed - state.batchStart < this.options.writeBatchSize;
    const filled = state.filledInTick;
    state.filledInTick = false;
    this.flush(connId, state);
    if (!state.streaming) this.closeSlab(state);
    else if (!filled && light) {
      state.streaming = false;
      this.closeSlab(state);
    } else {
      // It keeps its buffer for the next tick's stream; the sweep takes it back if none comes.
      state.wroteSinceSweep = true;
      if (!state.swept) {
        state.swept = true;
        this.streamers.push(state);
        if (this.sweepTimer === null) this.armSweep();
      }
    }
  }

  private armSweep(): void {
    this.sweepTimer = setTimeout(this.sweep, STREAM_IDLE_SWEEP_MS);
    this.sweepTimer.unref();
  }

  /** Gives the connection a batch buffer with room for `need` bytes (see {@link SlabPool.take}). */
  private openSlab(state: ConnState, need: number): Buffer {
    const slab = this.slabs.take(state.streaming, need);
    state.slab = slab;
    state.batchStart = state.batchUsed = slab.tail;
    return slab.buf;
  }

  /** The connection stops filling its batch buffer (its unflushed part, if any, is discarded). */
  private closeSlab(state: ConnState): void {
    const slab = state.slab;
    if (slab === null) return;
    // What lies before batchUsed was written, or is being discarded: only the rest is free.
    const tail = state.batchUsed;
    state.slab = null;
    state.batchStart = state.batchUsed = 0;
    this.slabs.giveBack(slab, tail);
  }

  /** Counts a restricted connection's partial-packet bytes in the total; closes it when that goes over the budget. */
  private account(state: ConnState): void {
    const now = state.decoder.bufferedBytes;
    this.restrictedBytes += now - state.counted;
    state.counted = now;
    if (this.restrictedBytes <= this.options.restrictedBudget) return;
    const error = new BufferLimitError(this.options.restrictedBudget);
    log(`conn ${state.id}: ${error.message}; closing`);
    this.unaccount(state);
    this.emit('protocolError', state.id, error);
    void this.close(state.id, error);
  }

  /** Takes a connection out of the restricted total. */
  private unaccount(state: ConnState): void {
    this.restrictedBytes -= state.counted;
    state.counted = 0;
    state.restricted = false;
  }

  private slabWritten(connId: ConnId, lastId: number, slab: Slab): (error?: SnakeMQError) => void {
    return (error) => {
      slab.pending--;
      if (error !== undefined) {
        slab.failed = true;
        return;
      }
      this.slabs.recycle(slab);
      this.emit('sent', connId, lastId);
    };
  }

  private sentCallback(connId: ConnId, lastId: number): (error?: SnakeMQError) => void {
    return (error) => {
      if (error === undefined) this.emit('sent', connId, lastId);
    };
  }

  private onConnect(info: ConnectionInfo): void {
    const connId = info.id;
    this.conns.set(connId, {
      id: connId,
      decoder: new PacketDecoder(this.options.maxPacketSize),
      sink: (buf, start, end) => {
        if (this.packetSink !== null) this.packetSink(connId, buf, start, end);
        if (this.packetListened) {
          this.emit('packet', connId, buf.subarray(start, end));
        }
      },
      run: (chunk, off, decoder) => (this.packetRun !== null ? this.packetRun(connId, chunk, off, decoder) : off),
      slab: null,
      batchStart: 0,
      batchUsed: 0,
      streaming: false,
      filledInTick: false,
      swept: false,
      wroteSinceSweep: false,
      batchLastId: 0,
      flushScheduled: false,
      closing: false,
      restricted: false,
      counted: 0,
    });
    this.emit('connect', info);
  }

  private onDisconnect(connId: ConnId, reason: DisconnectReason): void {
    const state = this.conns.get(connId);
    if (state === undefined) return;
    state.decoder.stop();
    state.flushScheduled = false;
    state.streaming = false;
    if (state.swept) {
      state.swept = false;
      this.streamers.splice(this.streamers.indexOf(state), 1);
      if (this.streamers.length === 0 && this.sweepTimer !== null) {
        clearTimeout(this.sweepTimer);
        this.sweepTimer = null;
      }
    }
    this.unaccount(state);
    this.closeSlab(state);
    this.conns.delete(connId);
    if (this.last === state) this.last = null;
    this.emit('disconnect', connId, reason);
  }

  private onData(connId: ConnId, chunk: Buffer): void {
    const state = this.conns.get(connId);
    if (state === undefined || state.closing) return;
    try {
      state.decoder.push(chunk, state.sink, this.packetRun !== null && !this.packetListened ? state.run : null);
    } catch (error) {
      if (!(error instanceof PacketTooLargeError)) throw error;
      log(`conn ${connId}: ${error.message}; closing`);
      this.unaccount(state);
      this.emit('protocolError', connId, error);
      void this.close(connId, error);
      return;
    }
    // The state read again: a packet handler may have (un)restricted or closed the connection.
    if (state.restricted && !state.closing) this.account(state);
  }
}

function toBuffer(data: Uint8Array): Buffer {
  if (data.byteLength === 0) return emptyBuffer;
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}
