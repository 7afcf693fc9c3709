import type { Delivery } from '../messaging/types.js';
import { AwayCopy, HeldCopy, written, type Copy, type CopyOutcome } from './subscriber-queue.js';

/** Where one published message went, once every copy for a connected subscriber was written or dropped. */
export interface PublishResult {
  /** Subscribers the message was for (matching, connected or durable). */
  readonly subscribers: readonly string[];
  /** Copies handed to the kernel. */
  readonly written: number;
  /** Subscribers whose copy was dropped (overflow, refused by the policy, disconnected before it was written). */
  readonly dropped: readonly string[];
  /** Durable subscribers away now: their copy waits in their queue (stored when the messaging has storage). */
  readonly held: readonly string[];
}

/**
 * What `publish()` returns: awaitable (a `PromiseLike` of a
 * {@link PublishResult}) for "written to every subscriber connected now".
 * Nothing is waited for unless it is awaited: publishing without awaiting
 * costs no promise.
 */
export class Publication implements PromiseLike<PublishResult> {
  private promise: Promise<PublishResult> | null = null;

  /** @internal */
  constructor(
    private readonly to: readonly { readonly ident: string }[],
    private readonly copies: readonly Copy[],
  ) {}

  /** How many subscribers the message was for. */
  get subscriberCount(): number {
    return this.to.length;
  }

  /** Settles once every copy for a connected subscriber was written or dropped; never rejects. */
  result(): Promise<PublishResult> {
    return (this.promise ??= this.settle());
  }

  /**
   * Settles once every copy that went to a messaging queue is as durable as
   * it will be: committed to storage for durable subscribers when the
   * messaging has storage, at once otherwise. Await it before exiting when
   * the messages held for away subscribers must survive a crash.
   */
  async stored(): Promise<void> {
    await Promise.all(
      this.copies.map((c) => {
        const d = c instanceof AwayCopy ? c.delivery : c instanceof HeldCopy ? c.delivery : c === 'dropped' ? null : c;
        return d?.persisted().catch(() => {});
      }),
    );
  }

  then<A = PublishResult, B = never>(
    onfulfilled?: ((value: PublishResult) => A | PromiseLike<A>) | null,
    onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.result().then(onfulfilled, onrejected);
  }

  private async settle(): Promise<PublishResult> {
    const outcomes = await Promise.all(this.copies.map(outcomeOf));
    const dropped: string[] = [];
    const held: string[] = [];
    let n = 0;
    for (let i = 0; i < outcomes.length; i++) {
      const o = outcomes[i];
      if (o === 'written') n++;
      else if (o === 'held') held.push(this.to[i]!.ident);
      else dropped.push(this.to[i]!.ident);
    }
    return { subscribers: this.to.map((q) => q.ident), written: n, dropped, held };
  }
}

function outcomeOf(c: Copy): Promise<CopyOutcome | 'held'> | CopyOutcome | 'held' {
  if (c === 'dropped') return c;
  if (c instanceof AwayCopy) return 'held';
  if (c instanceof HeldCopy) return c.outcome();
  return written(c as Delivery);
}
