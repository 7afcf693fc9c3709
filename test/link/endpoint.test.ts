import { describe, expect, it } from 'vitest';
import { InvalidEndpointError } from '../../lib/errors.js';
import { parseEndpoint } from '../../lib/link/endpoint.js';
import type { Endpoint } from '../../lib/link/types.js';

describe('parseEndpoint: accepted forms', () => {
  const cases: [Endpoint, Record<string, unknown>][] = [
    ['tcp://127.0.0.1:4000', { transport: 'tcp', tls: false, host: '127.0.0.1', port: 4000, url: 'tcp://127.0.0.1:4000' }],
    ['tcp://localhost:0', { transport: 'tcp', tls: false, host: 'localhost', port: 0, url: 'tcp://localhost:0' }],
    ['tcp://Example.COM:65535', { host: 'example.com', port: 65535, url: 'tcp://example.com:65535' }],
    ['TCP://my-host_1.local:80', { transport: 'tcp', host: 'my-host_1.local', url: 'tcp://my-host_1.local:80' }],
    ['tls://peer.example:4001', { transport: 'tcp', tls: true, host: 'peer.example', port: 4001, url: 'tls://peer.example:4001' }],
    ['tcp://[::1]:5000', { transport: 'tcp', tls: false, host: '::1', port: 5000, url: 'tcp://[::1]:5000' }],
    ['tls://[fe80::1:2]:5000', { tls: true, host: 'fe80::1:2', url: 'tls://[fe80::1:2]:5000' }],
    ['tcp://0.0.0.0:0', { host: '0.0.0.0', port: 0 }],
    ['tcp://[::]:7', { host: '::', port: 7, url: 'tcp://[::]:7' }],
    ['unix:///tmp/snakemq.sock', { transport: 'unix', tls: false, path: '/tmp/snakemq.sock', url: 'unix:///tmp/snakemq.sock' }],
    ['unix://run/peer.sock', { transport: 'unix', path: 'run/peer.sock', url: 'unix://run/peer.sock' }],
    ['unix://@snakemq', { transport: 'unix', path: '\0snakemq', url: 'unix://@snakemq' }],
    ['unix://\0snakemq', { transport: 'unix', path: '\0snakemq', url: 'unix://@snakemq' }],
    ['unix+tls:///tmp/s.sock', { transport: 'unix', tls: true, path: '/tmp/s.sock', url: 'unix+tls:///tmp/s.sock' }],
    ['unix+tls://@abs', { transport: 'unix', tls: true, path: '\0abs', url: 'unix+tls://@abs' }],
    [
      { host: '127.0.0.1', port: 1234 },
      { transport: 'tcp', tls: false, url: 'tcp://127.0.0.1:1234' },
    ],
    [
      { host: '::1', port: 1234, tls: true },
      { transport: 'tcp', tls: true, host: '::1', url: 'tls://[::1]:1234' },
    ],
    [
      { host: '[::1]', port: 1 },
      { host: '::1', url: 'tcp://[::1]:1' },
    ],
    [{ path: '/tmp/x.sock' }, { transport: 'unix', tls: false, path: '/tmp/x.sock', url: 'unix:///tmp/x.sock' }],
    [
      { path: 'rel.sock', tls: true },
      { transport: 'unix', tls: true, url: 'unix+tls://rel.sock' },
    ],
    [{ path: '@name' }, { path: '\0name', url: 'unix://@name' }],
    [
      { path: '\0name', tls: false },
      { path: '\0name', url: 'unix://@name' },
    ],
  ];
  for (const [input, expected] of cases) {
    it(`parses ${JSON.stringify(input)}`, () => {
      const parsed = parseEndpoint(input);
      expect(parsed).toMatchObject(expected);
      expect(Object.isFrozen(parsed)).toBe(true);
      // The canonical URL parses to the same endpoint.
      expect(parseEndpoint(parsed.url)).toEqual(parsed);
    });
  }

  it('leaves out fields of the other transport', () => {
    expect(parseEndpoint('unix:///a')).not.toHaveProperty('port');
    expect(parseEndpoint('tcp://a:1')).not.toHaveProperty('path');
  });
});

describe('parseEndpoint: rejected forms', () => {
  const bad: unknown[] = [
    '',
    'tcp',
    'tcp://',
    'tcp:/host:1',
    '127.0.0.1:4000',
    'http://host:80',
    'udp+tls://host:80',
    'ws://host:80',
    'tcp://host',
    'tcp://host:',
    'tcp://:4000',
    'tcp://host:port',
    'tcp://host:-1',
    'tcp://host:65536',
    'tcp://host:123456',
    'tcp://host:1.5',
    'tcp://host:80/path',
    'tcp://host:80?x=1',
    'tcp://host :80',
    ' tcp://host:80',
    'tcp://ho st:80',
    'tcp://host..x:80',
    'tcp://-host:80',
    'tcp://256.1.1.1:80',
    'tcp://user@host:80',
    'tcp://::1:80',
    'tcp://[::1]',
    'tcp://[::1]:',
    'tcp://[::1:80',
    'tcp://[nothost]:80',
    'tcp://[::1]x:80',
    'tls://host',
    'unix://',
    'unix+tls://',
    'unix://@',
    'unix://\0',
    'unix:///tmp/dir/',
    'unix:///tmp/a\0b',
    `unix:///${'x'.repeat(200)}`,
    `unix://@${'x'.repeat(200)}`,
    'unix+ssl:///tmp/x',
    null,
    undefined,
    42,
    true,
    [],
    ['tcp://h:1'],
    {},
    { host: 'h' },
    { host: 'h', port: '80' },
    { host: 'h', port: 70000 },
    { host: 'h', port: 1.5 },
    { host: '', port: 1 },
    { host: 1, port: 1 },
    { host: 'h', port: 1, tls: 'yes' },
    { host: 'h', port: 1, extra: true },
    { path: '' },
    { path: 5 },
    { path: '/x', host: 'h', port: 1 },
    { port: 1 },
  ];
  for (const input of bad) {
    it(`rejects ${typeof input === 'string' ? JSON.stringify(input).slice(0, 60) : String(JSON.stringify(input))}`, () => {
      let thrown: unknown;
      try {
        parseEndpoint(input as Endpoint);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(InvalidEndpointError);
      expect((thrown as InvalidEndpointError).code).toBe('SMQ_ERR_INVALID_ENDPOINT');
      expect((thrown as Error).message).toMatch(/endpoint/);
    });
  }
});
