import { afterEach, describe, expect, it, vi } from 'vitest';
import { startHeartbeat } from '../../lib/discovery/heartbeat.js';
import { Publisher } from '../../lib/pubsub/index.js';
import { closeAllPeers, createPeer } from '../helpers/peers.js';

afterEach(async () => {
  vi.useRealTimers();
  await closeAllPeers();
});

describe('heartbeat', () => {
  it('publishes /heartbeat/<service> beat {min_interval} now and every interval until stopped', async () => {
    vi.useFakeTimers();
    const p = createPeer('radar');
    const pub = new Publisher(p.messaging);
    const spy = vi.spyOn(pub, 'publish');
    const hb = startHeartbeat(pub, 'radar', 5_000);
    expect(spy).toHaveBeenLastCalledWith('/heartbeat/radar', 'beat', { min_interval: 5 });
    vi.advanceTimersByTime(15_000);
    expect(hb.count).toBe(4);
    hb.stop();
    hb.stop();
    vi.advanceTimersByTime(15_000);
    expect(spy).toHaveBeenCalledTimes(4);
  });

  it('stops by itself when the publisher is closed; refuses bad arguments', async () => {
    vi.useFakeTimers();
    const p = createPeer('radar');
    const pub = new Publisher(p.messaging);
    const hb = startHeartbeat(pub, 'radar', 1_000);
    await pub.close();
    vi.advanceTimersByTime(5_000);
    expect(hb.count).toBe(1);
    expect(() => startHeartbeat(pub, 'has space', 1_000)).toThrow(/bad service name/);
    expect(() => startHeartbeat(pub, 'x', 1)).toThrow(/at least 10 ms/);
  });
});
