import { Buffer } from 'node:buffer';
import { isIPv6 } from 'node:net';
import {
  announcedEndpoints,
  Announcer,
  checkAnnouncement,
  discoveryConfig,
  NameserverClient,
  SUPPORTED_MESSAGE_VERSION,
  type AnnounceTarget,
} from '../discovery/index.js';
import { AnnouncementError, NameserverError } from '../errors.js';
import { parseEndpoint } from '../link/index.js';
import { DEFAULT_MAX_PACKET_SIZE } from '../packeter/index.js';
import { encodePostTroll, MAX_WORD_BYTES, PubMessage, Publisher, type PubData, type PubJson, type Publication, type PublishResult } from '../pubsub/index.js';
import {
  COMMON_OPTIONS,
  commonOptions,
  connectorTls,
  endpoints,
  integer,
  list,
  parse,
  required,
  seconds,
  str,
  type CommonOptions,
  type Values,
} from './args.js';
import { Failure, UsageError } from './errors.js';
import { generated } from './send.js';
import { Stack } from './stack.js';

const OPTIONS = {
  ...COMMON_OPTIONS,
  subject: { type: 'string' },
  type: { type: 'string' },
  count: { type: 'string' },
  size: { type: 'string' },
  json: { type: 'boolean' },
  interval: { type: 'string' },
  'wait-subscribers': { type: 'string' },
  service: { type: 'string' },
  alias: { type: 'string', multiple: true },
  nameserver: { type: 'string', multiple: true },
  'announce-to': { type: 'string', multiple: true },
} as const;

/** How a publisher with --service makes itself known. */
type Announce =
  | { kind: 'nameservers'; services: string[]; nameservers: string[] }
  | { kind: 'udp'; services: string[]; targets: AnnounceTarget[] }
  | { kind: 'multicast'; services: string[] };

/** `--announce-to HOST:PORT` (`[IPv6]:PORT`). */
function announceTarget(text: string): AnnounceTarget {
  const m = /^\[([^\]]+)\]:([0-9]+)$/.exec(text) ?? /^([^:[\]]+):([0-9]+)$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port >= 1 && port <= 65535) || (text.startsWith('[') && !isIPv6(m[1]!))) {
    throw new UsageError(`--announce-to must be HOST:PORT (port 1 to 65535; [IPv6]:PORT), got '${text}'`, 'publish');
  }
  return { host: m[1]!, port };
}

/**
 * The discovery options, checked: `--service` with its aliases, and where
 * announcements go (`--nameserver`, else `--announce-to`, else the
 * SNAKEMQ_NAMESERVERS of the environment, else multicast).
 */
function announceOptions(values: Values, common: CommonOptions): Announce | undefined {
  const service = str(values, 'service');
  const aliases = list(values, 'alias');
  const nameservers = [...new Set(list(values, 'nameserver'))];
  const targets = list(values, 'announce-to');
  if (service === undefined) {
    const stray = aliases.length > 0 ? 'alias' : nameservers.length > 0 ? 'nameserver' : targets.length > 0 ? 'announce-to' : undefined;
    if (stray !== undefined) throw new UsageError(`--${stray} goes with --service`, 'publish');
    return undefined;
  }
  if (common.listen.length === 0) {
    throw new UsageError('--service needs a --listen URL (subscribers that find this publisher connect to it)', 'publish');
  }
  if (nameservers.length > 0 && targets.length > 0) throw new UsageError('give --nameserver or --announce-to, not both', 'publish');
  const services = [...new Set([service, ...aliases])];
  try {
    // The names as an announcement takes them (the endpoint is a stand-in: the bound ones are known later).
    checkAnnouncement({ identity: common.ident, endpoints: ['tcp://127.0.0.1:1'], services, version: SUPPORTED_MESSAGE_VERSION });
  } catch (error) {
    throw new UsageError((error as Error).message.replace(/^announcement: /, '--service/--alias/--ident: '), 'publish');
  }
  if (targets.length > 0) return { kind: 'udp', services, targets: targets.map(announceTarget) };
  let urls: string[];
  if (nameservers.length > 0) {
    urls = endpoints('publish', 'nameserver', nameservers).map((e) => e.url);
  } else {
    try {
      urls = discoveryConfig().nameservers;
    } catch (error) {
      throw new UsageError((error as Error).message, 'publish');
    }
  }
  if (urls.length === 0) return { kind: 'multicast', services };
  const tlsCount = urls.filter((u) => parseEndpoint(u).tls).length;
  if (tlsCount > 0 && tlsCount < urls.length && !common.listen.some((e) => e.tls) && !common.connect.some((e) => e.tls)) {
    throw new UsageError('tls:// and plain nameservers together need a tls:// --listen or --connect (for the TLS settings)', 'publish');
  }
  return { kind: 'nameservers', services, nameservers: urls };
}

/** The default message type (PostTroll's usual one). */
export const DEFAULT_TYPE = 'info';
/** Publications awaited at most at once (without --interval, messages are published without waiting in between). */
const WINDOW = 1_000;

