import { readFileSync } from 'node:fs';
import { vi } from 'vitest';
import type { LinkEvents, TransportEventSource } from '../../lib/link/types.js';

/** Reads a TLS fixture (see test/fixtures/tls/make-certs.sh). */
export function fixture(name: string): Buffer {
  return readFileSync(new URL(`../fixtures/tls/${name}`, import.meta.url));
}

export const certs = {
  bob: () => ({ key: fixture('bob-key.pem'), cert: fixture('bob.pem'), ca: fixture('ca.pem') }),
  alice: () => ({ key: fixture('alice-key.pem'), cert: fixture('alice.pem'), ca: fixture('ca.pem') }),
  eve: () => ({ key: fixture('eve-key.pem'), cert: fixture('eve.pem'), ca: fixture('other-ca.pem') }),
};

type Args<E extends keyof LinkEvents> = Parameters<LinkEvents[E]>;

/** Resolves with the args of the next `event` matching `filter`; rejects after `timeoutMs`. */
export function nextEvent<E extends keyof LinkEvents>(
  source: TransportEventSource,
  event: E,
  filter: (...args: Args<E>) => boolean = () => true,
  timeoutMs = 10_000,
): Promise<Args<E>> {
  return new Promise((resolve, reject) => {
    const fn = ((...args: Args<E>) => {
      if (!filter(...args)) return;
      clearTimeout(timer);
      source.off(event, fn);
      resolve(args);
    }) as LinkEvents[E];
    const timer = setTimeout(() => {
      source.off(event, fn);
      reject(new Error(`timed out waiting for '${event}'`));
    }, timeoutMs);
    source.on(event, fn);
  });
}

/** Records every event of a transport, in order. */
export class Recorder {
  readonly events: { event: keyof LinkEvents; args: unknown[] }[] = [];
  constructor(source: TransportEventSource) {
    const names: (keyof LinkEvents)[] = ['connect', 'disconnect', 'data', 'drain', 'connectFailed', 'reconnect', 'acceptFailed'];
    for (const name of names) {
      source.on(name, ((...args: unknown[]) => this.events.push({ event: name, args })) as never);
    }
  }
  of<E extends keyof LinkEvents>(event: E): Args<E>[] {
    return this.events.filter((e) => e.event === event).map((e) => e.args as Args<E>);
  }
}

/** Waits (vi.waitFor) until `cond` is true; rejects after `timeoutMs`. */
export async function waitUntil(cond: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  await vi.waitFor(
    () => {
      if (!cond()) throw new Error(`timed out waiting for ${what}`);
    },
    { timeout: timeoutMs, interval: 5 },
  );
}

/** A fixed wait. Not used by test/link (events or vi.waitFor there); kept for other suites importing it. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The next 'close' of a socket (at once when it is already closed). */
export function closed(socket: { closed: boolean; once(event: 'close', fn: () => void): unknown }): Promise<void> {
  return socket.closed ? Promise.resolve() : new Promise((r) => socket.once('close', () => r()));
}

const WATCHED = ['TCPServerWrap', 'TCPSocketWrap', 'PipeServerWrap', 'PipeWrap', 'TLSWrap', 'Timeout'];

/** Counts of the process's active handles that a link may own. */
export function resourceCounts(): Record<string, number> {
  const counts: Record<string, number> = Object.fromEntries(WATCHED.map((k) => [k, 0]));
  for (const r of process.getActiveResourcesInfo()) if (r in counts) counts[r]!++;
  return counts;
}

/** Collects bytes per connection id. */
export class Sink {
  readonly chunks = new Map<number, Buffer[]>();
  constructor(source: TransportEventSource) {
    source.on('data', (id, chunk) => {
      let list = this.chunks.get(id);
      if (!list) this.chunks.set(id, (list = []));
      list.push(chunk);
    });
  }
  bytes(id: number): Buffer {
    return Buffer.concat(this.chunks.get(id) ?? []);
  }
  length(id: number): number {
    return (this.chunks.get(id) ?? []).reduce((n, c) => n + c.length, 0);
  }
}
