import { Buffer } from 'node:buffer';
import { discoveryConfig, ServiceSubscriber } from '../discovery/index.js';
import { parseEndpoint } from '../link/index.js';
import { encodePostTroll, parseFilter, Subscriber, type ReceivedPubMessage } from '../pubsub/index.js';
import { COMMON_OPTIONS, commonOptions, endpoints, identity, integer, list, parse, type Values } from './args.js';
import { Failure, Stopped, UsageError } from './errors.js';
import { Stack } from './stack.js';

const OPTIONS = {
  ...COMMON_OPTIONS,
  publisher: { type: 'string', multiple: true },
  topic: { type: 'string', multiple: true },
  durable: { type: 'boolean' },
  count: { type: 'string' },
  json: { type: 'boolean' },
  service: { type: 'string', multiple: true },
  nameserver: { type: 'string', multiple: true },
} as const;

/** `--service` names and the nameservers to find them with (`--nameserver`, else SNAKEMQ_NAMESERVERS). */
function discoveryOptions(values: Values): { services: string[]; nameservers: string[] } | undefined {
  const services = [...new Set(list(values, 'service'))];
  const given = [...new Set(list(values, 'nameserver'))];
  if (services.length === 0) {
    if (given.length > 0) throw new UsageError('--nameserver goes with --service', 'subscribe');
    return undefined;
  }
  if (list(values, 'publisher').length > 0) throw new UsageError('give --publisher or --service, not both', 'subscribe');
  for (const s of services) {
    if (/\s/.test(s) || Buffer.byteLength(s, 'utf8') > 255)
      throw new UsageError(`--service '${s}' must be a name without whitespace (at most 255 bytes)`, 'subscribe');
  }
  let nameservers: string[];
  if (given.length > 0) {
    nameservers = endpoints('subscribe', 'nameserver', given).map((e) => e.url);
  } else {
    try {
      nameservers = discoveryConfig().nameservers;
    } catch (error) {
      throw new UsageError((error as Error).message, 'subscribe');
    }
  }
  if (nameservers.length === 0) throw new UsageError('--service needs a nameserver: give --nameserver URL or set SNAKEMQ_NAMESERVERS', 'subscribe');
  return { services, nameservers };
}

/** The data of a message as `--json` shows it: text as a string, a JSON value as it is, bytes as base64. */
function jsonData(msg: ReceivedPubMessage): unknown {
  const d = msg.data;
  if (msg.binary) return Buffer.from(msg.dataBytes()).toString('base64');
  return d;
}

