/**
 * Optional outgoing bandwidth limit between the link and the packeter. See {@link Throttle}.
 * @module
 */
export { Throttle } from './throttle.js';
export type { OnWritten, ThrottleOptions } from './throttle.js';
