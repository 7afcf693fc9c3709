/**
 * Raw packets, the connecting side — counterpart of snakeMQ's
 * examples/packeter_connector.py.
 *
 * Connects, sends three packets in one go (the Packeter coalesces them into
 * one socket write, so a single `sent` event covers all three ids), waits for
 * the three answers and closes.
 *
 *   npx tsx examples/packeter-connector.ts                        # also starts packeter-listener.ts
 *   npx tsx examples/packeter-connector.ts tcp://127.0.0.1:4000
 *
 * In an application, import from 'snakemq-ts' instead of '../lib/index.js'.
 */
import { Link, Packeter } from '../lib/index.js';
import { deadline, isChild, startPeer } from './support/processes.js';

deadline(40_000);
const log = (text: string) => console.log(`[packeter-connector] ${text}`);

let url = process.argv[2];
const listener = !isChild && url === undefined ? startPeer('packeter-listener.ts', ['tcp://127.0.0.1:0']) : undefined;
if (listener) url = (await listener.waitFor(/listening on (\S+)/))[1];

const link = new Link();
const packeter = new Packeter(link);

packeter.on('connect', (info) => {
  log(`connected to ${info.remoteAddress}:${info.remotePort} (connection ${info.id})`);
  const ids = ['hello 1', 'hello 2', 'hello 3'].map((text) => packeter.sendPacket(info.id, Buffer.from(text)));
  log(`queued packets ${ids.join(', ')}`);
});
packeter.on('sent', (connId, lastPacketId) => log(`connection ${connId}: packets up to ${lastPacketId} written`));

const answers = new Promise<void>((resolve) => {
  let count = 0;
  packeter.on('packet', (connId, payload) => {
    log(`received from connection ${connId}: "${payload.toString()}"`);
    if (++count === 3) resolve();
  });
});

link.addConnector(url!);
log(`connecting to ${url}`);

await answers;
await packeter.close(); // closes the link: connector removed, connection closed
log('closed');
await listener?.succeeded();
