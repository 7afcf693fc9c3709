/**
 * The endpoints a peer announces: its bound listener URLs, with a wildcard
 * host (`0.0.0.0`, `::`) replaced by the machine's addresses, since nobody
 * can connect to a wildcard.
 * @module
 */
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import { parseEndpoint } from '../link/endpoint.js';
import { MAX_ENDPOINTS } from './announcement.js';
import { log } from './log.js';

/** What `os.networkInterfaces()` returns (an interface name → its addresses). */
export type NetworkInterfaces = NodeJS.Dict<NetworkInterfaceInfo[]>;

type Family = 'IPv4' | 'IPv6';

// Node 18.0–18.3 reported the family as a number.
function familyOf(info: NetworkInterfaceInfo): Family | null {
  const f = info.family as string | number;
  return f === 'IPv4' || f === 4 ? 'IPv4' : f === 'IPv6' || f === 6 ? 'IPv6' : null;
}

/** fe80::/10: needs a zone (`%eth0`) that means nothing on another host. */
function isLinkLocalIPv6(address: string): boolean {
  return /^fe[89ab]/i.test(address);
}

/**
 * The addresses a wildcard listener of `families` is reached at: every
 * non-loopback address of those families (IPv6 link-local ones left out);
 * only when there is none (a machine without network), the loopback ones.
 */
function wildcardAddresses(families: readonly Family[], interfaces: NetworkInterfaces): string[] {
  const external: string[] = [];
  const internal: string[] = [];
  for (const family of families) {
    for (const infos of Object.values(interfaces)) {
      for (const info of infos ?? []) {
        if (familyOf(info) !== family) continue;
        if (info.internal) internal.push(info.address);
        else if (!(family === 'IPv6' && isLinkLocalIPv6(info.address))) external.push(info.address);
      }
    }
  }
  return external.length > 0 ? external : internal;
}

/**
 * The endpoints to announce for a peer's bound listener URLs
 * (`peer.listening`), in their order:
 *
 * - a TCP/TLS URL on a host is kept as it is;
 * - `0.0.0.0` becomes one URL per IPv4 address of the machine's interfaces,
 *   `::` (which Node binds dual-stack) one per IPv4 address and then one per
 *   IPv6 address. Loopback addresses (127.0.0.1, ::1) are left out — another
 *   host reaching "127.0.0.1" would reach itself — unless the machine has no
 *   other address, and IPv6 link-local addresses (fe80::/10) always are (their
 *   zone means nothing elsewhere);
 * - `unix://` (and `unix+tls://`) URLs are kept: a peer on the same host can
 *   use them.
 *
 * `udp://` listeners are left out (datagrams only, no connections).
 * Duplicates are dropped, and the list is cut at `MAX_ENDPOINTS` (16),
 * what one announcement holds. May return an empty list (no listener).
 *
 * @param listening Bound listener URLs.
 * @param interfaces @default os.networkInterfaces()
 * @throws InvalidEndpointError for a URL that does not parse.
 */
export function announcedEndpoints(listening: readonly string[], interfaces: NetworkInterfaces = networkInterfaces()): string[] {
  const out = new Set<string>();
  for (const url of listening) {
    const p = parseEndpoint(url);
    // A udp:// listener takes no connections: subscribers could not connect to it.
    if (p.transport === 'udp') continue;
    if (p.transport !== 'tcp' || (p.host !== '0.0.0.0' && p.host !== '::')) {
      out.add(p.url);
      continue;
    }
    const scheme = p.tls ? 'tls' : 'tcp';
    for (const address of wildcardAddresses(p.host === '::' ? ['IPv4', 'IPv6'] : ['IPv4'], interfaces)) {
      out.add(`${scheme}://${address.includes(':') ? `[${address}]` : address}:${p.port}`);
    }
  }
  const all = [...out];
  if (all.length > MAX_ENDPOINTS) log(`announcing ${MAX_ENDPOINTS} of ${all.length} endpoints (at most ${MAX_ENDPOINTS} fit an announcement)`);
  return all.slice(0, MAX_ENDPOINTS);
}
