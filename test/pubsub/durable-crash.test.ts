import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Subscriber, type ReceivedPubMessage } from '../../lib/pubsub/index.js';
import { Child } from '../helpers/child.js';
import { closeAllPeers, createPeer, fastReconnect } from '../helpers/peers.js';

const script = join(import.meta.dirname, 'child-publisher.ts');
let dir: string;
const children: Child[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smq-durable-'));
});
afterEach(async () => {
  await Promise.all(children.splice(0).map((c) => c.kill()));
  await closeAllPeers();
  await rm(dir, { recursive: true, force: true });
});

function publisher(from: number, count: number): Child {
  const c = new Child(script, [JSON.stringify({ storage: join(dir, 'bob.sqlite'), store: join(dir, 'bob-durable.json'), from, count })]);
  children.push(c);
  return c;
}

async function subscriber(url: string) {
  const peer = createPeer('alice');
  const sub = new Subscriber(peer.messaging, { publishers: ['bob'], topics: ['/t'], durable: true });
  const got: number[] = [];
  sub.on('message', (m: ReceivedPubMessage) => got.push((m.data as { i: number }).i));
  peer.link.addConnector(url, fastReconnect);
  await sub.ready;
  return { peer, sub, got };
}

describe('durable subscription across a publisher crash (SQLite, kill -9)', () => {
  it('messages held for an away subscriber survive the kill; the restarted publisher keeps holding; all arrive in order', async () => {
    const first = publisher(0, 0);
    const url1 = (await first.line((l) => l.startsWith('url '))).slice(4);
    const alice = await subscriber(url1);
    await alice.sub.close();
    await alice.peer.close();
    await first.kill('SIGKILL');

    // Restarted: it knows alice's durable subscription from its store and holds 5 for her.
    const second = publisher(0, 5);
    await second.line((l) => l === 'done');
    expect(second.lines.filter((l) => l.startsWith('stored '))).toHaveLength(5);
    await second.kill('SIGKILL');

    const third = publisher(5, 3);
    await third.line((l) => l === 'done');
    expect(third.lines.filter((l) => l.startsWith('stored '))).toHaveLength(3);
    const url3 = third.lines.find((l) => l.startsWith('url '))!.slice(4);

    const back = await subscriber(url3);
    await vi.waitFor(() => expect(back.got).toEqual([0, 1, 2, 3, 4, 5, 6, 7]), { timeout: 20_000 });
  });
});
