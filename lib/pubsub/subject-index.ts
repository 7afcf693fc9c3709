/**
 * Subject matching for publish/subscribe: which subscriptions does a message's
 * subject reach?
 *
 * A subject is a `/`-separated path such as `/oper/polar/direct_readout/norrköping`
 * (any Unicode). A {@link SubjectFilter} is one of two kinds:
 *
 * - **prefix** (PostTroll's model): the filter matches every subject that starts
 *   with its value, character for character, ignoring component boundaries. So
 *   `/counter` matches `/counter` and `/counter/x`, but also `/counterfeit`. The
 *   empty prefix matches every subject.
 * - **tokens** (NATS semantics on `/`-separated components): each component of
 *   the filter matches one component of the subject: a literal matches an equal
 *   component, `*` matches exactly one component (any, even empty), and `>`, only
 *   as the last component, matches one or more remaining components. `/counter/>`
 *   matches `/counter/x` and `/counter/x/y`, not `/counter` nor `/counterfeit`;
 *   `>` alone matches every subject. A token filter without wildcards matches
 *   exactly one subject.
 *
 * Components are the parts between `/`; one leading `/` opens the path and is not
 * a component, on subjects and token filters alike (`/a/b` and `a/b` both have the
 * components `a`, `b`). A component is `*` or `>` only when it is exactly that:
 * `a*` and `>x` are literals.
 *
 * {@link SubjectIndex} holds many `(filter, value)` subscriptions and answers
 * "which values does this subject reach" without scanning them: prefix filters
 * sit in a character trie the subject walks once, token filters in a component
 * trie (children by literal component, plus a `*` child and a `>` set per node).
 *
 * @module
 */
import { InvalidFilterError, InvalidOptionsError } from '../errors.js';

/** Default maximum length of a filter string, in UTF-16 code units (`String.length`). */
export const DEFAULT_MAX_FILTER_LENGTH = 1024;

/** Default maximum number of components of a token filter. */
export const DEFAULT_MAX_FILTER_COMPONENTS = 64;

/**
 * PostTroll's magic: a PostTroll topic already starting with it is taken as the
 * raw prefix of the encoded message `pytroll:/<subject> …`.
 */
export const POSTTROLL_MAGIC = 'pytroll:/';

/**
 * A parsed subscription filter.
 *
 * - `{ kind: 'prefix', value }`: matches every subject starting with `value`
 *   (a raw string prefix; `''` matches everything). Taken literally: the
 *   PostTroll topic rules of {@link parseFilter} are not applied to an object.
 * - `{ kind: 'tokens', value }`: `value` is a `/`-separated token filter
 *   (`*` = one component, `>` last = one or more); its components are
 *   validated like those of a parsed string.
 */
export type SubjectFilter = { readonly kind: 'prefix'; readonly value: string } | { readonly kind: 'tokens'; readonly value: string };

/** Limits on filters; shared by {@link parseFilter} and {@link SubjectIndex}. */
export interface FilterLimits {
  /** Longest accepted filter, in UTF-16 code units. Default {@link DEFAULT_MAX_FILTER_LENGTH}. */
  maxFilterLength?: number;
  /** Most components of a token filter. Default {@link DEFAULT_MAX_FILTER_COMPONENTS}. Prefix filters are limited by length only. */
  maxFilterComponents?: number;
}

/** Options of {@link SubjectIndex}. */
export type SubjectIndexOptions = FilterLimits;

interface Limits {
  length: number;
  components: number;
}

function limitsOf(options: FilterLimits | undefined): Limits {
  const length = options?.maxFilterLength ?? DEFAULT_MAX_FILTER_LENGTH;
  const components = options?.maxFilterComponents ?? DEFAULT_MAX_FILTER_COMPONENTS;
  if (!Number.isSafeInteger(length) || length < 1) throw new InvalidOptionsError(`maxFilterLength must be a positive integer, got ${String(length)}`);
  if (!Number.isSafeInteger(components) || components < 1) {
    throw new InvalidOptionsError(`maxFilterComponents must be a positive integer, got ${String(components)}`);
  }
  return { length, components };
}

const SLASH = 0x2f;
const DEFAULT_LIMITS: Limits = { length: DEFAULT_MAX_FILTER_LENGTH, components: DEFAULT_MAX_FILTER_COMPONENTS };

function shown(s: string): string {
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s);
}

function checkLength(s: unknown, limits: Limits): asserts s is string {
  if (typeof s !== 'string') throw new InvalidFilterError(`a filter must be a string, got ${typeof s}`);
  if (s.length > limits.length) throw new InvalidFilterError(`filter of ${s.length} characters exceeds the limit of ${limits.length}: ${shown(s)}`);
}

