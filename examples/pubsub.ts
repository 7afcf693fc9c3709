/**
 * Publish/subscribe in one process: peer "radar" publishes on subjects,
 * "archive" subscribes durably to everything under /oper (it goes away for
 * a while and gets what it missed), "monitor" to the /oper/+/direct_readout
 * subjects with a token filter. Then a look at the PostTroll string form.
 *
 *   npx tsx examples/pubsub.ts
 *
 * In an application, import from 'snakemq-ts' instead of '../lib/index.js'.
 */
import { createPeer, encodePostTroll, PubMessage, Publisher, Subscriber, type ReceivedPubMessage } from '../lib/index.js';
import { deadline } from './support/processes.js';

deadline(30_000);
const show = (who: string) => (m: ReceivedPubMessage) => console.log(`[${who}] ${m.subject} ${m.type} ${JSON.stringify(m.data)} from ${m.from}`);

const radar = await createPeer({ identity: 'radar', listen: ['tcp://127.0.0.1:0'] });
const pub = new Publisher(radar.messaging);
pub.on('subscribe', (ident, topics, durable) => console.log(`[radar] ${ident} subscribed to ${topics.join(', ')}${durable ? ' (durable)' : ''}`));
const url = radar.listening[0]!;

const subscriber = async (identity: string, topics: string[], durable: boolean, expect: number) => {
  const peer = await createPeer({ identity, connect: [url] });
  const sub = new Subscriber(peer.messaging, { publishers: ['radar'], topics, durable });
  let seen = 0;
  const all = new Promise<void>((resolve) =>
    sub.on('message', (m) => {
      show(identity)(m);
      if (++seen === expect) resolve();
    }),
  );
  await sub.ready; // radar confirmed: nothing published from now on is missed
  return { peer, sub, all };
};

const monitor = await subscriber('monitor', ['/oper/*/direct_readout'], false, 2);
let archive = await subscriber('archive', ['/oper'], true, 2);

await pub.publish('/oper/polar/direct_readout', 'file', { uri: 'ftp://x/f1.h5' });
await pub.publish('/oper/geo/direct_readout', 'file', { uri: 'ftp://x/f2.h5' });
await pub.publish('/test/ignored', 'info', 'nobody subscribes to this');
await Promise.all([monitor.all, archive.all]);

await archive.peer.close(); // archive goes away; radar holds what matches for it
const held = await pub.publish('/oper/polar/overview', 'dataset', { n: 3 }, { time: new Date('2026-12-03T10:00:00Z') });
console.log(`[radar] written to ${held.written}, held for ${held.held.join(', ')}`);

archive = await subscriber('archive', ['/oper'], true, 1); // what was held arrives first
await archive.all;

// The same message in PostTroll's string form, byte for byte as PostTroll writes it:
const msg = new PubMessage({ subject: '/oper/polar/overview', type: 'dataset', sender: 'radar@host', time: '2026-12-03T10:00:00Z', data: { n: 3 } });
console.log(`[radar] PostTroll form: ${encodePostTroll(msg)}`);

await Promise.all([monitor.peer.close(), archive.peer.close(), radar.close()]);
console.log('[radar] closed');
