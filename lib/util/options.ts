import { InvalidOptionsError } from '../errors.js';

/** Describes one option: its type check and an optional range/extra check. */
export type OptionCheck = (value: unknown) => string | undefined;

/**
 * Fail-fast validation of an options object: unknown keys are rejected (a
 * misspelt option must not be silently ignored) and every known key is
 * checked. Returns the options merged over the defaults.
 */
export function validateOptions<T extends object>(what: string, given: unknown, checks: { [K in keyof T]-?: OptionCheck }, defaults: T): T {
  if (given === undefined || given === null) return { ...(defaults as Record<string, unknown>) } as T;
  if (typeof given !== 'object' || Array.isArray(given)) {
    throw new InvalidOptionsError(`${what}: options must be an object`);
  }
  const out: Record<string, unknown> = { ...(defaults as Record<string, unknown>) };
  for (const [key, value] of Object.entries(given)) {
    if (!Object.hasOwn(checks, key)) {
      const known = Object.keys(checks).sort().join(', ');
      throw new InvalidOptionsError(`${what}: unknown option '${key}' (known: ${known})`);
    }
    if (value === undefined) continue;
    const problem = (checks as Record<string, OptionCheck>)[key]!(value);
    if (problem) throw new InvalidOptionsError(`${what}: option '${key}' ${problem}`);
    out[key] = value;
  }
  return out as T;
}

/** Common checks. Each returns a problem description or undefined. */
export const is = {
  any: (): OptionCheck => () => undefined,
  boolean: (): OptionCheck => (v) => (typeof v === 'boolean' ? undefined : 'must be a boolean'),
  string: (): OptionCheck => (v) => (typeof v === 'string' ? undefined : 'must be a string'),
  function: (): OptionCheck => (v) => (typeof v === 'function' ? undefined : 'must be a function'),
  number:
    (min = -Infinity, max = Infinity): OptionCheck =>
    (v) =>
      typeof v === 'number' && !Number.isNaN(v) && v >= min && v <= max ? undefined : `must be a number in [${min}, ${max}]`,
  integer:
    (min = 0, max = Number.MAX_SAFE_INTEGER): OptionCheck =>
    (v) =>
      Number.isInteger(v) && (v as number) >= min && (v as number) <= max ? undefined : `must be an integer in [${min}, ${max}]`,
  oneOf:
    (...values: readonly unknown[]): OptionCheck =>
    (v) =>
      values.includes(v) ? undefined : `must be one of ${values.map((x) => JSON.stringify(x)).join(', ')}`,
  nullableNumber:
    (min = 0): OptionCheck =>
    (v) =>
      v === null || (typeof v === 'number' && v >= min && !Number.isNaN(v)) ? undefined : `must be null or a number >= ${min}`,
};
