import { describe, expect, it } from 'vitest';
import { ClosedError } from '../../lib/errors.js';
import { Link } from '../../lib/link/index.js';
import { nextEvent } from './helpers.js';

describe('Link close and dispose', () => {
  it('close() returns the same promise every call; `await using` closes the link, its listeners and connections', async () => {
    const peer = new Link();
    try {
      let link: Link;
      let disconnected: Promise<unknown>;
      {
        await using l = new Link();
        link = l;
        const url = await l.addListener('tcp://127.0.0.1:0');
        const connected = nextEvent(peer, 'connect');
        const accepted = nextEvent(l, 'connect');
        peer.addConnector(url, { reconnectInterval: 60_000 });
        const [[info]] = await Promise.all([connected, accepted]);
        disconnected = nextEvent(peer, 'disconnect', (id) => id === info.id);
        expect(l.closed).toBe(false);
      }
      expect(link.closed).toBe(true);
      await disconnected;
      const first = link.close();
      expect(link.close()).toBe(first);
      expect(link[Symbol.asyncDispose]()).toBe(first);
      await expect(link.addListener('tcp://127.0.0.1:0')).rejects.toBeInstanceOf(ClosedError);
    } finally {
      await peer.close();
    }
  });
});
