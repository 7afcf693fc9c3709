/**
 * certificateIdentity(): the ready `authorize` policy binding identities to
 * verified TLS certificates. Unit tests on ConnectionInfo objects, then end
 * to end over real mutual TLS on 127.0.0.1: a forging peer's MESSAGE frames
 * written in the same write as its IDENTIFICATION are never delivered.
 */
import tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { certificateIdentity, parseSubjectAltName } from '../../lib/messaging/authorize.js';
import type { ConnectionInfo } from '../../lib/link/types.js';
import { ErrorCode, InvalidOptionsError, type SnakeMQError } from '../../lib/errors.js';
import { closeAllPeers, createPeer, waitEvent } from '../helpers/peers.js';
import { certs } from '../link/helpers.js';

function conn(tlsInfo: Partial<NonNullable<ConnectionInfo['tls']>> | undefined, peerCertificate: object = {}): ConnectionInfo {
  return {
    id: 1,
    side: 'listener',
    endpoint: 'tls://127.0.0.1:4443',
    ...(tlsInfo === undefined
      ? {}
      : { tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', authorized: true, ...tlsInfo, peerCertificate: peerCertificate as never } }),
  };
}

const alice = { subject: { O: 'snakemq-ts tests', CN: 'alice' }, subjectaltname: 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1' };

describe('certificateIdentity()', () => {
  it('accepts the identity that is the verified certificate CN or a DNS subject alternative name', () => {
    const policy = certificateIdentity();
    expect(policy('alice', conn({}, alice))).toBe(true);
    expect(policy('localhost', conn({}, alice))).toBe(true);
    expect(policy('bob', conn({}, alice))).toBe(false);
  });

  it('refuses without TLS, without a verified certificate, without a certificate', () => {
    const policy = certificateIdentity();
    expect(policy('alice', conn(undefined))).toBe(false);
    expect(policy('alice', conn({ authorized: false, authorizationError: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }, alice))).toBe(false);
    expect(policy('alice', conn({}, {}))).toBe(false);
    expect(policy('', conn({}, {}))).toBe(false);
    expect(policy('', conn({}, { subject: {} }))).toBe(false);
  });

  it('compares exactly: no case folding, no prefix, no wildcard expansion; other SAN kinds never match', () => {
    const policy = certificateIdentity();
    const cert = { subject: { CN: 'Alice' }, subjectaltname: 'DNS:*.example.com, IP Address:10.0.0.1, URI:spiffe://x/alice, email:alice@example.com' };
    expect(policy('Alice', conn({}, cert))).toBe(true);
    expect(policy('alice', conn({}, cert))).toBe(false);
    expect(policy('Alic', conn({}, cert))).toBe(false);
    expect(policy('Alice ', conn({}, cert))).toBe(false);
    expect(policy('a.example.com', conn({}, cert))).toBe(false);
    expect(policy('*.example.com', conn({}, cert))).toBe(true);
    expect(policy('10.0.0.1', conn({}, cert))).toBe(false);
    expect(policy('spiffe://x/alice', conn({}, cert))).toBe(false);
    expect(policy('alice@example.com', conn({}, cert))).toBe(false);
  });

  it('several CNs: any of them', () => {
    const policy = certificateIdentity();
    const cert = { subject: { CN: ['alice', 'alice-backup'] } };
    expect(policy('alice-backup', conn({}, cert))).toBe(true);
    expect(policy('alice', conn({}, cert))).toBe(true);
    expect(policy('bob', conn({}, cert))).toBe(false);
  });

  it('a quoted SAN (Node quotes values with commas) is one name, not two', () => {
    const policy = certificateIdentity();
    const cert = { subject: { CN: 'x' }, subjectaltname: 'DNS:"bob, DNS:alice", DNS:carol' };
    expect(policy('alice', conn({}, cert))).toBe(false);
    expect(policy('bob', conn({}, cert))).toBe(false);
    expect(policy('bob, DNS:alice', conn({}, cert))).toBe(true);
    expect(policy('carol', conn({}, cert))).toBe(true);
  });

  it('options choose the kinds of name; unknown or bad options and none at all are refused', () => {
    expect(certificateIdentity({ dnsNames: false })('localhost', conn({}, alice))).toBe(false);
    expect(certificateIdentity({ dnsNames: false })('alice', conn({}, alice))).toBe(true);
    expect(certificateIdentity({ commonName: false })('alice', conn({}, alice))).toBe(false);
    expect(certificateIdentity({ commonName: false })('localhost', conn({}, alice))).toBe(true);
    expect(() => certificateIdentity({ commonName: false, dnsNames: false })).toThrow(InvalidOptionsError);
    expect(() => certificateIdentity({ cn: true } as never)).toThrow(InvalidOptionsError);
    expect(() => certificateIdentity({ dnsNames: 'yes' } as never)).toThrow(InvalidOptionsError);
  });
});

describe('parseSubjectAltName', () => {
  it('splits Node subjectaltname text into kinds and values', () => {
    expect(parseSubjectAltName('DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1')).toEqual([
      ['DNS', 'localhost'],
      ['IP Address', '127.0.0.1'],
      ['IP Address', '0:0:0:0:0:0:0:1'],
    ]);
    expect(parseSubjectAltName('URI:http://a/b?c=d, DNS:x')).toEqual([
      ['URI', 'http://a/b?c=d'],
      ['DNS', 'x'],
    ]);
    expect(parseSubjectAltName('')).toEqual([]);
  });

  it('unquotes JSON-quoted values (commas, quotes, backslashes, escapes)', () => {
    expect(parseSubjectAltName('DNS:"a,b", DNS:"q\\"uote", DNS:"back\\\\slash", DNS:"\\u0000nul", DNS:plain')).toEqual([
      ['DNS', 'a,b'],
      ['DNS', 'q"uote'],
      ['DNS', 'back\\slash'],
      ['DNS', '\u0000nul'],
      ['DNS', 'plain'],
    ]);
  });

  it('stops at malformed text instead of guessing', () => {
    expect(parseSubjectAltName('DNS:"unterminated, DNS:alice')).toEqual([]);
    expect(parseSubjectAltName('DNS:"a"junk, DNS:alice')).toEqual([]);
    expect(parseSubjectAltName('DNS:ok, garbage')).toEqual([['DNS', 'ok']]);
  });
});

describe('authorize: certificateIdentity() over mutual TLS', () => {
  const sockets: tls.TLSSocket[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await closeAllPeers();
  });

  function frame(type: number, body: Buffer = Buffer.alloc(0)): Buffer {
    const out = Buffer.alloc(5 + body.length);
    out.writeUInt32BE(body.length + 1);
    out[4] = type;
    body.copy(out, 5);
    return out;
  }
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const message = (text: string) => frame(3, Buffer.concat([Buffer.alloc(16, text.length), u32(0xffffffff), u32(0), Buffer.from(text)]));

  /** A listener (bob's certificate) that requires client certificates and identities that match them. */
  async function server(ident = 'server') {
    const peer = createPeer(ident, { authorize: certificateIdentity() });
    const url = await peer.link.addListener('tls://127.0.0.1:0', { tls: { ...certs.bob(), requestCert: true } });
    const received: string[] = [];
    const errors: SnakeMQError[] = [];
    peer.messaging.on('message', (_c, ident, m) => received.push(`${ident}:${m.data.toString()}`));
    peer.messaging.on('protocolError', (_c, error) => errors.push(error));
    return { peer, port: Number(new URL(url).port), received, errors };
  }

  /** A raw TLS client with alice's certificate that writes `bytes` in one write once the handshake is done. */
  function rawClient(port: number, bytes: Buffer): Promise<{ socket: tls.TLSSocket; closed: Promise<void> }> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...certs.alice() });
      sockets.push(socket);
      const closed = new Promise<void>((res) => socket.once('close', () => res()));
      socket.on('data', () => undefined);
      socket.once('error', reject);
      socket.once('secureConnect', () => {
        socket.off('error', reject);
        socket.on('error', () => undefined);
        socket.write(bytes);
        resolve({ socket, closed });
      });
    });
  }

  const handshake = (ident: string) => [frame(0, u32(1)), frame(2, Buffer.from(ident))];

  it("a peer with alice's certificate identifying as bob is refused, and none of the messages in the same write is delivered", async () => {
    const s = await server();
    const refused = waitEvent(s.peer.messaging, 'protocolError');
    const { closed } = await rawClient(s.port, Buffer.concat([...handshake('bob'), message('forged 1'), message('forged 2'), message('forged 3')]));
    const [, error] = (await refused) as [number, SnakeMQError];
    expect(error.code).toBe(ErrorCode.UNAUTHORIZED);
    expect(error.name).toBe('UnauthorizedError');
    await closed;
    expect(s.received).toEqual([]);
    expect(s.peer.messaging.isConnected('bob')).toBe(false);
    expect(s.errors.map((e) => e.code)).toEqual([ErrorCode.UNAUTHORIZED]);
  });

  it('the same peer identifying as its CN gets through, with the messages of the same write', async () => {
    const s = await server();
    const connected = waitEvent(s.peer.messaging, 'connect');
    await rawClient(s.port, Buffer.concat([...handshake('alice'), message('hello 1'), message('hello 2')]));
    const [, ident] = (await connected) as [number, string];
    expect(ident).toBe('alice');
    await expect.poll(() => s.received, { timeout: 10_000 }).toEqual(['alice:hello 1', 'alice:hello 2']);
    expect(s.errors).toEqual([]);
  });

  it('two Messaging peers with the policy on both sides: each identity matches its certificate, messages flow both ways', async () => {
    const s = await server('bob');
    const client = createPeer('alice', { authorize: certificateIdentity() });
    const fromBob: string[] = [];
    client.messaging.on('message', (_c, ident, m) => fromBob.push(`${ident}:${m.data.toString()}`));
    s.peer.messaging.on('message', (_c, ident) => s.peer.messaging.send(ident, 'welcome'));
    client.link.addConnector(`tls://localhost:${s.port}`, { tls: certs.alice(), reconnectDelay: () => 50 });
    client.messaging.send('bob', 'hi');
    await expect.poll(() => fromBob, { timeout: 10_000 }).toEqual(['bob:welcome']);
    expect(s.received).toEqual(['alice:hi']);
    expect(s.errors).toEqual([]);
  });

  it('the connecting side refuses a listener whose identity is not its certificate', async () => {
    const s = await server('mallory'); // bob's certificate
    const client = createPeer('alice', { authorize: certificateIdentity() });
    const refused = waitEvent(client.messaging, 'protocolError');
    client.link.addConnector(`tls://localhost:${s.port}`, { tls: certs.alice(), reconnectDelay: () => 50 });
    client.messaging.send('mallory', 'secret');
    const [, error] = (await refused) as [number, SnakeMQError];
    expect(error.code).toBe(ErrorCode.UNAUTHORIZED);
    expect(client.messaging.isConnected('mallory')).toBe(false);
    expect(client.messaging.queueLength('mallory')).toBe(1);
    await client.link.removeConnector(`tls://localhost:${s.port}`);
  });
});
