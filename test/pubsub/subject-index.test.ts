import { describe, expect, it } from 'vitest';
import { ErrorCode, InvalidFilterError, InvalidOptionsError, SnakeMQError } from '../../lib/errors.js';
import {
  DEFAULT_MAX_FILTER_COMPONENTS,
  DEFAULT_MAX_FILTER_LENGTH,
  SubjectIndex,
  matchesFilter,
  parseFilter,
  subjectComponents,
  type SubjectFilter,
} from '../../lib/pubsub/subject-index.js';

const SUBJECTS = [
  '',
  '/',
  '/counter',
  '/counter/',
  '/counter/x',
  '/counter/x/y',
  '/counterfeit',
  '/counterfeit/x',
  '/count',
  'counter',
  'counter/x',
  '/a//b',
  '/oper/polar/direct_readout/norrköping',
  '/oper/polar/direct_readout/kiruna',
  '/oper/geo/direct_readout/norrköping',
  '/oper/polar/gds/norrköping/extra',
  '/ünï/☃/🐍',
  '/heartbeat/ns',
  '/address/foo',
];

/** filter → the subjects of SUBJECTS it matches. */
const TABLE: Array<[string, string[]]> = [
  ['/counter', ['/counter', '/counter/', '/counter/x', '/counter/x/y', '/counterfeit', '/counterfeit/x']],
  ['counter', ['/counter', '/counter/', '/counter/x', '/counter/x/y', '/counterfeit', '/counterfeit/x']],
  ['pytroll://counter', ['/counter', '/counter/', '/counter/x', '/counter/x/y', '/counterfeit', '/counterfeit/x']],
  ['/counter/', ['/counter/', '/counter/x', '/counter/x/y']],
  ['', SUBJECTS],
  ['pytroll:/', SUBJECTS],
  ['/', SUBJECTS.filter((s) => s.startsWith('/'))],
  ['/oper/polar/direct_readout/norrk', ['/oper/polar/direct_readout/norrköping']],
  ['/ünï/☃', ['/ünï/☃/🐍']],
  ['/counter/*', ['/counter/', '/counter/x', 'counter/x']],
  ['counter/*', ['/counter/', '/counter/x', 'counter/x']],
  ['/counter/>', ['/counter/', '/counter/x', '/counter/x/y', 'counter/x']],
  ['/counter/*/>', ['/counter/x/y']],
  ['/*', ['', '/', '/counter', '/counterfeit', '/count', 'counter']],
  ['>', SUBJECTS],
  ['/>', SUBJECTS],
  ['/*/>', SUBJECTS.filter((s) => subjectComponents(s).length >= 2)],
  ['/a/*/b', ['/a//b']],
  ['/oper/*/direct_readout/norrköping', ['/oper/polar/direct_readout/norrköping', '/oper/geo/direct_readout/norrköping']],
  ['/oper/polar/*/norrköping', ['/oper/polar/direct_readout/norrköping']],
  ['/oper/polar/>', ['/oper/polar/direct_readout/norrköping', '/oper/polar/direct_readout/kiruna', '/oper/polar/gds/norrköping/extra']],
  ['/*/*/*/norrköping', ['/oper/polar/direct_readout/norrköping', '/oper/geo/direct_readout/norrköping']],
  ['/ünï/*/🐍', ['/ünï/☃/🐍']],
  ['/*/☃/>', ['/ünï/☃/🐍']],
  ['/oper/*', []],
  ['/counter*/>', []],
];

