/**
 * A mirror of the listeners registered on an eventemitter3 emitter (which
 * keeps them in a private field): the facade's `on`/`once`/`off`… overrides
 * keep it in step, so that dispatch can call one plain listener directly and
 * call several one by one (a listener that throws does not keep the others
 * from an event) without reading the emitter's internals.
 * @module
 */

/** One registration, as eventemitter3 makes it (`context` defaults to the emitter). */
export interface Registered {
  readonly fn: (...args: never[]) => void;
  readonly context: unknown;
  readonly once: boolean;
}

/** */
export class ListenerMirror {
  private readonly byEvent = new Map<string | symbol, Registered[]>();

  /** The registrations of `event` (do not modify), or undefined when there is none. */
  get(event: string | symbol): readonly Registered[] | undefined {
    return this.byEvent.get(event);
  }

  add(event: string | symbol, fn: (...args: never[]) => void, context: unknown, once: boolean): void {
    const list = this.byEvent.get(event);
    const entry: Registered = { fn, context, once };
    if (list === undefined) this.byEvent.set(event, [entry]);
    else list.push(entry);
  }

  /** Removes as eventemitter3's `removeListener` does: all of `event` without `fn`, else each match of fn (and once, context when given). */
  remove(event: string | symbol, fn: unknown, context: unknown, once: unknown): void {
    const list = this.byEvent.get(event);
    if (list === undefined) return;
    if (!fn) {
      this.byEvent.delete(event);
      return;
    }
    const kept = list.filter((l) => l.fn !== fn || (once && !l.once) || (context && l.context !== context));
    if (kept.length === 0) this.byEvent.delete(event);
    else this.byEvent.set(event, kept);
  }

  /** Removes every registration, or those of `event`. */
  clear(event?: string | symbol): void {
    if (event === undefined) this.byEvent.clear();
    else this.byEvent.delete(event);
  }
}
