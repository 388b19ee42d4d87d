import 'reflect-metadata';
import { Inject, Injectable, Module } from '@nestjs/common';
import { ClientProxyFactory, ClientsModule, type ClientProxy } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { firstValueFrom, lastValueFrom, toArray } from 'rxjs';
import { WireClient, WireNoHandlerError } from '../../lib/index.js';
import { clientFor, startWireApp, withRunningApp, type RunningServer } from '../helpers/apps.js';
import { recorder, TestAppModule } from '../helpers/test-app.js';
import { waitFor } from '../helpers/wait.js';

describe('messaging over nest-wire (real Nest apps on loopback)', () => {
  let running: RunningServer;
  let client: WireClient;

  beforeAll(async () => {
    running = await startWireApp(TestAppModule);
    client = clientFor(running);
  });
  afterAll(async () => {
    client.close();
    await running.app.close();
  });

  describe('request / response', () => {
    it('answers a string pattern', async () => {
      expect(await firstValueFrom(client.send<number>('sum', [1, 2, 3]))).toBe(6);
    });

    it('answers an object pattern regardless of key order', async () => {
      expect(await firstValueFrom(client.send({ version: 2, cmd: 'sum' }, [1, 2]))).toBe(1003);
      expect(await firstValueFrom(client.send({ cmd: 'sum', version: 2 }, [1]))).toBe(1001);
    });

    it('round-trips structured payloads', async () => {
      const payload = { s: 'héllo', n: -1.5, list: [1, 'a', null, true], nested: { deep: { x: [2 ** 40] } } };
      expect(await firstValueFrom(client.send('echo', payload))).toEqual(payload);
    });

    it('answers 600 pipelined calls of mixed sizes, with and without metadata, each with its own bytes', async () => {
      // Both sides write encoded values over bytes already copied into frames, and frames into
      // arenas already written: every answer must still be the call's own (sizes around the
      // 16 KiB copy limit and the 64 KiB arena included).
      const sizes = [1, 100, 4000, 16_000, 17_000, 40_000, 70_000];
      const calls = Array.from({ length: 600 }, (_, i) => {
        const body = String.fromCharCode(97 + (i % 26)).repeat(sizes[i % sizes.length]) + i;
        const options = i % 3 === 0 ? { metadata: { call: String(i) } } : undefined;
        return lastValueFrom(client.send<{ i: number; body: string }>('echo', { i, body }, options)).then(
          (answer) => answer.i === i && answer.body === body,
        );
      });
      expect((await Promise.all(calls)).every(Boolean)).toBe(true);
    });

    it('completes without a value when the handler returns nothing', async () => {
      const values = await lastValueFrom(client.send('nothing', {}).pipe(toArray()));
      expect(values).toEqual([]);
    });

    it('answers 1 000 concurrent calls out of order, each with its own result', async () => {
      const calls = Array.from({ length: 1000 }, (_, id) =>
        firstValueFrom(client.send<number>('delayed', { id, ms: (id * 7919) % 25 })),
      );
      const order: number[] = [];
      calls.forEach((p) => void p.then((id) => order.push(id)));
      const results = await Promise.all(calls);
      expect(results).toEqual(Array.from({ length: 1000 }, (_, id) => id));
      // Responses really did come back in a different order than they were sent.
      expect(order).not.toEqual(results);
    });

    it('is cold: each subscription is one call', async () => {
      const sum$ = client.send<number>('sum', [2, 2]);
      expect(await firstValueFrom(sum$)).toBe(4);
      expect(await firstValueFrom(sum$)).toBe(4);
    });

    it('refuses null data like Nest clients do', async () => {
      await expect(firstValueFrom(client.send('sum', null))).rejects.toThrow(/invalid data or message pattern/);
    });
  });

  describe('streams', () => {
    it('delivers every value of a synchronous Observable in order, then completes', async () => {
      const values = await lastValueFrom(client.send<number>('stream', 500).pipe(toArray()));
      expect(values).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
    });

    it('treats an undefined last value as Nest TCP does: a bare completion', async () => {
      // Nest's server merges the completion into the last packet and JSON drops `undefined`.
      const values = await lastValueFrom(client.send('undefined.last', {}).pipe(toArray()));
      expect(values).toEqual([1]);
    });

    it('delivers values of an asynchronous Observable as they are produced', async () => {
      const values = await lastValueFrom(client.send<number>('ticks', 5).pipe(toArray()));
      expect(values).toEqual([0, 1, 2, 3, 4]);
    });

    it('delivers the values before an error, then the error', async () => {
      const seen: number[] = [];
      const err = await new Promise((resolve) =>
        client.send<number>('stream.fails', {}).subscribe({ next: (v) => seen.push(v), error: resolve }),
      );
      expect(seen).toEqual([1, 2]);
      expect(err).toEqual({ status: 'error', message: 'stream broke' });
    });
  });

  describe('errors', () => {
    it('delivers an RpcException with a string as Nest TCP does', async () => {
      await expect(firstValueFrom(client.send('rpc.error', 'string'))).rejects.toEqual({
        status: 'error',
        message: 'plain failure',
      });
    });

    it('delivers an RpcException with an object unchanged', async () => {
      await expect(firstValueFrom(client.send('rpc.error', 'object'))).rejects.toEqual({
        status: 418,
        message: 'teapot',
        details: { a: 1 },
      });
    });

    it("maps a non-RPC exception to Nest's internal server error", async () => {
      await expect(firstValueFrom(client.send('plain.error', {}))).rejects.toEqual({
        status: 'error',
        message: 'Internal server error',
      });
    });

    it('delivers an error Observable', async () => {
      await expect(firstValueFrom(client.send('observable.error', {}))).rejects.toEqual({
        status: 'error',
        message: 'from observable',
      });
    });

    it("fails an unknown pattern with Nest's standard message", async () => {
      const err = await firstValueFrom(client.send('no.such.pattern', {})).catch((e) => e);
      expect(err).toBeInstanceOf(WireNoHandlerError);
      expect(err.code).toBe('WIRE_NO_HANDLER');
      expect(err.message).toBe('There is no matching message handler defined in the remote service.');
    });

    it('does not answer requests with an event handler', async () => {
      await expect(firstValueFrom(client.send('user.created', {}))).rejects.toBeInstanceOf(WireNoHandlerError);
    });
  });

  describe('Nest features', () => {
    it('runs pipes', async () => {
      expect(await firstValueFrom(client.send('pipe', '41'))).toBe(42);
      await expect(firstValueFrom(client.send('pipe', 'abc'))).rejects.toMatchObject({ status: 'error' });
    });

    it('runs guards', async () => {
      expect(await firstValueFrom(client.send('guarded', { token: 'let-me-in' }))).toBe('secret');
      await expect(firstValueFrom(client.send('guarded', { token: 'nope' }))).rejects.toEqual({
        status: 'error',
        message: 'Forbidden resource',
      });
    });

    it('runs interceptors', async () => {
      expect(await firstValueFrom(client.send('intercepted', 21))).toBe(42);
    });

    it('gives handlers a WireContext', async () => {
      const ctx = await firstValueFrom(client.send('ctx', {}, { timeout: 5000 }));
      expect(ctx).toMatchObject({ pattern: 'ctx', metadata: null, aborted: false });
      expect(ctx.requestId).toBeGreaterThan(0);
      expect(ctx.remote).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(ctx.deadline).toBeGreaterThan(Date.now());
      expect(ctx.deadline).toBeLessThanOrEqual(Date.now() + 5000);
    });

    it('carries metadata from the dispatch hook and per-call options', async () => {
      const hooked = clientFor(running);
      hooked.setOnDispatchHook((packet) => {
        packet.metadata = { traceId: 'trace-1', tenant: 'a' };
      });
      const ctx = await firstValueFrom(hooked.send('ctx', {}, { metadata: { tenant: 'b', locale: 'fr' } }));
      expect(ctx.metadata).toEqual({ traceId: 'trace-1', tenant: 'b', locale: 'fr' });
      hooked.close();
    });
  });

  describe('events', () => {
    it('delivers an emitted event with its metadata; emit completes once written', async () => {
      recorder.events = [];
      const emitter = clientFor(running);
      emitter.setOnDispatchHook((packet) => {
        packet.metadata = { traceId: 'ev-1' };
      });
      await lastValueFrom(emitter.emit('user.created', { name: 'Ada' }), { defaultValue: undefined });
      await waitFor(() => recorder.events.length === 1);
      expect(recorder.events[0]).toEqual({
        pattern: 'user.created',
        data: { name: 'Ada' },
        metadata: { traceId: 'ev-1' },
      });
      emitter.close();
    });

    it('keeps serving after an event handler throws', async () => {
      await lastValueFrom(client.emit('event.throws', {}), { defaultValue: undefined });
      expect(await firstValueFrom(client.send('sum', [1]))).toBe(1);
    });
  });

  describe('client creation the Nest way', () => {
    it('works through ClientProxyFactory.create({ customClass })', async () => {
      const proxy = ClientProxyFactory.create({
        customClass: WireClient,
        options: { host: '127.0.0.1', port: running.port },
      });
      expect(proxy).toBeInstanceOf(WireClient);
      expect(await firstValueFrom(proxy.send('sum', [5, 5]))).toBe(10);
      await proxy.close();
    });

    it('is injected by ClientsModule.register({ customClass })', async () => {
      @Injectable()
      class MathService {
        constructor(@Inject('MATH') readonly client: ClientProxy) {}
      }
      @Module({
        imports: [
          ClientsModule.register([
            { name: 'MATH', customClass: WireClient, options: { host: '127.0.0.1', port: running.port } },
          ]),
        ],
        providers: [MathService],
      })
      class GatewayModule {}
      const moduleRef = await Test.createTestingModule({ imports: [GatewayModule] }).compile();
      const app = moduleRef.createNestApplication({ logger: false });
      await app.init();
      const service = app.get(MathService);
      expect(service.client).toBeInstanceOf(WireClient);
      expect(await firstValueFrom(service.client.send('sum', [1, 1]))).toBe(2);
      await app.close();
    });
  });

  describe('pool', () => {
    it('spreads calls over poolSize connections', async () => {
      const pooled = clientFor(running, { poolSize: 3 });
      await pooled.connect();
      await waitFor(() => pooled.counters().openConnections === 3);
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) => firstValueFrom(pooled.send<number>('delayed', { id: i, ms: 20 }))),
      );
      expect(results).toHaveLength(30);
      expect(pooled.unwrap<unknown[]>()).toHaveLength(3);
      expect(running.server.connectionCount).toBeGreaterThanOrEqual(3);
      pooled.close();
    });

    it('reports status changes', async () => {
      const watched = clientFor(running);
      const statuses: string[] = [];
      const sub = watched.status.subscribe((s) => statuses.push(s));
      await watched.connect();
      watched.close();
      sub.unsubscribe();
      expect(statuses).toEqual(['connected', 'disconnected']);
    });
  });
});

