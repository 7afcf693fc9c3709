import { ErrorCode, type SnakeMQError } from '../errors.js';
import type { Link, TlsOptions } from '../link/index.js';
import type { Messaging, MessagingOptions } from '../messaging/index.js';
import { createPeer, type Peer } from '../peer/index.js';
import { discoveryConfig, keepaliveOptions, type KeepaliveOptions } from '../discovery/config.js';
import type { QueuesStorage } from '../storage/index.js';
import type { CommonOptions } from './args.js';
import { Failure, Stopped } from './errors.js';

const TIMEOUT = Symbol('timeout');
const SIGNALS = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 } as const;
/** How long `close()` may take before the command gives up on a clean shutdown. */
const CLOSE_GRACE_MS = 10_000;

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Diagnostics on stderr, aware of a progress line being shown. */
export class Status {
  private progressShown = false;

  /** One line on stderr. */
  note(text: string): void {
    if (this.progressShown) {
      process.stderr.write('\r\x1b[K');
      this.progressShown = false;
    }
    process.stderr.write(`${text.trimEnd()}\n`);
  }

  /** Replaces the progress line (terminals only; the caller checks `isTTY`). */
  progress(text: string): void {
    process.stderr.write(`\r\x1b[K${text}`);
    this.progressShown = true;
  }

  /** Removes the progress line. */
  clearProgress(): void {
    if (!this.progressShown) return;
    process.stderr.write('\r\x1b[K');
    this.progressShown = false;
  }
}

/** How {@link Stack.open} is set up beyond the common options. */
export interface StackSetup {
  /** Options of the peer's Messaging. */
  messaging?: Omit<MessagingOptions, 'storage'>;
  /** Wraps the opened `--storage` (e.g. to count what is stored). */
  wrapStorage?: (storage: QueuesStorage) => QueuesStorage;
  /** The identity behind `--connect udp://…` endpoints (`smq send --to`); without it those are refused. */
  datagramIdentity?: string;
}

/**
 * The command's peer ({@link createPeer}, with the `--storage` file) configured
 * from the common options, with the command's timeout, signal handling and
 * fatal-error reporting.
 */
