import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { formatStatus } from '../../lib/cli/status.js';
import type { ManagementStatus } from '../../lib/management/index.js';
import { Smq, killAll, removeTempDirs, smq } from './helpers.js';

afterEach(() => killAll());
afterAll(() => removeTempDirs());

describe('smq status', () => {
  it('prints the status of a peer serving management, as JSON and as tables; actions only for --management-actions', async () => {
    // A sender waiting for an absent carol holds a queue of 3.
    const bob = new Smq([
      'send',
      '--ident',
      'bob',
      '--listen',
      'tcp://127.0.0.1:0',
      '--to',
      'carol',
      '--management-allow',
      'ops',
      '--management-allow',
      'admin',
      '--management-actions',
      'admin',
      'one',
      'two',
      'three',
    ]);
    const url = await bob.listeningUrl();
    const base = ['status', '--connect', url, '--to', 'bob', '--timeout', '20'];

    const json = await smq([...base, '--ident', 'ops', '--json']);
    expect(json.stderr).not.toMatch(/refused/);
    expect(json.code).toBe(0);
    const lines = json.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const status = JSON.parse(lines[0]!) as ManagementStatus;
    expect(status.identity).toBe('bob');
    expect(status.listeners.map((l) => l.url)).toEqual([url]);
    expect(status.connections).toHaveLength(1);
    expect(status.connections[0]).toMatchObject({ ident: 'ops', side: 'listener', remoteAddress: '127.0.0.1' });
    expect(status.peers.find((p) => p.ident === 'carol')).toMatchObject({ connected: false, queued: 3, inFlight: 0 });
    expect(status.storage).toBeNull();
    expect(status.relayRoutes).toEqual([]);

    const text = await smq([...base, '--ident', 'ops']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^bob: status at \d{4}-/);
    expect(text.stdout).toMatch(/^Listeners:\n {2}URL +TLS +CONNECTIONS\n {2}tcp:\/\/127\.0\.0\.1:\d+ +no +1$/m);
    expect(text.stdout).toMatch(/^ {2}carol +no +3 /m);
    expect(text.stdout).toMatch(/^Relay routes: none$/m);

    const refused = await smq([...base, '--ident', 'ops', '--drop-queue', 'carol']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/smq status: bob refused: .*ops may not drop queues/);
    const eve = await smq([...base, '--ident', 'eve']);
    expect(eve.code).toBe(1);
    expect(eve.stderr).toMatch(/bob refused: .*eve may not read the status/);

    const nobody = await smq([...base, '--ident', 'admin', '--disconnect', 'nobody', '--json']);
    expect(nobody).toMatchObject({ code: 0, stdout: '{"disconnected":false}\n' });
    const dropped = await smq([...base, '--ident', 'admin', '--drop-queue', 'carol']);
    expect(dropped.stderr).not.toMatch(/refused|smq status:/);
    expect(dropped).toMatchObject({ code: 0, stdout: 'bob dropped 3 messages queued for carol\n' });
    // The sender sees its messages dropped and gives up.
    expect((await bob.result()).code).toBe(1);
  });

  it('says when the peer serves no management object', async () => {
    const bob = new Smq(['serve', '--ident', 'bob', '--listen', 'tcp://127.0.0.1:0', '--example', 'calc']);
    const url = await bob.listeningUrl();
    const r = await smq(['status', '--ident', 'ops', '--connect', url, '--to', 'bob', '--timeout', '20']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bob serves no management object \(start it with --management-allow ops\)/);
    bob.proc.kill('SIGTERM');
    await bob.exited;
  });

  it('refuses bad arguments', async () => {
    const both = await smq(['status', '--ident', 'ops', '--connect', 'tcp://127.0.0.1:1', '--to', 'bob', '--disconnect', 'a', '--drop-queue', 'b']);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/give --disconnect or --drop-queue, not both/);
    const noTo = await smq(['status', '--ident', 'ops', '--connect', 'tcp://127.0.0.1:1']);
    expect(noTo.code).toBe(2);
    expect(noTo.stderr).toMatch(/--to is required/);
  });
});

describe('formatStatus', () => {
  const status: ManagementStatus = {
    version: 1,
    identity: 'bob',
    time: Date.UTC(2026, 0, 2, 3, 4, 5),
    listeners: [{ url: 'tls://127.0.0.1:4443', tls: true, connections: 1 }],
    listenersTruncated: false,
    connectors: [
      {
        endpoint: 'tcp://10.0.0.9:4000',
        state: 'waiting',
        attempts: 3,
        lastError: { code: 'SMQ_ERR_CONNECTION', message: 'connect ECONNREFUSED' },
        connId: null,
      },
    ],
    connectorsTruncated: false,
    connections: [
      {
        connId: 7,
        ident: 'alice',
        side: 'listener',
        endpoint: 'tls://127.0.0.1:4443',
        remoteAddress: '127.0.0.1',
        remotePort: 50000,
        localAddress: '127.0.0.1',
        localPort: 4443,
        tls: { protocol: 'TLSv1.3', authorized: true, authorizationError: null, subjectCN: 'alice', subjectAltNames: ['DNS:localhost'] },
        bytesRead: 2048,
        bytesWritten: 300,
        messagesIn: 5,
        messagesOut: 2,
      },
    ],
    connectionsTruncated: false,
    peers: [
      {
        ident: 'carol',
        connected: false,
        connId: null,
        queued: 4,
        queuedBytes: 600,
        inFlight: 0,
        oldestAgeMs: 90_500,
        awaySince: 0,
        messagesIn: 0,
        messagesOut: 0,
      },
    ],
    peersTruncated: true,
    identities: 1500,
    totals: { connections: 1, bytesRead: 2048, bytesWritten: 300, messagesIn: 5, messagesOut: 2, queued: 4, inFlight: 0 },
    storage: { kind: 'sqlite', durable: true, messages: 4, bytes: null, fileBytes: 3 * 1024 * 1024, error: null },
    relayRoutes: [],
    relayRoutesTruncated: false,
  };

  it('prints tables and summary lines', () => {
    expect(formatStatus(status)).toBe(
      [
        'bob: status at 2026-01-02T03:04:05.000Z',
        'Totals: 1 connections, 2.0 KiB read, 300 B written, 5 messages in, 2 out, 4 queued (0 in flight)',
        'Storage: sqlite, 4 messages, 3.0 MiB on disk',
        'Listeners:',
        '  URL                   TLS  CONNECTIONS',
        '  tls://127.0.0.1:4443  yes  1',
        'Connectors:',
        '  ENDPOINT             STATE    ATTEMPTS  LAST ERROR',
        '  tcp://10.0.0.9:4000  waiting  3         connect ECONNREFUSED',
        'Connections:',
        '  ID  IDENT  SIDE      REMOTE           TLS PEER        READ     WRITTEN  MSGS IN  MSGS OUT',
        '  7   alice  listener  127.0.0.1:50000  alice verified  2.0 KiB  300 B    5        2',
        'Queues:',
        '  IDENT  CONNECTED  QUEUED  BYTES  IN FLIGHT  OLDEST',
        '  carol  no         4       600 B  0          90.5 s',
        '  … 1499 more (--json for the whole list)',
        'Relay routes: none',
        '',
      ].join('\n'),
    );
  });
});
