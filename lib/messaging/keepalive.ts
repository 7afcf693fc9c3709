/**
 * Keepalive: a PING after `keepaliveInterval` without anything received,
 * and the connection closed when nothing answers within `keepaliveWait`.
 * @module
 */
import { KeepaliveTimeoutError } from '../errors.js';
import type { MessagingCore } from './core.js';
import { encodePing } from './frames.js';
import { fail, type PeerConn } from './handshake.js';

export function armKeepalive(s: MessagingCore, conn: PeerConn): void {
  const interval = s.options.keepaliveInterval;
  if (interval === null) return;
  conn.alive = false;
  conn.pinged = false;
  conn.keepaliveTimer = setTimeout(() => checkKeepalive(s, conn), interval);
}

export function checkKeepalive(s: MessagingCore, conn: PeerConn): void {
  conn.keepaliveTimer = null;
  if (conn.closing || !s.conns.has(conn.id)) return;
  if (conn.alive) return armKeepalive(s, conn);
  if (conn.pinged) {
    return fail(s, conn, new KeepaliveTimeoutError(`no answer within ${s.options.keepaliveWait} ms of a PING`));
  }
  conn.pinged = true;
  s.packeter.sendPacket(conn.id, encodePing());
  conn.keepaliveTimer = setTimeout(() => checkKeepalive(s, conn), s.options.keepaliveWait);
}
