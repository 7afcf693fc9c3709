import type { Delivery } from '../messaging/types.js';
import type { Message } from '../messaging/message.js';

/**
 * What publish/subscribe needs from the messaging layer: {@link Messaging}
 * (and a Peer's messaging) satisfies it. Frames travel as ordinary messages
 * taken by a receive hook on their prefix (see frames.ts).
 */
export interface PubSubTransport {
  /** This peer's own identity. */
  readonly identity: string;
  /** Whether `close()` was called. */
  readonly closed: boolean;
  send(ident: string, message: Message): Delivery;
  isConnected(ident: string): boolean;
  /** Asks for a connection to `ident` (relays are asked for a route; see `Messaging.reach`). */
  reach?(ident: string): void;
  /** Whether the queue of `ident` is below its high-water mark (`false` until `drain`). */
  writable(ident: string): boolean;
  /** Messages queued and in flight for `ident`. */
  queueLength(ident: string): number;
  addReceiveHook(matcher: string | Uint8Array | RegExp, handler: (connId: number, ident: string, message: Message) => void): () => void;
  on(event: 'close', fn: () => void): unknown;
  on(event: 'connect' | 'disconnect', fn: (connId: number, ident: string) => void): unknown;
  on(event: 'drain', fn: (ident: string) => void): unknown;
  off(event: 'close', fn: () => void): unknown;
  off(event: 'connect' | 'disconnect', fn: (connId: number, ident: string) => void): unknown;
  off(event: 'drain', fn: (ident: string) => void): unknown;
}
