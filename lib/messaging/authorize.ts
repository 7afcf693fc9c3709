import { InvalidOptionsError } from '../errors.js';
import type { ConnectionInfo } from '../link/types.js';
import { validateOptions, is } from '../util/options.js';
import type { AuthorizePolicy } from './options.js';

/** Default of {@link CertificateIdentityOptions.commonName}: the subject's CN may carry the identity. */
export const DEFAULT_MATCH_COMMON_NAME = true;
/** Default of {@link CertificateIdentityOptions.dnsNames}: the DNS subject alternative names may carry the identity. */
export const DEFAULT_MATCH_DNS_NAMES = true;

/** Options of {@link certificateIdentity}. */
export interface CertificateIdentityOptions {
  /**
   * Accept an identity equal to the certificate subject's common name (CN;
   * with several CNs, any of them).
   * @default true
   */
  commonName?: boolean;
  /**
   * Accept an identity equal to one of the certificate's `DNS:` subject
   * alternative names (other kinds, such as `IP Address:` or `URI:`, never
   * match).
   * @default true
   */
  dnsNames?: boolean;
}

/**
 * A ready `authorize` policy for Messaging (`new Messaging(id, packeter, {
 * authorize: certificateIdentity() })`) that binds identities to TLS
 * certificates: a peer may take an identity only on a TLS connection whose
 * peer certificate was verified (`connection.tls.authorized`) and whose
 * subject CN or one of whose DNS subject alternative names is that identity.
 * Anything else is refused: plain TCP or Unix connections, no certificate, a
 * certificate that did not verify (with `rejectUnauthorized: false`).
 *
 * Names are compared exactly, character for character: no case folding, no
 * wildcards (a `DNS:*.example.com` entry matches only the identity
 * `*.example.com`), and an identity is at most 50 characters, so a longer
 * name never matches. Use it with listeners and connectors that verify
 * certificates against your CA (`requestCert: true` and `ca` on listeners).
 * @throws `InvalidOptionsError` for an unknown option, a bad value, or both kinds of name turned off.
 */
export function certificateIdentity(options?: CertificateIdentityOptions): AuthorizePolicy {
  const o = validateOptions<Required<CertificateIdentityOptions>>(
    'certificateIdentity',
    options,
    { commonName: is.boolean(), dnsNames: is.boolean() },
    { commonName: DEFAULT_MATCH_COMMON_NAME, dnsNames: DEFAULT_MATCH_DNS_NAMES },
  );
  if (!o.commonName && !o.dnsNames) throw new InvalidOptionsError('certificateIdentity: at least one of commonName and dnsNames must be true');
  const { commonName, dnsNames } = o;
  return (identity: string, connection: ConnectionInfo): boolean => {
    const tls = connection.tls;
    if (tls === undefined || tls.authorized !== true) return false;
    const cert = tls.peerCertificate as { subject?: { CN?: unknown }; subjectaltname?: unknown };
    if (commonName) {
      const cn = cert.subject?.CN;
      if (cn === identity || (Array.isArray(cn) && cn.includes(identity))) return true;
    }
    if (dnsNames && typeof cert.subjectaltname === 'string') {
      for (const [kind, value] of parseSubjectAltName(cert.subjectaltname)) if (kind === 'DNS' && value === identity) return true;
    }
    return false;
  };
}

/**
 * Splits Node's `subjectaltname` text (`"DNS:a, DNS:b, IP Address:1.2.3.4,
 * URI:…"`) into `[kind, value]` pairs. Node writes a value that contains a
 * comma, a quote, a backslash or a control character as a JSON string
 * (`DNS:"a,b"`), so that the list splits unambiguously; such values are
 * unquoted here. Text that does not follow that form ends the list (what
 * was read before it is returned).
 */
export function parseSubjectAltName(text: string): [kind: string, value: string][] {
  const out: [string, string][] = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const kind = text.slice(i, colon);
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      // A JSON string: find its closing quote (skipping escaped characters) and let JSON.parse unescape it.
      let j = colon + 2;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (j >= text.length) break;
      try {
        value = JSON.parse(text.slice(colon + 1, j + 1)) as string;
      } catch {
        break;
      }
      end = j + 1;
      if (end < text.length && !text.startsWith(', ', end)) break;
    } else {
      const comma = text.indexOf(', ', colon + 1);
      end = comma < 0 ? text.length : comma;
      value = text.slice(colon + 1, end);
    }
    out.push([kind, value]);
    i = end + 2;
  }
  return out;
}
