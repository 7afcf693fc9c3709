import { describe, expect, it } from 'vitest';
import { Message, MAX_TTL } from '../../lib/messaging/message.js';
import { InvalidArgumentError, InvalidOptionsError } from '../../lib/errors.js';

describe('Message options', () => {
  it('keep flags unsigned, also with the top bit and persistent set', () => {
    expect(new Message('x', { flags: 0x80000000, persistent: true }).flags).toBe(0x80000001);
    expect(new Message('x', { flags: 0xffffffff }).flags).toBe(0xffffffff);
    expect(new Message('x', { persistent: true }).persistent).toBe(true);
    expect(new Message('x', { persistent: false }).flags).toBe(0);
  });

  it('take a TTL in seconds or null, and default to no limit', () => {
    expect(new Message('x').ttl).toBeNull();
    expect(new Message('x', { ttl: 600 }).ttl).toBe(600);
    expect(new Message('x', { ttl: null }).ttl).toBeNull();
    expect(new Message('x', { ttl: MAX_TTL }).ttl).toBe(MAX_TTL);
    expect(new Message('x', {}).ttl).toBeNull();
    // An option given as undefined is as good as absent (like every options object).
    expect(new Message('x', { ttl: undefined, persistent: undefined, flags: undefined, uuid: undefined }).flags).toBe(0);
  });

  it('an unknown key (a misspelt persistent) is an InvalidOptionsError naming it, not a silently transient message', () => {
    expect(() => new Message('x', { persistant: true } as never)).toThrow(InvalidOptionsError);
    expect(() => new Message('x', { persistant: true } as never)).toThrow(/unknown option 'persistant' \(known: flags, persistent, ttl, uuid\)/);
    expect(() => new Message('x', { ttl: 5, TTL: 5 } as never)).toThrow(/unknown option 'TTL'/);
  });

  it('bad values are InvalidOptionsError naming the option', () => {
    const bad: [object, string][] = [
      [{ ttl: -1 }, 'ttl'],
      [{ ttl: 2 ** 32 }, 'ttl'],
      [{ ttl: '5' }, 'ttl'],
      [{ ttl: Number.NaN }, 'ttl'],
      [{ flags: 1.5 }, 'flags'],
      [{ flags: -1 }, 'flags'],
      [{ flags: 2 ** 32 }, 'flags'],
      [{ flags: '1' }, 'flags'],
      [{ persistent: 'yes' }, 'persistent'],
      [{ persistent: 1 }, 'persistent'],
      [{ persistent: null }, 'persistent'],
      [{ uuid: Buffer.alloc(15) }, 'uuid'],
      [{ uuid: 'x'.repeat(16) }, 'uuid'],
    ];
    for (const [options, key] of bad) {
      expect(() => new Message('x', options as never), JSON.stringify(options)).toThrow(InvalidOptionsError);
      expect(() => new Message('x', options as never), JSON.stringify(options)).toThrow(`Message: option '${key}'`);
    }
  });

  it('options that are not an object are refused', () => {
    for (const options of [null, 5, 'persistent', true]) {
      expect(() => new Message('x', options as never), String(options)).toThrow(InvalidOptionsError);
    }
  });

  it('an inherited key is not an option (like validateOptions: own keys only) but is not ignored silently either', () => {
    const options = Object.create({ persistant: true }) as object;
    expect(() => new Message('x', options as never)).toThrow(InvalidOptionsError);
  });

  it('data that is not bytes or a string stays an InvalidArgumentError', () => {
    expect(() => new Message(42 as never)).toThrow(InvalidArgumentError);
    expect(() => new Message({} as never, { ttl: 5 })).toThrow(InvalidArgumentError);
  });
});
