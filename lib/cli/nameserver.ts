import { isIPv4 } from 'node:net';
import { Nameserver, type ServiceEntry } from '../discovery/index.js';
import { COMMON_OPTIONS, commonOptions, integer, list, parse, seconds, str, type Values } from './args.js';
import { Failure, Stopped, UsageError } from './errors.js';
import { Stack } from './stack.js';

const OPTIONS = {
  ident: COMMON_OPTIONS.ident,
  listen: COMMON_OPTIONS.listen,
  'tls-cert': COMMON_OPTIONS['tls-cert'],
  'tls-key': COMMON_OPTIONS['tls-key'],
  'tls-ca': COMMON_OPTIONS['tls-ca'],
  timeout: COMMON_OPTIONS.timeout,
  help: COMMON_OPTIONS.help,
  'no-multicast': { type: 'boolean' },
  'local-only': { type: 'boolean' },
  'max-age': { type: 'string' },
  'udp-port': { type: 'string' },
  'udp-host': { type: 'string' },
} as const;

/** The nameserver's identity without --ident. */
export const DEFAULT_NAMESERVER_IDENT = 'nameserver';
/** Its listener without --listen: PostTroll's nameserver port, on every address. */
export const DEFAULT_NAMESERVER_LISTEN = 'tcp://0.0.0.0:5557';
/** A refusal from the same source is logged at most once in this time (a flood must not flood the log). */
const REFUSAL_LOG_INTERVAL_MS = 60_000;

function describe(e: ServiceEntry): string {
  return `${e.identity} (${e.services.join(' ')}) at ${e.endpoints.join(' ')} from ${e.source}`;
}

/** `smq nameserver`: a Nameserver on a peer until interrupted (or --timeout), logging what it hears. */
export async function nameserver(args: string[]): Promise<void> {
  const { values } = parse('nameserver', args, OPTIONS, false);
  const udpHost = str(values, 'udp-host');
  if (udpHost !== undefined && !isIPv4(udpHost)) throw new UsageError(`--udp-host must be an IPv4 address, got '${udpHost}'`, 'nameserver');
  const udpPort = integer('nameserver', values, 'udp-port', 65535);
  const maxAgeSeconds = seconds('nameserver', values, 'max-age', { min: 0, exclusive: true, max: (2 ** 31 - 1) / 1000 });
  const noMulticast = values['no-multicast'] === true;
  const localOnly = values['local-only'] === true;
  const given = list(values, 'listen');
  const peerValues: Values = {
    ...values,
    ident: str(values, 'ident') ?? DEFAULT_NAMESERVER_IDENT,
    listen: given.length > 0 ? given : [DEFAULT_NAMESERVER_LISTEN],
  };
  const common = commonOptions('nameserver', peerValues);

  const stack = await Stack.open(common);
  const { status } = stack;
  let ns: Nameserver | undefined;
  try {
    const udp = { multicast: !noMulticast, ...(udpHost !== undefined && { host: udpHost }), ...(udpPort !== undefined && { port: udpPort }) };
    try {
      ns = await Nameserver.start(stack.peer, {
        udp,
        localOnly,
        ...(maxAgeSeconds !== undefined && { maxAge: Math.max(1, Math.round(maxAgeSeconds * 1000)) }),
      });
    } catch (error) {
      throw new Failure((error as Error).message);
    }
    // What it hears is its log: one line each on stderr, terminal or not.
    const known = new Map<string, string>();
    const refusals = new Map<string, number>();
    ns.on('registered', (e, isNew) => {
      const key = JSON.stringify([e.endpoints, e.services, e.version]);
      const before = known.get(e.identity);
      known.set(e.identity, key);
      if (isNew || before === undefined) status.note(`registered ${describe(e)}`);
      else if (before !== key) status.note(`changed ${describe(e)}`);
    });
    ns.on('expired', (e) => {
      known.delete(e.identity);
      status.note(`expired ${e.identity} (${e.services.join(' ')})`);
    });
    ns.on('unregistered', (e) => {
      known.delete(e.identity);
      status.note(`unregistered ${e.identity} (${e.services.join(' ')})`);
    });
    ns.on('refused', (source, error) => {
      const now = Date.now();
      const last = refusals.get(source);
      if (last !== undefined && now - last < REFUSAL_LOG_INTERVAL_MS) return;
      if (refusals.size >= 1000) refusals.clear();
      refusals.set(source, now);
      status.note(`refused ${source}: ${error.message}`);
    });
    ns.on('udpError', (error) => status.note(`smq nameserver: UDP error: ${error.message}`));

    await stack.start();
    const udpAddress = ns.udpAddress;
    if (udpAddress !== null) status.note(`udp on ${udpAddress.address}:${udpAddress.port}`);
    try {
      // Until a signal, or for --timeout.
      await stack.until(new Promise<void>(() => undefined), () => undefined);
    } catch (error) {
      // SIGINT/SIGTERM is how a nameserver is meant to stop: exit 0.
      if (!(error instanceof Stopped && error.exitCode > 128)) throw error;
    }
  } finally {
    await ns?.close();
    await stack.close();
  }
}
