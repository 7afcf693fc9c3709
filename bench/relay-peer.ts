/**
 * One peer of bench/relay.ts in its own process: `hub` (a relay), `carol`
 * (receiver: counts, answers pings) or `alice` (sender). Driven over IPC.
 * @module
 */
import { Buffer } from 'node:buffer';
import { createPeer, type Peer } from '../lib/peer/index.js';
import { now } from './lib/ipc.js';
import { onCommand, report, type Msg } from './lib/proc.js';

const role = process.argv[2]!;
const config = JSON.parse(process.argv[3] ?? '{}') as { listen?: boolean; connect?: string; relay?: boolean };
const relay = config.relay ? (role === 'hub' ? { forward: true, allow: () => true } : {}) : undefined;
const peer: Peer = await createPeer({
  identity: role,
  ...(config.listen ? { listen: 'tcp://127.0.0.1:0' } : {}),
  ...(config.connect ? { connect: { url: config.connect, options: { reconnectDelay: () => 50 } } } : {}),
  ...(relay ? { relay } : {}),
});
report({ t: 'listening', url: peer.listening[0] ?? '' });

const PING = Buffer.from('ping');
let expected = 0;
let count = 0;
if (role === 'carol') {
  peer.on('message', (_c, ident, m) => {
    if (m.data.length === 4 && m.data.equals(PING)) {
      peer.send(ident, PING);
      return;
    }
    if (++count === expected) report({ t: 'done', t1: now() });
  });
}

let pong: (() => void) | null = null;
if (role === 'alice') peer.on('message', () => pong?.());

onCommand(async (m: Msg) => {
  if (m.t === 'expect') {
    count = 0;
    expected = m.n as number;
    report({ t: 'armed' });
  } else if (m.t === 'reach') {
    // Until a (relayed) connection is up, answered by a first ping.
    await ping();
    report({ t: 'reached' });
  } else if (m.t === 'send') {
    const payload = Buffer.alloc(m.size as number, 7);
    const n = m.n as number;
    const t0 = now();
    for (let i = 0; i < n; i++) {
      if (!peer.writable('carol')) await peer.drained('carol');
      peer.send('carol', payload);
    }
    report({ t: 'finished', t0 });
  } else if (m.t === 'ping') {
    const rtts: number[] = [];
    for (let i = 0; i < (m.n as number); i++) {
      const t = now();
      await ping();
      rtts.push(now() - t);
    }
    report({ t: 'pinged', rtts });
  } else if (m.t === 'exit') {
    await peer.close();
    process.exit(0);
  }
});

function ping(): Promise<void> {
  return new Promise((resolve) => {
    pong = () => {
      pong = null;
      resolve();
    };
    peer.send('carol', PING);
  });
}
