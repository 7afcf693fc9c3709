/**
 * Small helpers shared by the link's modules: wrapping Node socket errors in
 * the project's typed errors, and option objects without undefined values.
 * @module
 */
import { ConnectionError, SnakeMQError, TlsError } from '../errors.js';

const TLS_CODE = /^(ERR_SSL_|ERR_TLS_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_)/;

/** A Node socket error as a TlsError (by its code) or a ConnectionError, `cause` kept. @internal */
export function wrapSocketError(err: unknown, context: string): SnakeMQError {
  if (err instanceof SnakeMQError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const message = `${context}: ${messageOf(err)}`;
  return typeof code === 'string' && TLS_CODE.test(code) ? new TlsError(message, { cause: err }) : new ConnectionError(message, { cause: err });
}

/** @internal */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Drops undefined values (Node treats some present-but-undefined TLS keys differently). @internal */
export function definedOnly<T extends Record<string, unknown>>(obj: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}
