import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { integer, parse, required } from './args.js';
import { Failure, UsageError } from './errors.js';

const OPTIONS = {
  out: { type: 'string' },
  days: { type: 'string' },
  force: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Peer names: used as file names and as the certificate's CN. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const DEFAULT_DAYS = 825;

/** Runs openssl; resolves with stdout, rejects with a {@link Failure} carrying its stderr. */
function openssl(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error === null) return resolve(stdout);
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        return reject(new Failure('openssl not found: install OpenSSL (or put it on PATH) to create certificates'));
      }
      const detail = stderr.trim().split('\n').slice(-3).join(' / ');
      reject(new Failure(`openssl ${args[0]} failed: ${detail || error.message}`));
    });
  });
}

/** A minimal request config, so that the system's openssl.cnf does not matter. */
function reqConfig(o: string, cn: string, caExtensions: boolean): string {
  let text = `[req]\nprompt = no\ndistinguished_name = dn\n`;
  if (caExtensions) text += `x509_extensions = v3_ca\n`;
  text += `[dn]\nO = ${o}\nCN = ${cn}\n`;
  if (caExtensions) {
    text += `[v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n`;
  }
  return text;
}

const LEAF_EXTENSIONS = `basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`;

const newKey = (file: string) => openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file]);
/** A random positive 128-bit serial number. */
const serial = () => `0x${((randomBytes(16)[0]! & 0x7f) | 0x10).toString(16)}${randomBytes(15).toString('hex')}`;

/** `smq certs`: a CA plus a certificate and key per name, made with the system's openssl. */
export async function certs(args: string[]): Promise<void> {
  const { values, positionals: names } = parse('certs', args, OPTIONS, true);
  const out = required('certs', values, 'out');
  const days = integer('certs', values, 'days', 36_500) ?? DEFAULT_DAYS;
  if (days === 0) throw new UsageError('--days must be at least 1', 'certs');
  if (names.length === 0) throw new UsageError('give at least one NAME', 'certs');
  for (const name of names) {
    if (!NAME.test(name)) {
      throw new UsageError(`invalid NAME '${name}': use letters, digits, '.', '_' and '-' (at most 64, not starting with a punctuation)`, 'certs');
    }
    if (name === 'ca' || name === 'ca-key') throw new UsageError(`NAME '${name}' would overwrite the CA files`, 'certs');
  }
  if (new Set(names).size !== names.length) throw new UsageError('a NAME is given twice', 'certs');
  const force = values.force === true;

  await openssl(['version']); // fails early and clearly when openssl is missing
  try {
    await mkdir(out, { recursive: true });
  } catch (error) {
    throw new Failure(`cannot create --out ${out}: ${(error as Error).message}`);
  }
  const caCert = join(out, 'ca.pem');
  const caKey = join(out, 'ca-key.pem');
  const reuseCa = existsSync(caCert) && existsSync(caKey);
  if (!reuseCa && (existsSync(caCert) || existsSync(caKey))) {
    throw new Failure(`${out} holds only one of ca.pem and ca-key.pem: remove it, or restore the other`);
  }
  if (!force) {
    for (const name of names) {
      for (const file of [join(out, `${name}.pem`), join(out, `${name}-key.pem`)]) {
        if (existsSync(file)) throw new Failure(`${file} exists (use --force to overwrite)`);
      }
    }
  }

  // Work in a private directory next to the results, then rename: nothing half-written is left behind.
  const work = await mkdtemp(join(out, '.smq-certs-'));
  const written: string[] = [];
  try {
    if (!reuseCa) {
      await writeFile(join(work, 'ca.cnf'), reqConfig('snakemq-ts', 'smq CA', true));
      await newKey(join(work, 'ca-key.pem'));
      await openssl([
        'req',
        '-x509',
        '-new',
        '-config',
        join(work, 'ca.cnf'),
        '-key',
        join(work, 'ca-key.pem'),
        '-sha256',
        '-days',
        String(days),
        '-set_serial',
        serial(),
        '-out',
        join(work, 'ca.pem'),
      ]);
      await chmod(join(work, 'ca-key.pem'), 0o600);
      await chmod(join(work, 'ca.pem'), 0o644);
    }
    const signer = reuseCa ? { cert: caCert, key: caKey } : { cert: join(work, 'ca.pem'), key: join(work, 'ca-key.pem') };
    await writeFile(join(work, 'leaf.ext'), LEAF_EXTENSIONS);
    for (const name of names) {
      const key = join(work, `${name}-key.pem`);
      await writeFile(join(work, `${name}.cnf`), reqConfig('snakemq-ts', name, false));
      await newKey(key);
      await openssl(['req', '-new', '-config', join(work, `${name}.cnf`), '-key', key, '-out', join(work, `${name}.csr`)]);
      await openssl([
        'x509',
        '-req',
        '-in',
        join(work, `${name}.csr`),
        '-CA',
        signer.cert,
        '-CAkey',
        signer.key,
        '-set_serial',
        serial(),
        '-sha256',
        '-days',
        String(days),
        '-extfile',
        join(work, 'leaf.ext'),
        '-out',
        join(work, `${name}.pem`),
      ]);
      await openssl(['verify', '-CAfile', signer.cert, join(work, `${name}.pem`)]);
      await chmod(key, 0o600);
      await chmod(join(work, `${name}.pem`), 0o644);
    }
    const move = async (file: string) => {
      await rename(join(work, file), join(out, file));
      written.push(join(out, file));
    };
    if (!reuseCa) {
      await move('ca-key.pem');
      await move('ca.pem');
    }
    for (const name of names) {
      await move(`${name}-key.pem`);
      await move(`${name}.pem`);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  if (reuseCa) process.stderr.write(`using the existing CA ${caCert}\n`);
  for (const file of written) process.stdout.write(`${file}\n`);
}
