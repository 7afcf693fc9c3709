/**
 * Options of {@link RpcServer} and of {@link RpcServer.register}: their
 * TSDoc, defaults and validation. Builds on util/options.ts.
 * @module
 */
import { is, validateOptions, type OptionCheck } from '../util/options.js';
import { DEFAULT_MAX_PAYLOAD } from './codec.js';

/** Options of {@link RpcServer}. */
export interface RpcServerOptions {
  /**
   * Send a failing method's exception (name, message, code, stack) back to
   * the caller. When `false` the caller gets a generic error without details
   * (the exception is still emitted as `methodError`).
   * @default true
   */
  transferExceptions?: boolean;
  /**
   * Most method invocations running at once (async methods count until they
   * settle); excess calls and signals wait in a FIFO. An integer >= 1 or `Infinity`.
   * @default Infinity
   */
  concurrency?: number;
  /**
   * How many recent call results (per caller identity and request id) are
   * kept to answer a re-sent request again instead of running it twice.
   * `0` disables the cache (a request re-sent after its result was sent then
   * runs again). Requests still running are never started twice, whatever this is.
   * @default 1000 ({@link DEFAULT_RESULT_CACHE_SIZE})
   */
  resultCacheSize?: number;
  /**
   * Most bytes of results (encoded replies) the result cache keeps; the
   * oldest go first. A reply larger than this is not kept. `0` disables the cache.
   * @default 64 MiB ({@link DEFAULT_RESULT_CACHE_BYTES})
   */
  resultCacheBytes?: number;
  /**
   * How long a result stays in the cache, in ms: it is forgotten between
   * this and 9/8 of this after the call ended (one timer per server, and
   * only while results are kept). `Infinity`: no age limit.
   * @default 300000 (5 minutes, {@link DEFAULT_RESULT_CACHE_AGE})
   */
  resultCacheAge?: number;
  /**
   * Most calls and signals waiting or running at once (running ones, those
   * waiting for a `concurrency` slot, and requests of a burst not yet looked
   * at). Beyond it a call is answered with {@link RpcBusyError} at once (the
   * method does not run; a re-sent call already known is still answered)
   * and a signal is dropped (`warning` event). An integer >= 1 or `Infinity`.
   * @default 10000 ({@link DEFAULT_MAX_PENDING_CALLS})
   */
  maxPending?: number;
  /** Largest request accepted and reply sent, in bytes (prefix included). @default 16 MiB */
  maxPayload?: number;
}

/** Default {@link RpcServerOptions.resultCacheSize}: 1000 results. */
export const DEFAULT_RESULT_CACHE_SIZE = 1000;
/** Default {@link RpcServerOptions.resultCacheBytes}: 64 MiB. */
export const DEFAULT_RESULT_CACHE_BYTES = 64 * 1024 * 1024;
/** Default {@link RpcServerOptions.resultCacheAge}: 5 minutes (in ms). */
export const DEFAULT_RESULT_CACHE_AGE = 5 * 60_000;
/** Default {@link RpcServerOptions.maxPending}: 10,000 calls waiting or running. */
export const DEFAULT_MAX_PENDING_CALLS = 10_000;

/** Options of {@link RpcServer.register}. */
export interface RpcRegisterOptions {
  /**
   * Methods meant to be invoked as signals (no reply). A regular call to one
   * of them, or a signal to any other method, still runs but emits `warning`.
   */
  signals?: readonly string[];
}

const integerOrInfinity =
  (min: number): OptionCheck =>
  (v) =>
    v === Infinity || (Number.isInteger(v) && (v as number) >= min) ? undefined : `must be an integer >= ${min} or Infinity`;

const stringArray: OptionCheck = (v) => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? undefined : 'must be an array of strings');

/** @internal The server's options with their defaults. @throws {InvalidOptionsError} unknown option or invalid value. */
export function serverOptions(options: RpcServerOptions | undefined): Required<RpcServerOptions> {
  return validateOptions<Required<RpcServerOptions>>(
    'RpcServer',
    options,
    {
      transferExceptions: is.boolean(),
      concurrency: integerOrInfinity(1),
      resultCacheSize: is.integer(0),
      resultCacheBytes: is.integer(0),
      resultCacheAge: integerOrInfinity(1),
      maxPending: integerOrInfinity(1),
      maxPayload: is.integer(64),
    },
    {
      transferExceptions: true,
      concurrency: Infinity,
      resultCacheSize: DEFAULT_RESULT_CACHE_SIZE,
      resultCacheBytes: DEFAULT_RESULT_CACHE_BYTES,
      resultCacheAge: DEFAULT_RESULT_CACHE_AGE,
      maxPending: DEFAULT_MAX_PENDING_CALLS,
      maxPayload: DEFAULT_MAX_PAYLOAD,
    },
  );
}

/** @internal register()'s options with their defaults. @throws {InvalidOptionsError} unknown option or invalid value. */
export function registerOptions(options: RpcRegisterOptions | undefined): Required<RpcRegisterOptions> {
  return validateOptions<Required<RpcRegisterOptions>>('RpcServer.register', options, { signals: stringArray }, { signals: [] });
}
