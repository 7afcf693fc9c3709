/**
 * RPC, the serving peer — counterpart of snakeMQ's examples/rpc1_listener.py.
 *
 * Peer "boss" listens and serves an object as "abc": plain methods, an async
 * one, one that throws (the caller gets an RpcRemoteError with the remote
 * name and stack), and `mysignal`, registered as a signal (called without a
 * reply). It exits when the caller disconnects. Who listens does not matter
 * for RPC: see nat-rpc.ts for the listener calling the connector.
 *
 *   npx tsx examples/rpc-listener.ts               # also starts rpc-connector.ts
 *   npx tsx examples/rpc-listener.ts tcp://0.0.0.0:4000
 *
 * In an application, import from 'snakemq-ts' instead of '../lib/index.js'.
 */
import { pathToFileURL } from 'node:url';
import { Link, Packeter, Messaging, RpcServer } from '../lib/index.js';
import { deadline, isChild, startPeer } from './support/processes.js';

const log = (text: string) => console.log(`[boss] ${text}`);

/** The served object. Callers can share its type: rpc-connector.ts does `import type { Abc }`. */
export class Abc {
  #signals = 0;

  getFo(): string {
    return 'xcv';
  }

  async add(a: number, b: number): Promise<number> {
    await new Promise((resolve) => setTimeout(resolve, 10)); // async methods are fine
    return a + b;
  }

  fail(): never {
    throw new RangeError('abc.fail() always fails');
  }

  /** Registered as a signal: the caller gets no reply. */
  mysignal(text: string): void {
    this.#signals++;
    log(`mysignal("${text}")`);
  }

  signalsSeen(): number {
    return this.#signals;
  }
}

// Only when run, not when rpc-connector.ts imports the type above.
if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  deadline(40_000);
  const endpoint = process.argv[2] ?? 'tcp://127.0.0.1:0';
  const link = new Link();
  const messaging = new Messaging('boss', new Packeter(link));
  const server = new RpcServer(messaging);
  server.register('abc', new Abc(), { signals: ['mysignal'] });
  // A method that throws shows up here too (and is sent to the caller).
  server.on('methodError', (error, call) => log(`${call.ident} called ${call.object}.${call.method}: it threw ${String(error)}`));

  const callerLeft = new Promise<void>((resolve) => {
    messaging.on('connect', (_connId, ident) => log(`${ident} connected`));
    messaging.on('disconnect', (_connId, ident) => {
      log(`${ident} disconnected`);
      resolve();
    });
  });

  const url = await link.addListener(endpoint);
  log(`listening on ${url}, serving "abc"`);
  const connector = !isChild && process.argv[2] === undefined ? startPeer('rpc-connector.ts', [url]) : undefined;

  await callerLeft;
  await server.close();
  await messaging.close();
  log('closed');
  await connector?.succeeded();
}
