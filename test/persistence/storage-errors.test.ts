import { execFileSync } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Message } from '../../lib/messaging/index.js';
import { SqliteQueuesStorage } from '../../lib/storage/sqlite.js';
import { StorageError, type SnakeMQError } from '../../lib/errors.js';
import { closeAllPeers, createPeer } from '../helpers/peers.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'smq-storage-'));
});
afterEach(async () => {
  await closeAllPeers();
  await chmod(dir, 0o755).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

describe('Messaging with failing storage', () => {
  it('a full disk: the persistent send rejects with a StorageError and the message is dropped with an event, not silently', async () => {
    const storage = await SqliteQueuesStorage.open(join(dir, 'full.sqlite'), { maxPageCount: 8 });
    const peer = createPeer('bob', { storage });
    await peer.messaging.ready;
    const drops: SnakeMQError[] = [];
    peer.messaging.on('drop', (_i, _m, reason) => drops.push(reason));
    const big = Buffer.alloc(64 * 1024, 1);
    const d = peer.messaging.send('alice', new Message(big, { persistent: true }));
    const err = await d.persisted().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(StorageError);
    await expect(d.delivered()).rejects.toBeInstanceOf(StorageError);
    expect(drops).toHaveLength(1);
    expect(peer.messaging.queueLength('alice')).toBe(0);
  });

  it('persisted() settles only after the commit, and the message is in the file then', async () => {
    const file = join(dir, 'ok.sqlite');
    const storage = await SqliteQueuesStorage.open(file);
    const peer = createPeer('bob', { storage });
    await peer.messaging.ready;
    const d = peer.messaging.send('alice', new Message('keep me', { persistent: true }));
    expect(d.state).toBe('queued');
    await d.persisted();
    expect(d.state).toBe('persisted');
    // The file is locked by this process's storage: copy it (with its WAL) from another process, as it is now.
    const copy = join(dir, 'copy.sqlite');
    execFileSync('cp', [file, copy]);
    execFileSync('cp', [`${file}-wal`, `${copy}-wal`]);
    const again = await SqliteQueuesStorage.open(copy);
    try {
      const queues = await again.load();
      expect(queues.map((q) => [q.ident, q.messages.map((m) => m.data.toString())])).toEqual([['alice', ['keep me']]]);
    } finally {
      await again.close();
    }
  });

  it('stored queues are loaded back in order, before messages sent after the restart', async () => {
    const file = join(dir, 'order.sqlite');
    const first = createPeer('bob', { storage: await SqliteQueuesStorage.open(file) });
    await first.messaging.ready;
    const ds = [0, 1, 2].map((i) => first.messaging.send('alice', new Message(`old${i}`, { persistent: true, ttl: 3600 })));
    await Promise.all(ds.map((d) => d.persisted()));
    await first.close();
    const second = createPeer('bob', { storage: await SqliteQueuesStorage.open(file) });
    second.messaging.send('alice', new Message('new', { persistent: true }));
    await second.messaging.ready;
    expect(second.messaging.queueLength('alice')).toBe(4);
    const alice = createPeer('alice');
    const got: string[] = [];
    const done = new Promise<void>((r) => alice.messaging.on('message', (_c, _i, m) => got.push(m.data.toString()) === 4 && r()));
    const url = await second.link.addListener('tcp://127.0.0.1:0');
    alice.link.addConnector(url, { reconnectDelay: () => 50 });
    await done;
    expect(got).toEqual(['old0', 'old1', 'old2', 'new']);
  });
});
