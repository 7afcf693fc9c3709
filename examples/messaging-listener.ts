/**
 * Messaging, the listening peer — counterpart of snakeMQ's
 * examples/messaging_listener.py.
 *
 * Peer "xlistener" listens, queues a message for "xconnector" before anyone is
 * connected (it waits in the queue, TTL 60 s), prints what it receives, and
 * exits once its message was delivered (acknowledged by the other peer) and
 * it got one back. Being the listener gives it no special role: both sides
 * send and receive the same way.
 *
 *   npx tsx examples/messaging-listener.ts              # also starts messaging-connector.ts
 *   npx tsx examples/messaging-listener.ts tcp://0.0.0.0:4000   # wait for a connector of yours
 *
 * In an application, import from 'snakemq-ts' instead of '../lib/index.js'.
 */
import { Link, Packeter, Messaging, Message } from '../lib/index.js';
import { deadline, isChild, startPeer } from './support/processes.js';

deadline(40_000);
const endpoint = process.argv[2] ?? 'tcp://127.0.0.1:0';
const log = (text: string) => console.log(`[xlistener] ${text}`);

const link = new Link();
const messaging = new Messaging('xlistener', new Packeter(link));

const received = new Promise<void>((resolve) => {
  messaging.on('message', (connId, ident, message) => {
    log(`received from ${ident} (connection ${connId}): "${message.data.toString()}"`);
    resolve();
  });
});
messaging.on('connect', (_connId, ident) => log(`${ident} connected`));
messaging.on('disconnect', (_connId, ident) => log(`${ident} disconnected`));

// Queued now, sent as soon as xconnector is connected (within 60 s).
const delivery = messaging.send('xconnector', new Message('hello', { ttl: 60 }));

const url = await link.addListener(endpoint);
log(`listening on ${url}`);

// Run with no arguments: start the other peer ourselves, in its own process.
const connector = !isChild && process.argv[2] === undefined ? startPeer('messaging-connector.ts', [url]) : undefined;

await delivery.delivered();
log('"hello" delivered: xconnector acknowledged it');
await received;

await messaging.close(); // closes the packeter and the link below it
log('closed');
await connector?.succeeded();