export class Stack {
  readonly peer: Peer;
  readonly status: Status;
  /** Rejects with a {@link Failure} or {@link Stopped} when the command must end early. */
  private readonly aborted: Promise<never>;
  private abort!: (error: Error) => void;
  private readonly deadline: number | undefined;
  private readonly timeoutSeconds: number | undefined;
  private readonly options: CommonOptions;
  private readonly reported = new Set<string>();
  private closing: Promise<void> | null = null;
  private datagramIdentity: string | undefined;
  private interrupted = false;
  /** Said on stderr at the first signal (what the command does before it exits). */
  private stoppingNote: string | null = null;
  /** Said on stderr before an exit at once (a second signal while closing). */
  private exitNote: (() => string | null) | null = null;
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    const code = 128 + (SIGNALS[signal as keyof typeof SIGNALS] ?? 0);
    if (this.interrupted || this.closing !== null) {
      const note = this.exitNote?.();
      if (note) this.status.note(note);
      process.exit(code);
    }
    this.interrupted = true;
    if (this.stoppingNote !== null) this.status.note(this.stoppingNote);
    this.abort(new Stopped(code));
  };
  private readonly onStdoutError = (error: NodeJS.ErrnoException): void => {
    // `smq listen | head -3`: the reader went away; stop quietly.
    this.abort(error.code === 'EPIPE' ? new Stopped(0) : new Failure(`cannot write to stdout: ${error.message}`));
  };

  private constructor(options: CommonOptions, peer: Peer, status: Status) {
    this.options = options;
    this.status = status;
    this.peer = peer;
    this.timeoutSeconds = options.timeout;
    this.deadline = options.timeout === undefined ? undefined : Date.now() + options.timeout * 1000;
    this.aborted = new Promise<never>((_resolve, reject) => (this.abort = reject));
    this.aborted.catch(() => undefined);

    peer.link.on('connectFailed', (endpoint, error) => this.connectFailed(endpoint, error));
    peer.link.on('acceptFailed', (endpoint, error) => status.note(`rejected a connection on ${endpoint}: ${error.message}`));
    peer.link.on('connect', (info) => {
      if (info.side === 'connector') this.reported.delete(info.endpoint);
    });
    peer.on('connect', (_connId, ident) => status.note(`connected to ${ident}`));
    peer.on('disconnect', (_connId, ident) => status.note(`disconnected from ${ident}`));
    peer.on('protocolError', (_connId, error) => status.note(`protocol error: ${error.message}`));
    for (const signal of Object.keys(SIGNALS)) process.on(signal, this.onSignal);
    process.stdout.on('error', this.onStdoutError);
  }

  /** The peer's link. */
  get link(): Link {
    return this.peer.link;
  }

  /** The peer's messaging. */
  get messaging(): Messaging {
    return this.peer.messaging;
  }

  /**
   * Opens the storage (if any) and the peer, and waits until stored queues
   * are loaded. Listeners and connectors start with {@link Stack.start}, once
   * the command has attached its handlers.
   */
  static async open(options: CommonOptions, setup: StackSetup = {}): Promise<Stack> {
    let storage: QueuesStorage | undefined;
    if (options.storage !== undefined) {
      // Imported only when needed: sqlite3 is a native module.
      let sqlite: typeof import('../storage/sqlite.js');
      try {
        sqlite = await import('../storage/sqlite.js');
      } catch (error) {
        throw new Failure(`--storage needs the sqlite3 module, which failed to load: ${messageOf(error)}`);
      }
      const { SqliteQueuesStorage } = sqlite;
      try {
        storage = await SqliteQueuesStorage.open(options.storage, { identity: options.ident });
      } catch (error) {
        throw new Failure(`cannot open --storage ${options.storage}: ${messageOf(error)}`);
      }
      if (setup.wrapStorage) storage = setup.wrapStorage(storage);
    }
    // What operators set per machine (SNAKEMQ_TCP_KEEPALIVE…): read at start, a malformed value is an error now.
    let keepalive: KeepaliveOptions;
    try {
      keepalive = keepaliveOptions(discoveryConfig());
    } catch (error) {
      await storage?.close();
      throw new Failure(messageOf(error));
    }
    let peer: Peer;
    try {
      peer = await createPeer({
        identity: options.ident,
        storage,
        tls: tlsOptions(options),
        link: keepalive.link,
        messaging: { ...keepalive.messaging, ...setup.messaging },
        ...(options.management === undefined ? {} : { management: { allow: options.management.allow, actions: { allow: options.management.actions } } }),
      });
    } catch (error) {
      // createPeer closed the storage.
      throw new Failure(options.storage === undefined ? messageOf(error) : `cannot load --storage ${options.storage}: ${messageOf(error)}`);
    }
    const stack = new Stack(options, peer, new Status());
    stack.datagramIdentity = setup.datagramIdentity;
    return stack;
  }

  /** What to say at the first signal, before the command closes (e.g. that it is still storing). */
  onStopping(note: string): void {
    this.stoppingNote = note;
  }

  /** What to say when a second signal makes the command exit at once (e.g. what is stored and what is not). */
  onForcedExit(note: () => string | null): void {
    this.exitNote = note;
  }

  /** Starts the listeners (printing `listening on URL` on stderr with the bound port) and the connectors. */
  async start(): Promise<void> {
    const { listen, connect, tls } = this.options;
    const anyTls = listen.some((e) => e.tls) || connect.some((e) => e.tls);
    if (!anyTls && (tls.cert !== undefined || tls.ca !== undefined)) {
      this.status.note('smq: warning: --tls-* options only apply to tls:// and unix+tls:// endpoints');
    }
    for (const endpoint of listen) {
      let url: string;
      try {
        url = await this.peer.listen(endpoint.url);
      } catch (error) {
        throw new Failure(messageOf(error));
      }
      this.status.note(`listening on ${url}`);
    }
    for (const endpoint of connect) {
      const udp = endpoint.transport === 'udp';
      if (udp && this.datagramIdentity === undefined) throw new Failure(`--connect ${endpoint.url}: udp:// connectors only send, with smq send --to NAME`);
      try {
        this.peer.connect(endpoint.url, udp ? { identity: this.datagramIdentity } : undefined);
      } catch (error) {
        throw new Failure(messageOf(error));
      }
    }
  }

  private connectFailed(endpoint: string, error: SnakeMQError): void {
    if (error.code === ErrorCode.TLS) {
      // A refused certificate does not fix itself by retrying: give up.
      this.abort(new Failure(error.message));
      return;
    }
    if (this.reported.has(endpoint)) return;
    this.reported.add(endpoint);
    this.status.note(`cannot connect to ${endpoint} (${error.message}); retrying`);
  }

  /** Ends the command early (e.g. a fatal error seen by the command itself). */
  fail(error: Error): void {
    this.abort(error);
  }

  /**
   * Waits for `work`, unless the command is aborted first (fatal error,
   * signal) or `--timeout` runs out: then `onTimeout` decides (returns a
   * value or throws).
   */
  async until<T>(work: Promise<T>, onTimeout: (seconds: number) => T): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const racers: Promise<T | typeof TIMEOUT>[] = [work, this.aborted];
    if (this.deadline !== undefined) {
      const left = Math.max(0, this.deadline - Date.now());
      racers.push(new Promise((resolve) => (timer = setTimeout(() => resolve(TIMEOUT), left))));
    }
    try {
      const result = await Promise.race(racers);
      return result === TIMEOUT ? onTimeout(this.timeoutSeconds!) : result;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes everything (pending acknowledgements go out, storage is flushed). Idempotent. */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    this.closing = (async () => {
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          this.status.note('smq: warning: closing took too long; exiting anyway');
          resolve();
        }, CLOSE_GRACE_MS);
      });
      try {
        await Promise.race([this.peer.close().catch((error: unknown) => this.status.note(`smq: warning: close failed: ${messageOf(error)}`)), grace]);
      } finally {
        clearTimeout(timer);
        for (const signal of Object.keys(SIGNALS)) process.off(signal, this.onSignal);
        process.stdout.off('error', this.onStdoutError);
      }
    })();
    return this.closing;
  }
}

/**
 * The peer's TLS settings for every tls:// and unix+tls:// endpoint: the
 * certificate and key when given, and with a CA, verification against it
 * (listeners then require client certificates: mutual TLS). `{}` for a
 * connector without files: Node's CA list.
 */
function tlsOptions(options: CommonOptions): TlsOptions | undefined {
  const { tls } = options;
  if (!options.listen.some((e) => e.tls) && !options.connect.some((e) => e.tls)) return undefined;
  const out: TlsOptions = {};
  if (tls.cert !== undefined) Object.assign(out, { cert: tls.cert, key: tls.key });
  if (tls.ca !== undefined) Object.assign(out, { ca: tls.ca, requestCert: true });
  return out;
}
