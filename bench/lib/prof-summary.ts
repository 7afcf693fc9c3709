/**
 * Summarises a V8 `.cpuprofile` (from `--cpu-prof`, e.g. `bench/messaging.ts
 * --prof=DIR`): the functions with the most self time, and with the most
 * total (inclusive) time.
 *
 *   npx tsx bench/lib/prof-summary.ts FILE.cpuprofile [top=25]
 *
 * tsx runs TypeScript as whitespace-minified JavaScript (one line per file),
 * so the profile only has columns. Source lines are recovered from the
 * source maps in tsx's transform cache (`$TMPDIR/tsx-<uid>/`): the newest
 * cached transform of the file whose function names match the profile.
 * Shown as `file.ts:LINE`; `file.ts:1` means no map was found.
 * @module
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const file = process.argv[2];
if (file === undefined) throw new Error('usage: prof-summary.ts FILE.cpuprofile [top]');
const top = Number(process.argv[3] ?? 25);
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;

const byId = new Map<number, ProfileNode>();
const parent = new Map<number, number>();
for (const n of profile.nodes) {
  byId.set(n.id, n);
  for (const c of n.children ?? []) parent.set(c, n.id);
}

// --- source lines from tsx's transform cache -------------------------------

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Decodes a source map's mappings for generated line 0: [generated column, source line] pairs. */
function decodeFirstLine(mappings: string): [number, number][] {
  const out: [number, number][] = [];
  let genCol = 0;
  let srcLine = 0;
  const line = mappings.split(';')[0] ?? '';
  for (const seg of line.split(',')) {
    if (!seg) continue;
    const vals: number[] = [];
    let value = 0;
    let shift = 0;
    for (const ch of seg) {
      const digit = B64.indexOf(ch);
      value += (digit & 31) << shift;
      if (digit & 32) shift += 5;
      else {
        vals.push(value & 1 ? -(value >>> 1) : value >>> 1);
        value = 0;
        shift = 0;
      }
    }
    genCol += vals[0] ?? 0;
    if (vals.length >= 4) {
      srcLine += vals[2]!;
      out.push([genCol, srcLine]);
    }
  }
  return out;
}

interface CachedTransform {
  code: string;
  lines: [number, number][];
  mtime: number;
}

const cacheDirs = (() => {
  try {
    return readdirSync(tmpdir())
      .filter((d) => d.startsWith('tsx-'))
      .map((d) => join(tmpdir(), d));
  } catch {
    return [];
  }
})();
let transforms: Map<string, CachedTransform[]> | null = null;

function loadTransforms(): Map<string, CachedTransform[]> {
  const map = new Map<string, CachedTransform[]>();
  for (const dir of cacheDirs) {
    for (const f of readdirSync(dir)) {
      const path = join(dir, f);
      try {
        const st = statSync(path);
        if (!st.isFile()) continue;
        const entry = JSON.parse(readFileSync(path, 'utf8')) as { code?: string; map?: { sources?: string[]; mappings?: string } };
        const source = entry.map?.sources?.[0];
        if (!entry.code || !source || !entry.map?.mappings) continue;
        const list = map.get(source) ?? [];
        list.push({ code: entry.code, lines: decodeFirstLine(entry.map.mappings), mtime: st.mtimeMs });
        map.set(source, list);
      } catch {
        // not a transform entry
      }
    }
  }
  for (const list of map.values()) list.sort((a, b) => b.mtime - a.mtime);
  return map;
}

const chosen = new Map<string, CachedTransform | null>();

/** The cached transform matching the profile's functions in this file. */
function transformFor(path: string): CachedTransform | null {
  if (chosen.has(path)) return chosen.get(path)!;
  transforms ??= loadTransforms();
  const named = profile.nodes.map((n) => n.callFrame).filter((cf) => cf.url.endsWith(path) && cf.functionName && cf.lineNumber === 0);
  const fits = (t: CachedTransform): boolean =>
    named.every((cf) => {
      const near = t.code.slice(Math.max(0, cf.columnNumber - cf.functionName.length - 12), cf.columnNumber + 4);
      return near.includes(cf.functionName);
    });
  const hit = (transforms.get(path) ?? []).find(fits) ?? null;
  chosen.set(path, hit);
  return hit;
}

function sourceLine(cf: CallFrame, path: string): number {
  if (cf.lineNumber !== 0) return cf.lineNumber + 1;
  const t = transformFor(path);
  if (t === null) return 1;
  let line = 0;
  for (const [col, l] of t.lines) {
    if (col > cf.columnNumber) break;
    line = l;
  }
  return line + 1;
}

const label = (cf: CallFrame): string => {
  const url = cf.url.replace(/^file:\/\//, '');
  const line = url.startsWith('/') && url.endsWith('.ts') ? sourceLine(cf, url) : cf.lineNumber + 1;
  const where = url ? `${url.startsWith('/') ? relative(process.cwd(), url) : url}:${line}` : '';
  return `${cf.functionName || '(anonymous)'} ${where}`.trim();
};

const self = new Map<string, number>();
const total = new Map<string, number>();
let all = 0;
for (let i = 0; i < profile.samples.length; i++) {
  const dt = profile.timeDeltas[i] ?? 0;
  all += dt;
  let id: number | undefined = profile.samples[i]!;
  const first = byId.get(id)!;
  const s = label(first.callFrame);
  self.set(s, (self.get(s) ?? 0) + dt);
  const seen = new Set<string>();
  while (id !== undefined) {
    const l = label(byId.get(id)!.callFrame);
    if (!seen.has(l)) {
      seen.add(l);
      total.set(l, (total.get(l) ?? 0) + dt);
    }
    id = parent.get(id);
  }
}

const print = (title: string, m: Map<string, number>): void => {
  console.log(`\n${title} (of ${(all / 1000).toFixed(0)} ms sampled)`);
  for (const [name, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${(us / 1000).toFixed(1).padStart(9)} ms ${((100 * us) / all).toFixed(1).padStart(5)}%  ${name}`);
  }
};
print('self time', self);
print('total time', total);
