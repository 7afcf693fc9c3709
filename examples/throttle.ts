/**
 * Bandwidth limit — a Throttle between the Link and the Packeter (snakeMQ's
 * `snakemq.throttle.Throttle`).
 *
 * The sender's stack is Link → Throttle(100 kB/s) → Packeter → Messaging; the
 * receiver's is unlimited. 150 kB in 15 messages take about 1.4 s to arrive
 * (the first 10 kB go at once: the default burst is 100 ms worth of
 * traffic). The limit applies per connection, to outgoing data only. The
 * Throttle wraps any Transport (a Link, another Throttle, your own) and has
 * the same interface, so nothing above it changes.
 *
 *   npx tsx examples/throttle.ts
 *
 * In an application, import from 'snakemq-ts' instead of '../lib/index.js'.
 */
import { Link, Packeter, Messaging, Message, Throttle } from '../lib/index.js';
import { deadline } from './support/processes.js';

deadline(40_000);
const log = (who: string, text: string) => console.log(`[${who}] ${text}`);

const RATE = 100_000; // bytes per second
const COUNT = 15;
const SIZE = 10_000;

// receiver: an ordinary peer
const receiverLink = new Link();
const receiver = new Messaging('receiver', new Packeter(receiverLink));
const url = await receiverLink.addListener('tcp://127.0.0.1:0');

// sender: the Throttle sits where the Link would be
const senderLink = new Link();
const throttle = new Throttle(senderLink, { bytesPerSecond: RATE });
const sender = new Messaging('sender', new Packeter(throttle));
log('sender', `limited to ${RATE / 1000} kB/s (burst ${throttle.burst} bytes)`);

let start = 0;
const allArrived = new Promise<number>((resolve) => {
  let count = 0;
  let bytes = 0;
  receiver.on('message', (_connId, from, message) => {
    bytes += message.data.length;
    const elapsed = (performance.now() - start) / 1000;
    if (++count % 5 === 0) log('receiver', `${count} messages, ${bytes / 1000} kB from ${from} after ${elapsed.toFixed(2)} s`);
    if (count === COUNT) resolve(elapsed);
  });
});

sender.on('connect', (_connId, ident) => {
  start = performance.now();
  for (let i = 0; i < COUNT; i++) sender.send(ident, new Message(Buffer.alloc(SIZE, i)));
  log('sender', `queued ${COUNT} messages of ${SIZE / 1000} kB for ${ident}`);
});
throttle.addConnector(url); // forwarded to the link

const seconds = await allArrived;
const rate = (COUNT * SIZE) / 1000 / seconds;
log('receiver', `all ${(COUNT * SIZE) / 1000} kB in ${seconds.toFixed(2)} s: ${rate.toFixed(0)} kB/s (limit ${RATE / 1000} kB/s + burst)`);

// A layer owns the layer it is built on: the sender's close closes its Packeter, the Throttle and the Link.
await Promise.all([sender.close(), receiver.close()]);
log('sender', 'closed');
