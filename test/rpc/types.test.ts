/**
 * Compile-time checks of the typed proxy (checked by `tsc -p tsconfig.json`;
 * vitest runs the file too, where `expectTypeOf` is a no-op).
 */
import { describe, expectTypeOf, it } from 'vitest';
import type { Delivery } from '../../lib/messaging/types.js';
import { RpcClient, type MethodName, type RemoteProxy } from '../../lib/rpc/index.js';
import { FakeNetwork } from './fake-messaging.js';

interface Calc {
  add(a: number, b: number): number;
  addAsync(a: number, b: number): Promise<number>;
  greet(name: string, loud?: boolean): string;
  notify(text: string): void;
  optional?(x: number): Buffer;
  then(): void;
  value: number;
  readonly label: string;
}

describe('RemoteProxy types', () => {
  const net = new FakeNetwork();
  const client = new RpcClient(net.a);
  void client.close();

  it('maps methods to promise-returning functions with the same parameters', () => {
    const calc = client.proxy<Calc>('bob', 'calc');
    expectTypeOf(calc.add).returns.toEqualTypeOf<Promise<number>>();
    expectTypeOf(calc.add).parameters.toEqualTypeOf<[a: number, b: number]>();
    expectTypeOf(calc.addAsync).returns.toEqualTypeOf<Promise<number>>();
    expectTypeOf(calc.greet).parameters.toEqualTypeOf<[name: string, loud?: boolean]>();
    expectTypeOf(calc.notify).returns.toEqualTypeOf<Promise<void>>();
    expectTypeOf(calc.optional).returns.toEqualTypeOf<Promise<Buffer>>();
    expectTypeOf<MethodName<Calc>>().toEqualTypeOf<'add' | 'addAsync' | 'greet' | 'notify' | 'optional'>();

    const noCall = () => {
      // @ts-expect-error wrong argument type
      void calc.add('1', 2);
      // @ts-expect-error missing argument
      void calc.add(1);
      // @ts-expect-error unknown method
      void calc.subtract(1, 2);
      // @ts-expect-error data members are not remote
      void calc.value;
      // @ts-expect-error the proxy is never thenable
      void calc.then;
      // @ts-expect-error proxies are read-only
      calc.add = async () => 1;
    };
    void noCall;
  });

  it('signal methods named in S return Promise<void>; signals must be method names', () => {
    const calc = client.proxy<Calc, 'greet'>('bob', 'calc', { signals: ['greet'] });
    expectTypeOf(calc.greet).returns.toEqualTypeOf<Promise<void>>();
    expectTypeOf(calc.add).returns.toEqualTypeOf<Promise<number>>();
    expectTypeOf<RemoteProxy<Calc, 'notify'>['notify']>().returns.toEqualTypeOf<Promise<void>>();
    // @ts-expect-error not a method of Calc
    client.proxy<Calc>('bob', 'calc', { signals: ['value'] });
    // @ts-expect-error S must be a method name
    expectTypeOf<RemoteProxy<Calc, 'value'>>().toBeObject();
  });

  it('call() and signal()', () => {
    expectTypeOf(client.call<number>).returns.toEqualTypeOf<Promise<number>>();
    expectTypeOf(client.call).returns.toEqualTypeOf<Promise<unknown>>();
    expectTypeOf(client.signal).returns.toEqualTypeOf<Delivery>();
  });
});
