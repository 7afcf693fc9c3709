/**
 * One peer of `npm run demo`. examples/demo.ts starts bob and alice as child
 * processes running this file, tells them what to do over the IPC channel,
 * and follows what they print. Not meant to be run by hand.
 *
 * Argument: JSON `{ ident, peer, storage, listen?, connect? }`. Commands:
 * `{ op: 'send', text, persistent? }`, `{ op: 'call' }`, `{ op: 'quit' }`.
 */
import { basename } from 'node:path';
import { Message, createPeer } from '../lib/index.js';
import { deadline } from './support/processes.js';

interface Config {
  ident: string;
  /** The other peer's identity. */
  peer: string;
  storage: string;
  listen?: string;
  connect?: string;
}
type Command = { op: 'send'; text: string; persistent?: boolean } | { op: 'call' } | { op: 'quit' };

deadline(40_000);
const config = JSON.parse(process.argv[2]!) as Config;
const { ident, peer } = config;
const say = (text: string) => console.log(text); // demo.ts puts the name in front

/** What each peer serves over RPC. */
class Greeter {
  greet(name: string): string {
    say(`greet("${name}") called`);
    return `hello ${name}, this is ${ident} (pid ${process.pid})`;
  }
}

// Link, Packeter, Messaging and the SQLite file in one call; RPC server and client on first use.
const me = await createPeer({ identity: ident, storage: config.storage, rpc: { client: { timeout: 5000 } } });
me.rpc.serve('greeter', new Greeter());
const remote = me.rpc.proxy<Greeter>(peer, 'greeter');

say(`started: pid ${process.pid}, queues in ${basename(config.storage)}`); // stored queues are loaded by now
const waiting = me.queueLength(peer);
if (waiting > 0) say(`${waiting} message(s) for ${peer} loaded from ${basename(config.storage)}`);

me.on('connect', (_connId, who) => say(`${who} connected`));
me.on('disconnect', (_connId, who) => say(`${who} disconnected`));
me.on('message', (_connId, from, message) => say(`received from ${from}: "${message.data.toString()}"${message.persistent ? ' (persistent)' : ''}`));
me.on('acknowledged', (to, message) => {
  if (message.persistent) say(`${to} acknowledged "${message.data.toString()}": removed from ${basename(config.storage)}`);
});

// Listening and connecting come after the handlers, so that nothing arrives unheard.
if (config.listen) say(`listening on ${await me.listen(config.listen)}`);
if (config.connect) {
  me.connect(config.connect);
  say(`connecting to ${config.connect}`);
}

process.on('message', (command: Command) => {
  void (async () => {
    switch (command.op) {
      case 'send': {
        const delivery = me.send(peer, new Message(command.text, { persistent: command.persistent ?? false }));
        say(`sending to ${peer}: "${command.text}"${command.persistent ? ' (persistent)' : ''}`);
        if (command.persistent) {
          await delivery.persisted();
          say(`"${command.text}" is committed to ${basename(config.storage)} (${peer} is ${me.isConnected(peer) ? 'connected' : 'away'})`);
        }
        break;
      }
      case 'call':
        say(`${peer}.greet("${ident}") returned "${await remote.greet(ident)}"`);
        break;
      case 'quit':
        await me.close(); // RPC, messaging, packeter, link, storage
        say('stopped'); // nothing is left open: the process exits by itself
        break;
    }
  })().catch((error: unknown) => {
    console.error(`${ident}: ${command.op} failed:`, error);
    process.exit(1);
  });
});
