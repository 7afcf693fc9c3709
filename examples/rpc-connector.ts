/**
 * RPC, the calling peer — counterpart of snakeMQ's examples/rpc1_connector.py.
 *
 * Peer "soldier" connects to "boss" and calls its object "abc" through a
 * typed proxy (`client.proxy<Abc>()`: argument and return types are checked
 * at compile time), shows how a remote exception and an unknown method
 * arrive, and sends a signal. Calls and signals from one peer are handled in
 * order, so the call after the signal sees it counted.
 *
 *   npx tsx examples/rpc-connector.ts                        # also starts rpc-listener.ts
 *   npx tsx examples/rpc-connector.ts tcp://127.0.0.1:4000
 *
 * In an application, import from 'snakemq-ts' instead of '../lib/index.js'.
 */
import { Link, Packeter, Messaging, RpcClient, RpcRemoteError, SnakeMQError } from '../lib/index.js';
import type { Abc } from './rpc-listener.js'; // the type only: no code of the server is loaded
import { deadline, isChild, startPeer } from './support/processes.js';

deadline(40_000);
const log = (text: string) => console.log(`[soldier] ${text}`);

let url = process.argv[2];
const listener = !isChild && url === undefined ? startPeer('rpc-listener.ts', ['tcp://127.0.0.1:0']) : undefined;
if (listener) url = (await listener.waitFor(/listening on (\S+),/))[1];

const link = new Link();
const messaging = new Messaging('soldier', new Packeter(link));
const client = new RpcClient(messaging, { timeout: 5000 });
link.addConnector(url!);
log(`connecting to ${url}`);

const abc = client.proxy<Abc>('boss', 'abc', { signals: ['mysignal'] });

// The first call waits (within its timeout) for boss to be connected.
log(`abc.getFo() = ${JSON.stringify(await abc.getFo())}`);
log(`abc.add(2, 3) = ${await abc.add(2, 3)}`);

try {
  await abc.fail();
} catch (error) {
  if (!(error instanceof RpcRemoteError)) throw error;
  log(`abc.fail() threw remotely: ${error.remoteName}: ${error.message} (${error.code})`);
  log(`  remote stack starts with: ${error.remoteStack?.split('\n')[0]}`);
}

try {
  await client.call('boss', 'abc', 'noSuchMethod'); // untyped call: anything goes at compile time
} catch (error) {
  if (!(error instanceof SnakeMQError)) throw error;
  log(`abc.noSuchMethod(): ${error.name} (${error.code})`);
}

await abc.mysignal('hello from soldier'); // resolves once queued: no reply for signals
log('signal sent');
log(`abc.signalsSeen() = ${await abc.signalsSeen()}`);

await client.close();
await messaging.close();
log('closed');
await listener?.succeeded();
