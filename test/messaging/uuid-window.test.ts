import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { UuidWindow } from '../../lib/messaging/uuid-window.js';

describe('UuidWindow', () => {
  it('recognises every uuid of the last `window`, through table growth and generation turns', () => {
    const w = new UuidWindow(5000);
    const ids = Array.from({ length: 20_000 }, () => randomBytes(16));
    for (let i = 0; i < ids.length; i++) {
      expect(w.add(ids[i]!, 0)).toBe(true);
      if (i >= 1) expect(w.add(ids[i - 1]!, 0)).toBe(false);
      if (i >= 4999) expect(w.add(ids[i - 4999]!, 0)).toBe(false);
    }
  });

  it('forgets uuids older than twice the window', () => {
    const w = new UuidWindow(100);
    const first = randomBytes(16);
    w.add(first, 0);
    for (let i = 0; i < 250; i++) w.add(randomBytes(16), 0);
    expect(w.add(first, 0)).toBe(true);
  });

  it('compares all 16 bytes exactly (uuids differing in one byte are different)', () => {
    const w = new UuidWindow(1000);
    const base = randomBytes(16);
    expect(w.add(base, 0)).toBe(true);
    for (let i = 0; i < 16; i++) {
      const other = Buffer.from(base);
      other[i] ^= 1;
      expect(w.add(other, 0)).toBe(true);
    }
    expect(w.add(Buffer.from(base), 0)).toBe(false);
  });

  it('handles the all-zero uuid and reads at an offset', () => {
    const w = new UuidWindow(10);
    const packet = Buffer.alloc(30);
    expect(w.add(packet, 1)).toBe(true);
    expect(w.add(packet, 1)).toBe(false);
  });
});
