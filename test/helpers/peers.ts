import { Link } from '../../lib/link/index.js';
import { Packeter } from '../../lib/packeter/index.js';
import { Messaging, type MessagingOptions } from '../../lib/messaging/index.js';
import type { ConnectorOptions, ListenerOptions } from '../../lib/link/index.js';

export interface TestPeer {
  link: Link;
  packeter: Packeter;
  messaging: Messaging;
  close(): Promise<void>;
}

const open = new Set<TestPeer>();

/** A full stack (Link, Packeter, Messaging) for tests; `closeAllPeers` closes what is left. */
export function createPeer(ident: string, options?: MessagingOptions): TestPeer {
  const link = new Link();
  const packeter = new Packeter(link);
  const messaging = new Messaging(ident, packeter, options);
  const peer: TestPeer = {
    link,
    packeter,
    messaging,
    close: async () => {
      open.delete(peer);
      await messaging.close();
    },
  };
  open.add(peer);
  return peer;
}

export async function closeAllPeers(): Promise<void> {
  await Promise.all([...open].map((p) => p.close()));
}

/** Fast reconnects for tests. */
export const fastReconnect: ConnectorOptions = { reconnectDelay: () => 50 };

/** bob listens, alice connects; resolves once both see each other. */
export async function connectPair(
  bob: TestPeer,
  alice: TestPeer,
  endpoint = 'tcp://127.0.0.1:0',
  listenerOptions?: ListenerOptions,
  connectorOptions: ConnectorOptions = fastReconnect,
): Promise<string> {
  const url = await bob.link.addListener(endpoint, listenerOptions);
  const both = Promise.all([
    waitEvent(bob.messaging, 'connect', (_c: number, ident: string) => ident === alice.messaging.identity),
    waitEvent(alice.messaging, 'connect', (_c: number, ident: string) => ident === bob.messaging.identity),
  ]);
  alice.link.addConnector(url, connectorOptions);
  await both;
  return url;
}

/* eslint-disable @typescript-eslint/no-explicit-any */
interface Emitterish {
  on(event: any, fn: any): unknown;
  off(event: any, fn: any): unknown;
}

/** Resolves with the arguments of the first `event` matching `predicate`; rejects after `timeoutMs`. */
export function waitEvent<A extends unknown[]>(
  emitter: Emitterish,
  event: string,
  predicate: (...args: A) => boolean = () => true,
  timeoutMs = 10_000,
): Promise<A> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, handler as never);
      reject(new Error(`timed out waiting for '${event}'`));
    }, timeoutMs);
    const handler = (...args: A) => {
      if (!predicate(...args)) return;
      clearTimeout(timer);
      emitter.off(event, handler as never);
      resolve(args);
    };
    emitter.on(event, handler as never);
  });
}

/** Collects `n` messages received by `messaging` (data as utf8 strings). */
export function collect(messaging: Messaging, n: number, timeoutMs = 20_000): Promise<{ ident: string; data: string; uuid: string }[]> {
  const out: { ident: string; data: string; uuid: string }[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      messaging.off('message', handler);
      reject(new Error(`timed out after ${out.length} of ${n} messages`));
    }, timeoutMs);
    const handler = (_c: number, ident: string, m: { data: Buffer; id: string }) => {
      out.push({ ident, data: m.data.toString(), uuid: m.id });
      if (out.length === n) {
        clearTimeout(timer);
        messaging.off('message', handler);
        resolve(out);
      }
    };
    messaging.on('message', handler);
  });
}

export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