describe('large values', () => {
  const app = withRunningApp(TestAppModule);

  it('sends an 8 MiB value in fragments and reassembles it', async () => {
    const value = await firstValueFrom(app.client.send<string>('big', 8 << 20));
    expect(value.length).toBe(8 << 20);
    expect(value).toBe('b'.repeat(8 << 20));
  });

  it('lets small calls on the same connection finish while a large value is still leaving', async () => {
    const order: string[] = [];
    const bytesBefore = app.client.stats().transport.bytesIn;
    const big = firstValueFrom(app.client.send<string>('big', 8 << 20)).then(() => order.push('big'));
    // The large value is being written: its first fragments have arrived.
    await waitFor(() => app.client.stats().transport.bytesIn > bytesBefore + (256 << 10), {
      what: 'the first fragments of the large value',
    });
    const small = Array.from({ length: 10 }, (_, i) =>
      firstValueFrom(app.client.send<number>('sum', [i])).then(() => order.push('small')),
    );
    await Promise.all([big, ...small]);
    expect(order.indexOf('big')).toBeGreaterThan(order.indexOf('small'));
    expect(order.filter((o) => o === 'small')).toHaveLength(10);
  });

  it('keeps the values of a stream in order across large and small values', async () => {
    const values = await lastValueFrom(app.client.send<string>('mixed.stream', {}).pipe(toArray()));
    expect(values.map((v) => v.length)).toEqual([300_000, 3, 200_000, 1]);
  });
});
