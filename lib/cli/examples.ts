/**
 * Objects `smq serve --example NAME` serves over RPC, so that `smq call` (and
 * a program's RpcClient) has something to call without writing a server.
 */

function number(method: string, value: unknown): number {
  if (typeof value !== 'number') throw new TypeError(`calc.${method}: expected numbers, got ${JSON.stringify(value)}`);
  return value;
}

/** `calc`: arithmetic, an echo, and a method that fails (to see a remote exception). */
export class Calc {
  add(a: unknown, b: unknown): number {
    return number('add', a) + number('add', b);
  }

  subtract(a: unknown, b: unknown): number {
    return number('subtract', a) - number('subtract', b);
  }

  multiply(a: unknown, b: unknown): number {
    return number('multiply', a) * number('multiply', b);
  }

  divide(a: unknown, b: unknown): number {
    const divisor = number('divide', b);
    if (divisor === 0) throw new RangeError('calc.divide: division by zero');
    return number('divide', a) / divisor;
  }

  /** Returns its argument as it arrived (to see how values travel). */
  echo(value: unknown): unknown {
    return value;
  }
}

/** The examples by name, each with the one-line description `smq serve` prints. */
export const EXAMPLES: Record<string, { make: () => object; methods: string }> = {
  calc: { make: () => new Calc(), methods: 'add(a, b), subtract(a, b), multiply(a, b), divide(a, b), echo(value)' },
};
