export { Packeter, DEFAULT_MAX_PACKET_SIZE, DEFAULT_WRITE_BATCH_SIZE, DEFAULT_RESTRICTED_BUDGET } from './packeter.js';
export type { PacketerEvents, PacketerOptions } from './packeter.js';
export { PacketDecoder, encodePacket, wholePacketEnd, HEADER_SIZE, BIG_PIECE } from './decoder.js';
export type { PacketRun, PacketSink } from './decoder.js';
