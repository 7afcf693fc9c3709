/**
 * The measured process of bench/connections.ts and bench/identities.ts: one
 * listener on 127.0.0.1 (port 0), run with `--expose-gc`.
 *
 *   mem-server.ts snakemq [ack|plain] [--grace-ms=N] [--grace-option=NAME]
 *   mem-server.ts raw [ack|plain]
 *
 * - `snakemq`: a Link listener under a Packeter and a Messaging (identity
 *   `server`, the defaults otherwise), through the public API only. The
 *   Link gets `maxConnections: 20000` when it has that option (10,000
 *   connections are held; the library's default may be lower). With
 *   `--grace-ms`, the Messaging gets that idle-identity grace period if it
 *   has such an option (see {@link findGraceOption}).
 * - `raw` (the baseline): a `net` server with the same 4-byte framing that
 *   writes and answers the same bytes: on accept the same handshake a
 *   Messaging writes (PROTOCOL_VERSION, IDENTIFICATION, with
 *   acknowledgements EXTENSIONS and PING), PONG for PING, ACK(1) for each
 *   MESSAGE of a peer that announced the extension; it keeps a Map of the
 *   identified peers by identity and a frame parser per socket. The sockets
 *   are set up as the Link sets up its own (no delay, keepalive).
 *
 * Reports `listening {port, …}` at start. Commands: `measure` → `memory`
 * (settled, after full collections: see settledMemory), `wait {messages?,
 * live?}` → `reached` once at least `messages` messages arrived in all and
 * exactly `live` identified connections are open, `exit`.
 * @module
 */
import net from 'node:net';
import { InvalidOptionsError, Link, Messaging, Packeter } from '../../lib/index.js';
import * as api from '../../lib/index.js';
import { linkWithMaxConnections } from './link-options.js';
import { cliArgs, fullGc, onCommand, report, settledMemory, type Msg } from './proc.js';
import { ACK1_PACKET, FrameReader, handshake, PONG_PACKET, T_EXTENSIONS, T_IDENTIFICATION, T_MESSAGE, T_PING } from './wire.js';

const kind = process.argv[2];
const ack = process.argv[3] !== 'plain';
const args = cliArgs();
fullGc(); // refuses to run without --expose-gc

const counters = { identified: 0, live: 0, messages: 0, disconnects: 0 };
let waiting: { messages: number; live: number | null } | null = null;

function check(): void {
  if (waiting === null) return;
  if (counters.messages >= waiting.messages && (waiting.live === null || counters.live === waiting.live)) {
    waiting = null;
    report({ t: 'reached', ...counters });
  }
}

/**
 * The Messaging option for the idle-identity grace period, if this version
 * of the library has one: `--grace-option=NAME`, else a name derived from an
 * exported `DEFAULT_…GRACE…` constant, else one of the likely names; each
 * is tried on a throwaway Messaging (an unknown option throws
 * InvalidOptionsError). Null when none is accepted.
 */
function findGraceOption(ms: number): string | null {
  const derived = Object.keys(api)
    .filter((k) => /^DEFAULT_\w*GRACE/.test(k))
    .map((k) =>
      k
        .slice('DEFAULT_'.length)
        .toLowerCase()
        .replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()),
    );
  const candidates = [
    ...(args.has('grace-option') ? [args.get('grace-option')!] : []),
    ...derived,
    'idleIdentityGrace',
    'identityGracePeriod',
    'idleIdentityGracePeriod',
    'identityGrace',
    'idleGrace',
    'idleIdentityTimeout',
  ];
  for (const name of candidates) {
    const link = new Link();
    try {
      const m = new Messaging('probe', new Packeter(link), { [name]: ms } as api.MessagingOptions);
      void m.close();
      return name;
    } catch (error) {
      if (!(error instanceof InvalidOptionsError)) throw error;
      void link.close();
    }
  }
  return null;
}

async function startSnakemq(): Promise<Record<string, unknown>> {
  const { link, maxConnections } = linkWithMaxConnections(20_000);
  const graceMs = args.has('grace-ms') ? Number(args.get('grace-ms')) : null;
  const graceOption = graceMs !== null ? findGraceOption(graceMs) : null;
  const options: api.MessagingOptions = { acknowledgements: ack };
  if (graceOption !== null) (options as Record<string, unknown>)[graceOption] = graceMs;
  const messaging = new Messaging('server', new Packeter(link), options);
  messaging.on('connect', () => {
    counters.identified++;
    counters.live++;
    check();
  });
  messaging.on('disconnect', () => {
    counters.live--;
    counters.disconnects++;
    check();
  });
  messaging.on('message', () => {
    counters.messages++;
    check();
  });
  const url = await link.addListener('tcp://127.0.0.1:0');
  onExit = () => messaging.close();
  return {
    port: Number(new URL(url).port),
    max_connections_option: maxConnections,
    grace_option: graceMs === null ? 'not asked' : (graceOption ?? 'no grace option'),
    grace_ms: graceOption !== null ? graceMs : null,
  };
}

async function startRaw(): Promise<Record<string, unknown>> {
  const greeting = handshake('server', ack);
  const peers = new Map<string, net.Socket>();
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    let ident: string | null = null;
    let extended = false;
    const reader = new FrameReader(
      (frame) => {
        const type = frame[0];
        if (type === T_MESSAGE) {
          counters.messages++;
          if (ack && extended) socket.write(ACK1_PACKET);
          check();
        } else if (type === T_PING) socket.write(PONG_PACKET);
        else if (type === T_EXTENSIONS) extended = true;
        else if (type === T_IDENTIFICATION && ident === null) {
          ident = frame.toString('utf8', 1);
          peers.set(ident, socket);
          counters.identified++;
          counters.live++;
          check();
        }
      },
      64 * 1024 * 1024,
      () => socket.destroy(),
    );
    socket.on('data', (chunk: Buffer) => reader.push(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (ident === null) return;
      peers.delete(ident);
      counters.live--;
      counters.disconnects++;
      check();
    });
    socket.write(greeting);
  });
  server.maxConnections = 20_000;
  await new Promise<void>((resolve) => server.listen({ port: 0, host: '127.0.0.1', backlog: 511 }, resolve));
  onExit = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return { port: (server.address() as net.AddressInfo).port };
}

let onExit: () => Promise<void> = async () => undefined;

let info: Record<string, unknown>;
if (kind === 'snakemq') info = await startSnakemq();
else if (kind === 'raw') info = await startRaw();
else throw new Error('usage: mem-server.ts snakemq|raw [ack|plain] [--grace-ms=N] [--grace-option=NAME]');

onCommand(async (m: Msg) => {
  if (m.t === 'measure') {
    report({ t: 'memory', mem: await settledMemory(), ...counters });
  } else if (m.t === 'wait') {
    waiting = { messages: Number(m.messages ?? 0), live: m.live === undefined ? null : Number(m.live) };
    check();
  } else if (m.t === 'counters') {
    report({ t: 'counters', ...counters });
  } else if (m.t === 'exit') {
    await Promise.race([onExit(), new Promise((r) => setTimeout(r, 2000))]);
    process.exit(0);
  }
});
report({ t: 'listening', ...info });
