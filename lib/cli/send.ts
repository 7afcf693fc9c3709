import { Buffer } from 'node:buffer';
import { ErrorCode, type SnakeMQError } from '../errors.js';
import { Message } from '../messaging/index.js';
import { DEFAULT_MAX_PACKET_SIZE } from '../packeter/index.js';
import { COMMON_OPTIONS, commonOptions, identity, integer, parse, required, ttl as ttlOption } from './args.js';
import { Failure, UsageError } from './errors.js';
import { Stack } from './stack.js';
import { CountingStorage } from './stored.js';

const OPTIONS = {
  ...COMMON_OPTIONS,
  to: { type: 'string' },
  count: { type: 'string' },
  size: { type: 'string' },
  ttl: { type: 'string' },
  persistent: { type: 'boolean' },
  base64: { type: 'boolean' },
} as const;

/** Largest message data: the default packet limit minus the MESSAGE frame head (25 bytes). */
const MAX_SIZE = DEFAULT_MAX_PACKET_SIZE - 25;
/** Show progress (on a terminal) from this many messages on. */
const PROGRESS_FROM = 1_000;

/** `msg <i>` padded with dots to `size` bytes. */
export function generated(i: number, size: number): Buffer {
  const text = `msg ${i}`;
  return Buffer.from(text.length >= size ? text : text + '.'.repeat(size - text.length), 'latin1');
}

