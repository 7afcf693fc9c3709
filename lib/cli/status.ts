import { ManagementUnauthorizedError, RpcTimeoutError, RpcUnknownObjectError, SnakeMQError } from '../errors.js';
import { ManagementClient, type ManagementStatus } from '../management/index.js';
import { COMMON_OPTIONS, commonOptions, identity, parse, required, str } from './args.js';
import { Failure, UsageError } from './errors.js';
import { Stack } from './stack.js';

const OPTIONS = {
  ...COMMON_OPTIONS,
  to: { type: 'string' },
  json: { type: 'boolean' },
  disconnect: { type: 'string' },
  'drop-queue': { type: 'string' },
} as const;

/** Default time of the call, in seconds (RpcClient's default). */
const DEFAULT_STATUS_TIMEOUT = 30;
/** Rows of each table printed (the status itself holds at most its `maxPeers`); `--json` has them all. */
export const MAX_TABLE_ROWS = 50;

function bytes(n: number | null): string {
  if (n === null) return '-';
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

function age(ms: number | null): string {
  if (ms === null) return '-';
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 120) return `${s.toFixed(1)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/** Columns padded to their widest cell, two spaces apart, indented. */
function table(title: string, head: string[], rows: string[][], truncated: boolean, total?: number): string {
  if (rows.length === 0) return `${title}: none\n`;
  const shown = rows.slice(0, MAX_TABLE_ROWS);
  const widths = head.map((h, i) => Math.max(h.length, ...shown.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `  ${cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')}`.trimEnd();
  let out = `${title}:\n${line(head)}\n${shown.map(line).join('\n')}\n`;
  const more = (total ?? rows.length) - shown.length;
  if (more > 0 || truncated) out += `  … ${more > 0 ? `${more} more` : 'more'} (--json for the whole list)\n`;
  return out;
}

/**
 * The readable form of a status: a few tables (listeners, connectors,
 * connections, queues, relay routes) and summary lines, each table cut at
 * {@link MAX_TABLE_ROWS} rows.
 */
export function formatStatus(s: ManagementStatus): string {
  let out = `${s.identity}: status at ${new Date(s.time).toISOString()}\n`;
  const t = s.totals;
  out += `Totals: ${t.connections} connections, ${bytes(t.bytesRead)} read, ${bytes(t.bytesWritten)} written, ${t.messagesIn} messages in, ${t.messagesOut} out, ${t.queued} queued (${t.inFlight} in flight)\n`;
  const st = s.storage;
  out +=
    st === null
      ? 'Storage: none\n'
      : `Storage: ${st.kind}${st.durable ? '' : ' (not durable)'}, ${st.messages ?? '?'} messages${st.bytes === null ? '' : `, ${bytes(st.bytes)}`}${st.fileBytes === null ? '' : `, ${bytes(st.fileBytes)} on disk`}${st.error === null ? '' : ` (error: ${st.error})`}\n`;
  out += table(
    'Listeners',
    ['URL', 'TLS', 'CONNECTIONS'],
    s.listeners.map((l) => [l.url, l.tls ? 'yes' : 'no', String(l.connections)]),
    s.listenersTruncated,
  );
  out += table(
    'Connectors',
    ['ENDPOINT', 'STATE', 'ATTEMPTS', 'LAST ERROR'],
    s.connectors.map((c) => [c.endpoint, c.state, String(c.attempts), c.lastError === null ? '-' : c.lastError.message]),
    s.connectorsTruncated,
  );
  out += table(
    'Connections',
    ['ID', 'IDENT', 'SIDE', 'REMOTE', 'TLS PEER', 'READ', 'WRITTEN', 'MSGS IN', 'MSGS OUT'],
    s.connections.map((c) => [
      String(c.connId),
      c.ident ?? '(handshaking)',
      c.side,
      c.remoteAddress === null ? c.endpoint : `${c.remoteAddress}:${c.remotePort}`,
      c.tls === null ? '-' : `${c.tls.subjectCN ?? '(no cert)'} ${c.tls.authorized ? 'verified' : 'unverified'}`,
      bytes(c.bytesRead),
      bytes(c.bytesWritten),
      String(c.messagesIn),
      String(c.messagesOut),
    ]),
    s.connectionsTruncated,
  );
  out += table(
    'Queues',
    ['IDENT', 'CONNECTED', 'QUEUED', 'BYTES', 'IN FLIGHT', 'OLDEST'],
    s.peers.map((p) => [p.ident, p.connected ? 'yes' : 'no', String(p.queued), bytes(p.queuedBytes), String(p.inFlight), age(p.oldestAgeMs)]),
    s.peersTruncated,
    s.identities,
  );
  out += table(
    'Relay routes',
    ['SOURCE', 'DESTINATION', 'NEXT', 'HOPS', 'FORWARDED', 'HELD'],
    s.relayRoutes.map((r) => [r.source, r.destination, r.next, String(r.hops), bytes(r.bytesForwarded), String(r.held)]),
    s.relayRoutesTruncated,
  );
  return out;
}

/**
 * `smq status`: asks peer `--to` for its management status (it must serve
 * it to `--ident`: `--management-allow`), printed as tables, or as one JSON
 * line with `--json`; `--disconnect IDENT` and `--drop-queue IDENT` call its
 * actions instead (`--management-actions` there).
 */
export async function status(args: string[]): Promise<void> {
  const { values } = parse('status', args, OPTIONS, false);
  const to = identity('status', 'to', required('status', values, 'to'));
  const disconnect = str(values, 'disconnect');
  const dropQueue = str(values, 'drop-queue');
  if (disconnect !== undefined && dropQueue !== undefined) throw new UsageError('give --disconnect or --drop-queue, not both', 'status');
  if (disconnect === '' || dropQueue === '') throw new UsageError(`--${disconnect === '' ? 'disconnect' : 'drop-queue'} must not be empty`, 'status');
  const json = values.json === true;
  const common = commonOptions('status', values);
  const timeout = common.timeout ?? DEFAULT_STATUS_TIMEOUT;
  const stack = await Stack.open({ ...common, timeout: undefined });
  try {
    await stack.start();
    const client = new ManagementClient(stack.peer, to, { timeout: timeout * 1000 });
    try {
      if (disconnect !== undefined) {
        const was = await stack.until(client.disconnect(disconnect), () => false);
        process.stdout.write(
          json ? `${JSON.stringify({ disconnected: was })}\n` : `${was ? `${to} disconnected ${disconnect}` : `${disconnect} was not connected to ${to}`}\n`,
        );
      } else if (dropQueue !== undefined) {
        const n = await stack.until(client.dropQueue(dropQueue), () => 0);
        process.stdout.write(json ? `${JSON.stringify({ dropped: n })}\n` : `${to} dropped ${n} message${n === 1 ? '' : 's'} queued for ${dropQueue}\n`);
      } else {
        const s = await stack.until(client.status(), () => undefined as never);
        process.stdout.write(json ? `${JSON.stringify(s)}\n` : formatStatus(s));
      }
    } catch (error) {
      if (error instanceof ManagementUnauthorizedError) throw new Failure(`${to} refused: ${error.message.replace(`${to}: `, '')}`);
      if (error instanceof RpcUnknownObjectError) throw new Failure(`${to} serves no management object (start it with --management-allow ${common.ident})`);
      // A peer without any RPC server never answers (the request is a plain message there).
      if (error instanceof RpcTimeoutError) throw new Failure(`${error.message} (does ${to} serve management? --management-allow ${common.ident} there)`);
      if (error instanceof SnakeMQError) throw new Failure(error.message);
      throw error;
    }
  } finally {
    await stack.close();
  }
}
