/**
 * One peer of `npm run demo`. examples/demo.ts starts bob and alice as child
 * processes running this file, tells them what to do over the IPC channel,
 * and follows what they print. Not meant to be run by hand.
 *
 * Argument: JSON `{ ident, peer, storage, listen?, connect? }`. Commands:
 * `{ op: 'send', text, persistent? }`, `{ op: 'call' }`, `{ op: 'quit' }`.
 */
import { basename } from 'node:path';
import { Link, Packeter, Messaging, Message, RpcClient, RpcServer } from '../lib/index.js';
import { SqliteQueuesStorage } from '../lib/sqlite.js';
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

const storage = await SqliteQueuesStorage.open(config.storage);
const link = new Link();
const messaging = new Messaging(ident, new Packeter(link), { storage });
const server = new RpcServer(messaging);
server.register('greeter', new Greeter());
const client = new RpcClient(messaging, { timeout: 5000 });
const remote = client.proxy<Greeter>(peer, 'greeter');

await messaging.ready;
say(`started: pid ${process.pid}, queues in ${basename(config.storage)}`);
const waiting = messaging.queueLength(peer);
if (waiting > 0) say(`${waiting} message(s) for ${peer} loaded from ${basename(config.storage)}`);

messaging.on('connect', (_connId, who) => say(`${who} connected`));
messaging.on('disconnect', (_connId, who) => say(`${who} disconnected`));
messaging.on('message', (_connId, from, message) =>
  say(`received from ${from}: "${message.data.toString()}"${message.persistent ? ' (persistent)' : ''}`),
);
messaging.on('acknowledged', (to, message) => {
  if (message.persistent) say(`${to} acknowledged "${message.data.toString()}": removed from ${basename(config.storage)}`);
});

if (config.listen) say(`listening on ${await link.addListener(config.listen)}`);
if (config.connect) {
  link.addConnector(config.connect);
  say(`connecting to ${config.connect}`);
}

process.on('message', (command: Command) => {
  void (async () => {
    switch (command.op) {
      case 'send': {
        const delivery = messaging.send(peer, new Message(command.text, { persistent: command.persistent ?? false }));
        say(`sending to ${peer}: "${command.text}"${command.persistent ? ' (persistent)' : ''}`);
        if (command.persistent) {
          await delivery.persisted();
          say(`"${command.text}" is committed to ${basename(config.storage)} (${peer} is ${messaging.isConnected(peer) ? 'connected' : 'away'})`);
        }
        break;
      }
      case 'call':
        say(`${peer}.greet("${ident}") returned "${await remote.greet(ident)}"`);
        break;
      case 'quit':
        client.close();
        server.close();
        await messaging.close(); // link, packeter, storage
        say('stopped'); // nothing is left open: the process exits by itself
        break;
    }
  })().catch((error: unknown) => {
    console.error(`${ident}: ${command.op} failed:`, error);
    process.exit(1);
  });
});
