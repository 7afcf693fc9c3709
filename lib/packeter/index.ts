export { Packeter, DEFAULT_MAX_PACKET_SIZE, DEFAULT_WRITE_BATCH_SIZE } from './packeter.js';
export type { PacketerEvents, PacketerOptions } from './packeter.js';
export { PacketDecoder, encodePacket, wholePacketEnd, HEADER_SIZE } from './decoder.js';
export type { PacketRun, PacketSink } from './decoder.js';
