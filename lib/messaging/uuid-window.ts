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
    const v = new DataView(p.buffer, p.byteOffset + off, 16);
    return this.addWords(v.getUint32(0), v.getUint32(4), v.getUint32(8), v.getUint32(12));
  }

  /** {@link add} for a uuid given as four 32-bit words. */
  addWords(w0: number, w1: number, w2: number, w3: number): boolean {
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
      const w0 = old[i]!,
        w1 = old[i + 1]!,
        w2 = old[i + 2]!,
        w3 = old[i + 3]!;
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
    const a = t[at]!,
      b = t[at + 1]!,
      c = t[at + 2]!,
      d = t[at + 3]!;
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
 * cheaply: every message is only recorded (four 32-bit words copied into a ring), and
 * only messages the sender marked as re-sent are looked up — in an index
 * built from the ring when the first one arrives, kept while re-sent messages
 * keep coming (they always come first on a connection) and dropped at the
 * first message that is not re-sent.
 */
export class RecentUuids {
  private ring: Uint32Array;
  private next = 0;
  private filled = 0;
  private index: UuidWindow | null = null;

  constructor(private readonly window: number) {
    // Small at first (grown by doubling): most peers send few messages, and many peers may connect.
    this.ring = new Uint32Array(Math.min(window, 16) * 4);
  }

  /** Records a message that was not re-sent; its uuid is at byte `off` of `view`. */
  record(view: DataView, off: number): void {
    this.index = null;
    this.store(view.getUint32(off), view.getUint32(off + 4), view.getUint32(off + 8), view.getUint32(off + 12));
  }

  /** Records a re-sent message; returns false when its uuid was seen within the window. */
  checkResent(view: DataView, off: number): boolean {
    if (this.index === null) {
      const index = new UuidWindow(this.window);
      const ring = this.ring;
      for (let i = 0; i < this.filled * 4; i += 4) index.addWords(ring[i]!, ring[i + 1]!, ring[i + 2]!, ring[i + 3]!);
      this.index = index;
    }
    const w0 = view.getUint32(off),
      w1 = view.getUint32(off + 4),
      w2 = view.getUint32(off + 8),
      w3 = view.getUint32(off + 12);
    if (!this.index.addWords(w0, w1, w2, w3)) return false;
    this.store(w0, w1, w2, w3);
    return true;
  }

  private store(w0: number, w1: number, w2: number, w3: number): void {
    let ring = this.ring;
    const slots = ring.length >>> 2;
    if (this.next === slots) {
      if (slots < this.window) {
        const grown = new Uint32Array(Math.min(this.window, slots * 2) * 4);
        grown.set(ring);
        ring = this.ring = grown;
      } else this.next = 0;
    }
    const at = this.next * 4;
    ring[at] = w0;
    ring[at + 1] = w1;
    ring[at + 2] = w2;
    ring[at + 3] = w3;
    this.next++;
    if (this.filled < this.next) this.filled = this.next;
  }
}
