/**
 * One per Messaging: takes the published and confirmation frames (one
 * receive hook each) and the connection events, and routes them to the
 * {@link Subscriber} that subscribes at the sending publisher. One
 * Subscriber per publisher per Messaging, so routing is a map lookup.
 * It stays until the Messaging closes: published frames still in flight
 * after a Subscriber closed are dropped here, not handed to the
 * application's `message` listeners as if they were its own messages.
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import { CONFIRM_PREFIX, PUBLISH_PREFIX } from './frames.js';
import type { PubSubTransport } from './transport.js';

/** What the hub calls on a subscriber. */
export interface HubClient {
  onPublished(publisher: string, data: Buffer): void;
  onConfirm(publisher: string, data: Buffer): void;
  onConnect(publisher: string): void;
  onDisconnect(publisher: string): void;
  onTransportClose(): void;
}

const hubs = new WeakMap<PubSubTransport, SubscriberHub>();

export class SubscriberHub {
  private readonly byPublisher = new Map<string, HubClient>();
  private readonly clients = new Set<HubClient>();
  private readonly unhooks: (() => void)[];

  /** The hub of `transport`, created on first use. */
  static of(transport: PubSubTransport): SubscriberHub {
    let hub = hubs.get(transport);
    if (hub === undefined) hubs.set(transport, (hub = new SubscriberHub(transport)));
    return hub;
  }

  private constructor(private readonly transport: PubSubTransport) {
    this.unhooks = [
      transport.addReceiveHook(PUBLISH_PREFIX, (_c, ident, m) => this.byPublisher.get(ident)?.onPublished(ident, m.data)),
      transport.addReceiveHook(CONFIRM_PREFIX, (_c, ident, m) => this.byPublisher.get(ident)?.onConfirm(ident, m.data)),
    ];
    transport.on('connect', this.onConnect);
    transport.on('disconnect', this.onDisconnect);
    transport.on('close', this.onClose);
  }

  /** @throws InvalidArgumentError when another open Subscriber on this messaging already subscribes at one of `publishers`. */
  register(client: HubClient, publishers: readonly string[]): void {
    for (const p of publishers) {
      if (this.byPublisher.has(p))
        throw new InvalidArgumentError(`Subscriber: another Subscriber on this messaging already subscribes at '${p}' (use one, with all its topics)`);
    }
    for (const p of publishers) this.byPublisher.set(p, client);
    this.clients.add(client);
  }

  /** Routes one more publisher to `client` (registered already). @throws InvalidArgumentError as {@link register}. */
  add(client: HubClient, publisher: string): void {
    const owner = this.byPublisher.get(publisher);
    if (owner === client) return;
    if (owner !== undefined) throw new InvalidArgumentError(`Subscriber: another Subscriber on this messaging already subscribes at '${publisher}'`);
    this.byPublisher.set(publisher, client);
  }

  /** Stops routing `publisher` to `client`. */
  remove(client: HubClient, publisher: string): void {
    if (this.byPublisher.get(publisher) === client) this.byPublisher.delete(publisher);
  }

  unregister(client: HubClient): void {
    if (!this.clients.delete(client)) return;
    for (const [p, c] of this.byPublisher) if (c === client) this.byPublisher.delete(p);
  }

  private readonly onConnect = (_connId: number, ident: string): void => this.byPublisher.get(ident)?.onConnect(ident);
  private readonly onDisconnect = (_connId: number, ident: string): void => this.byPublisher.get(ident)?.onDisconnect(ident);
  private readonly onClose = (): void => {
    for (const c of [...this.clients]) c.onTransportClose();
    for (const u of this.unhooks) u();
    this.transport.off('connect', this.onConnect);
    this.transport.off('disconnect', this.onDisconnect);
    this.transport.off('close', this.onClose);
    hubs.delete(this.transport);
  };
}