/** The components of a subject or token filter: split on `/`, one leading `/` ignored. */
export function subjectComponents(s: string): string[] {
  return (s.charCodeAt(0) === SLASH ? s.slice(1) : s).split('/');
}

function tokenComponents(value: string, limits: Limits): string[] {
  const parts = subjectComponents(value);
  if (parts.length > limits.components) {
    throw new InvalidFilterError(`token filter of ${parts.length} components exceeds the limit of ${limits.components}: ${shown(value)}`);
  }
  for (let i = 0; i < parts.length; i++) {
    if (parts[i] === '') throw new InvalidFilterError(`token filter has an empty component: ${shown(value)}`);
    if (parts[i] === '>' && i !== parts.length - 1) throw new InvalidFilterError(`'>' must be the last component of a token filter: ${shown(value)}`);
  }
  return parts;
}

/**
 * Parses a filter string.
 *
 * - A string with a component that is exactly `*` or `>` is a **token** filter;
 *   it must have no empty component (`//`, trailing `/`), at most
 *   `maxFilterComponents` components, and `>` only last. Its value is
 *   normalised to start with `/` (`a/*` → `/a/*`; `>` stays `>`).
 * - Any other string is a **prefix** filter, following PostTroll's topic rules:
 *   a string starting with `pytroll:/` is the raw prefix after that magic
 *   (`pytroll://counter` → `/counter`, `pytroll:/` → everything); otherwise a `/`
 *   is put in front when missing (`counter` → `/counter`), and `''` matches
 *   everything. Matching then is a plain string prefix test: `/counter` matches
 *   `/counterfeit` too. Unlike PostTroll, which tests the whole encoded message,
 *   only the subject is tested, so a topic reaching past the subject into the
 *   type field (`/counter info`) matches nothing.
 *
 * @throws {InvalidFilterError} not a string, longer than `maxFilterLength`, or a bad token filter.
 * @throws {InvalidOptionsError} a limit is not a positive integer.
 */
export function parseFilter(s: string, options?: FilterLimits): SubjectFilter {
  return parseWith(s, options === undefined ? DEFAULT_LIMITS : limitsOf(options));
}

function parseWith(s: string, limits: Limits): SubjectFilter {
  checkLength(s, limits);
  if (s.startsWith(POSTTROLL_MAGIC)) return { kind: 'prefix', value: s.slice(POSTTROLL_MAGIC.length) };
  const parts = subjectComponents(s);
  if (parts.includes('*') || parts.includes('>')) {
    tokenComponents(s, limits);
    return { kind: 'tokens', value: s === '>' || s.charCodeAt(0) === SLASH ? s : `/${s}` };
  }
  return { kind: 'prefix', value: s === '' || s.charCodeAt(0) === SLASH ? s : `/${s}` };
}

/**
 * Whether `subject` matches `filter` (a string is parsed with {@link parseFilter}).
 * A reference implementation that splits on every call: use a {@link SubjectIndex}
 * for many filters.
 *
 * @throws {InvalidFilterError} the filter is invalid.
 */
export function matchesFilter(filter: string | SubjectFilter, subject: string): boolean {
  const f = toFilter(filter, DEFAULT_LIMITS);
  if (f.filter.kind === 'prefix') return subject.startsWith(f.filter.value);
  const want = f.components!;
  const got = subjectComponents(subject);
  for (let i = 0; i < want.length; i++) {
    if (want[i] === '>') return got.length > i;
    if (i >= got.length || (want[i] !== '*' && want[i] !== got[i])) return false;
  }
  return got.length === want.length;
}

function toFilter(filter: string | SubjectFilter, limits: Limits): { filter: SubjectFilter; components: string[] | undefined } {
  if (typeof filter === 'string') {
    const parsed = parseWith(filter, limits);
    return { filter: parsed, components: parsed.kind === 'tokens' ? subjectComponents(parsed.value) : undefined };
  }
  if (filter === null || typeof filter !== 'object') throw new InvalidFilterError(`a filter must be a string or a SubjectFilter, got ${String(filter)}`);
  checkLength(filter.value, limits);
  if (filter.kind === 'prefix') return { filter, components: undefined };
  if (filter.kind === 'tokens') return { filter, components: tokenComponents(filter.value, limits) };
  throw new InvalidFilterError(`unknown filter kind ${JSON.stringify((filter as { kind: unknown }).kind)}`);
}

class CharNode<T> {
  children: Map<number, CharNode<T>> | undefined;
  values: Set<T> | undefined;
  constructor(
    readonly parent: CharNode<T> | undefined,
    readonly key: number,
  ) {}
}

