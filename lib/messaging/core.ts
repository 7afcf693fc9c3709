/**
 * The state of one {@link Messaging}, shared by the modules that make up its
 * paths (peer-queue → persist → write-path → in-flight; receive-path →
 * dispatch; handshake, keepalive, backpressure). Those are functions of this
 * state rather than methods of one class: the same code and field accesses
 * as before, no indirection added on the per-message paths. Builds on the
 * Packeter below, seen only as a {@link PacketTransport}.
 * @module
 */
import { Buffer } from 'node:buffer';
import type { ConnId } from '../link/types.js';
import type { PacketTransport } from '../packeter/packet-transport.js';
import type { QueuesStorage } from '../storage/types.js';
import type { DatagramState } from './datagram.js';
import type { Hook } from './dispatch.js';
import type { Interception } from './intercept.js';
import type { PeerConn } from './handshake.js';
import { ListenerMirror, type Registered } from './listeners.js';
import type { Messaging } from './messaging.js';
import { viewOf } from './message.js';
import type { ResolvedMessagingOptions } from './options.js';
import type { PeerQueue } from './peer-queue.js';
import type { MessageStream } from './stream.js';
import type { RecentUuids } from './uuid-window.js';

/** */
export class MessagingCore {
  readonly conns = new Map<ConnId, PeerConn>();
  lastConn: PeerConn | null = null;
  inBuf: Buffer | null = null;
  inView: DataView = viewOf(Buffer.alloc(0));
  readonly byIdent = new Map<string, PeerConn>();
  readonly queues = new Map<string, PeerQueue>();
  lastQueue: PeerQueue | null = null;
  readonly dedup = new Map<string, RecentUuids>();
  readonly hooks: Hook[] = [];
  readonly streams = new Set<MessageStream>();
  readonly dirty = new Set<PeerQueue>();
  pumpTick = false;
  loaded: boolean;
  isClosed = false;
  /** Disconnected identities with nothing queued, oldest first, with when they became idle. */
  readonly idle = new Map<string, number>();
  idleTimer: NodeJS.Timeout | null = null;
  /** Connections paused because their messages filled an iterator. */
  readonly streamPaused = new Set<PeerConn>();
  readonly storage: QueuesStorage | null;
  /** The frames every new connection starts with. */
  handshake: Buffer[] = [];
  handlerWarned = false;
  /** The one plain (not `once`) `message` listener when there is exactly one: called directly (see dispatch). */
  messageListener: Registered | null = null;
  /** Anybody listens to `message`. */
  messageListened = false;
  /** What listens to the facade (eventemitter3 keeps that private): kept in step by its `on`/`off`… overrides. */
  readonly registered = new ListenerMirror();
  /** Someone listens to `sent` or `acknowledged` (they need each message's object: see write-path). */
  deliveryListened = false;
  /** Identities reached through a `udp://` connector → its connection; null while there is none (the one field `enqueue` tests, see datagram). */
  udpRoutes: Map<string, ConnId> | null = null;
  /** Datagram counters and connector bindings, made at the first udp connector or datagram. */
  datagrams: DatagramState | null = null;
  /** The interceptors (see intercept), made at the first `intercept()`. */
  interception: Interception | null = null;
  /** `interception` while a send interceptor is registered or a sent message waits for one: the one field `enqueue` tests. */
  sendIntercept: Interception | null = null;
  /** Likewise for receiving: the one field `deliver` tests. */
  receiveIntercept: Interception | null = null;
  /** The transport's `wantPeer` (the relay's), or null. */
  wantPeer: ((ident: string) => void) | null = null;
  /** Messages received and written on connections that ended (management totals). */
  closedMessagesIn = 0;
  closedMessagesOut = 0;

  constructor(
    /** The facade: events are emitted on it. */
    readonly emitter: Messaging,
    readonly identity: string,
    readonly packeter: PacketTransport,
    readonly options: Readonly<ResolvedMessagingOptions>,
  ) {
    this.storage = options.storage;
    this.loaded = this.storage === null;
  }
}
