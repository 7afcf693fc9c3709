import { afterEach, describe, expect, it, vi } from 'vitest';
import { MAX_AGE_MARKS, coarseNow, currentTurn, mark, markLoaded, oldestAge, unadmit, type AgeMarks } from '../../lib/messaging/queue-age.js';
import { createPeer } from '../../lib/peer/index.js';

afterEach(() => {
  vi.useRealTimers();
});

function queue(): AgeMarks {
  return { admitted: 0, count: 0, markTurn: -1, marks: [] };
}

/** What admit() does. */
function admit(q: AgeMarks): void {
  if (q.markTurn !== currentTurn) mark(q);
  q.admitted++;
  q.count++;
}

/** Ends the event-loop turn (the clock's setImmediate) and moves the clock on. */
function nextTurn(ms: number): void {
  vi.advanceTimersByTime(ms);
  vi.runOnlyPendingTimers();
}

describe('oldest queued age (queue-age)', () => {
  it('reads the clock once per turn and dates the oldest message to its turn', () => {
    vi.useFakeTimers({ toFake: ['Date', 'setImmediate'], now: 1_000_000 });
    nextTurn(0);
    const q = queue();
    expect(oldestAge(q, Date.now())).toBeNull();
    admit(q);
    admit(q);
    expect(q.marks).toEqual([0, 1_000_000]); // one mark for the turn
    const spy = vi.spyOn(Date, 'now');
    coarseNow();
    expect(spy).not.toHaveBeenCalled();
    spy.mockRestore();
    nextTurn(500);
    admit(q); // turn 2, at +500
    nextTurn(250);
    expect(oldestAge(q, Date.now())).toBe(750);
    // The two of the first turn leave (delivered, in order): the oldest is the one of +500.
    q.count -= 2;
    expect(oldestAge(q, Date.now())).toBe(250);
    q.count -= 1;
    expect(oldestAge(q, Date.now())).toBeNull();
  });

  it('keeps at most MAX_AGE_MARKS marks, coarser but never younger than the truth', () => {
    vi.useFakeTimers({ toFake: ['Date', 'setImmediate'], now: 0 });
    nextTurn(0);
    const q = queue();
    const start = Date.now();
    for (let i = 0; i < 200; i++) {
      admit(q);
      nextTurn(10);
    }
    expect(q.marks.length).toBeLessThanOrEqual(MAX_AGE_MARKS * 2 + 2);
    expect(oldestAge(q, Date.now())).toBe(Date.now() - start);
    q.count -= 100; // the first hundred left
    const age = oldestAge(q, Date.now())!;
    const truth = Date.now() - (start + 100 * 10);
    expect(age).toBeGreaterThanOrEqual(truth);
    expect(age).toBeLessThanOrEqual(truth + 100 * 10);
  });

  it('forgets the newest when they are dropped, and dates loaded messages from the load', () => {
    vi.useFakeTimers({ toFake: ['Date', 'setImmediate'], now: 5000 });
    nextTurn(0);
    const q = queue();
    admit(q);
    nextTurn(100);
    admit(q);
    admit(q);
    q.count -= 2;
    unadmit(q, 2);
    expect(q.admitted).toBe(1);
    nextTurn(50);
    expect(oldestAge(q, Date.now())).toBe(150);
    q.count += 3; // three loaded in front
    markLoaded(q);
    expect(oldestAge(q, Date.now())).toBe(0);
  });

  it('shows through Messaging.peerStats for a real queue', async () => {
    const bob = await createPeer({ identity: 'bob' });
    try {
      const t0 = Date.now();
      bob
        .send('carol', 'one')
        .delivered()
        .catch(() => undefined);
      await vi.waitFor(() => expect(bob.messaging.peerStats('carol')!.oldestAgeMs).toBeGreaterThanOrEqual(20));
      const age = bob.messaging.peerStats('carol')!.oldestAgeMs!;
      expect(age).toBeLessThanOrEqual(Date.now() - t0);
      expect(bob.messaging.peerStats('nobody')).toBeUndefined();
    } finally {
      await bob.close();
    }
  });
});
