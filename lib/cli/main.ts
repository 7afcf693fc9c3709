/**
 * The `smq` command line tool (bin/smq.js runs {@link main}). Not part of the
 * library's public API.
 * @module
 */
import { readFileSync } from 'node:fs';
import { wantsHelp } from './args.js';
import { CliError, UsageError } from './errors.js';
import { HELP } from './help.js';

type Command = (args: string[]) => Promise<void>;

/** Commands, loaded on demand (`smq --help` and `smq certs` never load the messaging stack). */
const COMMANDS: Record<string, () => Promise<Command>> = {
  listen: async () => (await import('./listen.js')).listen,
  send: async () => (await import('./send.js')).send,
  call: async () => (await import('./call.js')).call,
  serve: async () => (await import('./serve.js')).serve,
  publish: async () => (await import('./publish.js')).publish,
  subscribe: async () => (await import('./subscribe.js')).subscribe,
  nameserver: async () => (await import('./nameserver.js')).nameserver,
  lookup: async () => (await import('./lookup.js')).lookup,
  status: async () => (await import('./status.js')).status,
  certs: async () => (await import('./certs.js')).certs,
};

function version(): string {
  // lib/cli/main.ts and dist/cli/main.js are both two levels below package.json.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

const NAMES = 'listen, send, call, serve, publish, subscribe, nameserver, lookup, status or certs';

/** Runs one command line; returns the exit code (errors are printed on stderr). */
export async function run(argv: readonly string[]): Promise<number> {
  const [first, ...rest] = argv;
  let command: string | undefined;
  try {
    if (first === undefined) throw new UsageError(`missing command (${NAMES})`);
    if (first === '--help' || first === '-h' || first === 'help') {
      const topic = first === 'help' ? rest[0] : undefined;
      process.stdout.write(topic !== undefined && topic in COMMANDS ? HELP[topic]! : HELP.main!);
      return 0;
    }
    if (first === '--version' || first === '-V') {
      process.stdout.write(`${version()}\n`);
      return 0;
    }
    if (first.startsWith('-')) {
      throw new UsageError(`the command comes first: smq <listen|send|call|serve|publish|subscribe|nameserver|lookup|status|certs> [options] (got '${first}')`);
    }
    const load = Object.hasOwn(COMMANDS, first) ? COMMANDS[first] : undefined;
    if (load === undefined) throw new UsageError(`unknown command '${first}' (use ${NAMES})`);
    command = first;
    if (wantsHelp(rest)) {
      process.stdout.write(HELP[command]!);
      return 0;
    }
    await (
      await load()
    )([...rest]);
    return 0;
  } catch (error) {
    return report(error, command);
  }
}

function report(error: unknown, command: string | undefined): number {
  const prefix = command === undefined ? 'smq' : `smq ${command}`;
  if (error instanceof UsageError) {
    const helpOf = error.command ?? command;
    process.stderr.write(`${prefix}: ${error.message}\nTry 'smq${helpOf ? ` ${helpOf}` : ''} --help'.\n`);
    return error.exitCode;
  }
  if (error instanceof CliError) {
    if (error.message !== '') process.stderr.write(`${prefix}: ${error.message.trimEnd()}\n`);
    return error.exitCode;
  }
  const text = error instanceof Error ? (process.env.SMQ_DEBUG ? (error.stack ?? error.message) : error.message) : String(error);
  process.stderr.write(`${prefix}: ${text}\n`);
  return 1;
}

function flush(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed || !stream.writable) return resolve();
    stream.write('', () => resolve());
  });
}

/** Entry point of bin/smq.js: runs the command line, flushes the output and exits (never lingers). */
export async function main(argv: readonly string[]): Promise<never> {
  // A reader that went away (`smq listen | head`) must not crash the process with an unhandled 'error'.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') process.stderr.write(`smq: cannot write to stdout: ${error.message}\n`);
  });
  const code = await run(argv);
  await Promise.race([Promise.all([flush(process.stdout), flush(process.stderr)]), new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
  process.exit(code);
}
