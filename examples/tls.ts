/**
 * Mutual TLS — counterpart of snakeMQ's examples/ssl_{listener,connector}.py.
 *
 * Generates a throw-away CA and certificates for bob and alice with the
 * system `openssl` in a temp dir (falls back to test/fixtures/tls when there
 * is no openssl). bob listens on tls:// and asks for a client certificate;
 * alice connects with hers. Both use the `authorize: certificateIdentity()`
 * policy: a peer may take an identity only if it is the CN (or a DNS subject
 * alternative name) of its verified certificate, checked when it identifies,
 * before any of its messages is read. Then trudy, who has a certificate
 * from the CA (alice's) but claims to be carol, is refused; and mallory, who
 * has no client certificate, is turned away by TLS itself.
 *
 *   npx tsx examples/tls.ts
 *
 * In an application, import from 'snakemq-ts' instead of '../lib/index.js'.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Link, Packeter, Messaging, Message, certificateIdentity, type TlsOptions } from '../lib/index.js';
import { deadline, ROOT } from './support/processes.js';

deadline(40_000);
const log = (who: string, text: string) => console.log(`[${who}] ${text}`);

/** Writes ca.pem and <name>.pem / <name>-key.pem for each name (CN=name) into `dir`. */
function makeCertificates(dir: string, names: string[]): void {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'ca-key.pem',
    '-out',
    'ca.pem',
    '-days',
    '1',
    '-subj',
    '/CN=snakemq example CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign',
  );
  for (const name of names) {
    openssl('req', ...ec, '-keyout', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    // Both server and client use: any peer may listen or connect. SAN for the address we connect to.
    writeFileSync(join(dir, `${name}.ext`), 'extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n');
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca-key.pem',
      '-set_serial',
      `${Date.now()}`,
      '-days',
      '1',
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.pem`,
    );
  }
}

const dir = await mkdtemp(join(tmpdir(), 'snakemq-tls-'));
try {
  let certDir = dir;
  try {
    makeCertificates(dir, ['bob', 'alice']);
    log('setup', `certificates generated with openssl in ${dir}`);
  } catch (error) {
    certDir = join(ROOT, 'test', 'fixtures', 'tls');
    log('setup', `openssl failed (${(error as Error).message.split('\n')[0]}); using ${certDir}`);
  }
  const pem = (name: string) => readFile(join(certDir, `${name}.pem`));
  const ca = await pem('ca');
  const tlsOf = async (name: string): Promise<TlsOptions> => ({ ca, cert: await pem(name), key: await pem(`${name}-key`) });

  /** A peer whose connections must carry a certificate for the identity they announce. */
  function peer(ident: string) {
    const link = new Link();
    const messaging = new Messaging(ident, new Packeter(link), { authorize: certificateIdentity() });
    messaging.on('connect', (connId, remote) => {
      const tls = link.connection(connId)?.tls;
      const cn = tls && 'subject' in tls.peerCertificate ? tls.peerCertificate.subject.CN : undefined;
      log(ident, `${remote} connected over ${tls?.protocol} (${tls?.cipher}); peer certificate CN=${cn}, verified: ${tls?.authorized}`);
    });
    messaging.on('protocolError', (_connId, error) => log(ident, `refused a peer: ${error.name} (${error.code}): ${error.message}`));
    return { link, messaging };
  }

  // --- bob listens and requires a client certificate signed by the CA ------
  const bob = peer('bob');
  const url = await bob.link.addListener('tls://127.0.0.1:0', { tls: { ...(await tlsOf('bob')), requestCert: true } });
  log('bob', `listening on ${url}`);
  bob.link.on('acceptFailed', (endpoint, error) => log('bob', `refused a connection on ${endpoint}: ${error.code}`));
  bob.messaging.on('message', (_connId, from, message) => {
    log('bob', `from ${from}: "${message.data.toString()}"`);
    bob.messaging.send(from, new Message(`hello ${from}, your certificate checks out`));
  });

  // --- alice connects with her certificate ----------------------------------
  const alice = peer('alice');
  const answered = new Promise<void>((resolve) => {
    alice.messaging.on('message', (_connId, from, message) => {
      log('alice', `from ${from}: "${message.data.toString()}"`);
      resolve();
    });
  });
  alice.link.addConnector(url, { tls: await tlsOf('alice') });
  alice.messaging.send('bob', new Message('hi bob, over mutual TLS'));
  await answered;

  // --- trudy got hold of alice's certificate (signed by the CA) and claims to be carol
  const trudy = new Link();
  const impostor = new Messaging('carol', new Packeter(trudy));
  const unauthorized = new Promise<void>((resolve) => {
    bob.messaging.once('protocolError', () => resolve());
  });
  impostor.send('bob', new Message('hi bob, carol here')); // never delivered
  trudy.addConnector(url, { tls: await tlsOf('alice') });
  await unauthorized;
  await impostor.close(); // also stops its reconnect attempts

  // --- mallory trusts the CA but has no certificate of her own --------------
  const mallory = new Link();
  const refused = new Promise<void>((resolve) => {
    mallory.on('connectFailed', (endpoint, error) => {
      log('mallory', `connect to ${endpoint} failed: ${error.name} (${error.code})`);
      resolve();
    });
  });
  mallory.addConnector(url, { tls: { ca } });
  await refused;
  await mallory.close(); // also stops its reconnect attempts

  await Promise.all([alice.messaging.close(), bob.messaging.close()]);
  log('bob', 'closed');
} finally {
  await rm(dir, { recursive: true, force: true });
}
