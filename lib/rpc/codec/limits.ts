/**
 * The limits every RPC codec module shares (the writer, the reader and the
 * envelope refuse the same things). Builds on nothing.
 * @module
 */

/** Default largest RPC message (prefix included) encoded or accepted: 16 MiB. */
export const DEFAULT_MAX_PAYLOAD = 16 * 1024 * 1024;

/**
 * Deepest nesting of arrays/maps in a message, the same limit for encoding
 * and decoding: the envelope map counts as 1 and `args` as 2, so an argument
 * may nest 254 levels and a result or exception 255. Encoding a deeper (or
 * circular) value throws `InvalidArgumentError`; decoding one gives
 * `RpcBadRequestError`. Dates and bins do not count; a `toJSON` result
 * counts as what it returns.
 */
export const MAX_DEPTH = 256;

/** Longest request id accepted, in bytes. */
export const MAX_REQ_ID_LENGTH = 256;

/** Limits of {@link encodeRequest} and friends. */
export interface CodecLimits {
  /** Largest message in bytes, prefix included. @default 16 MiB */
  maxPayload?: number;
}
