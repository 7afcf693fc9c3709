/**
 * `npm run demo`: bob and alice, two peers in one process, exchange messages
 * over TCP on 127.0.0.1 and print what happens.
 */
import { Link, Packeter, Messaging, Message } from '../lib/index.js';

function peer(ident: string): { link: Link; messaging: Messaging } {
  const link = new Link();
  const messaging = new Messaging(ident, new Packeter(link));
  messaging.on('connect', (_conn, who) => console.log(`[${ident}] ${who} connected`));
  messaging.on('disconnect', (_conn, who) => console.log(`[${ident}] ${who} disconnected`));
  return { link, messaging };
}

const bob = peer('bob');
const alice = peer('alice');

const url = await bob.link.addListener('tcp://127.0.0.1:0');
console.log(`[bob] listening on ${url}`);

// bob queues a message before alice even exists on the network: it waits for her.
bob.messaging.send('alice', new Message('hello alice, this waited in my queue'));

const aliceGotAll = new Promise<void>((resolve) => {
  let n = 0;
  alice.messaging.on('message', (_conn, from, message) => {
    console.log(`[alice] from ${from}: ${message.data.toString()}`);
    if (++n === 2) resolve();
  });
});
const bobGotAll = new Promise<void>((resolve) => {
  bob.messaging.on('message', (_conn, from, message) => {
    console.log(`[bob] from ${from}: ${message.data.toString()}`);
    bob.messaging.send(from, new Message(`thanks ${from}, got "${message.data.toString()}"`));
    resolve();
  });
});

alice.link.addConnector(url);
console.log(`[alice] connecting to ${url}`);
alice.messaging.send('bob', new Message('hi bob, alice here'));

await Promise.all([aliceGotAll, bobGotAll]);
await Promise.all([alice.messaging.close(), bob.messaging.close()]);
console.log('demo finished');
