/**
 * Address announcements: what a publisher (or any peer) tells nameservers
 * about itself, one UDP datagram each (or one RPC registration). The
 * datagram is a PostTroll message, as PostTroll's own announcements are:
 *
 *     pytroll://address/<service> info <sender> <time> v1.2 application/json
 *       {"URI": "<first endpoint>", "service": [<name>, <aliases>…],
 *        "supported_message_version": "v1.2", "identity": "<peer identity>",
 *        "endpoints": ["tcp://…", …]}
 *
 * `URI`, `service` and `supported_message_version` are PostTroll's keys;
 * `identity` and `endpoints` are ours (a snakemq-ts peer is reached by
 * identity, on any of its listeners).
 * @module
 */
import { Buffer } from 'node:buffer';
import { AnnouncementError, type PubMessageError } from '../errors.js';
import { parseEndpoint } from '../link/endpoint.js';
import { decodePostTroll, encodePostTroll, PubMessage, POSTTROLL_MAX_VERSION } from '../pubsub/pub-message.js';

/**
 * Longest announcement, in bytes: PostTroll's nameserver reads datagrams
 * into a 1,024-byte buffer, so an announcement that must reach one has to fit.
 */
export const DEFAULT_MAX_ANNOUNCEMENT_BYTES = 1024;
/** Hard limit of {@link encodeAnnouncement}'s `maxBytes`: a UDP datagram on loopback or a LAN without fragmentation worries. */
export const MAX_ANNOUNCEMENT_BYTES = 8192;
/** Most endpoints in one announcement. */
export const MAX_ENDPOINTS = 16;
/** Most service names (name and aliases) in one announcement. */
export const MAX_SERVICES = 16;
/** Longest identity or service name, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 255;
/** The message version this library writes and reads at most (PostTroll's `supported_message_version`). */
export const SUPPORTED_MESSAGE_VERSION = POSTTROLL_MAX_VERSION;

/** What a peer announces. */
export interface Announcement {
  /** Its snakemq-ts identity: subscribers connect and subscribe at it. */
  readonly identity: string;
  /** Listener URLs it really bound (`tcp://192.0.2.7:40123`, `tls://…`, `unix://…`), never `0.0.0.0`. At least one. */
  readonly endpoints: readonly string[];
  /** Its service name first, then its aliases. At least one. */
  readonly services: readonly string[];
  /** The newest message version it writes (`v1.2`). */
  readonly version: string;
}

const WHITESPACE = /\s/;

function checkName(what: string, v: unknown): string {
  if (typeof v !== 'string' || v === '' || WHITESPACE.test(v) || Buffer.byteLength(v, 'utf8') > MAX_NAME_BYTES) {
    throw new AnnouncementError(
      `announcement: ${what} must be a non-empty name of at most ${MAX_NAME_BYTES} bytes without whitespace, got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

/**
 * Checks an announcement's fields (as {@link decodeAnnouncement} does with
 * a received one) and returns a clean copy.
 * @throws AnnouncementError naming the first bad field.
 */
export function checkAnnouncement(a: unknown): Announcement {
  if (typeof a !== 'object' || a === null) throw new AnnouncementError('announcement: must be an object');
  const o = a as Record<string, unknown>;
  const identity = checkName('identity', o.identity);
  const { endpoints, services } = o;
  if (!Array.isArray(endpoints) || endpoints.length === 0 || endpoints.length > MAX_ENDPOINTS) {
    throw new AnnouncementError(`announcement: endpoints must be a list of 1 to ${MAX_ENDPOINTS} URLs`);
  }
  for (const e of endpoints) {
    if (typeof e !== 'string') throw new AnnouncementError('announcement: an endpoint is not a string');
    let parsed;
    try {
      parsed = parseEndpoint(e);
    } catch (err) {
      throw new AnnouncementError(`announcement: bad endpoint ${JSON.stringify(e)}`, { cause: err });
    }
    if ('host' in parsed && (parsed.host === '0.0.0.0' || parsed.host === '::' || parsed.host === '')) {
      throw new AnnouncementError(`announcement: endpoint ${e} is a wildcard address, not one to connect to`);
    }
  }
  if (!Array.isArray(services) || services.length === 0 || services.length > MAX_SERVICES) {
    throw new AnnouncementError(`announcement: services must be a list of 1 to ${MAX_SERVICES} names`);
  }
  services.forEach((s, i) => checkName(`service ${i}`, s));
  const version = checkName('version', o.version);
  return { identity, endpoints: [...(endpoints as string[])], services: [...(services as string[])], version };
}

/** Options of {@link encodeAnnouncement}. */
export interface EncodeAnnouncementOptions {
  /** `user@host` of the message. @default this process's */
  sender?: string;
  /** @default now */
  time?: Date;
  /** @default 1024 (`DEFAULT_MAX_ANNOUNCEMENT_BYTES`), at most 8192 */
  maxBytes?: number;
}

/**
 * The datagram of an announcement.
 * @throws AnnouncementError for a bad field, or when it does not fit `maxBytes` (refused at the call: never cut).
 */
export function encodeAnnouncement(a: Announcement, options: EncodeAnnouncementOptions = {}): Buffer {
  const { identity, endpoints, services, version } = checkAnnouncement(a);
  const maxBytes = Math.min(options.maxBytes ?? DEFAULT_MAX_ANNOUNCEMENT_BYTES, MAX_ANNOUNCEMENT_BYTES);
  const msg = new PubMessage({
    subject: `/address/${services[0]}`,
    type: 'info',
    sender: options.sender,
    time: options.time,
    version: 'v1.2',
    data: { URI: endpoints[0]!, service: services, supported_message_version: version, identity, endpoints },
  });
  const bytes = Buffer.from(encodePostTroll(msg), 'utf8');
  if (bytes.length > maxBytes) {
    throw new AnnouncementError(`announcement of ${identity} is ${bytes.length} bytes, over the ${maxBytes} of one datagram: fewer endpoints or aliases`);
  }
  return bytes;
}

/**
 * Reads a datagram into an {@link Announcement}: a PostTroll message on
 * `/address/…` whose data has our keys. A PostTroll publisher's own
 * announcement (no `identity`) is refused: it is not a snakemq-ts peer.
 * @throws AnnouncementError for anything else (the cause says why).
 */
export function decodeAnnouncement(datagram: Uint8Array, maxBytes = DEFAULT_MAX_ANNOUNCEMENT_BYTES): Announcement {
  if (datagram.byteLength > maxBytes) throw new AnnouncementError(`announcement of ${datagram.byteLength} bytes, over ${maxBytes}`);
  let msg: PubMessage;
  try {
    msg = decodePostTroll(datagram, { maxBytes });
  } catch (err) {
    throw new AnnouncementError(`announcement is not a PostTroll message: ${(err as PubMessageError).message}`, { cause: err });
  }
  if (!msg.subject.startsWith('/address/')) throw new AnnouncementError(`announcement on ${msg.subject}, not /address/…`);
  const d = msg.data;
  if (typeof d !== 'object' || d === null || Array.isArray(d) || d instanceof Uint8Array) throw new AnnouncementError('announcement data is not a JSON object');
  const o = d as Record<string, unknown>;
  if (o.identity === undefined) throw new AnnouncementError('announcement without identity (a PostTroll publisher, not a snakemq-ts peer)');
  return checkAnnouncement({ identity: o.identity, endpoints: o.endpoints, services: o.service, version: o.supported_message_version });
}
