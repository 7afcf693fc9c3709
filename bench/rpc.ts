/**
 * RPC benchmark: `npx tsx bench/rpc.ts [--calls=20000] [--window=256]`.
 * Prints one JSON line per result.
 *
 * - `rpc-codec`: encode + decode of one small request and its reply, in process;
 * - `rpc-latency`: sequential calls (one in flight) over TCP loopback;
 * - `rpc-throughput`: `--window` calls in flight at once over TCP loopback.
 *
 * Both peers run in this process (Link + Packeter + Messaging each), so the
 * TCP figures include both sides' CPU time on one event loop.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { Link } from '../lib/link/index.js';
import { Messaging } from '../lib/messaging/index.js';
import { Packeter } from '../lib/packeter/index.js';
import { RpcClient, RpcServer, decodeReply, decodeRequest, encodeReply, encodeRequest } from '../lib/rpc/index.js';

const args = new Map<string, string>();
for (const a of process.argv.slice(2)) {
  const m = /^--([^=]+)(?:=(.*))?$/.exec(a);
  if (m) args.set(m[1]!, m[2] ?? 'true');
}
const CALLS = Number(args.get('calls') ?? '20000');
const WINDOW = Number(args.get('window') ?? '256');

function report(bench: string, n: number, ms: number, extra: Record<string, unknown> = {}): void {
  console.log(JSON.stringify({ bench, n, ms: Math.round(ms), perSecond: Math.round((n / ms) * 1000), ...extra }));
}

function codec(): void {
  const reqId = randomBytes(16);
  const n = CALLS * 5;
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const req = decodeRequest(encodeRequest({ command: 'call', object: 'calc', method: 'add', args: [i, 1, 'x'], kwargs: {}, reqId }));
    decodeReply(encodeReply({ reqId: req.reqId!, ok: true, value: i + 1 }));
  }
  report('rpc-codec', n, performance.now() - start);
}

async function overTcp(): Promise<void> {
  const server = { link: new Link(), ident: 'server' };
  const client = { link: new Link(), ident: 'client' };
  const sm = new Messaging(server.ident, new Packeter(server.link));
  const cm = new Messaging(client.ident, new Packeter(client.link));
  const rpcServer = new RpcServer(sm);
  rpcServer.register('calc', { add: (a: number, b: number) => a + b });
  const rpcClient = new RpcClient(cm, { timeout: 60_000 });
  const url = await server.link.addListener('tcp://127.0.0.1:0');
  const up = new Promise<void>((resolve) => cm.once('connect', () => resolve()));
  client.link.addConnector(url);
  await up;
  const calc = rpcClient.proxy<{ add(a: number, b: number): number }>('server', 'calc');

  for (let i = 0; i < 1000; i++) await calc.add(i, 1); // warm-up

  let start = performance.now();
  for (let i = 0; i < CALLS; i++) await calc.add(i, 1);
  let ms = performance.now() - start;
  report('rpc-latency', CALLS, ms, { usPerCall: Math.round((ms * 1000) / CALLS) });

  start = performance.now();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < CALLS) {
      const i = next++;
      if ((await calc.add(i, 1)) !== i + 1) throw new Error('wrong result');
    }
  };
  await Promise.all(Array.from({ length: WINDOW }, worker));
  ms = performance.now() - start;
  report('rpc-throughput', CALLS, ms, { window: WINDOW });

  rpcClient.close();
  rpcServer.close();
  await Promise.all([cm.close(), sm.close()]);
}

codec();
await overTcp();
