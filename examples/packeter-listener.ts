/**
 * Raw packets, the listening side — counterpart of snakeMQ's
 * examples/packeter_listener.py.
 *
 * Below messaging there are just packets: a Link carries bytes, a Packeter
 * frames them (4-byte length prefix) and numbers what you send. No identities,
 * no queues: a packet sent on a connection that drops is gone. This side
 * answers every packet with "hi", reports on the `sent` event when its
 * answers were handed to the kernel, and exits when the connector hangs up.
 *
 *   npx tsx examples/packeter-listener.ts               # also starts packeter-connector.ts
 *   npx tsx examples/packeter-listener.ts tcp://0.0.0.0:4000
 *
 * In an application, import from 'snakemq-ts' instead of '../lib/index.js'.
 */
import { Link, Packeter } from '../lib/index.js';
import { deadline, isChild, startPeer } from './support/processes.js';

deadline(40_000);
const endpoint = process.argv[2] ?? 'tcp://127.0.0.1:0';
const log = (text: string) => console.log(`[packeter-listener] ${text}`);

const link = new Link();
const packeter = new Packeter(link);

packeter.on('connect', (info) => log(`connection ${info.id} from ${info.remoteAddress}:${info.remotePort}`));
packeter.on('packet', (connId, payload) => {
  // `payload` may be a view of a larger receive buffer: copy it to keep it.
  log(`received from connection ${connId}: "${payload.toString()}"`);
  const id = packeter.sendPacket(connId, Buffer.from('hi'));
  log(`answer queued as packet ${id}`);
});
// Cumulative: every packet up to lastPacketId is written (one event per socket write).
packeter.on('sent', (connId, lastPacketId) => log(`connection ${connId}: packets up to ${lastPacketId} written`));

const hungUp = new Promise<void>((resolve) => {
  packeter.on('disconnect', (connId, reason) => {
    log(`connection ${connId} closed (by ${reason.by})`);
    resolve();
  });
});

const url = await link.addListener(endpoint);
log(`listening on ${url}`);
const connector = !isChild && process.argv[2] === undefined ? startPeer('packeter-connector.ts', [url]) : undefined;

await hungUp;
await packeter.close(); // closes the link too
log('closed');
await connector?.succeeded();