describe('parseFilter', () => {
  it('tells token filters from prefix filters and normalises them', () => {
    expect(parseFilter('/counter')).toEqual({ kind: 'prefix', value: '/counter' });
    expect(parseFilter('counter')).toEqual({ kind: 'prefix', value: '/counter' });
    expect(parseFilter('')).toEqual({ kind: 'prefix', value: '' });
    expect(parseFilter('pytroll://counter')).toEqual({ kind: 'prefix', value: '/counter' });
    expect(parseFilter('pytroll:/')).toEqual({ kind: 'prefix', value: '' });
    expect(parseFilter('/a*/b>')).toEqual({ kind: 'prefix', value: '/a*/b>' });
    expect(parseFilter('/a/*')).toEqual({ kind: 'tokens', value: '/a/*' });
    expect(parseFilter('a/*')).toEqual({ kind: 'tokens', value: '/a/*' });
    expect(parseFilter('>')).toEqual({ kind: 'tokens', value: '>' });
    expect(parseFilter('/a/>')).toEqual({ kind: 'tokens', value: '/a/>' });
  });

  it('refuses bad filters with InvalidFilterError', () => {
    const bad: unknown[] = ['/a/>/b', '>/a', '/a//*', '/a/*/', '//*', 'x'.repeat(DEFAULT_MAX_FILTER_LENGTH + 1), `/${Array(65).fill('*').join('/')}`, 42, null];
    for (const f of bad) {
      let err: unknown;
      try {
        parseFilter(f as string);
      } catch (e) {
        err = e;
      }
      expect(err, String(f)).toBeInstanceOf(InvalidFilterError);
      expect(err).toBeInstanceOf(SnakeMQError);
      expect((err as InvalidFilterError).code).toBe('SMQ_ERR_INVALID_FILTER');
      expect((err as InvalidFilterError).name).toBe('InvalidFilterError');
    }
    expect(ErrorCode.INVALID_FILTER).toBe('SMQ_ERR_INVALID_FILTER');
  });

  it('applies the limits at their bounds', () => {
    expect(parseFilter('x'.repeat(DEFAULT_MAX_FILTER_LENGTH)).kind).toBe('prefix');
    expect(parseFilter(`/${Array(DEFAULT_MAX_FILTER_COMPONENTS).fill('*').join('/')}`).kind).toBe('tokens');
    expect(parseFilter(`/${Array(100).fill('a').join('/')}`).kind).toBe('prefix');
    expect(() => parseFilter('/a/b/*', { maxFilterComponents: 2 })).toThrow(InvalidFilterError);
    expect(() => parseFilter('/abc', { maxFilterLength: 3 })).toThrow(InvalidFilterError);
    expect(() => parseFilter('/a', { maxFilterLength: 0 })).toThrow(InvalidOptionsError);
    expect(() => new SubjectIndex({ maxFilterComponents: 1.5 })).toThrow(InvalidOptionsError);
    const index = new SubjectIndex<number>({ maxFilterLength: 8, maxFilterComponents: 2 });
    expect(() => index.add('/123456789', 1)).toThrow(InvalidFilterError);
    expect(() => index.add('/a/b/>', 1)).toThrow(InvalidFilterError);
    expect(() => index.add({ kind: 'tokens', value: '/a/b/c' }, 1)).toThrow(InvalidFilterError);
    expect(index.size).toBe(0);
    expect(index.nodeCount).toBe(0);
  });
});

describe('matching semantics', () => {
  it.each(TABLE)('%j', (filter, expected) => {
    const got = SUBJECTS.filter((s) => matchesFilter(filter, s));
    expect(got).toEqual(expected);
    const index = new SubjectIndex<string>();
    index.add(filter, 'v');
    expect(SUBJECTS.filter((s) => index.match(s).has('v'))).toEqual(expected);
  });

  it('object filters are taken literally', () => {
    const index = new SubjectIndex<string>();
    index.add({ kind: 'prefix', value: 'count' }, 'raw');
    index.add({ kind: 'tokens', value: '/counter/x' }, 'exact');
    index.add({ kind: 'prefix', value: '/a/*' }, 'star-literal');
    expect([...index.match('counter')]).toEqual(['raw']);
    expect([...index.match('/counter/x')]).toEqual(['exact']);
    expect([...index.match('counter/x')]).toEqual(['raw', 'exact']);
    expect([...index.match('/a/*/b')]).toEqual(['star-literal']);
    expect(index.match('/a/b').size).toBe(0);
    expect(() => index.add({ kind: 'nope', value: '/a' } as unknown as SubjectFilter, 'x')).toThrow(InvalidFilterError);
  });

  it('all filters in one index give the same answers as matchesFilter, each value once', () => {
    const index = new SubjectIndex<number>();
    TABLE.forEach(([filter], i) => {
      index.add(filter, i);
      index.add(filter, 1000 + (i % 3));
    });
    for (const subject of SUBJECTS) {
      const expected = new Set<number>();
      TABLE.forEach(([filter], i) => {
        if (matchesFilter(filter, subject)) expected.add(i).add(1000 + (i % 3));
      });
      expect(new Set(index.match(subject)), subject).toEqual(expected);
      const seen: number[] = [];
      expect(index.forEachMatch(subject, (v) => seen.push(v))).toBe(expected.size);
      expect(seen.length).toBe(expected.size);
      expect(new Set(seen)).toEqual(expected);
    }
  });

  it('random filters agree with matchesFilter', () => {
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const words = ['a', 'b', 'ab', 'ö', '🐍', ''];
    const subject = (): string => '/' + Array.from({ length: 1 + rand(4) }, () => words[rand(words.length)]).join('/');
    const filters: string[] = [];
    for (let i = 0; i < 300; i++) {
      if (rand(2) === 0) {
        const s = subject();
        filters.push(s.slice(0, rand(s.length + 1)));
      } else {
        const n = 1 + rand(4);
        const parts = Array.from({ length: n }, () => ['*', 'a', 'b', 'ö'][rand(4)]!);
        if (rand(2) === 0) parts[n - 1] = '>';
        filters.push('/' + parts.join('/'));
      }
    }
    const index = new SubjectIndex<number>();
    filters.forEach((f, i) => index.add(f, i % 50));
    for (let k = 0; k < 500; k++) {
      const s = subject();
      const expected = new Set<number>();
      filters.forEach((f, i) => matchesFilter(f, s) && expected.add(i % 50));
      expect(index.match(s), s).toEqual(expected);
    }
  });
});