class TokenNode<T> {
  literals: Map<string, TokenNode<T>> | undefined;
  star: TokenNode<T> | undefined;
  /** Values of filters ending at this node. */
  values: Set<T> | undefined;
  /** Values of filters ending with `>` right after this node. */
  rest: Set<T> | undefined;
  constructor(
    readonly parent: TokenNode<T> | undefined,
    readonly key: string | undefined,
  ) {}
}

function addAll<T>(from: Set<T>, into: Set<T>): void {
  for (const v of from) into.add(v);
}

/**
 * An index of subscriptions: many `(filter, value)` pairs, matched against a
 * subject in time that depends on the subject and on the matching filters, not
 * on how many subscriptions there are.
 *
 * - A subscription is a pair: adding the same pair twice keeps one (and
 *   {@link add} returns `false`); filters equal after parsing are the same
 *   filter (`counter` and `/counter`; `a/*` and `/a/*`).
 * - A value is reported at most once per subject, however many of its filters
 *   match it.
 * - Removing the last subscription through a trie node frees the node
 *   ({@link nodeCount} goes back to 0 when the index is empty).
 *
 * See the module documentation for the matching rules and {@link parseFilter}
 * for how a string becomes a prefix or token filter.
 *
 * @typeParam T - the subscriber (a connection id, a callback, an object); compared by identity (`SameValueZero`).
 */
export class SubjectIndex<T> {
  readonly #limits: Limits;
  readonly #prefixRoot = new CharNode<T>(undefined, -1);
  readonly #tokenRoot = new TokenNode<T>(undefined, undefined);
  readonly #scratch = new Set<T>();
  #scratchBusy = false;
  #size = 0;
  #nodes = 0;

  /** @throws {InvalidOptionsError} a limit is not a positive integer. */
  constructor(options?: SubjectIndexOptions) {
    this.#limits = options === undefined ? DEFAULT_LIMITS : limitsOf(options);
  }

  /** Number of subscriptions (distinct `(filter, value)` pairs). */
  get size(): number {
    return this.#size;
  }

  /** Number of trie nodes held, both tries, roots not counted: 0 when the index is empty. */
  get nodeCount(): number {
    return this.#nodes;
  }

  /**
   * Subscribes `value` to `filter` (a string, parsed with {@link parseFilter}, or a {@link SubjectFilter}).
   *
   * @returns `true` if the subscription is new, `false` if the pair was already there.
   * @throws {InvalidFilterError} the filter is invalid (the index is unchanged).
   */
  add(filter: string | SubjectFilter, value: T): boolean {
    const f = toFilter(filter, this.#limits);
    const set = f.components === undefined ? this.#prefixSet(f.filter.value, true)! : this.#tokenSet(f.components, true)!;
    if (set.has(value)) return false;
    set.add(value);
    this.#size++;
    return true;
  }

  /**
   * Unsubscribes `value` from `filter`; trie nodes left without subscriptions are freed.
   *
   * @returns `true` if the subscription was there.
   * @throws {InvalidFilterError} the filter is invalid.
   */
  remove(filter: string | SubjectFilter, value: T): boolean {
    const f = toFilter(filter, this.#limits);
    if (f.components === undefined) {
      const node = this.#prefixNode(f.filter.value, false);
      if (node?.values === undefined || !node.values.delete(value)) return false;
      if (node.values.size === 0) node.values = undefined;
      this.#prunePrefix(node);
    } else {
      const comps = f.components;
      const rest = comps[comps.length - 1] === '>';
      const node = this.#tokenNode(comps, rest ? comps.length - 1 : comps.length, false);
      const set = rest ? node?.rest : node?.values;
      if (node === undefined || set === undefined || !set.delete(value)) return false;
      if (set.size === 0) {
        if (rest) node.rest = undefined;
        else node.values = undefined;
      }
      this.#pruneTokens(node);
    }
    this.#size--;
    return true;
  }

  /**
   * Whether `value` is subscribed to `filter` (the same filter after parsing).
   *
   * @throws {InvalidFilterError} the filter is invalid.
   */
  has(filter: string | SubjectFilter, value: T): boolean {
    const f = toFilter(filter, this.#limits);
    const set = f.components === undefined ? this.#prefixSet(f.filter.value, false) : this.#tokenSet(f.components, false);
    return set?.has(value) ?? false;
  }

  /** The values whose filters match `subject`, each once, in a new Set. */
  match(subject: string): Set<T> {
    const out = new Set<T>();
    this.#collect(subject, out);
    return out;
  }

  /**
   * Calls `fn` once for each value whose filters match `subject`, without
   * allocating per call (a scratch set is reused; a nested call from `fn`
   * gets its own). The matches are gathered before the first call, so `fn`
   * may add or remove subscriptions.
   *
   * @returns the number of values `fn` was called with.
   */
  forEachMatch(subject: string, fn: (value: T) => void): number {
    const nested = this.#scratchBusy;
    const seen = nested ? new Set<T>() : this.#scratch;
    this.#scratchBusy = true;
    try {
      this.#collect(subject, seen);
      for (const v of seen) fn(v);
      return seen.size;
    } finally {
      seen.clear();
      if (!nested) this.#scratchBusy = false;
    }
  }

  /** Removes every subscription. */
  clear(): void {
    this.#prefixRoot.children = undefined;
    this.#prefixRoot.values = undefined;
    this.#tokenRoot.literals = undefined;
    this.#tokenRoot.star = undefined;
    this.#tokenRoot.values = undefined;
    this.#tokenRoot.rest = undefined;
    this.#size = 0;
    this.#nodes = 0;
  }

  #collect(subject: string, out: Set<T>): void {
    let node: CharNode<T> | undefined = this.#prefixRoot;
    if (node.values !== undefined) addAll(node.values, out);
    for (let i = 0; i < subject.length; i++) {
      node = node.children?.get(subject.charCodeAt(i));
      if (node === undefined) break;
      if (node.values !== undefined) addAll(node.values, out);
    }
    const root = this.#tokenRoot;
    if (root.literals !== undefined || root.star !== undefined || root.rest !== undefined || root.values !== undefined) {
      this.#walkTokens(root, subject, subject.charCodeAt(0) === SLASH ? 1 : 0, out);
    }
  }

  /** `start` is where the next component begins; past the end, there is none left. */
  #walkTokens(node: TokenNode<T>, subject: string, start: number, out: Set<T>): void {
    if (start > subject.length) {
      if (node.values !== undefined) addAll(node.values, out);
      return;
    }
    if (node.rest !== undefined) addAll(node.rest, out);
    if (node.literals === undefined && node.star === undefined) return;
    let end = subject.indexOf('/', start);
    if (end < 0) end = subject.length;
    if (node.literals !== undefined) {
      const child = node.literals.get(subject.slice(start, end));
      if (child !== undefined) this.#walkTokens(child, subject, end + 1, out);
    }
    if (node.star !== undefined) this.#walkTokens(node.star, subject, end + 1, out);
  }

  #prefixNode(value: string, create: boolean): CharNode<T> | undefined {
    let node = this.#prefixRoot;
    for (let i = 0; i < value.length; i++) {
      const c = value.charCodeAt(i);
      let child = node.children?.get(c);
      if (child === undefined) {
        if (!create) return undefined;
        child = new CharNode(node, c);
        (node.children ??= new Map<number, CharNode<T>>()).set(c, child);
        this.#nodes++;
      }
      node = child;
    }
    return node;
  }