/** `smq send`: sends messages and waits until they have left their queue. */
export async function send(args: string[]): Promise<void> {
  const { values, positionals } = parse('send', args, OPTIONS, true);
  const to = identity('send', 'to', required('send', values, 'to'));
  const count = integer('send', values, 'count');
  const size = integer('send', values, 'size', MAX_SIZE);
  const ttl = ttlOption('send', values);
  const persistent = values.persistent === true;
  if (count !== undefined && positionals.length > 0) throw new UsageError('give MESSAGE arguments or --count, not both', 'send');
  if (size !== undefined && count === undefined) throw new UsageError('--size goes with --count', 'send');
  if (count === undefined && positionals.length === 0) {
    throw new UsageError('nothing to send: give MESSAGE arguments or --count N (--count 0 only delivers what --storage holds)', 'send');
  }
  if (values.base64 === true && count !== undefined) throw new UsageError('--base64 applies to MESSAGE arguments, not --count', 'send');
  // Command-line arguments are text: --base64 lets MESSAGE arguments carry any bytes.
  const messages = positionals.map((m) => {
    if (values.base64 !== true) return Buffer.from(m, 'utf8');
    if (m.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(m)) throw new UsageError(`MESSAGE '${m}' is not valid base64`, 'send');
    return Buffer.from(m, 'base64');
  });
  for (const m of messages) {
    if (m.length > MAX_SIZE) throw new UsageError(`a MESSAGE is larger than ${MAX_SIZE} bytes`, 'send');
  }
  const common = commonOptions('send', values);
  if (to === common.ident) throw new UsageError('--to names this peer itself (--ident)', 'send');
  if (persistent && common.storage === undefined) {
    process.stderr.write('smq: warning: --persistent without --storage: messages are kept in memory only\n');
  }

  const total = count ?? positionals.length;
  const data = (i: number): Buffer => (count === undefined ? messages[i]! : generated(i, size ?? 0));
  const options = { persistent, ...(ttl !== undefined ? { ttl } : {}) };

  let counter: CountingStorage | undefined;
  // Over udp:// `to` is the peer behind the endpoint (UDP has no handshake to tell).
  const udp = common.connect.some((e) => e.transport === 'udp');
  if (udp && persistent) throw new UsageError('--persistent cannot go over udp:// (datagrams are neither stored nor acknowledged)', 'send');
  const stack = await Stack.open(common, { wrapStorage: (storage) => (counter = new CountingStorage(storage, to)), datagramIdentity: to });
  const { messaging, status } = stack;
  const stored = messaging.queueLength(to);
  let next = 0;
  /** Messages still queued for `to` when the command began to close (closing drops them from memory). */
  let queuedAtClose: number | undefined;
  /** What is stored and what is not, once something is left undelivered (null otherwise, or without --storage). */
  const storedSummary = (): string | null => {
    if (counter === undefined || (!persistent && stored === 0)) return null;
    const waiting = Math.max(0, stored + counter.committed - counter.removed - counter.removing);
    const lost = Math.max(0, (queuedAtClose ?? messaging.queueLength(to)) + (total - next) - waiting);
    if (waiting === 0 && lost === 0) return null;
    let text = `${waiting} message(s) for ${to} stored in ${common.storage}`;
    if (waiting > 0) text += ` (a later run with --storage ${common.storage} --count 0 delivers them)`;
    return `${text}, ${lost} not stored${lost > 0 ? ' (lost)' : ''}`;
  };
  const storing = persistent && counter !== undefined;
  if (storing) {
    stack.onStopping('smq send: interrupted: storing what is queued before exiting (interrupt again to exit at once)');
    stack.onForcedExit(() => {
      const summary = storedSummary();
      return summary === null ? null : `smq send: exiting at once: ${summary}`;
    });
  }
  let progressTimer: NodeJS.Timeout | undefined;
  let failure: unknown;
  try {
    if (stored > 0) status.note(`${stored} stored message(s) for ${to} from earlier runs`);
    const all = stored + total;
    let dropped = 0;
    let firstDrop: SnakeMQError | undefined;
    let pumpScheduled = false;
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    const delivered = () => stored + next - messaging.queueLength(to) - dropped;

    const pump = (): void => {
      pumpScheduled = false;
      while (next < total) {
        // Persistent messages all go to storage at once (they must survive a timeout); transient ones
        // while the peer's queue is below its high-water mark (the streaming loop of the README).
        if (!persistent && !messaging.writable(to)) return;
        try {
          messaging.send(to, new Message(data(next), options));
        } catch (error) {
          // Queue limits reached: continue when messages leave the queue.
          if ((error as SnakeMQError).code === ErrorCode.QUEUE_FULL) return;
          throw error;
        }
        next++;
      }
      if (messaging.queueLength(to) === 0) done();
    };
    const progressed = (ident: string): void => {
      if (ident !== to || pumpScheduled) return;
      pumpScheduled = true;
      setImmediate(() => {
        try {
          pump();
        } catch (error) {
          stack.fail(error as Error);
        }
      });
    };
    messaging.on('drain', progressed);
    messaging.on('sent', progressed);
    messaging.on('acknowledged', progressed);
    messaging.on('drop', (ident, _message, reason) => {
      if (ident !== to) return;
      dropped++;
      firstDrop ??= reason;
      progressed(ident);
    });
    // Safety net: re-check now and then (e.g. queue emptied by a path without an event).
    const poll = setInterval(() => progressed(to), 200);
    poll.unref();

    if (process.stderr.isTTY && all >= PROGRESS_FROM) {
      const line = storing
        ? () => `stored ${counter!.committed}/${total} in ${common.storage}, ${delivered()}/${all} delivered to ${to}`
        : () => `${delivered()}/${all} delivered to ${to}`;
      progressTimer = setInterval(() => status.progress(line()), 250);
      progressTimer.unref();
    }

    await stack.start();
    if (ttl === 0 && !udp) await connectedNow(stack, to, total);
    pump();
    try {
      await stack.until(finished, (seconds) => {
        const queued = messaging.queueLength(to);
        let text = `timed out after ${seconds} s: ${delivered()} of ${all} messages delivered to ${to}, ${queued} still queued`;
        if (next < total) text += `, ${total - next} not queued yet`;
        throw new Failure(text);
      });
    } finally {
      clearInterval(poll);
    }
    if (dropped > 0) {
      throw new Failure(`${dropped} of ${all} messages for ${to} were dropped undelivered: ${firstDrop!.message}`);
    }
    status.clearProgress();
    if (udp) status.note(`${all} message(s) sent to ${to} as datagrams (unacknowledged: delivery is not confirmed)`);
    else if (all >= PROGRESS_FROM || stored > 0) status.note(`${all} messages delivered to ${to}`);
  } catch (error) {
    failure = error;
  } finally {
    // Closing stores what is queued (the progress line goes on meanwhile): the summary comes after it.
    if (!storing) clearInterval(progressTimer);
    queuedAtClose = messaging.queueLength(to);
    await stack.close();
    clearInterval(progressTimer);
    status.clearProgress();
  }
  const summary = storedSummary();
  if (failure instanceof Failure && summary !== null) throw new Failure(`${failure.message}; ${summary}`);
  if (summary !== null) status.note(`smq send: ${summary}`);
  if (failure !== undefined) throw failure;
}

/** How long `--ttl 0` waits for the peer to be connected, at most (and within `--timeout`). */
export const TTL0_CONNECT_WAIT = 5;

/**
 * `--ttl 0` sends only to a peer connected now. The command has just started
 * its connectors, so it waits for `to` to be connected for a short while,
 * then fails instead of queueing messages that would all expire at once.
 */
async function connectedNow(stack: Stack, to: string, total: number): Promise<void> {
  if (stack.peer.isConnected(to)) return;
  let timer: NodeJS.Timeout | undefined;
  let onConnect!: (connId: number, ident: string) => void;
  const connected = new Promise<boolean>((resolve) => {
    onConnect = (_connId, ident) => {
      if (ident === to) resolve(true);
    };
    stack.peer.on('connect', onConnect);
    timer = setTimeout(() => resolve(false), TTL0_CONNECT_WAIT * 1000);
  });
  const notConnected = (waited: number) =>
    new Failure(`${to} is not connected (waited ${waited} s): --ttl 0 sends only to a peer connected now, so none of ${total} message(s) was sent`);
  try {
    const ok = await stack.until(connected, (seconds) => {
      throw notConnected(seconds);
    });
    if (!ok) throw notConnected(TTL0_CONNECT_WAIT);
  } finally {
    clearTimeout(timer);
    stack.peer.off('connect', onConnect);
  }
}
