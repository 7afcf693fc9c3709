/**
 * Heartbeats, PostTroll's way: a publisher publishes `/heartbeat/<service>`
 * (type `beat`, data `{"min_interval": seconds}`) every interval, so that a
 * subscriber can tell a silent publisher from a quiet one
 * ({@link ServiceSubscriber}'s `heartbeat` option).
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import type { Publisher } from '../pubsub/publisher.js';

/** Default interval between heartbeats: 10 s. */
export const DEFAULT_HEARTBEAT_INTERVAL = 10_000;

/** The subject of `service`'s heartbeats. */
export function heartbeatSubject(service: string): string {
  return `/heartbeat/${service}`;
}

/** A running heartbeat; `stop()` ends it (idempotent). */
export interface Heartbeat {
  readonly service: string;
  readonly interval: number;
  /** Heartbeats published so far. */
  readonly count: number;
  stop(): void;
}

/**
 * Publishes a heartbeat on `/heartbeat/<service>` now and every `interval`
 * ms (one unref'd timer) until `stop()` or the publisher closes.
 * @throws InvalidArgumentError for a bad service name or interval.
 */
export function startHeartbeat(publisher: Publisher, service: string, interval = DEFAULT_HEARTBEAT_INTERVAL): Heartbeat {
  if (typeof service !== 'string' || service === '' || /\s/.test(service))
    throw new InvalidArgumentError(`heartbeat: bad service name ${JSON.stringify(service)}`);
  if (!(Number.isFinite(interval) && interval >= 10)) throw new InvalidArgumentError(`heartbeat: interval must be at least 10 ms, got ${interval}`);
  const subject = heartbeatSubject(service);
  const data = { min_interval: interval / 1000 };
  let count = 0;
  let timer: NodeJS.Timeout | null = null;
  const beat = (): void => {
    if (publisher.closed) return stop();
    publisher.publish(subject, 'beat', data);
    count++;
  };
  const stop = (): void => {
    if (timer !== null) clearInterval(timer);
    timer = null;
  };
  beat();
  timer = setInterval(beat, interval);
  timer.unref();
  return {
    service,
    interval,
    get count() {
      return count;
    },
    stop,
  };
}
