import { Buffer } from 'node:buffer';
import { isIPv4, isIPv6 } from 'node:net';
import { InvalidEndpointError } from '../errors.js';
import type { Endpoint, ParsedEndpoint } from './types.js';

const SCHEMES: Record<string, { transport: 'tcp' | 'unix' | 'udp'; tls: boolean }> = {
  tcp: { transport: 'tcp', tls: false },
  udp: { transport: 'udp', tls: false },
  tls: { transport: 'tcp', tls: true },
  unix: { transport: 'unix', tls: false },
  'unix+tls': { transport: 'unix', tls: true },
};

const HOSTNAME_LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/** Longest `sun_path` usable for a filesystem socket (the kernel wants a trailing NUL). */
const MAX_UNIX_PATH_BYTES = process.platform === 'linux' ? 107 : 103;

/**
 * Parses and validates an endpoint.
 *
 * Accepted forms:
 * - `tcp://host:port`, `tls://host:port`; IPv6 in brackets: `tcp://[::1]:5000`;
 *   port `0` means "any free port" and is only useful for listeners;
 * - `unix:///abs/path`, `unix://rel/path` (relative to the working directory);
 * - Linux abstract namespace: `unix://@name` or `unix://\0name` (the parsed
 *   `path` starts with `\0`, the `url` shows `@`);
 * - `unix+tls://…`: TLS over a Unix socket, same path forms;
 * - `udp://host:port` (IPv6 as `udp://[::1]:port`): datagrams, one message
 *   each, no connection (see docs/datagrams.md);
 * - objects `{ host, port, tls? }` and `{ path, tls? }` (a `path` starting with
 *   `@` or `\0` is an abstract name, as in URLs).
 *
 * Scheme names are case-insensitive; host names are lower-cased in `url`.
 *
 * @returns a frozen {@link ParsedEndpoint} whose `url` is canonical (usable as a key).
 * @throws InvalidEndpointError (`SMQ_ERR_INVALID_ENDPOINT`) for anything else:
 *   unknown scheme, missing/invalid port, empty host or path, junk after the
 *   port, unbracketed IPv6, over-long socket path, wrong type.
 */
export function parseEndpoint(endpoint: Endpoint): ParsedEndpoint {
  if (typeof endpoint === 'string') return parseUrl(endpoint);
  if (typeof endpoint === 'object' && endpoint !== null && !Array.isArray(endpoint)) return parseObject(endpoint);
  throw new InvalidEndpointError(`endpoint must be a URL string or a {host, port} / {path} object, got ${describe(endpoint)}`);
}

function parseUrl(text: string): ParsedEndpoint {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([\s\S]*)$/.exec(text);
  if (!m) throw new InvalidEndpointError(`invalid endpoint ${JSON.stringify(text)}: expected scheme://address`);
  const scheme = m[1]!.toLowerCase();
  const rest = m[2]!;
  const kind = SCHEMES[scheme];
  if (!kind) {
    throw new InvalidEndpointError(`invalid endpoint ${JSON.stringify(text)}: unknown scheme '${scheme}' (use tcp, tls, unix, unix+tls or udp)`);
  }
  if (kind.transport === 'udp') {
    const { host, port } = splitHostPort(text, rest);
    return udpEndpoint(text, host, port);
  }
  if (kind.transport === 'tcp') {
    const { host, port } = splitHostPort(text, rest);
    return tcpEndpoint(text, host, port, kind.tls);
  }
  return unixEndpoint(text, rest, kind.tls);
}

function splitHostPort(text: string, rest: string): { host: string; port: number } {
  let host: string;
  let portText: string;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) throw bad(text, 'unterminated IPv6 address');
    host = rest.slice(1, close);
    if (!isIPv6(host)) throw bad(text, `'${host}' is not an IPv6 address`);
    const after = rest.slice(close + 1);
    if (after === '') throw bad(text, 'missing port');
    if (!after.startsWith(':')) throw bad(text, `unexpected '${after}' after the address`);
    portText = after.slice(1);
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon < 0) throw bad(text, 'missing port');
    host = rest.slice(0, colon);
    portText = rest.slice(colon + 1);
    if (host.includes(':')) throw bad(text, 'IPv6 addresses must be written in brackets, e.g. tcp://[::1]:4000');
  }
  if (portText === '') throw bad(text, 'missing port');
  if (!/^[0-9]{1,5}$/.test(portText)) throw bad(text, `invalid port '${portText}'`);
  return { host, port: Number(portText) };
}

