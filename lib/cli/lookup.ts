import { NameserverClient, type ServiceEntry } from '../discovery/index.js';
import { NameserverError } from '../errors.js';
import { COMMON_OPTIONS, commonOptions, endpoints, identity, list, parse, seconds, str, type Values } from './args.js';
import { Failure, UsageError } from './errors.js';
import { Stack } from './stack.js';

const OPTIONS = {
  ident: COMMON_OPTIONS.ident,
  nameserver: { type: 'string', multiple: true },
  'tls-cert': COMMON_OPTIONS['tls-cert'],
  'tls-key': COMMON_OPTIONS['tls-key'],
  'tls-ca': COMMON_OPTIONS['tls-ca'],
  timeout: COMMON_OPTIONS.timeout,
  help: COMMON_OPTIONS.help,
} as const;

/** How long `lookup` waits for an answer without --timeout, in seconds (PostTroll's 10 s). */
export const DEFAULT_LOOKUP_TIMEOUT = 10;

/** One entry as `smq lookup` prints it: one JSON line, the keys in this order. */
export function entryJson(e: ServiceEntry): string {
  return JSON.stringify({
    identity: e.identity,
    services: e.services,
    endpoints: e.endpoints,
    version: e.version,
    receivedAt: e.receivedAt,
    source: e.source,
  });
}

/** `smq lookup`: asks nameservers for the entries of a service (all without one) and prints them as JSON lines. */
export async function lookup(args: string[]): Promise<void> {
  const { values, positionals } = parse('lookup', args, OPTIONS, true);
  if (positionals.length > 1) throw new UsageError(`give one SERVICE at most (got ${positionals.length})`, 'lookup');
  const service = positionals[0] ?? '';
  const urls = [...new Set(list(values, 'nameserver'))];
  if (urls.length === 0) throw new UsageError('--nameserver URL is required (repeatable)', 'lookup');
  const parsed = endpoints('lookup', 'nameserver', urls);
  const ident = identity('lookup', 'ident', str(values, 'ident') ?? `smq-lookup-${process.pid}`);
  if (ident === '') throw new UsageError('--ident must not be empty', 'lookup');
  const timeout = seconds('lookup', values, 'timeout', { min: 0, exclusive: true }) ?? DEFAULT_LOOKUP_TIMEOUT;
  // The nameserver URLs count as connectors for the peer's TLS settings (the client adds them: no Stack.start).
  const peerValues: Values = { ...values, ident, timeout: String(timeout) };
  const common = { ...commonOptions('lookup', peerValues, false), connect: parsed };

  const stack = await Stack.open(common);
  let client: NameserverClient | undefined;
  try {
    try {
      client = new NameserverClient(stack.peer, {
        nameservers: parsed.map((e) => e.url),
        timeout: Math.max(1, Math.round(timeout * 1000)),
      });
    } catch (error) {
      throw new Failure((error as Error).message);
    }
    const c = client;
    const entries = await stack.until(
      c.lookup(service).catch((error: unknown) => {
        if (error instanceof NameserverError) throw new Failure(`no nameserver answered within ${timeout} s: ${error.message}`);
        throw error;
      }),
      (s) => {
        throw new Failure(`no nameserver answered within ${s} s (${urls.join(', ')})`);
      },
    );
    entries.sort((a, b) => (a.identity < b.identity ? -1 : a.identity > b.identity ? 1 : 0));
    for (const e of entries) process.stdout.write(`${entryJson(e)}\n`);
  } finally {
    await client?.close();
    await stack.close();
  }
}
