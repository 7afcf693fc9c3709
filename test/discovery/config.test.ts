import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_ANNOUNCE_INTERVAL,
  DEFAULT_MULTICAST_GROUP,
  DEFAULT_MULTICAST_PORT,
  DEFAULT_MULTICAST_TTL,
  ENVIRONMENT_VARIABLES,
  discoveryConfig,
  isBroadcastGroup,
  keepaliveOptions,
  type DiscoveryConfig,
} from '../../lib/discovery/config.js';
import { ConfigError, InvalidOptionsError } from '../../lib/errors.js';

/** Every variable: a good value, what it gives, and malformed values. */
const CASES: { name: string; option: keyof DiscoveryConfig; good: string; value: unknown; bad: string[] }[] = [
  {
    name: 'SNAKEMQ_NAMESERVERS',
    option: 'nameservers',
    good: ' tcp://ns1:5557, tls://NS2.example:5558\n tcp://[::1]:5557,,',
    value: ['tcp://ns1:5557', 'tls://ns2.example:5558', 'tcp://[::1]:5557'],
    bad: ['tcp://ns1', 'ns1:5557', 'tcp://ns1:5557,http://x:1'],
  },
  { name: 'SNAKEMQ_MC_GROUP', option: 'multicastGroup', good: '239.1.2.3', value: '239.1.2.3', bad: ['192.168.1.1', '240.0.0.1', 'group', '225.0.0'] },
  { name: 'SNAKEMQ_MC_PORT', option: 'multicastPort', good: '31000', value: 31000, bad: ['0', '65536', '12.5', 'port', '-1', '0x10'] },
  { name: 'SNAKEMQ_MC_INTERFACE', option: 'multicastInterface', good: '192.168.1.7', value: '192.168.1.7', bad: ['eth0', '::1', '192.168.1.256'] },
  { name: 'SNAKEMQ_MC_TTL', option: 'multicastTtl', good: '0', value: 0, bad: ['256', '-1', '1.5', 'ttl'] },
  { name: 'SNAKEMQ_ANNOUNCE_INTERVAL', option: 'announceInterval', good: '0.25', value: 250, bad: ['0', '-1', 'abc', '1s', '0.001', '1e3'] },
  { name: 'SNAKEMQ_TCP_KEEPALIVE', option: 'tcpKeepalive', good: 'Yes', value: true, bad: ['2', 'maybe', 'y'] },
  { name: 'SNAKEMQ_TCP_KEEPALIVE_IDLE', option: 'tcpKeepaliveIdle', good: '60', value: 60, bad: ['0', '1.5', 'x', '32768'] },
  { name: 'SNAKEMQ_TCP_KEEPALIVE_INTERVAL', option: 'tcpKeepaliveInterval', good: '5', value: 5, bad: ['0', '2.5', 'five'] },
  { name: 'SNAKEMQ_TCP_KEEPALIVE_COUNT', option: 'tcpKeepaliveCount', good: '3', value: 3, bad: ['0', '128', '3.0', 'three'] },
];