/**
 * Largest data of one message: the default packet limit minus the MESSAGE
 * frame head (25 bytes) and the published frame head (prefix, kind, lengths,
 * time: 23 bytes, plus subject, type and a sender of at most 255 bytes).
 */
function maxDataSize(subject: string, type: string): number {
  return DEFAULT_MAX_PACKET_SIZE - 25 - 23 - Buffer.byteLength(subject, 'utf8') - Buffer.byteLength(type, 'utf8') - MAX_WORD_BYTES;
}

/** Checks a subject or type as PostTroll does (non-empty, no whitespace), as a usage error. */
function pubWord(name: string, value: string): string {
  try {
    new PubMessage({ subject: name === 'subject' ? value : '/x', type: name === 'type' ? value : 'x', sender: 'smq@cli' });
  } catch (error) {
    throw new UsageError(`--${name}: ${(error as Error).message}`, 'publish');
  }
  if (Buffer.byteLength(value, 'utf8') > (name === 'subject' ? 0xffff : MAX_WORD_BYTES)) {
    throw new UsageError(`--${name} is too long`, 'publish');
  }
  return value;
}

/** `--json` DATA: a JSON value (a JSON string is published as text). */
function jsonData(text: string): PubJson {
  try {
    return JSON.parse(text) as PubJson;
  } catch (error) {
    throw new UsageError(`DATA '${text}' is not valid JSON: ${(error as Error).message}`, 'publish');
  }
}

/**
 * Bytes of `d` on the wire, at most: text as UTF-8; a JSON value checked as
 * PostTroll's rules want it (a usage error otherwise) and measured as its
 * string form (the JSON written as on the wire, plus the header).
 */
function dataSize(d: PubData, subject: string, type: string): number {
  if (typeof d === 'string') return Buffer.byteLength(d, 'utf8');
  try {
    return Buffer.byteLength(encodePostTroll(new PubMessage({ subject, type, sender: 'smq@cli', data: d })), 'utf8');
  } catch (error) {
    throw new UsageError(`DATA ${JSON.stringify(d)} cannot be published: ${(error as Error).message}`, 'publish');
  }
}

/** `smq publish`: publishes messages on a subject to the subscribers, then exits. */
export async function publish(args: string[]): Promise<void> {
  const { values, positionals } = parse('publish', args, OPTIONS, true);
  const subject = pubWord('subject', required('publish', values, 'subject'));
  const type = pubWord('type', str(values, 'type') ?? DEFAULT_TYPE);
  const max = maxDataSize(subject, type);
  const count = integer('publish', values, 'count');
  const size = integer('publish', values, 'size', max);
  const interval = seconds('publish', values, 'interval', { min: 0, exclusive: false });
  const waitFor = integer('publish', values, 'wait-subscribers', 0xffffffff);
  const json = values.json === true;
  if (count !== undefined && positionals.length > 0) throw new UsageError('give DATA arguments or --count, not both', 'publish');
  if (size !== undefined && count === undefined) throw new UsageError('--size goes with --count', 'publish');
  if (count === undefined && positionals.length === 0) throw new UsageError('nothing to publish: give DATA arguments or --count N', 'publish');
  if (json && count !== undefined) throw new UsageError('--json applies to DATA arguments, not --count', 'publish');
  const data: PubData[] = positionals.map((d) => (json ? jsonData(d) : d));
  for (const d of data) {
    if (dataSize(d, subject, type) > max) throw new UsageError(`a DATA argument is larger than ${max} bytes`, 'publish');
  }
  const common = commonOptions('publish', values);
  const announce = announceOptions(values, common);

  const total = count ?? data.length;
  const item = (i: number): PubData => (count === undefined ? data[i]! : generated(i, size ?? 0).toString('latin1'));
  const stack = await Stack.open(common);
  const { status } = stack;
  const tty = process.stderr.isTTY === true;
  let publisher: Publisher | undefined;
  let announcer: Announcer | undefined;
  let client: NameserverClient | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    const pub = (publisher = new Publisher(stack.messaging));
    // Subscribers come and go; only errors are said when stderr is not a terminal.
    pub.on('refused', (_ident, error) => status.note(`smq publish: ${error.message}`));
    if (tty) {
      pub.on('subscribe', (ident, topics, durable) =>
        status.note(`subscriber ${ident} joined (${topics.map((t) => (t === '' ? 'all subjects' : t)).join(' ')}${durable ? ', durable' : ''})`),
      );
      pub.on('unsubscribe', (ident, reason) => status.note(`subscriber ${ident} left (${reason})`));
      pub.on('slowSubscriber', (ident, info) => status.note(`subscriber ${ident} is slow: ${info.queued} message(s) held, ${info.dropped} dropped`));
    }
    await stack.start();
    if (announce !== undefined) {
      const found = await startAnnouncing(stack, common, announce);
      announcer = found.announcer;
      client = found.client;
    }

    if (waitFor !== undefined && waitFor > 0) {
      if (tty && pub.subscriberCount < waitFor) status.note(`waiting for ${waitFor} subscriber(s)`);
      await stack.until(
        new Promise<void>((resolve) => {
          const check = (): void => {
            if (pub.subscriberCount < waitFor) return;
            pub.off('subscribe', check);
            resolve();
          };
          pub.on('subscribe', check);
          check();
        }),
        (s) => {
          throw new Failure(`timed out after ${s} s: ${pub.subscriberCount} of ${waitFor} subscriber(s) subscribed, nothing published`);
        },
      );
    }

    const results: PublishResult[] = [];
    const pending: Publication[] = [];
    const settle = async (): Promise<void> => {
      results.push(
        ...(await stack.until(Promise.all(pending.splice(0)), (s) => {
          throw new Failure(`timed out after ${s} s: ${results.length} of ${total} message(s) written to their subscribers`);
        })),
      );
    };
    for (let i = 0; i < total; i++) {
      if (i > 0 && interval !== undefined && interval > 0) {
        await stack.until(new Promise<void>((resolve) => (timer = setTimeout(resolve, interval * 1000))), (s) => {
          throw new Failure(`timed out after ${s} s: ${i} of ${total} message(s) published`);
        });
      }
      pending.push(pub.publish(subject, type, item(i)));
      // With --interval, each message is written before the next one; otherwise by windows.
      if (interval !== undefined || pending.length >= WINDOW) await settle();
    }
    await settle();

    const dropped = new Map<string, number>();
    for (const r of results) for (const ident of r.dropped) dropped.set(ident, (dropped.get(ident) ?? 0) + 1);
    if (dropped.size > 0) {
      const who = [...dropped].map(([ident, n]) => `${n} for ${ident}`).join(', ');
      throw new Failure(`messages dropped (${who}): the subscriber left or was too slow`);
    }
    if (tty) {
      const reached = new Set(results.flatMap((r) => r.subscribers));
      status.note(`published ${total} message(s) on ${subject} (${reached.size} subscriber(s))`);
    }
  } finally {
    clearTimeout(timer);
    await announcer?.close();
    // Leaving: the nameservers drop the entry now (and tell the subscribers) rather than after their max age.
    if (client !== undefined && !stack.peer.closed) await client.unregister({ timeout: 2000 }).catch(() => undefined);
    await client?.close();
    await publisher?.close();
    await stack.close();
  }
}