function tcpEndpoint(text: string, rawHost: string, port: number, tls: boolean): ParsedEndpoint {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw bad(text, `port ${port} is not an integer in 0..65535`);
  let host = rawHost;
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (host === '') throw bad(text, 'empty host');
  let shown: string;
  if (isIPv6(host)) {
    shown = `[${host}]`;
  } else if (isIPv4(host)) {
    shown = host;
  } else {
    host = host.toLowerCase();
    if (!isHostname(host)) throw bad(text, `invalid host '${rawHost}'`);
    shown = host;
  }
  const url = `${tls ? 'tls' : 'tcp'}://${shown}:${port}`;
  return Object.freeze({ transport: 'tcp', tls, host, port, url });
}

/** `udp://host:port`: the same host and port rules as `tcp://`, for datagrams (see lib/link/datagram.ts). */
function udpEndpoint(text: string, rawHost: string, port: number): ParsedEndpoint {
  const tcp = tcpEndpoint(text, rawHost, port, false);
  return Object.freeze({ transport: 'udp', tls: false, host: tcp.host, port: tcp.port, url: `udp${tcp.url.slice(3)}` });
}

function isHostname(host: string): boolean {
  if (host.length > 253) return false;
  // Dotted numbers that are not a valid IPv4 address (e.g. 256.1.1.1) are typos, not names.
  if (/^[0-9.]+$/.test(host)) return false;
  const labels = (host.endsWith('.') ? host.slice(0, -1) : host).split('.');
  return labels.every((l) => HOSTNAME_LABEL.test(l));
}

function unixEndpoint(text: string, rawPath: string, tls: boolean): ParsedEndpoint {
  const scheme = tls ? 'unix+tls' : 'unix';
  if (rawPath === '') throw bad(text, 'empty socket path');
  let path: string;
  let shown: string;
  if (rawPath.startsWith('@') || rawPath.startsWith('\0')) {
    const name = rawPath.slice(1);
    if (name === '') throw bad(text, 'empty abstract socket name');
    if (process.platform !== 'linux') throw bad(text, 'abstract Unix socket names exist only on Linux');
    if (Buffer.byteLength(name) > 107) throw bad(text, 'abstract socket name longer than 107 bytes');
    path = `\0${name}`;
    shown = `@${name}`;
  } else {
    if (rawPath.includes('\0')) throw bad(text, 'NUL byte inside the socket path');
    if (rawPath.endsWith('/')) throw bad(text, 'socket path names a directory');
    if (Buffer.byteLength(rawPath) > MAX_UNIX_PATH_BYTES) {
      throw bad(text, `socket path longer than ${MAX_UNIX_PATH_BYTES} bytes (the OS limit)`);
    }
    path = rawPath;
    shown = rawPath;
  }
  return Object.freeze({ transport: 'unix', tls, path, url: `${scheme}://${shown}` });
}

function parseObject(obj: object): ParsedEndpoint {
  const rec = obj as Record<string, unknown>;
  const text = describe(obj);
  for (const key of Object.keys(rec)) {
    if (key !== 'host' && key !== 'port' && key !== 'path' && key !== 'tls') {
      throw bad(text, `unknown key '${key}' (use {host, port, tls?} or {path, tls?})`);
    }
  }
  const tls = rec.tls ?? false;
  if (typeof tls !== 'boolean') throw bad(text, "'tls' must be a boolean");
  if ('path' in rec && rec.path !== undefined) {
    if ('host' in rec || 'port' in rec) throw bad(text, 'give either {host, port} or {path}, not both');
    if (typeof rec.path !== 'string') throw bad(text, "'path' must be a string");
    return unixEndpoint(text, rec.path, tls);
  }
  if (typeof rec.host !== 'string') throw bad(text, "'host' must be a string");
  if (rec.port === undefined) throw bad(text, 'missing port');
  if (typeof rec.port !== 'number' || !Number.isInteger(rec.port) || rec.port < 0 || rec.port > 65535) {
    throw bad(text, "'port' must be an integer in 0..65535");
  }
  return tcpEndpoint(text, rec.host, rec.port, tls);
}

function bad(text: string, why: string): InvalidEndpointError {
  const shown = text.startsWith('{') ? text : JSON.stringify(text);
  return new InvalidEndpointError(`invalid endpoint ${shown}: ${why}`);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') {
    try {
      return JSON.stringify(value) ?? String(value);
    } catch {
      return 'an object';
    }
  }
  return typeof value === 'string' ? JSON.stringify(value) : `${typeof value} ${String(value)}`;
}
