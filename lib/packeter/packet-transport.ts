/**
 * The one internal boundary between a {@link Packeter} and the Messaging
 * above it: everything Messaging may call, and everything it is called back
 * with. Messaging holds the Packeter only as a `PacketTransport`.
 * @module
 */
import type { Buffer } from 'node:buffer';
import type { SnakeMQError } from '../errors.js';
import type { ConnId, ConnectionInfo } from '../link/types.js';
import type { PacketDecoder } from './decoder.js';
import type { PacketerOptions } from './packeter.js';
import type { Slab } from './write-batch.js';

/**
 * Receives every packet of every connection as `buf[start, end)` (no view
 * made per packet). The range is valid during the call only: copy what is
 * kept.
 */
export type ConnPacketSink = (connId: ConnId, buf: Buffer, start: number, end: number) => void;

/**
 * Takes over a run of whole packets of a chunk at `off` and returns where it
 * stopped (`off` itself: "not mine, use the sink"). See {@link PacketRun}.
 *
 */
export type ConnPacketRun = (connId: ConnId, chunk: Buffer, off: number, decoder: PacketDecoder) => number;

/**
 * What Messaging uses of the Packeter below it (a {@link Packeter}
 * implements it), in three groups:
 *
 * **Called back** — with {@link onEvent}: `connect(info)` (before any data
 * of the connection), `disconnect(connId)`, `sent(connId, lastPacketId)`
 * (cumulative, once per socket write), `drain(connId)` (after `isWritable`
 * was false), `protocolError(connId, error)` (the framing broke: the
 * connection is being closed); with {@link onDatagram}, each `udp://`
 * listener's datagram (unparsed); and with the one packet sink of
 * {@link setPacketSink}, every received packet. The sink is the receive fast
 * path, not a side door: it is called for every packet whether or not
 * anybody listens to the Packeter's public `packet` event, and while nobody
 * does, `run` is offered whole runs of packets first.
 *
 * **Sending** — {@link sendPacket} for a payload the caller has; for the
 * zero-copy path of small packets, {@link allocPacket} reserves a packet in
 * the connection's write batch and sets the out-parameters
 * {@link allocated}/{@link allocatedOffset}/{@link allocatedView}/
 * {@link allocatedSlab}, which the caller fills at once: they are valid
 * until the next call into the Packeter. {@link retain}/{@link release} keep
 * a write batch's bytes (frames kept in flight for a re-send). Writability is
 * {@link isWritable}, checked once per `options.writeBatchSize` bytes.
 *
 * **Connection control** — restrict/unrestrict (handshake limits),
 * pause/resume (receive backpressure), flushConnection, connection (info
 * for `authorize`), close.
 *
 */
export interface PacketTransport {
  /** Options in force; Messaging reads `writeBatchSize`. */
  readonly options: Readonly<Required<PacketerOptions>>;

  /** Subscribes to one of the events above (a typed subset of the Packeter's events). */
  onEvent<E extends keyof PacketTransportEvents>(event: E, fn: PacketTransportEvents[E]): void;
  /** Optional: subscribes to the datagrams of `udp://` listeners, as the transport passed them up (unparsed; Messaging parses them: lib/messaging/datagram.ts). */
  onDatagram?(fn: (connId: ConnId, datagram: Buffer, address: string, port: number) => void): void;
  /** Sets the one packet sink (and run taker) of this transport; a second call throws. */
  setPacketSink(sink: ConnPacketSink, run?: ConnPacketRun): void;

  sendPacket(connId: ConnId, payload: Uint8Array, tail?: Uint8Array): number;
  /** Optional: one datagram, as is, on a `udp://` connector's connection (see {@link Packeter.sendDatagram}). */
  sendDatagram?(connId: ConnId, datagram: Buffer, onWritten?: (error?: SnakeMQError) => void): void;
  allocPacket(connId: ConnId, size: number): number;
  /** Out-parameter of {@link allocPacket}: the buffer to write the payload into. */
  readonly allocated: Buffer;
  /** Out-parameter of {@link allocPacket}: where the payload starts in {@link allocated}. */
  readonly allocatedOffset: number;
  /** Out-parameter of {@link allocPacket}: a DataView over all of {@link allocated}. */
  readonly allocatedView: DataView;
  /** Out-parameter of {@link allocPacket}: the write batch {@link allocated} belongs to. */
  readonly allocatedSlab: Slab | null;
  retain(slab: Slab): void;
  release(slab: Slab): void;
  isWritable(connId: ConnId): boolean;
  flushConnection(connId: ConnId): void;

  restrict(connId: ConnId, maxPacketSize: number): void;
  unrestrict(connId: ConnId): void;
  pause(connId: ConnId): void;
  resume(connId: ConnId): void;
  connection(connId: ConnId): ConnectionInfo | undefined;
  close(connId?: ConnId, reason?: SnakeMQError): Promise<void>;

  /**
   * Optional, for a transport that routes by identity (the relay): Messaging
   * bound `connId` to the identity `ident` (after its checks, before any
   * frame of it is delivered).
   */
  identified?(connId: ConnId, ident: string): void;
  /**
   * Optional, for a transport that can find peers (the relay): Messaging has
   * messages for `ident` and no connection to it. Called once per such time
   * (again after the next disconnect), not per message.
   */
  wantPeer?(ident: string): void;
}

/** The callbacks of {@link PacketTransport.onEvent}. */
export interface PacketTransportEvents {
  connect: (info: ConnectionInfo) => void;
  disconnect: (connId: ConnId) => void;
  sent: (connId: ConnId, lastPacketId: number) => void;
  drain: (connId: ConnId) => void;
  protocolError: (connId: ConnId, error: SnakeMQError) => void;
}