/** `smq subscribe --json`: one message as one JSON line. */
export function pubMessageJson(msg: ReceivedPubMessage): string {
  const line = JSON.stringify({
    subject: msg.subject,
    type: msg.type,
    sender: msg.sender,
    time: msg.isoTime(),
    version: msg.wireVersion,
    data: jsonData(msg),
    from: msg.from,
  });
  // JSON.stringify leaves U+2028/U+2029 as they are: escape them so the output stays one line per message.
  return line.replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

// eslint-disable-next-line no-control-regex
const LINE_BREAKING = /[\u0000-\u0008\u000a-\u001f\u007f\u2028\u2029]/;
// eslint-disable-next-line no-control-regex
const CONTROL_BYTES = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * `smq subscribe` without `--json`: the message's PostTroll string form
 * (`pytroll://subject type sender time version [mime data]`), which stays on
 * one line: text data holding line breaks or control characters is written
 * as a JSON string (`application/json "a\nb"`, which PostTroll reads back as
 * that string), and binary data holding control bytes as
 * `binary/base64 <base64>` (not a PostTroll mime type).
 */
export function pubMessageLine(msg: ReceivedPubMessage): string {
  const line = encodePostTroll(msg);
  const d = msg.data;
  if (msg.binary) {
    const bytes = msg.dataBytes();
    const text = Buffer.from(bytes).toString('latin1');
    if (!CONTROL_BYTES.test(text)) return line;
    return `${line.slice(0, line.length - text.length - ' binary/octet-stream '.length)} binary/base64 ${Buffer.from(bytes).toString('base64')}`;
  }
  if (typeof d === 'string') {
    if (!LINE_BREAKING.test(d)) return line;
    const quoted = JSON.stringify(d)
      .replace(/\u2028/g, '\\u2028')
      .replace(/\u2029/g, '\\u2029');
    return `${line.slice(0, line.length - d.length - ' text/ascii '.length)} application/json ${quoted}`;
  }
  // JSON data: written with \u escapes (Python's json.dumps), one line.
  return line;
}

/** `smq subscribe`: subscribes at publishers and prints what they publish on matching subjects. */
export async function subscribe(args: string[]): Promise<void> {
  const { values } = parse('subscribe', args, OPTIONS, false);
  const discovery = discoveryOptions(values);
  const publishers = [...new Set(list(values, 'publisher'))];
  if (publishers.length === 0 && discovery === undefined) throw new UsageError('--publisher IDENT is required (repeatable), or --service NAME', 'subscribe');
  for (const p of publishers) {
    if (p === '') throw new UsageError('--publisher must not be empty', 'subscribe');
    identity('subscribe', 'publisher', p);
  }
  const given = list(values, 'topic');
  // No --topic: every subject (the empty prefix matches all).
  const topics = given.length === 0 ? [''] : [...new Set(given)];
  for (const t of topics) {
    try {
      parseFilter(t);
    } catch (error) {
      throw new UsageError(`--topic '${t}': ${(error as Error).message}`, 'subscribe');
    }
  }
  const count = integer('subscribe', values, 'count');
  const format = values.json === true ? pubMessageJson : pubMessageLine;
  // With --service, the connections come from the lookups: --listen and --connect are optional.
  const common = commonOptions('subscribe', values, discovery === undefined);
  if (discovery !== undefined && discovery.nameservers.some((u) => parseEndpoint(u).tls) && ![...common.listen, ...common.connect].some((e) => e.tls)) {
    // ServiceSubscriber connects to the nameservers with the peer's TLS settings, which come from TLS endpoints only.
    throw new UsageError('a tls:// nameserver needs a tls:// --listen too (e.g. tls://127.0.0.1:0: the TLS settings come from it)', 'subscribe');
  }
  if (publishers.includes(common.ident)) throw new UsageError('--publisher names this peer itself (--ident)', 'subscribe');

  const stack = await Stack.open(common);
  const { status } = stack;
  const tty = process.stderr.isTTY === true;
  let sub: Subscriber | undefined;
  let service: ServiceSubscriber | undefined;
  let starting: Promise<ServiceSubscriber> | undefined;
  try {
    let received = 0;
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    if (count === 0) done();
    const onMessage = (msg: ReceivedPubMessage): void => {
      if (count !== undefined && received >= count) return;
      let line: string;
      try {
        line = format(msg);
      } catch (error) {
        status.note(`smq subscribe: cannot show a message on ${msg.subject} from ${msg.from}: ${(error as Error).message}`);
        return;
      }
      received++;
      process.stdout.write(`${line}\n`);
      if (received === count) done();
    };
    const showTopics = (t: readonly string[]): string => t.map((x) => (x === '' ? "'' (all subjects)" : x)).join(' ');
    if (discovery === undefined) {
      sub = new Subscriber(stack.messaging, { publishers, topics, durable: values.durable === true });
      sub.on('message', onMessage);
      sub.on('refused', (_publisher, error) => stack.fail(new Failure(error.message)));
      sub.on('badFrame', (publisher, error) => status.note(`smq subscribe: bad frame from ${publisher}: ${error.message}`));
      if (tty) {
        sub.on('publisherConnected', (p) => status.note(`publisher ${p} connected`));
        sub.on('subscribed', (p, t) => status.note(`subscribed at ${p}: ${showTopics(t)}`));
        sub.on('publisherLost', (p) => status.note(`publisher ${p} lost; subscribing again when it is back`));
      }
    }
    await stack.start();
    try {
      if (discovery !== undefined) {
        starting = ServiceSubscriber.start(stack.peer, { ...discovery, topics, durable: values.durable === true });
        const s = (service = await stack.until<ServiceSubscriber | undefined>(starting, (seconds) => {
          if (count === undefined) return undefined; // --timeout alone: subscribe that long
          throw new Failure(`timed out after ${seconds} s: 0 of ${count} messages received (no nameserver answered)`);
        }));
        if (s === undefined) return;
        s.on('message', onMessage);
        s.subscriber.on('refused', (_publisher, error) => stack.fail(new Failure(error.message)));
        s.subscriber.on('badFrame', (publisher, error) => status.note(`smq subscribe: bad frame from ${publisher}: ${error.message}`));
        s.on('lookupFailed', (error) => status.note(`smq subscribe: lookup failed: ${error.message}`));
        s.on('publisherRefused', (entry, reason) => status.note(`smq subscribe: not subscribing at ${entry.identity}: ${reason}`));
        if (s.lookupError !== undefined) status.note(`smq subscribe: no nameserver answered yet (${s.lookupError.message}); still trying`);
        if (tty) {
          s.on('publisherFound', (e) => status.note(`publisher ${e.identity} found (${e.services.join(' ')}) at ${e.endpoints.join(' ')}`));
          s.on('publisherExpired', (p) => status.note(`publisher ${p} expired`));
          s.on('subscribed', (p) => status.note(`subscribed at ${p}: ${showTopics(topics)}`));
          for (const p of s.publishers) status.note(`publisher ${p} found`);
        }
      }
      await stack.until(finished, (seconds) => {
        if (count === undefined) return; // --timeout alone: subscribe that long
        throw new Failure(`timed out after ${seconds} s: ${received} of ${count} messages received`);
      });
    } catch (error) {
      // Without --count, subscribing until SIGINT/SIGTERM is the normal way to end: exit 0.
      // (With --count, a signal before N messages is an interruption: 128 + its number.)
      if (!(count === undefined && error instanceof Stopped && error.exitCode > 128)) throw error;
    }
  } finally {
    await sub?.close();
    await service?.close();
    await stack.close();
    // Interrupted while the first lookup was still waiting: close it when it ends (the process exits anyway).
    if (service === undefined) void starting?.then((s) => s.close()).catch(() => undefined);
  }
}
