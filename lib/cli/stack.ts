import { ErrorCode, type SnakeMQError } from '../errors.js';
import { Link, type ConnectorOptions, type ListenerOptions, type TlsOptions } from '../link/index.js';
import { Messaging, type MessagingOptions } from '../messaging/index.js';
import { Packeter } from '../packeter/index.js';
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

/**
 * A Link + Packeter + Messaging (+ optional SQLite storage) configured from
 * the common options, with the command's timeout, signal handling and
 * fatal-error reporting.
 */
export class Stack {
  readonly link: Link;
  readonly messaging: Messaging;
  readonly status: Status;
  /** Rejects with a {@link Failure} or {@link Stopped} when the command must end early. */
  private readonly aborted: Promise<never>;
  private abort!: (error: Error) => void;
  private readonly deadline: number | undefined;
  private readonly timeoutSeconds: number | undefined;
  private readonly options: CommonOptions;
  private readonly reported = new Set<string>();
  private closing: Promise<void> | null = null;
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    if (this.closing !== null) process.exit(128 + (SIGNALS[signal as keyof typeof SIGNALS] ?? 0));
    this.abort(new Stopped(128 + (SIGNALS[signal as keyof typeof SIGNALS] ?? 0)));
  };
  private readonly onStdoutError = (error: NodeJS.ErrnoException): void => {
    // `smq listen | head -3`: the reader went away; stop quietly.
    this.abort(error.code === 'EPIPE' ? new Stopped(0) : new Failure(`cannot write to stdout: ${error.message}`));
  };

  private constructor(options: CommonOptions, storage: QueuesStorage | null, status: Status, messagingOptions?: MessagingOptions) {
    this.options = options;
    this.status = status;
    this.timeoutSeconds = options.timeout;
    this.deadline = options.timeout === undefined ? undefined : Date.now() + options.timeout * 1000;
    this.aborted = new Promise<never>((_resolve, reject) => (this.abort = reject));
    this.aborted.catch(() => undefined);
    this.link = new Link();
    this.messaging = new Messaging(options.ident, new Packeter(this.link), { ...messagingOptions, storage });

    this.link.on('connectFailed', (endpoint, error) => this.connectFailed(endpoint, error));
    this.link.on('acceptFailed', (endpoint, error) => status.note(`rejected a connection on ${endpoint}: ${error.message}`));
    this.link.on('connect', (info) => {
      if (info.side === 'connector') this.reported.delete(info.endpoint);
    });
    this.messaging.on('connect', (_connId, ident) => status.note(`connected to ${ident}`));
    this.messaging.on('disconnect', (_connId, ident) => status.note(`disconnected from ${ident}`));
    this.messaging.on('protocolError', (_connId, error) => status.note(`protocol error: ${error.message}`));
    for (const signal of Object.keys(SIGNALS)) process.on(signal, this.onSignal);
    process.stdout.on('error', this.onStdoutError);
  }

  /** Opens the storage (if any) and the messaging, and waits until stored queues are loaded. */
  static async open(options: CommonOptions, messagingOptions?: MessagingOptions): Promise<Stack> {
    let storage: QueuesStorage | null = null;
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
    }
    const stack = new Stack(options, storage, new Status(), messagingOptions);
    try {
      await stack.messaging.ready;
    } catch (error) {
      await stack.close();
      throw new Failure(`cannot load --storage ${options.storage}: ${messageOf(error)}`);
    }
    return stack;
  }

  /** Starts the listeners (printing `listening on URL` on stderr with the bound port) and the connectors. */
  async start(): Promise<void> {
    const { listen, connect, tls } = this.options;
    const anyTls = listen.some((e) => e.tls) || connect.some((e) => e.tls);
    if (!anyTls && (tls.cert !== undefined || tls.ca !== undefined)) {
      this.status.note('smq: warning: --tls-* options only apply to tls:// and unix+tls:// endpoints');
    }
    for (const endpoint of listen) {
      const options: ListenerOptions = {};
      if (endpoint.tls) {
        const t: TlsOptions = { cert: tls.cert!, key: tls.key! };
        // With a CA, listeners require and verify client certificates: mutual TLS.
        if (tls.ca !== undefined) Object.assign(t, { ca: tls.ca, requestCert: true });
        options.tls = t;
      }
      let url: string;
      try {
        url = await this.link.addListener(endpoint.url, options);
      } catch (error) {
        throw new Failure(messageOf(error));
      }
      this.status.note(`listening on ${url}`);
    }
    for (const endpoint of connect) {
      const options: ConnectorOptions = {};
      if (endpoint.tls) {
        const t: TlsOptions = {};
        if (tls.cert !== undefined) Object.assign(t, { cert: tls.cert, key: tls.key });
        if (tls.ca !== undefined) t.ca = tls.ca;
        options.tls = t;
      }
      try {
        this.link.addConnector(endpoint.url, options);
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
        await Promise.race([this.messaging.close().catch((error: unknown) => this.status.note(`smq: warning: close failed: ${messageOf(error)}`)), grace]);
      } finally {
        clearTimeout(timer);
        for (const signal of Object.keys(SIGNALS)) process.off(signal, this.onSignal);
        process.stdout.off('error', this.onStdoutError);
      }
    })();
    return this.closing;
  }
}
