/**
 * Runs the README's first example ("Bob and alice") exactly as written: the
 * code block is copied byte for byte into a temporary `.mts` file and run
 * with tsx in a child process.
 *
 * The block imports 'snakemq-ts'. Inside the checkout that name resolves
 * through a `paths` mapping to lib/index.ts, in a tsconfig.json written
 * next to the file (tsx reads `paths` from the tsconfig of its working
 * directory). Rejected: package self-reference (`exports`) needs a built
 * dist/, which may be missing or stale, and works only from inside the
 * package directory; rewriting the import in the test would no longer run
 * the block as written.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const TSX = createRequire(import.meta.url).resolve('tsx/cli');
const dir = mkdtempSync(join(tmpdir(), 'smq-readme-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The first ```ts block under the README heading `heading`. */
function codeBlock(heading: string): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const at = readme.indexOf(`\n## ${heading}\n`);
  expect(at, `README has a '## ${heading}' section`).toBeGreaterThan(0);
  const block = /```ts\n([\s\S]*?)```/.exec(readme.slice(at));
  expect(block, `a ts block under '## ${heading}'`).not.toBeNull();
  return block![1]!;
}

function run(file: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TSX, file], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DEBUG: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('README', () => {
  it('"Bob and alice" runs as written, prints the reply and exits, in under ten lines', async () => {
    const code = codeBlock('Bob and alice');
    expect(code).toMatch(/^import \{[^}]*\} from 'snakemq-ts';\n/);
    expect(code.trimEnd().split('\n').length).toBeLessThanOrEqual(10);
    writeFileSync(join(dir, 'bob-and-alice.mts'), code);
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', paths: { 'snakemq-ts': [join(ROOT, 'lib', 'index.ts')] } },
      }),
    );
    const result = await run('bob-and-alice.mts');
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe('bob: hi alice, got "hi bob"\n');
    expect(result.stderr).toBe('');
  }, 40_000);
});
