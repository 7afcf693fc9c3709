/**
 * A peer in its own process, for crash and restart tests. Configured by one
 * JSON argument; reports on stdout, one line per event:
 *   `ready`                      listening/connecting
 *   `url <url>`                  bound listener address
 *   `persisted <i>`              the send of message i settled as persisted
 *   `delivered <i>`              message i left the queue delivered
 *   `recv <ident> <text>`        a message arrived
 *   `drained`                    every queue is empty
 */
import { writeSync } from 'node:fs';
import { Link } from '../../lib/link/index.js';
import { Packeter } from '../../lib/packeter/index.js';
import { Messaging, Message } from '../../lib/messaging/index.js';
import { SqliteQueuesStorage } from '../../lib/storage/sqlite.js';

interface Config {
  ident: string;
  storage?: string;
  listen?: string;
  connect?: string;
  sendTo?: string;
  count?: number;
  start?: number;
  persistent?: boolean;
  acknowledgements?: boolean;
  /** Messaging's `relay` option (relay tests). */
  relay?: object | true;
}

const config = JSON.parse(process.argv[2]!) as Config;
// Synchronous writes: a line is in the pipe before anything that follows it (an
// acknowledgement, a commit) can happen, so a SIGKILL never loses a report.
function say(line: string): void {
  let bytes = Buffer.from(line + '\n');
  while (bytes.length > 0) {
    try {
      bytes = bytes.subarray(writeSync(1, bytes));
    } catch (error) {
      // stdout is a non-blocking pipe: wait for the parent to read.
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
    }
  }
}

const storage = config.storage ? await SqliteQueuesStorage.open(config.storage, { identity: config.ident }) : null;
const link = new Link();
const messaging = new Messaging(config.ident, new Packeter(link), {
  storage,
  acknowledgements: config.acknowledgements ?? true,
  relay: config.relay ?? null,
});
await messaging.ready;
messaging.on('message', (_c, ident, m) => say(`recv ${ident} ${m.data.toString()}`));
if (config.listen) say(`url ${await link.addListener(config.listen)}`);
if (config.connect) link.addConnector(config.connect, { reconnectDelay: () => 50 });

const count = config.count ?? 0;
const start = config.start ?? 0;
let left = config.sendTo ? messaging.queueLength(config.sendTo) + count : 0;
if (config.sendTo) {
  const to = config.sendTo;
  let i = start;
  const end = start + count;
  const batch = (): void => {
    const stop = Math.min(end, i + 500);
    for (; i < stop; i++) {
      const n = i;
      const d = messaging.send(to, new Message(`m${n}`, { persistent: config.persistent ?? true }));
      d.persisted().then(
        () => say(`persisted ${n}`),
        () => undefined,
      );
      d.delivered().then(
        () => say(`delivered ${n}`),
        () => undefined,
      );
    }
    if (i < end) setImmediate(batch);
  };
  batch();
  const check = setInterval(() => {
    left = messaging.queueLength(to);
    if (left === 0 && i >= end) {
      say('drained');
      clearInterval(check);
    }
  }, 20);
}
say('ready');
process.on('SIGTERM', () => {
  void messaging.close().then(() => process.exit(0));
});
