/**
 * `npm run demo`: bob and alice, each in a process of its own (examples/demo-peer.ts),
 * talk over TCP on 127.0.0.1:
 *
 *  1. bob listens, alice connects;
 *  2. they exchange messages both ways;
 *  3. each calls the other over RPC (bob calls alice over the connection she opened);
 *  4. alice stops; bob sends her a persistent message, committed to his SQLite file;
 *  5. bob is killed with SIGKILL — no clean shutdown — and started again on the same file;
 *  6. alice starts again: the message arrives, and leaves bob's file once she acknowledged it.
 *
 * SQLite files live in a temp dir, removed at the end. The child processes are
 * killed whatever happens (error, Ctrl-C, or this process being killed).
 */
import { rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deadline, killChildren, startPeer, type PeerProcess } from './support/processes.js';

deadline(40_000);
const started = performance.now();
const dir = await mkdtemp(join(tmpdir(), 'snakemq-demo-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true })); // also after Ctrl-C
const narrate = (text: string) => console.log(`\ndemo  | ${text}`);

function start(ident: 'bob' | 'alice', where: { listen: string } | { connect: string }): PeerProcess {
  const peer = ident === 'bob' ? 'alice' : 'bob';
  const config = { ident, peer, storage: join(dir, `${ident}.sqlite`), ...where };
  return startPeer('demo-peer.ts', [JSON.stringify(config)], `${ident.padEnd(5)} | `);
}

try {
  narrate(`1. bob listens, alice connects (separate processes, queues in ${dir})`);
  let bob = start('bob', { listen: 'tcp://127.0.0.1:0' });
  const url = (await bob.waitFor(/^listening on (\S+)/))[1]!;
  let alice = start('alice', { connect: url });
  await Promise.all([bob.waitFor(/^alice connected/), alice.waitFor(/^bob connected/)]);

  narrate('2. messages both ways');
  alice.send({ op: 'send', text: 'hi bob, alice here' });
  await bob.waitFor(/^received from alice/);
  bob.send({ op: 'send', text: 'hi alice, nice to see you' });
  await alice.waitFor(/^received from bob/);

  narrate('3. RPC each way: alice calls bob, then bob calls alice (who connected out)');
  alice.send({ op: 'call' });
  await alice.waitFor(/^bob\.greet\("alice"\) returned/);
  bob.send({ op: 'call' });
  await bob.waitFor(/^alice\.greet\("bob"\) returned/);

  narrate('4. alice stops; bob sends her a persistent message while she is away');
  alice.send({ op: 'quit' });
  await alice.succeeded();
  await bob.waitFor(/^alice disconnected/);
  bob.send({ op: 'send', text: 'sent while you were away', persistent: true });
  await bob.waitFor(/is committed to bob\.sqlite/);

  narrate('5. bob is killed with SIGKILL, then started again on the same SQLite file');
  await bob.kill('SIGKILL');
  console.log(`bob   | (killed: pid ${bob.proc.pid})`);
  bob = start('bob', { listen: 'tcp://127.0.0.1:0' });
  await bob.waitFor(/^1 message\(s\) for alice loaded/);
  const url2 = (await bob.waitFor(/^listening on (\S+)/))[1]!;

  narrate('6. alice starts again and gets the message');
  alice = start('alice', { connect: url2 });
  await alice.waitFor(/^received from bob: "sent while you were away" \(persistent\)/);
  await bob.waitFor(/^alice acknowledged "sent while you were away"/);

  narrate('both stop');
  bob.send({ op: 'quit' });
  alice.send({ op: 'quit' });
  await Promise.all([bob.succeeded(), alice.succeeded()]);
  narrate(`demo finished in ${((performance.now() - started) / 1000).toFixed(1)} s`);
} finally {
  await killChildren(); // no-op when all went well; the temp dir goes on exit
}
