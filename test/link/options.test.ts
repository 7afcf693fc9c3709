import { describe, expect, it } from 'vitest';
import { InvalidOptionsError } from '../../lib/errors.js';
import { parseEndpoint } from '../../lib/link/endpoint.js';
import {
  DEFAULT_CONNECT_TIMEOUT,
  DEFAULT_CONNECTION_STABLE_AFTER,
  DEFAULT_HIGH_WATER_MARK,
  DEFAULT_LINK_OPTIONS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_RECONNECT_DELAY,
  DEFAULT_TLS_HANDSHAKE_TIMEOUT,
  exponentialBackoff,
  resolveConnectorOptions,
  resolveLinkOptions,
  resolveListenerOptions,
  resolveTlsOptions,
} from '../../lib/link/options.js';

function invalid(fn: () => unknown, message?: RegExp): InvalidOptionsError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(InvalidOptionsError);
  expect((thrown as InvalidOptionsError).code).toBe('SMQ_ERR_INVALID_OPTIONS');
  if (message) expect((thrown as Error).message).toMatch(message);
  return thrown as InvalidOptionsError;
}

const tcp = parseEndpoint('tcp://127.0.0.1:0');
const tls = parseEndpoint('tls://127.0.0.1:0');
const unixTls = parseEndpoint('unix+tls:///tmp/x.sock');
const pem = '-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n';

describe('LinkOptions', () => {
  it('has documented defaults', () => {
    expect(resolveLinkOptions(undefined)).toEqual({
      highWaterMark: 1024 * 1024,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: 30_000,
      closeTimeout: 2000,
      maxConnections: 4096,
    });
    expect(DEFAULT_MAX_CONNECTIONS).toBe(4096);
    expect(DEFAULT_HIGH_WATER_MARK).toBe(1048576);
    expect(DEFAULT_LINK_OPTIONS.highWaterMark).toBe(DEFAULT_HIGH_WATER_MARK);
    expect(Object.isFrozen(DEFAULT_LINK_OPTIONS)).toBe(true);
  });

  it('merges given values over the defaults', () => {
    expect(resolveLinkOptions({ highWaterMark: 4096, noDelay: false })).toMatchObject({
      highWaterMark: 4096,
      noDelay: false,
      keepAlive: true,
    });
  });

  it('rejects unknown keys and wrong types', () => {
    invalid(() => resolveLinkOptions({ highWatermark: 10 }), /unknown option 'highWatermark'/);
    invalid(() => resolveLinkOptions({ noDelay: 'yes' }), /noDelay/);
    invalid(() => resolveLinkOptions({ keepAlive: 1 }), /keepAlive/);
    invalid(() => resolveLinkOptions({ highWaterMark: 0 }), /highWaterMark/);
    invalid(() => resolveLinkOptions({ highWaterMark: 1.5 }), /highWaterMark/);
    invalid(() => resolveLinkOptions({ keepAliveInitialDelay: -1 }), /keepAliveInitialDelay/);
    invalid(() => resolveLinkOptions('fast'), /must be an object/);
    invalid(() => resolveLinkOptions({ maxConnections: 0 }), /maxConnections/);
    invalid(() => resolveLinkOptions({ maxConnections: 2.5 }), /maxConnections/);
    invalid(() => resolveLinkOptions({ maxConnections: -Infinity }), /maxConnections/);
    expect(resolveLinkOptions({ maxConnections: Infinity }).maxConnections).toBe(Infinity);
    expect(resolveLinkOptions({ maxConnections: 1 }).maxConnections).toBe(1);
  });
});