/** Announces the publisher (its identity, bound listeners and services): registers at nameservers, or UDP datagrams. */
async function startAnnouncing(stack: Stack, common: CommonOptions, announce: Announce): Promise<{ announcer?: Announcer; client?: NameserverClient }> {
  const { status } = stack;
  const tty = process.stderr.isTTY === true;
  if (announce.kind === 'nameservers') {
    // The connectors to the nameservers share one set of options: TLS ones get the --tls-* files (or Node's CAs).
    const tls =
      announce.nameservers.every((u) => parseEndpoint(u).tls) && !stack.peer.listening.some((u) => parseEndpoint(u).tls)
        ? (connectorTls(common) ?? {})
        : undefined;
    let client: NameserverClient;
    try {
      client = new NameserverClient(stack.peer, { nameservers: announce.nameservers, ...(tls !== undefined && { connect: { tls } }) });
    } catch (error) {
      throw new Failure((error as Error).message);
    }
    const failed = new Set<string>();
    client.on('registerError', (ident, error) => {
      if (failed.has(ident)) return;
      failed.add(ident);
      status.note(`smq publish: registration at ${ident} failed: ${error.message}`);
    });
    const announcement = {
      identity: common.ident,
      endpoints: announcedEndpoints(stack.peer.listening),
      services: announce.services,
      version: SUPPORTED_MESSAGE_VERSION,
    };
    try {
      const n = await stack.until(client.register(announcement), (s) => {
        throw new Failure(`timed out after ${s} s: not registered at any nameserver (${announce.nameservers.join(', ')})`);
      });
      if (tty) status.note(`registered ${announce.services.join(' ')} at ${n} nameserver(s)`);
    } catch (error) {
      if (!(error instanceof NameserverError)) {
        await client.close();
        throw error instanceof AnnouncementError ? new Failure(error.message) : error;
      }
      // Still renewed: at each nameserver's (re)connection and every minute.
      status.note(`smq publish: not registered yet (${error.message}); trying again when a nameserver connects`);
    }
    return { client };
  }
  let announcer: Announcer;
  try {
    announcer = await Announcer.start(stack.peer, { services: announce.services, ...(announce.kind === 'udp' && { targets: announce.targets }) });
  } catch (error) {
    throw new Failure((error as Error).message);
  }
  let reported = false;
  announcer.on('sendError', (error) => {
    if (reported) return;
    reported = true;
    status.note(`smq publish: cannot send announcements: ${error.message}`);
  });
  announcer.on('refreshFailed', (error) => status.note(`smq publish: ${error.message}`));
  if (tty)
    status.note(
      `announcing ${announce.services.join(' ')} to ${announcer.targets.map((t) => `${t.host}:${t.port}`).join(' ')}${announcer.multicast ? ' (multicast)' : ''}`,
    );
  return { announcer };
}
