#!/usr/bin/env node
// The `smq` command (package.json "bin"). Plain JavaScript on purpose: it must
// start without a build step and without tsx.
//
// - In a git checkout (lib/cli/main.ts present and the tsx devDependency
//   installed), it runs the TypeScript sources through tsx, in this process:
//   no build needed, never a stale dist/.
// - In a published package (only dist/ and bin/ are shipped, no tsx), it runs
//   the compiled dist/cli/main.js.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'lib', 'cli', 'main.ts');
const built = join(root, 'dist', 'cli', 'main.js');

async function entry() {
  if (existsSync(source) && process.env.SMQ_USE_DIST !== '1') {
    try {
      const { register } = await import('tsx/esm/api');
      register();
      return source;
    } catch (error) {
      // tsx absent (production install of a checkout): use dist/ if built.
      if (!existsSync(built)) {
        process.stderr.write(
          `smq: cannot run the TypeScript sources (${error instanceof Error ? error.message : String(error)}).\n` +
            "smq: install the dev dependencies ('npm ci') or build dist/ ('npm run build').\n",
        );
        process.exit(1);
      }
    }
  }
  if (existsSync(built)) return built;
  process.stderr.write(`smq: neither ${source} nor ${built} exists; run 'npm run build'.\n`);
  process.exit(1);
}

const { main } = await import(pathToFileURL(await entry()).href);
await main(process.argv.slice(2));
