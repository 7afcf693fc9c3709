/**
 * The published package as a user gets it: `npm run build`, `npm pack`, and
 * the tarball installed into an empty project (offline, from a lockfile made
 * of this repository's: the npm cache holds every tarball after `npm ci`).
 * Then, in that project: ESM import without sqlite3 installed,
 * `require('snakemq-ts')`, the `snakemq-ts/sqlite` entry with and without
 * sqlite3, the published types with `tsc`, and `npx smq --help`.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const TSC = join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const NPX = process.platform === 'win32' ? 'npx.cmd' : 'npx';

/** Names the package entry exported before and must not any more (internals), or that moved to `snakemq-ts/sqlite`. */
const NOT_EXPORTED = [
  'frames',
  'PacketDecoder',
  'encodePacket',
  'wholePacketEnd',
  'HEADER_SIZE',
  'BIG_PIECE',
  'encodeRequest',
  'encodeReply',
  'decodeRequest',
  'decodeReply',
  'tryDecodeRequest',
  'tryDecodeReply',
  'reqIdKey',
  'REQUEST_PREFIX',
  'REPLY_PREFIX',
  'remoteErrorFromReply',
  'SqliteQueuesStorage',
];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env: { ...process.env, ...env }, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function ok(cmd: string, args: string[], cwd: string, env?: NodeJS.ProcessEnv): Promise<string> {
  const r = await run(cmd, args, cwd, env);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** Runs an ES module in the project; returns what it printed as JSON. */
async function esm(app: string, name: string, source: string): Promise<unknown> {
  await writeFile(join(app, name), source);
  return JSON.parse((await ok(process.execPath, [name], app)).trim().split('\n').pop()!);
}

type LockEntry = Record<string, unknown> & {
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
};

/**
 * The lockfile of a project depending on the tarball only: the tarball's
 * entry, and the repository's lock entries of every runtime dependency, so
 * that `npm ci --offline` needs no registry metadata.
 */
async function lockfile(tgz: string, tgzBytes: Buffer): Promise<object> {
  const pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8'));
  const repoLock = JSON.parse(await readFile(join(REPO, 'package-lock.json'), 'utf8'));
  const all: Record<string, LockEntry> = repoLock.packages;
  const packages: Record<string, LockEntry> = {};
  const visit = (from: string, name: string): void => {
    // Node's resolution over the lock's layout: the nearest node_modules/<name> up from `from`.
    for (let dir = from; ; dir = dir.replace(/\/?node_modules\/(@[^/]+\/)?[^/]+$/, '')) {
      const key = `${dir ? `${dir}/` : ''}node_modules/${name}`;
      if (all[key]) {
        if (packages[key]) return;
        const { dev: _dev, devOptional, peer: _peer, ...entry } = all[key]!;
        packages[key] = devOptional ? { ...entry, optional: true } : entry;
        for (const dep of Object.keys({ ...entry.dependencies, ...entry.optionalDependencies })) visit(key, dep);
        return;
      }
      if (!dir) return;
    }
  };
  for (const dep of Object.keys(pkg.dependencies)) visit('', dep);
  return {
    name: 'app',
    version: '1.0.0',
    lockfileVersion: 3,
    requires: true,
    packages: {
      '': { name: 'app', version: '1.0.0', dependencies: { [pkg.name]: `file:${tgz}` } },
      [`node_modules/${pkg.name}`]: {
        version: pkg.version,
        resolved: `file:${tgz}`,
        integrity: `sha512-${createHash('sha512').update(tgzBytes).digest('base64')}`,
        license: pkg.license,
        dependencies: pkg.dependencies,
        bin: pkg.bin,
        engines: pkg.engines,
        peerDependencies: pkg.peerDependencies,
        peerDependenciesMeta: pkg.peerDependenciesMeta,
      },
      ...packages,
    },
  };
}

describe('the packed package, installed into an empty project', { timeout: 120_000 }, () => {
  let work: string;
  let app: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'snakemq-pack-test-'));
    app = join(work, 'app');
    // A fresh dist/: tsc never deletes outputs of sources that moved.
    await rm(join(REPO, 'dist'), { recursive: true, force: true });
    await ok(NPM, ['run', 'build'], REPO);
    const packed = JSON.parse(await ok(NPM, ['pack', '--json', '--pack-destination', work], REPO));
    const tgz: string = packed[0].filename;
    await mkdir(app);
    const pkg = { name: 'app', version: '1.0.0', private: true, type: 'module', dependencies: { 'snakemq-ts': `file:../${tgz}` } };
    await writeFile(join(app, 'package.json'), JSON.stringify(pkg, null, 2));
    const lock = await lockfile(`../${tgz}`, await readFile(join(work, tgz)));
    await writeFile(join(app, 'package-lock.json'), JSON.stringify(lock, null, 2));
    await ok(NPM, ['ci', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], app);
  }, 240_000);

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('ships dist, bin, LICENSE and README, and no test, bench or TypeScript source', async () => {
    const root = join(app, 'node_modules', 'snakemq-ts');
    expect((await readdir(root)).sort()).toEqual(['LICENSE', 'README.md', 'bin', 'dist', 'package.json']);
    const map = JSON.parse(await readFile(join(root, 'dist', 'index.js.map'), 'utf8'));
    expect(map.sourcesContent?.length).toBe(map.sources.length); // maps that work without the sources
  });

  it("import 'snakemq-ts' works without sqlite3 installed, and exports no internals", async () => {
    const out = (await esm(
      app,
      'main.mjs',
      `import * as smq from 'snakemq-ts';
       import { createRequire } from 'node:module';
       let sqlite3 = 'resolvable';
       try { createRequire(import.meta.url).resolve('sqlite3'); } catch { sqlite3 = 'missing'; }
       console.log(JSON.stringify({ keys: Object.keys(smq), sqlite3 }));`,
    )) as { keys: string[]; sqlite3: string };
    expect(out.sqlite3).toBe('missing');
    expect(out.keys).toEqual(expect.arrayContaining(['Messaging', 'Link', 'Packeter', 'RpcClient', 'RpcServer', 'MemoryQueuesStorage', 'StorageError']));
    expect(out.keys.filter((k) => NOT_EXPORTED.includes(k))).toEqual([]);
  });

  it("require('snakemq-ts') works (require of an ES module, Node >= 20.19)", async () => {
    await writeFile(
      join(app, 'main.cjs'),
      "const smq = require('snakemq-ts'); const { SqliteQueuesStorage } = require('snakemq-ts/sqlite');\n" +
        'console.log(typeof smq.Messaging, typeof smq.Link, typeof SqliteQueuesStorage.open);',
    );
    expect((await ok(process.execPath, ['main.cjs'], app)).trim()).toBe('function function function');
  });

  it("without sqlite3, 'snakemq-ts/sqlite' imports and open() rejects with a StorageError naming npm install sqlite3", async () => {
    const out = await esm(
      app,
      'no-sqlite3.mjs',
      `import { StorageError } from 'snakemq-ts';
       import { SqliteQueuesStorage } from 'snakemq-ts/sqlite';
       try { await SqliteQueuesStorage.open('q.db'); console.log('{"opened":true}'); }
       catch (e) { console.log(JSON.stringify({ storageError: e instanceof StorageError, code: e.code, message: e.message, cause: e.cause?.code })); }`,
    );
    expect(out).toMatchObject({ storageError: true, code: 'SMQ_ERR_STORAGE', cause: 'ERR_MODULE_NOT_FOUND' });
    expect((out as { message: string }).message).toContain('npm install sqlite3');
  });

  it('the published types typecheck a program, with no @internal name in them', async () => {
    const source = `import { Link, Messaging, Message, Packeter, MemoryQueuesStorage, RpcClient, type MessagingOptions } from 'snakemq-ts';
import * as smq from 'snakemq-ts';
import { SqliteQueuesStorage, type SqliteStorageOptions } from 'snakemq-ts/sqlite';

const options: MessagingOptions = { storage: new MemoryQueuesStorage() };
const messaging = new Messaging('bob', new Packeter(new Link()), options);
messaging.send('alice', new Message(Buffer.from('hi')));
const rpc = new RpcClient(messaging);
void rpc;
const sqlite: SqliteStorageOptions = { durability: 'power' };
const storage: Promise<SqliteQueuesStorage> = SqliteQueuesStorage.open('q.db', sqlite);
void storage;
${NOT_EXPORTED.map((name) => `// @ts-expect-error not exported\nvoid smq.${name};`).join('\n')}
`;
    await writeFile(join(app, 'use.ts'), source);
    const tsconfig = {
      compilerOptions: {
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        target: 'ES2022',
        lib: ['ES2023'],
        strict: true,
        noEmit: true,
        skipLibCheck: false,
        types: ['node'],
        typeRoots: [join(REPO, 'node_modules', '@types')],
      },
      files: ['use.ts'],
    };
    await writeFile(join(app, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
    const r = await run(process.execPath, [TSC, '-p', 'tsconfig.json'], app);
    expect(r.stdout + r.stderr, 'tsc output').toBe('');
    expect(r.code).toBe(0);
    const dts: string[] = [];
    const dist = join(app, 'node_modules', 'snakemq-ts', 'dist');
    for (const f of await readdir(dist, { recursive: true })) if (f.endsWith('.d.ts')) dts.push(f);
    const internal: string[] = [];
    for (const f of dts) if ((await readFile(join(dist, f), 'utf8')).includes('@internal')) internal.push(f);
    expect(internal).toEqual([]);
  });

  it('npx smq --help works', async () => {
    const out = await ok(NPX, ['--no', '--', 'smq', '--help'], app);
    expect(out).toContain('smq');
    expect(out.toLowerCase()).toContain('usage');
  });

  // Last: installs sqlite3 into the project (a link to this repository's build of it).
  it("with sqlite3 installed, 'snakemq-ts/sqlite' stores and loads messages", async () => {
    await symlink(join(REPO, 'node_modules', 'sqlite3'), join(app, 'node_modules', 'sqlite3'), 'dir');
    const out = await esm(
      app,
      'sqlite.mjs',
      `import { SqliteQueuesStorage } from 'snakemq-ts/sqlite';
       const storage = await SqliteQueuesStorage.open('q.db', { identity: 'bob' });
       await storage.push('alice', [{ uuid: Buffer.alloc(16, 1), data: Buffer.from('hi'), flags: 1, ttl: null }]);
       const queues = await storage.load();
       await storage.close();
       console.log(JSON.stringify({ identity: storage.identity, queues: queues.map((q) => [q.ident, q.messages.map((m) => m.data.toString())]) }));`,
    );
    expect(out).toEqual({ identity: 'bob', queues: [['alice', ['hi']]] });
  });
});
