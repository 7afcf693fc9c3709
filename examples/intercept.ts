/**
 * Interceptors: redaction and metrics, in one process.
 *
 * "clinic" sends patient records to "lab". Two interceptors on clinic:
 * a send interceptor replaces every message that contains a card number
 * with a redacted copy (`Verdict.forward(replacement)`: only the copy goes
 * on the wire), and a metrics interceptor (send and receive) counts messages
 * and bytes per peer — it returns nothing, which forwards unchanged and
 * costs nothing more. On lab, a receive interceptor is a schema check:
 * anything that is not JSON is refused (`Verdict.error`) and reported by
 * the `intercepted` event instead of reaching the handler. RPC frames pass
 * through interceptors too: lab's `ack` reply is counted by the metrics.
 *
 *   npx tsx examples/intercept.ts
 *
 * In an application, import from 'snakemq-ts' instead of '../lib/index.js'.
 */
import { Message, Verdict, createPeer, type Interceptor } from '../lib/index.js';
import { deadline } from './support/processes.js';

deadline(30_000);
const log = (who: string, text: string) => console.log(`[${who}] ${text}`);

const CARD = /\b(\d{4})[ -]?\d{4}[ -]?\d{4}[ -]?(\d{4})\b/g;

/** Redaction: a message holding a card number is replaced by a copy with only its first and last four digits (same uuid, TTL and flags). */
const redact: Interceptor = {
  send: (_ident, message) => {
    const text = message.data.toString();
    CARD.lastIndex = 0;
    if (!CARD.test(text)) return undefined; // forward unchanged: the common case
    const redacted = text.replace(CARD, '$1 **** **** $2');
    return Verdict.forward(new Message(redacted, { uuid: message.uuid, ttl: message.ttl, flags: message.flags }));
  },
};

/** Metrics: messages and bytes per peer and direction. Never changes a message. */
function metrics(): { interceptor: Interceptor; table(): string } {
  const counts = new Map<string, { msgs: number; bytes: number }>();
  const add = (key: string, message: Message) => {
    const c = counts.get(key) ?? { msgs: 0, bytes: 0 };
    c.msgs++;
    c.bytes += message.data.length;
    counts.set(key, c);
  };
  return {
    interceptor: {
      send: (ident, message) => void add(`to ${ident}`, message),
      receive: (_connId, ident, message) => void add(`from ${ident}`, message),
    },
    table: () => [...counts].map(([key, c]) => `${key}: ${c.msgs} messages, ${c.bytes} bytes`).join('; '),
  };
}

const lab = await createPeer({ identity: 'lab', listen: 'tcp://127.0.0.1:0' });
const clinic = await createPeer({ identity: 'clinic', connect: lab.listening[0]! });
const stats = metrics();
clinic.intercept(redact); // registered first: the metrics see the redacted copy
clinic.intercept(stats.interceptor);

// lab: a schema check before any handler (RPC included).
lab.intercept({
  receive: (_connId, _ident, message) => {
    if (message.data[0] === 0x7b /* '{' */) {
      try {
        JSON.parse(message.data.toString());
        return undefined;
      } catch (error) {
        return Verdict.error(error);
      }
    }
    // RPC frames start with their own prefix: let them through.
    return message.data.subarray(0, 3).toString() === 'rpc' ? undefined : Verdict.error('not a JSON record');
  },
});
lab.on('intercepted', (_connId, ident, message, error) => log('lab', `refused from ${ident}: "${message.data.toString()}" (${error.code}: ${error.message})`));

const received: Promise<void> = new Promise((resolve) => {
  let n = 0;
  lab.on('message', (_connId, ident, message) => {
    log('lab', `from ${ident}: ${message.data.toString()}`);
    if (++n === 2) resolve();
  });
});
lab.rpc.serve('records', { count: () => 2 });

try {
  await new Promise<void>((resolve) => (clinic.isConnected('lab') ? resolve() : clinic.on('connect', () => resolve())));
  const first = clinic.send('lab', JSON.stringify({ patient: 'P-17', card: '4111 1111 1111 1234' }));
  log('clinic', `sent record 1; what goes on the wire: ${first.message.data.toString()}`);
  clinic.send('lab', JSON.stringify({ patient: 'P-18', note: 'no card on file' }));
  await clinic.send('lab', 'free text, not JSON').delivered(); // acknowledged by lab, then refused there
  await received;
  log('clinic', `lab says it has ${await clinic.rpc.call<number>('lab', 'records', 'count')} records`);
  log('clinic', `metrics: ${stats.table()}`);
} finally {
  await clinic.close();
  await lab.close();
  log('clinic', 'closed');
}
