import { createLogger } from '../util/log.js';

/** The one `snakemq:pubsub` logger. */
export const log = createLogger('snakemq:pubsub');
