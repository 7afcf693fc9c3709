import { afterEach, describe, expect, it } from 'vitest';
import { Smq, jsonLines, killAll, smq } from './helpers.js';

afterEach(() => killAll());

const SLOW = 60_000;

describe('smq over udp://', () => {
  it(
    'send --connect udp://… --to NAME reaches listen --listen udp://… (child processes)',
    async () => {
      const listener = new Smq(['listen', '--ident', 'bob', '--listen', 'udp://127.0.0.1:0', '--count', '3', '--json']);
      const url = await listener.listeningUrl();
      expect(url).toMatch(/^udp:\/\/127\.0\.0\.1:[1-9][0-9]*$/);
      const sent = await smq(['send', '--ident', 'alice', '--connect', url, '--to', 'bob', '--ttl', '60', 'one', 'two', 'three']);
      expect(sent.code, sent.stderr).toBe(0);
      expect(sent.stderr).toMatch(/3 message\(s\) sent to bob as datagrams/);
      const { code, stdout } = await listener.result();
      expect(code).toBe(0);
      const lines = jsonLines(stdout);
      expect(lines.map((l) => l.from)).toEqual(['alice', 'alice', 'alice']);
      expect(lines.map((l) => l.data).sort()).toEqual(['one', 'three', 'two']);
      expect(lines[0]!.ttl).toBe(60);
    },
    SLOW,
  );

  it(
    'refuses what udp:// cannot do: --persistent, and connectors outside smq send',
    async () => {
      const persistent = await smq(['send', '--ident', 'alice', '--connect', 'udp://127.0.0.1:9', '--to', 'bob', '--persistent', 'x']);
      expect(persistent.code).toBe(2);
      expect(persistent.stderr).toMatch(/--persistent cannot go over udp/);
      const listen = await smq(['listen', '--ident', 'bob', '--connect', 'udp://127.0.0.1:9', '--count', '1']);
      expect(listen.code).toBe(1);
      expect(listen.stderr).toMatch(/udp:\/\/ connectors only send, with smq send --to NAME/);
    },
    SLOW,
  );
});