describe('SubjectIndex bookkeeping', () => {
  it('add, has and remove are per (filter, value) pair; equal filters after parsing are one', () => {
    const index = new SubjectIndex<string>();
    expect(index.add('/counter', 'a')).toBe(true);
    expect(index.add('counter', 'a')).toBe(false);
    expect(index.add('pytroll://counter', 'a')).toBe(false);
    expect(index.add('/counter', 'b')).toBe(true);
    expect(index.add('/counter/>', 'a')).toBe(true);
    expect(index.add('counter/>', 'a')).toBe(false);
    expect(index.add('/counter/*', 'a')).toBe(true);
    expect(index.size).toBe(4);
    expect(index.has('counter', 'b')).toBe(true);
    expect(index.has('/counter/>', 'b')).toBe(false);
    expect(index.has('/nothing', 'a')).toBe(false);
    expect([...index.match('/counter/x')].sort()).toEqual(['a', 'b']);
    expect(index.remove('/counter', 'c')).toBe(false);
    expect(index.remove('/nothing/*', 'a')).toBe(false);
    expect(index.remove('/counter/>', 'b')).toBe(false);
    expect(index.remove('/counter', 'a')).toBe(true);
    expect(index.remove('/counter', 'a')).toBe(false);
    expect(index.size).toBe(3);
    expect([...index.match('/counter/x')].sort()).toEqual(['a', 'b']);
    expect([...index.match('/counterfeit')]).toEqual(['b']);
    expect(index.remove('/counter/>', 'a')).toBe(true);
    expect([...index.match('/counter/x/y')]).toEqual(['b']);
    expect([...index.match('/counter/x')].sort()).toEqual(['a', 'b']);
  });

  it('removing the last subscriptions frees the trie nodes', () => {
    const index = new SubjectIndex<number>();
    const filters = ['', '/counter', '/count', '/counterfeit/x', '/oper/polar/norrköping', '>', '/a/*/>', '/a/*/b', '/a/b', '/a/b/>', '/ünï/*'];
    expect(index.nodeCount).toBe(0);
    index.add('/counter', 0);
    expect(index.nodeCount).toBe('/counter'.length);
    index.add('/a/*/b', 0);
    expect(index.nodeCount).toBe('/counter'.length + 3);
    index.remove('/counter', 0);
    index.remove('/a/*/b', 0);
    expect(index.nodeCount).toBe(0);
    filters.forEach((f, i) => {
      index.add(f, i);
      index.add(f, -1);
    });
    expect(index.size).toBe(filters.length * 2);
    const full = index.nodeCount;
    for (let i = filters.length - 1; i >= 0; i--) index.remove(filters[i]!, -1);
    expect(index.nodeCount).toBe(full);
    index.remove('/counter', 1);
    expect(index.nodeCount).toBe(full);
    index.remove('/counterfeit/x', 3);
    expect(index.nodeCount).toBe(full - ('/counterfeit/x'.length - '/count'.length));
    filters.forEach((f, i) => index.remove(f, i));
    expect(index.size).toBe(0);
    expect(index.nodeCount).toBe(0);
    expect(index.match('/counter/x').size).toBe(0);
    index.add('/x', 1);
    index.add('/x/*', 1);
    index.clear();
    expect(index.size).toBe(0);
    expect(index.nodeCount).toBe(0);
    expect(index.match('/x/y').size).toBe(0);
  });

  it('forEachMatch reuses its scratch set, supports nested calls, changes from fn and throwing fn', () => {
    const index = new SubjectIndex<string>();
    index.add('/a', 'x');
    index.add('/a/>', 'x');
    index.add('/a/*', 'y');
    const outer: string[] = [];
    const inner: string[] = [];
    index.forEachMatch('/a/b', (v) => {
      outer.push(v);
      index.forEachMatch('/a', (w) => inner.push(w));
      index.remove('/a/*', 'y');
    });
    expect(outer.sort()).toEqual(['x', 'y']);
    expect(inner).toEqual(['x', 'x']);
    expect(() =>
      index.forEachMatch('/a/b', () => {
        throw new Error('boom');
      }),
    ).toThrow('boom');
    const after: string[] = [];
    expect(index.forEachMatch('/a/b', (v) => after.push(v))).toBe(1);
    expect(after).toEqual(['x']);
  });
});
