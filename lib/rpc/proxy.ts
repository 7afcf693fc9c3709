/**
 * The Proxy behind {@link RpcClient.proxy}: property reads become remote
 * methods (made once per name by the client), except names that are never
 * remote. Builds on nothing but node:util.
 * @module
 */
import { inspect } from 'node:util';
import type { MethodName, RemoteProxy } from './types.js';

/**
 * Property names a proxy never turns into remote calls: thenable and
 * serialisation hooks, things inspectors and test matchers probe, and
 * `Object.prototype` members (which no server lets you call anyway).
 */
const NOT_REMOTE: ReadonlySet<string> = new Set([
  ...Object.getOwnPropertyNames(Object.prototype),
  'then',
  'catch',
  'finally',
  'toJSON',
  'inspect',
  'asymmetricMatch',
  '$$typeof',
  'nodeType',
  'tagName',
  '@@__IMMUTABLE_ITERABLE__@@',
  '@@__IMMUTABLE_RECORD__@@',
]);

/**
 * @internal A proxy labelled `label` whose property `name` is
 * `methodFor(name)` (asked once per name), and which is not thenable (`then`
 * and the other NOT_REMOTE names, symbols and `Object.prototype` names are
 * never remote); it refuses writes.
 */
export function remoteProxy<T extends object, S extends MethodName<T>>(
  label: string,
  methodFor: (name: string) => (...args: unknown[]) => Promise<unknown>,
): RemoteProxy<T, S> {
  const methods = new Map<string, (...args: unknown[]) => Promise<unknown>>();
  const handler: ProxyHandler<object> = {
    get: (_target, prop) => {
      // Repeated use of a method: one Map lookup.
      const known = methods.get(prop as string);
      if (known !== undefined) return known;
      if (typeof prop === 'symbol') {
        if (prop === inspect.custom) return () => label;
        if (prop === Symbol.toStringTag) return 'RemoteProxy';
        return undefined;
      }
      if (prop === 'toString') return () => label;
      if (NOT_REMOTE.has(prop)) return undefined;
      const fn = methodFor(prop);
      methods.set(prop, fn);
      return fn;
    },
    set: () => false,
    defineProperty: () => false,
    deleteProperty: () => false,
    setPrototypeOf: () => false,
  };
  // util.inspect looks at the target, not through the traps.
  const target = Object.create(null) as object;
  Object.defineProperty(target, inspect.custom, { value: () => label, configurable: true });
  return new Proxy(target, handler) as RemoteProxy<T, S>;
}