describe('discoveryConfig', () => {
  it('has PostTroll’s defaults with an empty environment', () => {
    expect(discoveryConfig(undefined, {})).toEqual({
      nameservers: [],
      multicastGroup: DEFAULT_MULTICAST_GROUP,
      multicastPort: DEFAULT_MULTICAST_PORT,
      multicastInterface: undefined,
      multicastTtl: DEFAULT_MULTICAST_TTL,
      announceInterval: DEFAULT_ANNOUNCE_INTERVAL,
      tcpKeepalive: undefined,
      tcpKeepaliveIdle: undefined,
      tcpKeepaliveInterval: undefined,
      tcpKeepaliveCount: undefined,
    });
    expect([DEFAULT_MULTICAST_GROUP, DEFAULT_MULTICAST_PORT, DEFAULT_MULTICAST_TTL, DEFAULT_ANNOUNCE_INTERVAL]).toEqual(['225.0.0.212', 21200, 31, 2000]);
  });

  it('the table lists every variable tested here, once', () => {
    expect(ENVIRONMENT_VARIABLES.map((v) => v.name).sort()).toEqual(CASES.map((c) => c.name).sort());
    for (const v of ENVIRONMENT_VARIABLES) expect(CASES.find((c) => c.name === v.name)!.option).toBe(v.option);
  });

  for (const c of CASES) {
    describe(c.name, () => {
      it(`sets ${c.option}`, () => {
        expect(discoveryConfig({}, { [c.name]: c.good })[c.option]).toEqual(c.value);
      });

      it('a malformed value throws ConfigError naming the variable and the value', () => {
        for (const bad of c.bad) {
          let error: unknown;
          try {
            discoveryConfig({}, { [c.name]: bad });
          } catch (e) {
            error = e;
          }
          expect(error, bad).toBeInstanceOf(ConfigError);
          expect((error as ConfigError).code).toBe('SMQ_ERR_CONFIG');
          expect((error as ConfigError).message).toContain(c.name);
          expect((error as ConfigError).message).toContain(JSON.stringify(bad));
        }
      });

      it('loses to the option given in code', () => {
        const options: Partial<DiscoveryConfig> = { [c.option]: DEFAULT_OPTION_VALUES[c.option] };
        expect(discoveryConfig(options, { [c.name]: c.good })[c.option]).toEqual(DEFAULT_OPTION_VALUES[c.option]);
      });

      it('blank counts as not set', () => {
        expect(discoveryConfig({}, { [c.name]: '  ' })[c.option]).toEqual(discoveryConfig({}, {})[c.option]);
      });
    });
  }

  it('0.0.0.0 and 255.255.255.255 mean broadcast', () => {
    for (const g of ['0.0.0.0', '255.255.255.255']) {
      expect(discoveryConfig({}, { SNAKEMQ_MC_GROUP: g }).multicastGroup).toBe(g);
      expect(isBroadcastGroup(g)).toBe(true);
    }
    expect(isBroadcastGroup(DEFAULT_MULTICAST_GROUP)).toBe(false);
  });

  it('TCP keepalive words', () => {
    for (const [word, value] of [
      ['1', true],
      ['TRUE', true],
      ['on', true],
      ['yes', true],
      ['0', false],
      ['false', false],
      ['Off', false],
      ['no', false],
    ] as const) {
      expect(discoveryConfig({}, { SNAKEMQ_TCP_KEEPALIVE: word }).tcpKeepalive, word).toBe(value);
    }
  });

  it('refuses unknown option keys and bad option values with InvalidOptionsError', () => {
    expect(() => discoveryConfig({ multicastGrop: '239.0.0.1' } as never, {})).toThrow(InvalidOptionsError);
    expect(() => discoveryConfig({ multicastGrop: '239.0.0.1' } as never, {})).toThrow(/unknown option 'multicastGrop'/);
    expect(() => discoveryConfig({ multicastPort: 0 }, {})).toThrow(InvalidOptionsError);
    expect(() => discoveryConfig({ multicastGroup: '10.0.0.1' }, {})).toThrow(/multicastGroup/);
    expect(() => discoveryConfig({ nameservers: ['nope'] }, {})).toThrow(/nameservers/);
    expect(() => discoveryConfig({ announceInterval: 5 }, {})).toThrow(/announceInterval/);
    expect(() => discoveryConfig('x' as never, {})).toThrow(InvalidOptionsError);
  });

  it('an option given as undefined leaves the environment’s value; nameservers are normalised', () => {
    expect(discoveryConfig({ multicastPort: undefined }, { SNAKEMQ_MC_PORT: '4000' }).multicastPort).toBe(4000);
    expect(discoveryConfig({ nameservers: ['TCP://NS:1'] }, {}).nameservers).toEqual(['tcp://ns:1']);
  });

  it('reads process.env by default', () => {
    const saved = process.env.SNAKEMQ_MC_TTL;
    process.env.SNAKEMQ_MC_TTL = '7';
    try {
      expect(discoveryConfig().multicastTtl).toBe(7);
    } finally {
      if (saved === undefined) delete process.env.SNAKEMQ_MC_TTL;
      else process.env.SNAKEMQ_MC_TTL = saved;
    }
  });

  it('the docs document every variable', () => {
    // docs/discovery-config.md until it is merged into docs/discovery.md.
    const file = ['../../docs/discovery-config.md', '../../docs/discovery.md'].map((f) => new URL(f, import.meta.url)).find((u) => existsSync(u))!;
    const doc = readFileSync(file, 'utf8');
    for (const v of ENVIRONMENT_VARIABLES) expect(doc).toContain(`\`${v.name}\``);
  });
});

