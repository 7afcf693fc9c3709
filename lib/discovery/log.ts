import { createLogger } from '../util/log.js';

/** The one `snakemq:discovery` logger. */
export const log = createLogger('snakemq:discovery');
