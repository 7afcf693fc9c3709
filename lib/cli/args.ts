import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { parseEndpoint, type ParsedEndpoint, type TlsOptions } from '../link/index.js';
import { MAX_TTL } from '../messaging/index.js';
import { UsageError } from './errors.js';

type OptionSpecs = NonNullable<ParseArgsConfig['options']>;
export type Values = Record<string, string | boolean | string[] | undefined>;

/** Longest identity on the wire (snakeMQ truncates longer ones). */
export const MAX_IDENT_LENGTH = 50;

/** Options shared by `listen`, `send` and `call`. */
export const COMMON_OPTIONS = {
  ident: { type: 'string' },
  listen: { type: 'string', multiple: true },
  connect: { type: 'string', multiple: true },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-ca': { type: 'string' },
  storage: { type: 'string' },
  timeout: { type: 'string' },
  'management-allow': { type: 'string', multiple: true },
  'management-actions': { type: 'string', multiple: true },
  help: { type: 'boolean', short: 'h' },
} as const satisfies OptionSpecs;

/** Whether `--help` / `-h` appears before a `--` separator. */
export function wantsHelp(args: readonly string[]): boolean {
  for (const a of args) {
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
  }
  return false;
}

/** `parseArgs` in strict mode, its errors turned into {@link UsageError}s. */
export function parse(command: string, args: string[], options: OptionSpecs, allowPositionals: boolean): { values: Values; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args, options, allowPositionals, strict: true });
    return { values: values as Values, positionals };
  } catch (error) {
    throw new UsageError(describeParseError(error), command);
  }
}

function describeParseError(error: unknown): string {
  const e = error as { code?: string; message?: string };
  const message = String(e.message ?? error);
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': {
      const m = /option '([^']*)'/.exec(message);
      return `unknown option '${m ? m[1] : message}'`;
    }
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      // "Option '--ident <value>' argument missing" / "Option '--json' does not take an argument"
      const m = /Option '(-[^' ]+)(?: <value>)?'/.exec(message);
      if (m && message.includes('argument missing')) return `option '${m[1]}' needs a value`;
      if (m && message.includes('does not take an argument')) return `option '${m[1]}' does not take a value`;
      if (m && message.includes('is ambiguous')) {
        return `option '${m[1]}' needs a value (write ${m[1]}=VALUE for a value starting with '-')`;
      }
      return message;
    }
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL': {
      const m = /argument '([^']*)'/.exec(message);
      return `unexpected argument '${m ? m[1] : message}'`;
    }
    default:
      return message;
  }
}

