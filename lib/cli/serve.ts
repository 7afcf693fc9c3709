import { COMMON_OPTIONS, commonOptions, list, parse } from './args.js';
import { UsageError } from './errors.js';
import { EXAMPLES } from './examples.js';
import { Stack } from './stack.js';

const OPTIONS = {
  ...COMMON_OPTIONS,
  example: { type: 'string', multiple: true },
} as const;

/** `smq serve`: serves example RPC objects (`--example calc`) until interrupted or `--timeout`. */
export async function serve(args: string[]): Promise<void> {
  const { values } = parse('serve', args, OPTIONS, false);
  const names = list(values, 'example');
  const known = Object.keys(EXAMPLES).join(', ');
  if (names.length === 0) throw new UsageError(`give the object(s) to serve: --example NAME (one of: ${known})`, 'serve');
  for (const name of names) {
    if (!Object.hasOwn(EXAMPLES, name)) throw new UsageError(`unknown --example '${name}' (one of: ${known})`, 'serve');
  }
  const common = commonOptions('serve', values);

  const stack = await Stack.open(common);
  try {
    for (const name of new Set(names)) {
      stack.peer.rpc.serve(name, EXAMPLES[name]!.make());
      stack.status.note(`serving ${name}: ${EXAMPLES[name]!.methods}`);
    }
    stack.peer.rpc.server.on('methodError', (error, call) =>
      stack.status.note(`${call.ident} called ${call.object}.${call.method}, which raised: ${error instanceof Error ? error.message : String(error)}`),
    );
    stack.peer.on('message', (_connId, from) => stack.status.note(`ignored a message from ${from} (smq serve answers RPC calls; smq listen prints messages)`));
    await stack.start();
    // Until a signal (exit 128 + its number) or --timeout (exit 0).
    await stack.until(new Promise<void>(() => undefined), () => undefined);
  } finally {
    await stack.close();
  }
}
