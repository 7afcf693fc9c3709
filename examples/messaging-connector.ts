/**
 * Messaging, the connecting peer — counterpart of snakeMQ's
 * examples/messaging_connector.py.
 *
 * Peer "xconnector" connects to "xlistener" (and would reconnect, with
 * backoff, if the listener were not up yet or went away), receives the
 * message waiting for it, answers, and exits once the answer was delivered.
 *
 *   npx tsx examples/messaging-connector.ts                       # also starts messaging-listener.ts
 *   npx tsx examples/messaging-connector.ts tcp://127.0.0.1:4000  # connect to a listener of yours
 *
 * In an application, import from 'snakemq-ts' instead of '../lib/index.js'.
 */
import { Link, Packeter, Messaging, Message } from '../lib/index.js';
import { deadline, isChild, startPeer } from './support/processes.js';

deadline(40_000);
const log = (text: string) => console.log(`[xconnector] ${text}`);

// Run with no arguments: start the listener in its own process and use its address.
let url = process.argv[2];
const listener = !isChild && url === undefined ? startPeer('messaging-listener.ts', ['tcp://127.0.0.1:0']) : undefined;
if (listener) url = (await listener.waitFor(/listening on (\S+)/))[1];

const link = new Link();
const messaging = new Messaging('xconnector', new Packeter(link));
messaging.on('connect', (_connId, ident) => log(`${ident} connected`));
messaging.on('disconnect', (_connId, ident) => log(`${ident} disconnected`));

const answered = new Promise<void>((resolve, reject) => {
  messaging.on('message', (connId, ident, message) => {
    log(`received from ${ident} (connection ${connId}): "${message.data.toString()}", ttl ${message.ttl}`);
    // Answer on the same footing: no request/response roles in messaging.
    messaging
      .send(ident, new Message(`hi ${ident}, thanks`))
      .delivered()
      .then(resolve, reject);
  });
});

link.addConnector(url!);
log(`connecting to ${url}`);

await answered;
log('answer delivered');
await messaging.close();
log('closed');
await listener?.succeeded();