export function str(values: Values, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

export function list(values: Values, name: string): string[] {
  const v = values[name];
  return Array.isArray(v) ? v : [];
}

export function required(command: string, values: Values, name: string): string {
  const v = str(values, name);
  if (v === undefined) throw new UsageError(`--${name} is required`, command);
  if (v === '') throw new UsageError(`--${name} must not be empty`, command);
  return v;
}

/** A non-negative integer option (`--count`, `--size`), or undefined when absent. */
export function integer(command: string, values: Values, name: string, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = str(values, name);
  if (v === undefined) return undefined;
  if (!/^[0-9]+$/.test(v) || Number(v) > max) {
    throw new UsageError(`--${name} must be an integer from 0 to ${max}, got '${v}'`, command);
  }
  return Number(v);
}

/** A number of seconds (fractions allowed), or undefined when absent. */
export function seconds(command: string, values: Values, name: string, opts: { min: number; exclusive: boolean; max?: number }): number | undefined {
  const v = str(values, name);
  if (v === undefined) return undefined;
  const n = /^[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?$/.test(v) ? Number(v) : NaN;
  const max = opts.max ?? 2 ** 31 / 1000;
  const low = opts.exclusive ? n > opts.min : n >= opts.min;
  if (!Number.isFinite(n) || !low || n > max) {
    const range = opts.exclusive ? `greater than ${opts.min}` : `at least ${opts.min}`;
    throw new UsageError(`--${name} must be a number of seconds ${range} and at most ${max}, got '${v}'`, command);
  }
  return n;
}

/** Checks an identity given to `--ident` or `--to`. */
export function identity(command: string, name: string, value: string): string {
  if ([...value].length > MAX_IDENT_LENGTH) {
    throw new UsageError(`--${name} must be at most ${MAX_IDENT_LENGTH} characters (the snakeMQ limit)`, command);
  }
  return value;
}

/** What `listen`, `send` and `call` share, validated. */
export interface CommonOptions {
  ident: string;
  listen: ParsedEndpoint[];
  connect: ParsedEndpoint[];
  tls: { cert?: Buffer; key?: Buffer; ca?: Buffer };
  storage: string | undefined;
  /** In seconds. */
  timeout: number | undefined;
  /** Identities allowed to read the management status, and to call its actions (`--management-allow`, `--management-actions`); `undefined` when neither was given. */
  management: { allow: string[]; actions: string[] } | undefined;
}

function readPem(command: string, option: string, file: string | undefined): Buffer | undefined {
  if (file === undefined) return undefined;
  try {
    return readFileSync(file);
  } catch (error) {
    const why = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new UsageError(`cannot read --${option} ${file}: ${why}`, command);
  }
}

/** Parses endpoint URLs of option `--NAME` (a bad one is a usage error). */
export function endpoints(command: string, option: string, urls: string[]): ParsedEndpoint[] {
  return urls.map((url) => {
    try {
      return parseEndpoint(url);
    } catch (error) {
      throw new UsageError(`--${option}: ${(error as Error).message}`, command);
    }
  });
}

/**
 * Validates the common options (files are read here: an unreadable one is a usage error).
 * `needEndpoint: false` lets a command run with neither --listen nor --connect
 * (one whose connections come from elsewhere, e.g. a nameserver lookup).
 */
export function commonOptions(command: string, values: Values, needEndpoint = true): CommonOptions {
  const ident = identity(command, 'ident', required(command, values, 'ident'));
  const listen = endpoints(command, 'listen', list(values, 'listen'));
  const connect = endpoints(command, 'connect', list(values, 'connect'));
  if (needEndpoint && listen.length === 0 && connect.length === 0) {
    throw new UsageError('give at least one --listen URL or --connect URL', command);
  }
  const certFile = str(values, 'tls-cert');
  const keyFile = str(values, 'tls-key');
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new UsageError('--tls-cert and --tls-key go together', command);
  }
  const tlsListener = listen.find((e) => e.tls);
  if (tlsListener && certFile === undefined) {
    throw new UsageError(`--listen ${tlsListener.url} needs --tls-cert and --tls-key`, command);
  }
  const timeout = seconds(command, values, 'timeout', { min: 0, exclusive: true });
  const storage = str(values, 'storage');
  if (storage === '') throw new UsageError('--storage must not be empty', command);
  const tls = {
    cert: readPem(command, 'tls-cert', certFile),
    key: readPem(command, 'tls-key', keyFile),
    ca: readPem(command, 'tls-ca', str(values, 'tls-ca')),
  };
  const allow = list(values, 'management-allow').map((v) => identity(command, 'management-allow', v));
  const actions = list(values, 'management-actions').map((v) => identity(command, 'management-actions', v));
  const management = allow.length === 0 && actions.length === 0 ? undefined : { allow, actions };
  return { ident, listen, connect, tls, storage, timeout, management };
}

/** `--ttl` of `send`: seconds, `MAX_TTL` at most. */
export function ttl(command: string, values: Values): number | undefined {
  return seconds(command, values, 'ttl', { min: 0, exclusive: false, max: MAX_TTL });
}

/**
 * TLS options for the connectors a command adds itself (to nameservers), from
 * the --tls-* files: the certificate and key, and the CA to verify against.
 * `undefined` without files (Node's CA list).
 */
export function connectorTls(options: CommonOptions): TlsOptions | undefined {
  const { cert, key, ca } = options.tls;
  if (cert === undefined && ca === undefined) return undefined;
  const out: TlsOptions = {};
  if (cert !== undefined) Object.assign(out, { cert, key });
  if (ca !== undefined) Object.assign(out, { ca });
  return out;
}
