import type { Message } from '../messaging/index.js';
import { COMMON_OPTIONS, commonOptions, integer, parse } from './args.js';
import { Failure } from './errors.js';
import { messageJson, messageLine } from './format.js';
import { Stack } from './stack.js';

const OPTIONS = {
  ...COMMON_OPTIONS,
  count: { type: 'string' },
  json: { type: 'boolean' },
} as const;

/** `smq listen`: prints received messages. */
export async function listen(args: string[]): Promise<void> {
  const { values } = parse('listen', args, OPTIONS, false);
  const common = commonOptions('listen', values);
  const count = integer('listen', values, 'count');
  const format = values.json === true ? messageJson : messageLine;

  const stack = await Stack.open(common);
  try {
    let received = 0;
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    if (count === 0) done();
    stack.messaging.on('message', (_connId: number, from: string, message: Message) => {
      if (count !== undefined && received >= count) return;
      received++;
      process.stdout.write(`${format(from, message)}\n`);
      if (received === count) done();
    });
    await stack.start();
    await stack.until(finished, (seconds) => {
      if (count === undefined) return; // --timeout alone: listen that long
      throw new Failure(`timed out after ${seconds} s: ${received} of ${count} messages received`);
    });
  } finally {
    await stack.close();
  }
}