  #prefixSet(value: string, create: boolean): Set<T> | undefined {
    const node = this.#prefixNode(value, create);
    if (node === undefined) return undefined;
    return create ? (node.values ??= new Set<T>()) : node.values;
  }

  #prunePrefix(node: CharNode<T>): void {
    while (node.parent !== undefined && node.values === undefined && (node.children === undefined || node.children.size === 0)) {
      const parent = node.parent;
      parent.children!.delete(node.key);
      if (parent.children!.size === 0) parent.children = undefined;
      this.#nodes--;
      node = parent;
    }
  }

  #tokenNode(components: readonly string[], depth: number, create: boolean): TokenNode<T> | undefined {
    let node = this.#tokenRoot;
    for (let i = 0; i < depth; i++) {
      const c = components[i]!;
      let child = c === '*' ? node.star : node.literals?.get(c);
      if (child === undefined) {
        if (!create) return undefined;
        child = new TokenNode(node, c);
        if (c === '*') node.star = child;
        else (node.literals ??= new Map<string, TokenNode<T>>()).set(c, child);
        this.#nodes++;
      }
      node = child;
    }
    return node;
  }

  #tokenSet(components: readonly string[], create: boolean): Set<T> | undefined {
    const rest = components[components.length - 1] === '>';
    const node = this.#tokenNode(components, rest ? components.length - 1 : components.length, create);
    if (node === undefined) return undefined;
    if (!create) return rest ? node.rest : node.values;
    return rest ? (node.rest ??= new Set<T>()) : (node.values ??= new Set<T>());
  }

  #pruneTokens(node: TokenNode<T>): void {
    while (
      node.parent !== undefined &&
      node.values === undefined &&
      node.rest === undefined &&
      node.star === undefined &&
      (node.literals === undefined || node.literals.size === 0)
    ) {
      const parent = node.parent;
      if (node.key === '*') parent.star = undefined;
      else {
        parent.literals!.delete(node.key!);
        if (parent.literals!.size === 0) parent.literals = undefined;
      }
      this.#nodes--;
      node = parent;
    }
  }
}
