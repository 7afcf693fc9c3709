/**
 * Persistent messaging — counterpart of snakeMQ's
 * examples/persistent_messaging_{connector,listener}.py, in one process.
 *
 * "xconnector" keeps its queues in an SQLite file (in a temp dir). It sends
 * a persistent message to "xlistener" while xlistener is not running, waits
 * for `persisted()` (committed to the file), and stops. A transient message
 * sent at the same time is lost with the process. A new instance on the same
 * file finds the persistent message in its queue; when xlistener comes up,
 * the message is delivered and leaves the file. Delivery stages:
 * queued → persisted → written → acknowledged (`delivered()`).
 *
 *   npx tsx examples/persistent-messaging.ts
 *
 * In an application, import from 'snakemq-ts' instead of '../lib/index.js'.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Link, Packeter, Messaging, Message } from '../lib/index.js';
import { SqliteQueuesStorage } from '../lib/sqlite.js';
import { deadline } from './support/processes.js';

deadline(40_000);
const log = (who: string, text: string) => console.log(`[${who}] ${text}`);

const dir = await mkdtemp(join(tmpdir(), 'snakemq-persistent-'));
const file = join(dir, 'xconnector.sqlite');

/** xconnector: messaging with its queues in the SQLite file. */
async function startConnector(): Promise<{ link: Link; messaging: Messaging }> {
  const storage = await SqliteQueuesStorage.open(file); // { durability: 'power' } to fsync every commit
  const link = new Link();
  const messaging = new Messaging('xconnector', new Packeter(link), { storage });
  await messaging.ready; // stored queues loaded
  messaging.on('acknowledged', (ident, message) => log('xconnector', `${ident} acknowledged "${message.data.toString()}"`));
  return { link, messaging };
}

try {
  // --- 1. xlistener is not running: xconnector sends anyway -----------------
  let connector = await startConnector();
  log('xconnector', `storage ${file}`);
  const stored = connector.messaging.send('xlistener', new Message('hello, stored on disk', { persistent: true, ttl: 600 }));
  const transient = connector.messaging.send('xlistener', new Message('hello, kept in memory only'));
  log('xconnector', `sent a persistent and a transient message: state "${stored.state}", ${connector.messaging.queueLength('xlistener')} queued`);
  await stored.persisted();
  log('xconnector', `persistent message committed to SQLite: state "${stored.state}"`);

  // --- 2. xconnector stops before xlistener ever shows up -------------------
  const lost = transient.delivered().catch((error: { code: string }) => error.code);
  await connector.messaging.close(); // closes link, packeter and storage
  log('xconnector', `stopped; the transient message was dropped: ${await lost}`);

  // --- 3. xconnector starts again on the same file ---------------------------
  connector = await startConnector();
  log('xconnector', `restarted: ${connector.messaging.queueLength('xlistener')} message(s) waiting for xlistener`);
  const second = connector.messaging.send('xlistener', new Message('second, sent after the restart', { persistent: true }));

  // --- 4. xlistener comes up; xconnector connects ---------------------------
  const listenerLink = new Link();
  const listener = new Messaging('xlistener', new Packeter(listenerLink));
  let count = 0;
  const bothArrived = new Promise<void>((resolve) => {
    listener.on('message', (_connId, ident, message) => {
      const ttl = message.ttl === null ? 'no TTL' : `TTL ${message.ttl} s left`;
      log('xlistener', `from ${ident}: "${message.data.toString()}" (persistent: ${message.persistent}, ${ttl})`);
      if (++count === 2) resolve();
    });
  });
  const url = await listenerLink.addListener('tcp://127.0.0.1:0');
  log('xlistener', `listening on ${url}`);
  connector.link.addConnector(url);

  await second.written();
  log('xconnector', `second message: state "${second.state}"`);
  await second.delivered();
  log('xconnector', `second message: state "${second.state}"; ${connector.messaging.queueLength('xlistener')} queued`);
  await bothArrived;

  await Promise.all([connector.messaging.close(), listener.close()]);
  log('xconnector', 'closed');
} finally {
  await rm(dir, { recursive: true, force: true });
}
