/**
 * Options of the library that the benchmarks use when this version has
 * them (the hardening work adds them): tried at run time, so that one
 * benchmark runs against the code before and after.
 * @module
 */
import { InvalidOptionsError, Link, type LinkOptions } from '../../lib/index.js';

/**
 * A Link that accepts `max` connections at once when it has a
 * `maxConnections` option (whose default may be lower than a benchmark
 * needs); a default Link otherwise.
 */
export function linkWithMaxConnections(max = 20_000): { link: Link; maxConnections: number | 'no option' } {
  try {
    return { link: new Link({ maxConnections: max } as LinkOptions), maxConnections: max };
  } catch (error) {
    if (!(error instanceof InvalidOptionsError)) throw error;
    return { link: new Link(), maxConnections: 'no option' };
  }
}
