import { RpcRemoteError, SnakeMQError } from '../errors.js';
import { COMMON_OPTIONS, commonOptions, identity, parse, required, str } from './args.js';
import { Failure, UsageError } from './errors.js';
import { toJsonValue } from './format.js';
import { Stack } from './stack.js';

const OPTIONS = {
  ...COMMON_OPTIONS,
  to: { type: 'string' },
  object: { type: 'string' },
  method: { type: 'string' },
  args: { type: 'string' },
} as const;

/** Default time of a call, in seconds (RpcClient's default). */
const DEFAULT_CALL_TIMEOUT = 30;

function parseCallArgs(text: string | undefined): unknown[] {
  if (text === undefined) return [];
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`--args is not valid JSON: ${(error as Error).message}`, 'call');
  }
  if (!Array.isArray(value)) throw new UsageError('--args must be a JSON array, e.g. --args \'[1, "two"]\'', 'call');
  return value;
}

/** `smq call`: one RPC call, result as JSON on stdout. */
export async function call(args: string[]): Promise<void> {
  const { values } = parse('call', args, OPTIONS, false);
  const to = identity('call', 'to', required('call', values, 'to'));
  const object = required('call', values, 'object');
  const method = required('call', values, 'method');
  const callArgs = parseCallArgs(str(values, 'args'));
  const common = commonOptions('call', values);
  const timeout = common.timeout ?? DEFAULT_CALL_TIMEOUT;
  // The client enforces the time limit (with a precise error); the stack only handles signals and TLS failures.
  const stack = await Stack.open({ ...common, timeout: undefined });
  try {
    await stack.start();
    let result: unknown;
    try {
      result = await stack.until(stack.peer.rpc.call(to, object, method, callArgs, { timeout: timeout * 1000 }), () => undefined);
    } catch (error) {
      if (error instanceof RpcRemoteError) {
        throw new Failure(`${to}: ${object}.${method} raised ${error.remoteName}: ${error.message}`);
      }
      // Not connected in time, timeout, unknown object or method, unencodable arguments…
      if (error instanceof SnakeMQError) throw new Failure(error.message);
      throw error;
    }
    process.stdout.write(`${JSON.stringify(toJsonValue(result))}\n`);
  } finally {
    await stack.close();
  }
}
