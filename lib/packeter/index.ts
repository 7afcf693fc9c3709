export { Packeter, DEFAULT_MAX_PACKET_SIZE, DEFAULT_WRITE_BATCH_SIZE, DEFAULT_RESTRICTED_BUDGET } from './packeter.js';
export type { PacketerEvents, PacketerOptions } from './packeter.js';
