/**
 * Namespaced debug logging, off by default.
 *
 * Switch it on with the `DEBUG` environment variable, as with the `debug`
 * package: `DEBUG=snakemq:*`, `DEBUG=snakemq:link,snakemq:messaging`, or
 * `DEBUG=snakemq:*,-snakemq:packeter`. Or pass your application's logger to
 * {@link setLogger}: it then receives every enabled line.
 *
 * Payloads are never logged whole: use {@link preview}.
 * @module
 */
import { Buffer } from 'node:buffer';

/** A function that receives one formatted debug line and its namespace. */
export type LogSink = (namespace: string, message: string) => void;

/** A namespaced logger; `enabled` lets hot paths skip formatting. */
export interface Logger {
  (message: string): void;
  readonly namespace: string;
  readonly enabled: boolean;
}

let sink: LogSink | null = null;
let patterns: { re: RegExp; negate: boolean }[] = parsePatterns(process.env.DEBUG ?? '');
const loggers = new Map<string, { enabled: boolean; logger?: { enabled: boolean } }>();
const created = new Map<string, Logger>();

function parsePatterns(spec: string): { re: RegExp; negate: boolean }[] {
  return spec
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((p) => {
      const negate = p.startsWith('-');
      const body = (negate ? p.slice(1) : p).replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
      return { re: new RegExp(`^${body}$`), negate };
    });
}

function isEnabled(namespace: string): boolean {
  if (sink && patterns.length === 0) return true;
  let on = false;
  for (const p of patterns) if (p.re.test(namespace)) on = !p.negate;
  return on;
}

/**
 * Route debug output to your own logger. With a sink and no `DEBUG` patterns set,
 * every namespace is enabled; pass `null` to go back to stderr.
 */
export function setLogger(next: LogSink | null, enable?: string): void {
  sink = next;
  if (enable !== undefined) patterns = parsePatterns(enable);
  for (const [ns, state] of loggers) {
    state.enabled = isEnabled(ns);
    if (state.logger) state.logger.enabled = state.enabled;
  }
}

/** Creates the logger of one namespace (e.g. `snakemq:link`). */
export function createLogger(namespace: string): Logger {
  const existing = created.get(namespace);
  if (existing !== undefined) return existing;
  const state: { enabled: boolean; logger?: { enabled: boolean } } = { enabled: isEnabled(namespace) };
  loggers.set(namespace, state);
  const log = ((message: string) => {
    if (!state.enabled) return;
    if (sink) sink(namespace, message);
    else process.stderr.write(`${new Date().toISOString()} ${namespace} ${message}\n`);
  }) as Logger & { enabled: boolean };
  Object.defineProperty(log, 'namespace', { value: namespace });
  // A data property (not a getter): hot paths read it per packet.
  log.enabled = state.enabled;
  state.logger = log;
  created.set(namespace, log);
  return log;
}

/** A short, printable preview of a payload: at most `max` bytes, as hex. */
export function preview(data: Uint8Array, max = 32): string {
  const head = Buffer.from(data.buffer, data.byteOffset, Math.min(data.byteLength, max)).toString('hex');
  return data.byteLength > max ? `${head}… (${data.byteLength} bytes)` : `${head} (${data.byteLength} bytes)`;
}
