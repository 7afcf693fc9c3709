/**
 * Relay benchmark: `npx tsx bench/relay.ts [--n=500000] [--size=100] [--rounds=3] [--pings=2000]`.
 *
 * alice sends 100-byte messages to carol, each peer in its own process,
 * `direct` (carol listens, alice connects to her) and `relay` (both connect
 * to a hub process that forwards for them: alice -> hub -> carol), rounds
 * alternating, with acknowledgements (from carol, end to end) and
 * `writable()`/`drained()` pacing. A round is timed from alice's first send
 * to carol's receipt of the last (one machine-wide monotonic clock); the
 * best round counts. Latency: `--pings` sequential ping-pongs (alice sends,
 * carol answers), median and p99 round trip. Prints JSON lines: one per
 * mode, then the ratio (target: relay at least 0.5 of direct throughput).
 * On this 2-core machine the relay run has three busy processes for two
 * cores, the direct run two.
 * @module
 */
import { benchArgs } from './lib/ipc.js';
import { Child, emit, guard } from './lib/proc.js';

const args = benchArgs();
const N = Number(args.get('n') ?? '500000');
const SIZE = Number(args.get('size') ?? '100');
const ROUNDS = Number(args.get('rounds') ?? '3');
const PINGS = Number(args.get('pings') ?? '2000');
const T = 120_000;

interface Setup {
  alice: Child;
  carol: Child;
  hub: Child | null;
}

async function setup(mode: 'direct' | 'relay'): Promise<Setup> {
  if (mode === 'direct') {
    const carol = new Child('carol', '../relay-peer.ts', ['carol', JSON.stringify({ listen: true })]);
    const url = String((await carol.next('listening', T)).url);
    const alice = new Child('alice', '../relay-peer.ts', ['alice', JSON.stringify({ connect: url })]);
    await alice.next('listening', T);
    return { alice, carol, hub: null };
  }
  const hub = new Child('hub', '../relay-peer.ts', ['hub', JSON.stringify({ listen: true, relay: true })]);
  const url = String((await hub.next('listening', T)).url);
  const carol = new Child('carol', '../relay-peer.ts', ['carol', JSON.stringify({ connect: url, relay: true })]);
  const alice = new Child('alice', '../relay-peer.ts', ['alice', JSON.stringify({ connect: url, relay: true })]);
  await Promise.all([carol.next('listening', T), alice.next('listening', T)]);
  return { alice, carol, hub };
}

async function round(s: Setup, n: number): Promise<number> {
  const kids = [s.alice, s.carol, ...(s.hub ? [s.hub] : [])];
  await guard(s.carol.ask({ t: 'expect', n }, 'armed', T), ...kids);
  const done = s.carol.next('done', T);
  const started = s.alice.ask({ t: 'send', n, size: SIZE }, 'finished', T);
  const [{ t0 }, { t1 }] = await guard(Promise.all([started, done]), ...kids);
  return n / (((t1 as number) - (t0 as number)) / 1000);
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))]! * 1000) / 1000;
}

const modes = ['direct', 'relay'] as const;
const setups = new Map<string, Setup>();
const rates = new Map<string, number[]>();
for (const mode of modes) {
  const s = await setup(mode);
  setups.set(mode, s);
  rates.set(mode, []);
  await guard(s.alice.ask({ t: 'reach' }, 'reached', T), s.alice, s.carol);
  await round(s, Math.min(N, 50_000));
}
for (let r = 0; r < ROUNDS; r++) for (const mode of modes) rates.get(mode)!.push(await round(setups.get(mode)!, N));
const best = new Map<string, number>();
for (const mode of modes) {
  const s = setups.get(mode)!;
  const { rtts } = await guard(s.alice.ask({ t: 'ping', n: PINGS }, 'pinged', T), s.alice, s.carol);
  const list = rtts as number[];
  const rs = rates.get(mode)!;
  best.set(mode, Math.max(...rs));
  emit({
    bench: 'relay',
    mode,
    size: SIZE,
    msgs: N,
    msgs_per_s: Math.round(Math.max(...rs)),
    rounds: rs.map(Math.round),
    rtt_ms_median: pct(list, 0.5),
    rtt_ms_p99: pct(list, 0.99),
  });
}
emit({ bench: 'relay', ratio: Math.round((best.get('relay')! / best.get('direct')!) * 100) / 100, target: 0.5 });
for (const s of setups.values()) for (const c of [s.alice, s.carol, s.hub]) if (c) await c.stop();
