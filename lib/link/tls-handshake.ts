/**
 * TLS for the link: secure contexts and servers made from {@link TlsOptions},
 * the listener side of the handshake (sockets still handshaking, refused or
 * failed clients), and what a connection reports of its TLS session. The
 * connector side's TLS 1.3 acceptance wait lives with the dialling code in
 * connector.ts. Builds on node:tls.
 * @module
 */
import net from 'node:net';
import tls from 'node:tls';
import { InvalidOptionsError, TlsError } from '../errors.js';
import { DEFAULT_TLS_HANDSHAKE_TIMEOUT, type TlsOptions } from './options.js';
import { definedOnly, messageOf } from './socket-util.js';
import type { ParsedEndpoint, TlsInfo } from './types.js';

/** Longest wait, after a TLS 1.3 handshake, for a sign that the listener accepted our certificate. @internal */
export const TLS13_ACCEPT_WAIT_MS = 1000;

/**
 * A TLS server for a listener.
 * @throws InvalidOptionsError when the key/certificate are unusable.
 * @internal
 */
export function createTlsServer(parsed: ParsedEndpoint, t: TlsOptions): tls.Server {
  try {
    return tls.createServer({
      ...contextOptions(t),
      handshakeTimeout: t.handshakeTimeout ?? DEFAULT_TLS_HANDSHAKE_TIMEOUT,
      ...definedOnly({ requestCert: t.requestCert ?? false, rejectUnauthorized: t.rejectUnauthorized }),
    } as tls.TlsOptions);
  } catch (err) {
    throw new InvalidOptionsError(`listener ${parsed.url}: unusable TLS key/certificate: ${messageOf(err)}`, {
      cause: err,
    });
  }
}

/**
 * The secure context a connector uses for all its attempts.
 * @throws InvalidOptionsError when the key/certificate are unusable.
 * @internal
 */
export function createConnectorContext(parsed: ParsedEndpoint, t: TlsOptions): tls.SecureContext {
  try {
    return tls.createSecureContext(contextOptions(t));
  } catch (err) {
    throw new InvalidOptionsError(`connector ${parsed.url}: unusable TLS key/certificate: ${messageOf(err)}`, {
      cause: err,
    });
  }
}

/** What a TLS listener asks of the listener code around it. @internal */
export interface TlsServerHooks {
  /** Raw sockets whose handshake has not finished (the hook set adds and deletes them). */
  readonly handshaking: Set<net.Socket>;
  /** Counts an accepted raw socket, or destroys it and returns false. */
  admit(raw: net.Socket): boolean;
  /** The handshake finished: the socket becomes a connection. */
  accept(socket: tls.TLSSocket): void;
  /** The handshake failed (socket already destroyed). */
  failed(socket: tls.TLSSocket, err: Error): void;
}

/** Wires the handshake events of a listener's TLS server. @internal */
export function wireTlsServer(server: net.Server, mustAuthorize: boolean, hooks: TlsServerHooks): void {
  const handshaking = hooks.handshaking;
  // Raw sockets refused by admit: their TLSSocket (made by Node before our
  // 'connection' listener runs) then reports a reset we must not pass on.
  const refused = new WeakSet<net.Socket>();
  server.on('connection', (raw: net.Socket) => {
    raw.on('error', () => undefined);
    if (!hooks.admit(raw)) {
      refused.add(raw);
      return;
    }
    handshaking.add(raw);
    raw.once('close', () => handshaking.delete(raw));
  });
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    const raw = rawSocketOf(socket);
    if (raw) handshaking.delete(raw);
    if (raw && refused.has(raw)) {
      socket.destroy();
      return;
    }
    if (mustAuthorize && !socket.authorized) {
      // Node already refuses these; kept as a guard so no unauthorized peer ever reaches `connect`.
      socket.destroy();
      hooks.failed(socket, new Error(String(socket.authorizationError)));
      return;
    }
    hooks.accept(socket);
  });
  server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
    // Node leaves the socket open after some of these (a handshake timeout
    // among them): it would hold its descriptor until the client goes away.
    const raw = rawSocketOf(socket);
    socket.destroy();
    raw?.destroy();
    if (raw && refused.has(raw)) return;
    hooks.failed(socket, err);
  });
}

/** The TlsError reported (`acceptFailed`) for a client whose handshake failed. @internal */
export function clientHandshakeError(url: string, socket: tls.TLSSocket, err: Error): TlsError {
  const why = socket.authorizationError ? `client certificate rejected (${String(socket.authorizationError)})` : messageOf(err);
  return new TlsError(`${url}: TLS handshake with a client failed: ${why}`, { cause: err });
}

/** The TLS details of an established connection. @internal */
export function tlsInfo(socket: tls.TLSSocket): TlsInfo {
  const cert = socket.getPeerCertificate() as tls.PeerCertificate | null | undefined;
  return Object.freeze({
    protocol: socket.getProtocol(),
    cipher: socket.getCipher()?.name ?? '',
    authorized: socket.authorized,
    ...(socket.authorizationError ? { authorizationError: String(socket.authorizationError) } : {}),
    peerCertificate: cert ?? {},
  });
}

/**
 * tls.Server wraps each accepted socket in a TLSSocket and keeps the raw one
 * as `_parent` (Node internals, unchanged for a decade); knowing it lets
 * removeListener abort handshakes still in progress without touching
 * established connections. Without it, those are closed abruptly instead.
 */
function rawSocketOf(socket: tls.TLSSocket): net.Socket | undefined {
  const parent = (socket as unknown as { _parent?: unknown })._parent;
  return parent instanceof net.Socket ? parent : undefined;
}

/** The TLS options that make a secure context (the same for listeners and connectors). */
function contextOptions(t: TlsOptions): tls.SecureContextOptions {
  return definedOnly({
    key: t.key,
    cert: t.cert,
    ca: t.ca,
    passphrase: t.passphrase,
    ciphers: t.ciphers,
    minVersion: t.minVersion,
    maxVersion: t.maxVersion,
  }) as tls.SecureContextOptions;
}
