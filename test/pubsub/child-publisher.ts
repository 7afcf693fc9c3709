/**
 * A publisher in its own process, for the durable-subscription crash test.
 * One JSON argument: `{ storage, store, from, count }`. It listens on
 * tcp://127.0.0.1:0, loads its durable subscriptions and stored queues, then
 * publishes `count` messages numbered from `from` on `/t` and reports, one
 * line each: `url <url>`, `stored <i>` once message i is committed for every
 * away durable subscriber. Then it waits to be killed.
 */
import { writeSync } from 'node:fs';
import { createPeer } from '../../lib/peer/index.js';
import { FileDurableStore, Publisher } from '../../lib/pubsub/index.js';

const config = JSON.parse(process.argv[2]!) as { storage: string; store: string; from: number; count: number };
const say = (line: string) => writeSync(1, line + '\n');

const peer = await createPeer({ identity: 'bob', listen: ['tcp://127.0.0.1:0'], storage: config.storage });
const pub = new Publisher(peer.messaging, { durableStore: new FileDurableStore(config.store) });
await pub.ready;
say(`url ${peer.listening[0]}`);
for (let i = config.from; i < config.from + config.count; i++) {
  const p = pub.publish('/t', 'info', { i });
  await p.stored();
  const r = await p;
  if (r.held.length > 0) say(`stored ${i}`);
}
say('done');
