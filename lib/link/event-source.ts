import { EventEmitter } from 'eventemitter3';
import type { LinkEvents, TransportEventSource } from './types.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- eventemitter3's own listener type
type AnyListener = (...args: any[]) => void;

/** The emitter behind a {@link TypedEventSource}, typed by event. @internal */
export type LinkEmitter = EventEmitter<LinkEvents>;

/**
 * Typed `on`/`once`/`off` over a private emitter. Link and Throttle extend
 * this rather than EventEmitter because snakeMQ's `addListener`/`removeListener`
 * (network listeners) would clash with EventEmitter's methods of those names.
 *
 */
export abstract class TypedEventSource implements TransportEventSource {
  readonly #events = new EventEmitter();

  /** Subscribe to an event. */
  on<E extends keyof LinkEvents>(event: E, fn: LinkEvents[E]): this {
    this.#events.on(event, fn as AnyListener);
    return this;
  }

  /** Subscribe to the next occurrence of an event only. */
  once<E extends keyof LinkEvents>(event: E, fn: LinkEvents[E]): this {
    this.#events.once(event, fn as AnyListener);
    return this;
  }

  /** Unsubscribe `fn`, or every subscriber of `event` when `fn` is omitted. */
  off<E extends keyof LinkEvents>(event: E, fn?: LinkEvents[E]): this {
    this.#events.off(event, fn as AnyListener | undefined);
    return this;
  }

  /** Number of subscribers of an event. */
  listenerCount(event: keyof LinkEvents): number {
    return this.#events.listenerCount(event);
  }

  /**
   * The emitter itself, for the link's own modules: they emit on it directly
   * (per-chunk `data` without one more call in between).
   * @internal
   */
  protected get emitter(): LinkEmitter {
    return this.#events as unknown as LinkEmitter;
  }

  protected emit<E extends keyof LinkEvents>(event: E, ...args: Parameters<LinkEvents[E]>): void {
    this.#events.emit(event, ...args);
  }
}