/** Values different from every good env value above, for "options win". */
const DEFAULT_OPTION_VALUES: { [K in keyof DiscoveryConfig]-?: unknown } = {
  nameservers: ['tcp://code:1'],
  multicastGroup: '226.1.1.1',
  multicastPort: 1234,
  multicastInterface: '10.1.2.3',
  multicastTtl: 2,
  announceInterval: 500,
  tcpKeepalive: false,
  tcpKeepaliveIdle: 9,
  tcpKeepaliveInterval: 8,
  tcpKeepaliveCount: 7,
};

describe('keepaliveOptions', () => {
  const none = { tcpKeepalive: undefined, tcpKeepaliveIdle: undefined, tcpKeepaliveInterval: undefined, tcpKeepaliveCount: undefined };

  it('nothing set: the stack’s defaults', () => {
    expect(keepaliveOptions(none)).toEqual({ link: {}, messaging: {} });
    expect(keepaliveOptions(discoveryConfig({}, {}))).toEqual({ link: {}, messaging: {} });
  });

  it('off is off, whatever else is set', () => {
    expect(keepaliveOptions({ ...none, tcpKeepalive: false, tcpKeepaliveIdle: 5, tcpKeepaliveCount: 3 })).toEqual({
      link: { keepAlive: false },
      messaging: {},
    });
  });

  it('on, with idle: kernel keepalive with TCP_KEEPIDLE', () => {
    expect(keepaliveOptions({ ...none, tcpKeepalive: true })).toEqual({ link: { keepAlive: true }, messaging: {} });
    expect(keepaliveOptions({ ...none, tcpKeepalive: true, tcpKeepaliveIdle: 60 })).toEqual({
      link: { keepAlive: true, keepAliveInitialDelay: 60_000 },
      messaging: {},
    });
    // A setting implies "on".
    expect(keepaliveOptions({ ...none, tcpKeepaliveIdle: 10 }).link).toEqual({ keepAlive: true, keepAliveInitialDelay: 10_000 });
  });

  it('interval × count become Messaging keepalive: a dead peer detected within idle + interval × count', () => {
    const k = keepaliveOptions({ tcpKeepalive: true, tcpKeepaliveIdle: 60, tcpKeepaliveInterval: 5, tcpKeepaliveCount: 3 });
    expect(k).toEqual({ link: { keepAlive: true, keepAliveInitialDelay: 60_000 }, messaging: { keepaliveInterval: 30_000, keepaliveWait: 15_000 } });
    // Messaging PINGs after a silent keepaliveInterval window and waits keepaliveWait: the worst case is
    // silence starting right at a window's start: 2 windows + the wait.
    const worst = 2 * k.messaging.keepaliveInterval! + k.messaging.keepaliveWait!;
    const best = k.messaging.keepaliveInterval! + k.messaging.keepaliveWait!;
    expect(worst).toBe(60_000 + 5 * 3 * 1000);
    expect(best).toBe(30_000 + 15_000);
  });

  it('an unset idle, interval or count takes the Link’s / Node’s value (30 s, 1 s, 10)', () => {
    expect(keepaliveOptions({ ...none, tcpKeepaliveCount: 4 })).toEqual({
      link: { keepAlive: true },
      messaging: { keepaliveInterval: 15_000, keepaliveWait: 4_000 },
    });
    expect(keepaliveOptions({ ...none, tcpKeepaliveInterval: 2 }).messaging).toEqual({ keepaliveInterval: 15_000, keepaliveWait: 20_000 });
  });

  it('from the environment', () => {
    const c = discoveryConfig(
      {},
      { SNAKEMQ_TCP_KEEPALIVE: 'on', SNAKEMQ_TCP_KEEPALIVE_IDLE: '20', SNAKEMQ_TCP_KEEPALIVE_INTERVAL: '2', SNAKEMQ_TCP_KEEPALIVE_COUNT: '5' },
    );
    expect(keepaliveOptions(c)).toEqual({
      link: { keepAlive: true, keepAliveInitialDelay: 20_000 },
      messaging: { keepaliveInterval: 10_000, keepaliveWait: 10_000 },
    });
  });
});
