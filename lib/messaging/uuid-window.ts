import { randomBytes } from 'node:crypto';

const INITIAL_SLOTS = 1024;
const seed = randomBytes(4).readUInt32LE(0);

/**
 * The set of recently seen message uuids of one peer, to recognise re-sent
 * messages. Remembers at least the last `window` uuids (and at most twice
 * that): two generations of open-addressing hash tables over `Uint32Array`s,
 * compared exactly, with no per-message allocation. The hash is seeded per
 * process so that a peer cannot craft colliding uuids. @internal
 */
export class UuidWindow {
  private readonly generation: number;
  private cur: Uint32Array;
  private prev: Uint32Array;
  private curCount = 0;
  private curZero = false;
  private prevZero = false;

  constructor(window: number) {
    this.generation = Math.max(1, window);
    const slots = Math.min(INITIAL_SLOTS, nextPow2(this.generation * 2));
    this.cur = new Uint32Array(slots * 4);
    this.prev = new Uint32Array(4);
  }

  /** Records the 16-byte uuid at `p[off..off+16)`; returns false when it was seen already. */
  add(p: Uint8Array, off: number): boolean {
    const w0 = (p[off]! | (p[off + 1]! << 8) | (p[off + 2]! << 16) | (p[off + 3]! << 24)) >>> 0;
    const w1 = (p[off + 4]! | (p[off + 5]! << 8) | (p[off + 6]! << 16) | (p[off + 7]! << 24)) >>> 0;
    const w2 = (p[off + 8]! | (p[off + 9]! << 8) | (p[off + 10]! << 16) | (p[off + 11]! << 24)) >>> 0;
    const w3 = (p[off + 12]! | (p[off + 13]! << 8) | (p[off + 14]! << 16) | (p[off + 15]! << 24)) >>> 0;
    if ((w0 | w1 | w2 | w3) === 0) {
      // All-zero marks an empty slot, so the all-zero uuid is tracked by flags.
      if (this.curZero || this.prevZero) return false;
      this.curZero = true;
      this.counted();
      return true;
    }
    const h = hash(w0, w1, w2, w3);
    if (find(this.prev, h, w0, w1, w2, w3) >= 0) return false;
    const slot = find(this.cur, h, w0, w1, w2, w3);
    if (slot >= 0) return false;
    const at = -slot - 1;
    const t = this.cur;
    t[at] = w0;
    t[at + 1] = w1;
    t[at + 2] = w2;
    t[at + 3] = w3;
    this.counted();
    return true;
  }

  private counted(): void {
    this.curCount++;
    if (this.curCount >= this.generation) {
      this.prev = this.cur;
      this.prevZero = this.curZero;
      this.cur = new Uint32Array(this.prev.length);
      this.curZero = false;
      this.curCount = 0;
    } else if (this.curCount * 2 > this.cur.length / 4) {
      this.grow();
    }
  }

  private grow(): void {
    const old = this.cur;
    const t = new Uint32Array(old.length * 2);
    for (let i = 0; i < old.length; i += 4) {
      const w0 = old[i]!, w1 = old[i + 1]!, w2 = old[i + 2]!, w3 = old[i + 3]!;
      if ((w0 | w1 | w2 | w3) === 0) continue;
      const at = -find(t, hash(w0, w1, w2, w3), w0, w1, w2, w3) - 1;
      t[at] = w0;
      t[at + 1] = w1;
      t[at + 2] = w2;
      t[at + 3] = w3;
    }
    this.cur = t;
  }
}

function hash(w0: number, w1: number, w2: number, w3: number): number {
  let h = Math.imul(w0 ^ seed, 0x9e3779b1);
  h = Math.imul(h ^ (h >>> 15) ^ w1, 0x85ebca77);
  h = Math.imul(h ^ (h >>> 13) ^ w2, 0xc2b2ae3d);
  h = Math.imul(h ^ (h >>> 16) ^ w3, 0x27d4eb2f);
  return (h ^ (h >>> 15)) >>> 0;
}

/** Index of the matching slot (word offset), or `-(free slot offset) - 1`. */
function find(t: Uint32Array, h: number, w0: number, w1: number, w2: number, w3: number): number {
  const mask = (t.length >>> 2) - 1;
  let i = h & mask;
  for (;;) {
    const at = i << 2;
    const a = t[at]!, b = t[at + 1]!, c = t[at + 2]!, d = t[at + 3]!;
    if ((a | b | c | d) === 0) return -at - 1;
    if (a === w0 && b === w1 && c === w2 && d === w3) return at;
    i = (i + 1) & mask;
  }
}

function nextPow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/**
 * The uuids last received from one peer, for recognising re-sent messages
 * cheaply: every message is only recorded (a 16-byte copy into a ring), and
 * only messages the sender marked as re-sent are looked up — in an index
 * built from the ring when the first one arrives, kept while re-sent messages
 * keep coming (they always come first on a connection) and dropped at the
 * first message that is not re-sent. @internal
 */
export class RecentUuids {
  private ring: Uint8Array;
  private next = 0;
  private filled = 0;
  private index: UuidWindow | null = null;

  constructor(private readonly window: number) {
    this.ring = new Uint8Array(Math.min(window, 1024) * 16);
  }

  /** Records a message that was not re-sent. */
  record(p: Uint8Array, off: number): void {
    this.index = null;
    this.store(p, off);
  }

  /** Records a re-sent message; returns false when its uuid was seen within the window. */
  checkResent(p: Uint8Array, off: number): boolean {
    if (this.index === null) {
      const index = new UuidWindow(this.window);
      const ring = this.ring;
      for (let i = 0; i < this.filled; i++) index.add(ring, i * 16);
      this.index = index;
    }
    if (!this.index.add(p, off)) return false;
    this.store(p, off);
    return true;
  }

  private store(p: Uint8Array, off: number): void {
    let ring = this.ring;
    const slots = ring.length >>> 4;
    if (this.next === slots) {
      if (slots < this.window) {
        const grown = new Uint8Array(Math.min(this.window, slots * 2) * 16);
        grown.set(ring);
        ring = this.ring = grown;
      } else this.next = 0;
    }
    const at = this.next * 16;
    for (let i = 0; i < 16; i++) ring[at + i] = p[off + i]!;
    this.next++;
    if (this.filled < this.next) this.filled = this.next;
  }
}
