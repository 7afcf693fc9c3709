/**
 * What a peer may call on a registered object (only methods, never
 * `Object.prototype` names, accessors or data), and how a thrown value is
 * described to the caller. Builds on nothing.
 * @module
 */

/**
 * Names never callable, whatever the object: everything `Object.prototype`
 * has (`constructor`, `__proto__`, `toString`, `hasOwnProperty`,
 * `__defineGetter__`, `valueOf`…), even when a class overrides it.
 */
const FORBIDDEN_METHODS: ReadonlySet<string> = new Set(Object.getOwnPropertyNames(Object.prototype));

/**
 * The function a remote peer may call as `target[name]`: a function-valued
 * data property of the object or of its prototype chain below
 * `Object.prototype` / `Function.prototype`. Accessors are never invoked and
 * non-function properties are refused, as are the names in FORBIDDEN_METHODS.
 */
export function findMethod(target: object, name: string): ((...args: unknown[]) => unknown) | undefined {
  if (FORBIDDEN_METHODS.has(name)) return undefined;
  for (let o: object | null = target; o !== null && o !== Object.prototype && o !== Function.prototype; o = Object.getPrototypeOf(o) as object | null) {
    const d = Object.getOwnPropertyDescriptor(o, name);
    if (d === undefined) continue;
    return typeof d.value === 'function' ? (d.value as (...args: unknown[]) => unknown) : undefined;
  }
  return undefined;
}

/** @internal What the caller is told of a thrown value (never throws). */
export function describeThrown(error: unknown): { name: string; message: string; code?: string; stack: string } {
  try {
    return describeThrownUnsafe(error);
  } catch {
    // e.g. a thrown Proxy or an object whose getters throw
    return { name: 'Error', message: 'remote method failed (its exception could not be read)', stack: '' };
  }
}

function describeThrownUnsafe(error: unknown): { name: string; message: string; code?: string; stack: string } {
  const text = (v: unknown, fallback: string): string => (typeof v === 'string' ? v : fallback);
  if (error !== null && (typeof error === 'object' || typeof error === 'function')) {
    const e = error as { name?: unknown; message?: unknown; code?: unknown; stack?: unknown };
    const out: { name: string; message: string; code?: string; stack: string } = {
      name: text(e.name, 'Error'),
      message: text(e.message, ''),
      stack: text(e.stack, ''),
    };
    if (typeof e.code === 'string') out.code = e.code;
    else if (typeof e.code === 'number') out.code = String(e.code);
    return out;
  }
  return { name: 'Error', message: String(error), stack: '' };
}