describe('TlsOptions', () => {
  it('defaults to TLSv1.2+ and verifying peers', () => {
    expect(resolveTlsOptions('x', {})).toEqual({ minVersion: 'TLSv1.2', rejectUnauthorized: true });
  });

  it('rejects a misspelt option loudly', () => {
    invalid(() => resolveTlsOptions('connector', { rejectUnauthorised: false }), /unknown option 'rejectUnauthorised'/);
    invalid(() => resolveTlsOptions('connector', { certificate: pem }), /unknown option 'certificate'/);
  });

  it('refuses TLS versions below 1.2 and inverted ranges', () => {
    invalid(() => resolveTlsOptions('x', { minVersion: 'TLSv1.1' }), /insecure/);
    invalid(() => resolveTlsOptions('x', { minVersion: 'TLSv1' }), /insecure/);
    invalid(() => resolveTlsOptions('x', { maxVersion: 'TLSv1.1' }), /insecure/);
    invalid(() => resolveTlsOptions('x', { minVersion: 'tls1.3' }), /minVersion/);
    invalid(() => resolveTlsOptions('x', { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.2' }), /below minVersion/);
    expect(resolveTlsOptions('x', { minVersion: 'TLSv1.3' }).minVersion).toBe('TLSv1.3');
  });

  it('checks types', () => {
    invalid(() => resolveTlsOptions('x', { key: 42 }), /key/);
    invalid(() => resolveTlsOptions('x', { cert: [] }), /cert/);
    invalid(() => resolveTlsOptions('x', { ca: [pem, 3] }), /ca/);
    invalid(() => resolveTlsOptions('x', { rejectUnauthorized: 'false' }), /rejectUnauthorized/);
    invalid(() => resolveTlsOptions('x', { checkServerIdentity: true }), /checkServerIdentity/);
    invalid(() => resolveTlsOptions('x', 'tls'), /must be an object/);
    expect(() => resolveTlsOptions('x', { key: [{ pem, passphrase: 'p' }], cert: Buffer.from(pem), ca: [pem, Buffer.from(pem)] })).not.toThrow();
  });
});

describe('ListenerOptions', () => {
  it('requires tls options for TLS endpoints, with key and cert', () => {
    invalid(() => resolveListenerOptions(tls, undefined), /needs the 'tls' option/);
    invalid(() => resolveListenerOptions(unixTls, {}), /needs the 'tls' option/);
    invalid(() => resolveListenerOptions(tls, { tls: { ca: pem } }), /need 'key' and 'cert'/);
    expect(resolveListenerOptions(tls, { tls: { key: pem, cert: pem } }).tls).toMatchObject({ rejectUnauthorized: true });
  });

  it('refuses tls options on plain endpoints', () => {
    invalid(() => resolveListenerOptions(tcp, { tls: { key: pem, cert: pem } }), /non-TLS endpoint/);
  });

  it('validates backlog and rejects unknown keys', () => {
    expect(resolveListenerOptions(tcp, undefined)).toEqual({ tls: undefined, backlog: 511 });
    expect(resolveListenerOptions(tcp, { backlog: 10 }).backlog).toBe(10);
    invalid(() => resolveListenerOptions(tcp, { backlog: -1 }), /backlog/);
    invalid(() => resolveListenerOptions(tcp, { reconnectInterval: 5 }), /unknown option/);
    invalid(() => resolveListenerOptions(tls, { tls: { key: pem, cert: pem, rejectUnauthorised: false } }), /rejectUnauthorised/);
  });

  it('validates the TLS handshakeTimeout (default applied when the server is made)', () => {
    expect(DEFAULT_TLS_HANDSHAKE_TIMEOUT).toBe(10_000);
    expect(resolveListenerOptions(tls, { tls: { key: pem, cert: pem, handshakeTimeout: 200 } }).tls?.handshakeTimeout).toBe(200);
    invalid(() => resolveListenerOptions(tls, { tls: { key: pem, cert: pem, handshakeTimeout: 0 } }), /handshakeTimeout/);
    invalid(() => resolveListenerOptions(tls, { tls: { key: pem, cert: pem, handshakeTimeout: '1s' } }), /handshakeTimeout/);
  });
});

describe('ConnectorOptions', () => {
  it('has defaults', () => {
    const opts = resolveConnectorOptions(tcp, undefined);
    expect(opts.connectTimeout).toBe(DEFAULT_CONNECT_TIMEOUT);
    expect(opts.connectTimeout).toBe(10_000);
    expect(opts.reconnectDelay).toBe(DEFAULT_RECONNECT_DELAY);
    expect(opts.tls).toBeUndefined();
    expect(opts.stableAfter).toBe(DEFAULT_CONNECTION_STABLE_AFTER);
    expect(DEFAULT_CONNECTION_STABLE_AFTER).toBe(5000);
    expect(resolveConnectorOptions(tcp, { stableAfter: 0 }).stableAfter).toBe(0);
  });

  it('turns reconnectInterval into a fixed delay', () => {
    const { reconnectDelay } = resolveConnectorOptions(tcp, { reconnectInterval: 3000 });
    expect([1, 2, 50].map(reconnectDelay)).toEqual([3000, 3000, 3000]);
  });

  it('accepts a reconnectDelay function', () => {
    const fn = (n: number) => n * 10;
    expect(resolveConnectorOptions(tcp, { reconnectDelay: fn }).reconnectDelay).toBe(fn);
  });

  it('rejects bad combinations, types and unknown keys', () => {
    invalid(() => resolveConnectorOptions(tcp, { reconnectDelay: () => 1, reconnectInterval: 1 }), /mutually exclusive/);
    invalid(() => resolveConnectorOptions(tcp, { reconnectDelay: 100 }), /reconnectDelay/);
    invalid(() => resolveConnectorOptions(tcp, { reconnectInterval: -5 }), /reconnectInterval/);
    invalid(() => resolveConnectorOptions(tcp, { connectTimeout: 0 }), /connectTimeout/);
    invalid(() => resolveConnectorOptions(tcp, { stableAfter: -1 }), /stableAfter/);
    invalid(() => resolveConnectorOptions(tcp, { stableAfter: 1.5 }), /stableAfter/);
    invalid(() => resolveConnectorOptions(tcp, { connectTimout: 10 }), /unknown option 'connectTimout'/);
    invalid(() => resolveConnectorOptions(tcp, { backlog: 10 }), /unknown option 'backlog'/);
    invalid(() => resolveConnectorOptions(tls, {}), /needs the 'tls' option/);
    invalid(() => resolveConnectorOptions(tcp, { tls: {} }), /non-TLS endpoint/);
    invalid(() => resolveConnectorOptions(tls, { tls: { rejectUnauthorised: false } }), /unknown option 'rejectUnauthorised'/);
    expect(resolveConnectorOptions(tls, { tls: {} }).tls).toEqual({ minVersion: 'TLSv1.2', rejectUnauthorized: true });
  });
});

describe('exponentialBackoff', () => {
  const samples = (fn: (n: number) => number, attempt: number, count = 200) => Array.from({ length: count }, () => fn(attempt));

  it('grows by factor from initial, capped at max, within the jitter band', () => {
    const fn = exponentialBackoff();
    const expected = [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000];
    expected.forEach((d, i) => {
      for (const v of samples(fn, i + 1)) {
        expect(v).toBeGreaterThanOrEqual(d * 0.5);
        expect(v).toBeLessThanOrEqual(d);
      }
    });
    for (const v of samples(fn, 1000)) expect(v).toBeLessThanOrEqual(10_000);
  });

  it('actually randomises', () => {
    const values = new Set(samples(exponentialBackoff(), 3, 50));
    expect(values.size).toBeGreaterThan(1);
  });

  it('is exact without jitter, and honours custom numbers', () => {
    const fn = exponentialBackoff({ initial: 50, factor: 3, max: 1000, jitter: 0 });
    expect([1, 2, 3, 4, 5, 40].map(fn)).toEqual([50, 150, 450, 1000, 1000, 1000]);
    expect(exponentialBackoff({ jitter: 0 })(1)).toBe(100);
  });

  it('treats attempts below 1 as attempt 1', () => {
    const fn = exponentialBackoff({ jitter: 0 });
    expect(fn(0)).toBe(100);
    expect(fn(-3)).toBe(100);
    expect(fn(Number.NaN)).toBe(100);
  });

  it('applies jitter 1 within [0, delay]', () => {
    for (const v of samples(exponentialBackoff({ jitter: 1, initial: 10 }), 1)) {
      expect(v).toBeGreaterThanOrEqual(0);
      expect(v).toBeLessThanOrEqual(10);
    }
  });

  it('validates its options', () => {
    invalid(() => exponentialBackoff({ jitter: 2 }), /jitter/);
    invalid(() => exponentialBackoff({ factor: 0.5 }), /factor/);
    invalid(() => exponentialBackoff({ initial: -1 }), /initial/);
    invalid(() => exponentialBackoff({ maximum: 5 } as never), /unknown option 'maximum'/);
  });

  it('DEFAULT_RECONNECT_DELAY is the default backoff', () => {
    for (const v of samples(DEFAULT_RECONNECT_DELAY, 1)) {
      expect(v).toBeGreaterThanOrEqual(50);
      expect(v).toBeLessThanOrEqual(100);
    }
  });
});
