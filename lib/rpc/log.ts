import { createLogger } from '../util/log.js';

/** The one `snakemq:rpc` logger (createLogger keeps one state per namespace, so create it once). */
export const log = createLogger('snakemq:rpc');
