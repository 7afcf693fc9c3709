/**
 * How old the oldest message of a queue is, without reading the clock per
 * message: entries carry no time, so a queue keeps a few marks (its
 * admission count at a time) taken at most once per event-loop turn, from
 * a clock read at most once per turn for all queues. The age is exact to
 * the turn for messages that leave in order; messages loaded from storage
 * count from when they were loaded. Read by management (lib/management).
 * @module
 */

/** Marks a queue keeps at most (pairs of admission count and time); past it every other one is let go. @internal */
export const MAX_AGE_MARKS = 32;

let counter = 0;
let turnNow = 0;
/** The current turn's number while the clock was read in it, else 0 (so a queue's last mark is never of this turn). @internal */
export let currentTurn = 0;

function endTurn(): void {
  currentTurn = 0;
}

/** Date.now() of this event-loop turn (read once, at the first call of the turn). @internal */
export function coarseNow(): number {
  if (currentTurn === 0) {
    currentTurn = ++counter;
    turnNow = Date.now();
    setImmediate(endTurn);
  }
  return turnNow;
}

/** What a queue holds for {@link oldestAge}. @internal */
export interface AgeMarks {
  /** Messages ever counted into the queue. */
  admitted: number;
  /** Messages counted now (queued and in flight). */
  count: number;
  /** The turn of the last mark. */
  markTurn: number;
  /** Flat pairs: admission count, time (ms); oldest first. */
  marks: number[];
}

/** Called (at most once per turn per queue) before a message is counted into `q`. @internal */
export function mark(q: AgeMarks): void {
  const now = coarseNow();
  q.markTurn = currentTurn;
  const marks = q.marks;
  const oldest = q.admitted - q.count;
  // Marks wholly behind the oldest message still counted are no use any more.
  let drop = 0;
  while (drop + 2 < marks.length && marks[drop + 2]! <= oldest) drop += 2;
  if (drop > 0) marks.splice(0, drop);
  if (marks.length >= MAX_AGE_MARKS * 2) {
    // Coarser rather than unbounded: keep the first mark and every other one after it.
    const kept: number[] = [marks[0]!, marks[1]!];
    for (let i = 4; i < marks.length; i += 4) kept.push(marks[i]!, marks[i + 1]!);
    q.marks = kept;
  }
  q.marks.push(q.admitted, now);
}

/** Resets the marks after messages were put at the front (loaded from storage): they count from now. @internal */
export function markLoaded(q: AgeMarks): void {
  q.admitted = Math.max(q.admitted, q.count);
  q.marks = [q.admitted - q.count, Date.now()];
  q.markTurn = -1;
}

/** Milliseconds since the oldest message counted in `q` was, or `null` for an empty queue. @internal */
export function oldestAge(q: AgeMarks, now: number): number | null {
  if (q.count <= 0) return null;
  const oldest = q.admitted - q.count;
  const marks = q.marks;
  let at = marks.length > 0 ? marks[1]! : now;
  for (let i = 0; i < marks.length && marks[i]! <= oldest; i += 2) at = marks[i + 1]!;
  return Math.max(0, now - at);
}

/** `n` of the newest messages left `q` (dropped while waiting): forgotten as if never counted in. @internal */
export function unadmit(q: AgeMarks, n: number): void {
  q.admitted -= n;
  const marks = q.marks;
  let end = marks.length;
  while (end > 2 && marks[end - 2]! >= q.admitted) end -= 2;
  marks.length = end;
}
