import 'reflect-metadata';
import { Controller, Get, Inject, Logger, Module, Query, type LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientsModule, MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { firstValueFrom, lastValueFrom, of, toArray } from 'rxjs';
import request from 'supertest';
import {
  WireClient,
  WireConnectionError,
  WireNoHandlerError,
  WireOptionsError,
  WireServer,
  wireClient,
  wireClientAsync,
  type WireClientOptions,
} from '../../lib/index.js';
import { FaultProxy } from '../helpers/fault-proxy.js';
import { startWireApp, type RunningServer } from '../helpers/apps.js';
import { waitFor } from '../helpers/wait.js';
import { closedPort } from '../helpers/fake-server.js';

/** Lets a test hold a handler open until it has done something to the connection. */
const gate = { started: null as (() => void) | null, hangs: 0 };

@Controller()
class MathController {
  @MessagePattern('sum')
  sum(@Payload() numbers: number[]): number {
    return numbers.reduce((a, b) => a + b, 0);
  }

  @MessagePattern('count')
  count(@Payload() n: number) {
    return of(...Array.from({ length: n }, (_, i) => i + 1));
  }

  @MessagePattern('divide')
  divide(@Payload() { a, b }: { a: number; b: number }): number {
    if (b === 0) throw new RpcException({ status: 400, message: 'Division by zero' });
    return a / b;
  }

  @MessagePattern('hang')
  hang(): Promise<never> {
    gate.hangs++;
    gate.started?.();
    return new Promise<never>(() => {});
  }
}

@Module({ controllers: [MathController] })
class MathModule {}

describe('migrating from Nest TCP', () => {
  let running: RunningServer;
  beforeAll(async () => {
    running = await startWireApp(MathModule);
  });
  afterAll(async () => {
    await running.app.close();
  });

  describe('typed ClientsModule registration', () => {
    const PORT = Symbol('PORT');

    @Module({ providers: [{ provide: PORT, useFactory: () => running.port }], exports: [PORT] })
    class ConfigModule {}

    it('registers type-checked clients with register and registerAsync, injected as WireClient', async () => {
      const moduleRef = await Test.createTestingModule({
        imports: [
          ClientsModule.register([wireClient('MATH', { host: '127.0.0.1', port: running.port, timeout: 1000 })]),
          ClientsModule.registerAsync([
            wireClientAsync({
              name: 'MATH_ASYNC',
              imports: [ConfigModule],
              inject: [PORT],
              useFactory: async (port: number) => ({ host: '127.0.0.1', port }),
            }),
          ]),
        ],
      }).compile();
      const math = moduleRef.get<WireClient>('MATH');
      const mathAsync = moduleRef.get<WireClient>('MATH_ASYNC');
      expect(math).toBeInstanceOf(WireClient);
      expect(mathAsync).toBeInstanceOf(WireClient);
      // Per-call options need the WireClient type: on ClientProxy, send() takes two arguments.
      await expect(firstValueFrom(math.send<number>('sum', [1, 2], { timeout: 500 }))).resolves.toBe(3);
      await expect(firstValueFrom(mathAsync.send<number>('sum', [3, 4]))).resolves.toBe(7);
      await moduleRef.close(); // ClientsModule closes its clients on shutdown
    });

    it('turns a misspelt option into a type error, and a WireOptionsError at run time', () => {
      expect(() =>
        // @ts-expect-error: `tlsOptions` is not a WireClientOptions key (it is `tls`)
        ClientsModule.register([wireClient('X', { host: '127.0.0.1', tlsOptions: {} })]),
      ).toThrow(WireOptionsError);
      // @ts-expect-error: the `satisfies` idiom, for a plain `customClass: WireClient` entry
      const options = { host: '127.0.0.1', tlsOptions: {} } satisfies WireClientOptions;
      expect(() => ClientsModule.register([{ name: 'Y', customClass: WireClient, options }])).toThrow(
        /did you mean 'tls'/,
      );
      const registration = wireClientAsync({
        name: 'Z',
        // @ts-expect-error: the factory's result is checked too
        useFactory: () => ({ host: '127.0.0.1', maxBufferSize: 10 }),
      });
      expect(registration.name).toBe('Z');
    });
  });

  describe('hybrid app: HTTP and a WireServer in one Nest application', () => {
    @Controller()
    class GatewayController {
      constructor(@Inject('MATH') private readonly math: WireClient) {}

      @Get('sum')
      sum(@Query('n') n: string): Promise<number> {
        return firstValueFrom(this.math.send<number>('sum', n.split(',').map(Number), { timeout: 1000 }));
      }
    }

    it('serves HTTP and nest-wire calls from connectMicroservice({ strategy: new WireServer(...) })', async () => {
      const port = await closedPort();
      @Module({
        imports: [ClientsModule.register([wireClient('MATH', { host: '127.0.0.1', port })])],
        controllers: [GatewayController, MathController],
      })
      class HybridModule {}

      const app = await NestFactory.create(HybridModule, { logger: false });
      const wire = new WireServer({ host: '127.0.0.1', port });
      app.connectMicroservice({ strategy: wire });
      await app.startAllMicroservices();
      await app.init();
      const client = new WireClient({ host: '127.0.0.1', port });
      try {
        await expect(firstValueFrom(client.send<number>('sum', [2, 3]))).resolves.toBe(5);
        // The HTTP side calls the nest-wire side of the same app through the injected WireClient.
        const res = await request(app.getHttpServer()).get('/sum?n=1,2,3').expect(200);
        expect(res.text).toBe('6');
        expect(wire.connectionCount).toBe(2);
      } finally {
        client.close();
        await app.close();
      }
      expect(wire.connectionCount).toBe(0);
    });
  });

  describe('serializeResponse / serializeError overrides (as in Nest’s own e2e suite)', () => {
    class RpcErrorClient extends WireClient {
      protected override serializeError(err: unknown): unknown {
        return new RpcException(err as object);
      }

      protected override serializeResponse(response: unknown): unknown {
        if (response === 'explode') throw new Error('cannot map');
        return { value: response };
      }
    }

    let client: RpcErrorClient;
    beforeAll(() => {
      client = new RpcErrorClient({ host: '127.0.0.1', port: running.port });
    });
    afterAll(() => client.close());

    it('delivers every value through serializeResponse, in order', async () => {
      await expect(firstValueFrom(client.send('sum', [1, 2]))).resolves.toEqual({ value: 3 });
      await expect(lastValueFrom(client.send('count', 3).pipe(toArray()))).resolves.toEqual([
        { value: 1 },
        { value: 2 },
        { value: 3 },
      ]);
    });

    it("delivers the handler's error, and a transport error, through serializeError", async () => {
      const err = await firstValueFrom(client.send('divide', { a: 1, b: 0 })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RpcException);
      expect((err as RpcException).getError()).toEqual({ status: 400, message: 'Division by zero' });
      const missing = await firstValueFrom(client.send('nope', 1)).catch((e: unknown) => e);
      expect(missing).toBeInstanceOf(RpcException);
      expect((missing as RpcException).getError()).toBeInstanceOf(WireNoHandlerError);
    });

    it('fails the call when serializeResponse throws, through serializeError', async () => {
      const sneaky = new (class extends RpcErrorClient {
        protected override serializeResponse(response: unknown): unknown {
          if (response === 2) throw new Error('cannot map 2');
          return response;
        }
      })({ host: '127.0.0.1', port: running.port });
      try {
        const seen: unknown[] = [];
        const err = await new Promise((resolve) =>
          sneaky
            .send('count', 3)
            .subscribe({ next: (v) => seen.push(v), error: resolve, complete: () => resolve(null) }),
        );
        expect(seen).toEqual([1]);
        expect(err).toBeInstanceOf(RpcException);
        expect(((err as RpcException).getError() as Error).message).toBe('cannot map 2');
        // The same connection keeps serving: the failed stream was cancelled, not the connection.
        await expect(firstValueFrom(sneaky.send('sum', [5, 5]))).resolves.toBe(10);
      } finally {
        sneaky.close();
      }
    });

    it('leaves answers untouched on a client without overrides', async () => {
      const plain = new WireClient({ host: '127.0.0.1', port: running.port });
      try {
        await expect(firstValueFrom(plain.send('sum', [1, 2]))).resolves.toBe(3);
        const err = await firstValueFrom(plain.send('divide', { a: 1, b: 0 })).catch((e: unknown) => e);
        expect(err).toEqual({ status: 400, message: 'Division by zero' });
      } finally {
        plain.close();
      }
    });
  });

  describe("connection errors carry the socket's code", () => {
    it('refused: code WIRE_CONNECTION, syscallCode ECONNREFUSED, cause the socket error', async () => {
      const port = await closedPort();
      const client = new WireClient({ host: '127.0.0.1', port });
      client.on('error', () => {});
      try {
        const err = (await firstValueFrom(client.send('sum', [1])).catch((e: unknown) => e)) as WireConnectionError;
        expect(err).toBeInstanceOf(WireConnectionError);
        expect(err.code).toBe('WIRE_CONNECTION');
        expect(err.syscallCode).toBe('ECONNREFUSED');
        const cause = err.cause as NodeJS.ErrnoException;
        expect(cause).not.toBeInstanceOf(WireConnectionError);
        expect(cause.code).toBe('ECONNREFUSED');
        expect(cause.syscall).toBe('connect');
        const connectErr = (await client.connect().catch((e: unknown) => e)) as WireConnectionError;
        expect(connectErr).toBeInstanceOf(WireConnectionError);
        expect(connectErr.syscallCode).toBe('ECONNREFUSED');
      } finally {
        client.close();
      }
    });

    it('reset: a call in flight fails with syscallCode ECONNRESET', async () => {
      const proxy = await FaultProxy.start(running.port);
      const client = new WireClient({ host: '127.0.0.1', port: proxy.port });
      client.on('error', () => {});
      try {
        const started = new Promise<void>((resolve) => (gate.started = resolve));
        const call = firstValueFrom(client.send('hang', 1)).catch((e: unknown) => e);
        await started;
        proxy.resetAll();
        const err = (await call) as WireConnectionError;
        expect(err).toBeInstanceOf(WireConnectionError);
        expect(err.syscallCode).toBe('ECONNRESET');
        expect((err.cause as NodeJS.ErrnoException).code).toBe('ECONNRESET');
      } finally {
        gate.started = null;
        client.close();
        await proxy.close();
      }
    });

    it('a call that reached the server fails when its connection resets, and is not sent again', async () => {
      // Two connections: one through the proxy, one direct. Two calls go one to each (the
      // least loaded one is picked); a call wrongly re-sent would run again on the direct one.
      const proxy = await FaultProxy.start(running.port);
      const client = new WireClient({ servers: [`127.0.0.1:${proxy.port}`, `127.0.0.1:${running.port}`] });
      client.on('error', () => {});
      try {
        await client.connect();
        await waitFor(() => client.counters().openConnections === 2, {
          timeoutMs: 5000,
          what: 'both connections to open',
        });
        expect(client.counters().openConnections).toBe(2);
        const hangsAtStart = gate.hangs;
        const bothStarted = new Promise<void>(
          (resolve) => (gate.started = () => gate.hangs === hangsAtStart + 2 && resolve()),
        );
        const calls = [1, 2].map(() => firstValueFrom(client.send('hang', 1)).catch((e: unknown) => e));
        await bothStarted;
        proxy.resetAll();
        const failed = (await Promise.race(calls)) as WireConnectionError;
        expect(failed).toBeInstanceOf(WireConnectionError);
        expect(failed.message).toBe('socket error: read ECONNRESET');
        expect(failed.syscallCode).toBe('ECONNRESET');
        // An ordering barrier on the direct connection: a re-sent call would be dispatched before it.
        for (let i = 0; i < 4; i++)
          await expect(firstValueFrom(client.send<number>('sum', [i, 1]))).resolves.toBe(i + 1);
        expect(gate.hangs).toBe(hangsAtStart + 2);
      } finally {
        gate.started = null;
        client.close();
        await proxy.close();
      }
    });

    it('has no syscallCode when no socket error is involved', async () => {
      const client = new WireClient({ host: '127.0.0.1', port: running.port });
      await client.connect();
      const call = firstValueFrom(client.send('hang', 1)).catch((e: unknown) => e);
      await new Promise<void>((resolve) => (gate.started = resolve));
      client.close();
      const err = (await call) as WireConnectionError;
      expect(err).toBeInstanceOf(WireConnectionError);
      expect(err.message).toBe('connection closed');
      expect(err.syscallCode).toBeUndefined();
      gate.started = null;
    });
  });
});

describe('logging while the server is away: quiet by default', () => {
  type Entry = { level: string; message: string; context: unknown };

  /** A LoggerService that records what it is given, and tells a test when a line matching `until` arrives. */
  class RecordingLogger implements LoggerService {
    readonly entries: Entry[] = [];
    private waiters: { test: (e: Entry) => boolean; resolve: () => void }[] = [];

    private add(level: string, message: unknown, params: unknown[]): void {
      const entry = { level, message: String(message), context: params[params.length - 1] };
      this.entries.push(entry);
      this.waiters = this.waiters.filter((w) => (w.test(entry) ? (w.resolve(), false) : true));
    }

    /** Resolves when an entry passing `test` has been logged (at once if one already has, counting `n`). */
    when(test: (e: Entry) => boolean, n = 1): Promise<void> {
      let seen = this.entries.filter(test).length;
      if (seen >= n) return Promise.resolve();
      return new Promise((resolve) => this.waiters.push({ test: (e) => test(e) && ++seen >= n, resolve }));
    }

    log(m: unknown, ...p: unknown[]) {
      this.add('log', m, p);
    }
    error(m: unknown, ...p: unknown[]) {
      this.add('error', m, p);
    }
    warn(m: unknown, ...p: unknown[]) {
      this.add('warn', m, p);
    }
    debug(m: unknown, ...p: unknown[]) {
      this.add('debug', m, p);
    }
    verbose(m: unknown, ...p: unknown[]) {
      this.add('verbose', m, p);
    }
    fatal(m: unknown, ...p: unknown[]) {
      this.add('fatal', m, p);
    }
  }

  it('logs one warn when the outage starts, nothing per attempt, and the recovery at log', async () => {
    const logger = new RecordingLogger();
    Logger.overrideLogger(logger);
    const port = await closedPort();
    const client = new WireClient({ host: '127.0.0.1', port, reconnect: { initialDelayMs: 10, maxDelayMs: 20 } });
    const fromClient = (e: Entry) => e.context === 'WireClient';
    let app: Awaited<ReturnType<typeof NestFactory.createMicroservice>> | null = null;
    try {
      await expect(client.connect()).rejects.toBeInstanceOf(WireConnectionError);
      // At least four failed attempts: the first (warn) and three more (not logged, counted).
      await waitFor(() => client.stats().endpoints[0].failedAttempts >= 4, {
        timeoutMs: 5000,
        what: '4 failed attempts',
      });
      app = await NestFactory.createMicroservice(MathModule, {
        strategy: new WireServer({ host: '127.0.0.1', port }),
        logger,
      });
      await app.listen();
      await logger.when((e) => fromClient(e) && e.level === 'log');
      await expect(firstValueFrom(client.send<number>('sum', [1, 1]))).resolves.toBe(2);

      const lines = logger.entries.filter(fromClient);
      expect(lines.filter((e) => e.level === 'warn')).toEqual([
        {
          level: 'warn',
          message: expect.stringMatching(new RegExp(`^connection to 127.0.0.1:${port} failed: .*ECONNREFUSED`)),
          context: 'WireClient',
        },
      ]);
      const recovered = lines.filter((e) => e.level === 'log');
      expect(recovered).toHaveLength(1);
      const match = new RegExp(
        `^reconnected to 127\\.0\\.0\\.1:${port} after (\\d+) failed attempts in (\\d+) ms$`,
      ).exec(recovered[0].message);
      expect(match).not.toBeNull();
      expect(Number(match![1])).toBeGreaterThanOrEqual(4);
      // No line per attempt, at any level (a default Nest app prints them all).
      expect(lines.filter((e) => /^connection to \S+ failed/.test(e.message))).toHaveLength(1);
      expect(lines.filter((e) => e.level !== 'verbose' && e.level !== 'warn' && e.level !== 'log')).toEqual([]);
      // The server's per-connection lines are verbose too.
      expect(logger.entries.filter((e) => e.context === 'WireServer' && e.level === 'debug')).toEqual([]);
    } finally {
      client.close();
      await app?.close();
      Logger.overrideLogger(false);
    }
  });

  it('server: a client refused in a reconnect loop gives one warn, nothing per attempt, one log once it gets in', async () => {
    const logger = new RecordingLogger();
    let accept = false;
    const server = new WireServer({ host: '127.0.0.1', port: 0, authenticate: () => accept });
    const app = await NestFactory.createMicroservice(MathModule, { strategy: server, logger });
    await app.listen();
    const client = new WireClient({
      host: '127.0.0.1',
      port: server.port,
      credentials: 'stale token',
      reconnect: { initialDelayMs: 10, maxDelayMs: 20 },
    });
    const fromServer = (e: Entry) => e.context === 'WireServer';
    try {
      await expect(client.connect()).rejects.toMatchObject({ code: 'WIRE_AUTH' });
      await waitFor(() => client.stats().endpoints[0].failedAttempts >= 4, {
        timeoutMs: 5000,
        what: '4 refused attempts',
      });
      accept = true;
      await logger.when((e) => fromServer(e) && e.level === 'log');
      await expect(firstValueFrom(client.send<number>('sum', [1, 1]))).resolves.toBe(2);

      const lines = logger.entries.filter(fromServer);
      expect(lines.filter((e) => e.level === 'warn')).toEqual([
        {
          level: 'warn',
          message: expect.stringMatching(/^connection from 127\.0\.0\.1 failed: authentication failed/),
          context: 'WireServer',
        },
      ]);
      const opened = lines.filter((e) => e.level === 'log');
      expect(opened).toHaveLength(1);
      const match = /^connection from 127\.0\.0\.1 open again after (\d+) failed attempts in \d+ ms$/.exec(
        opened[0].message,
      );
      expect(match).not.toBeNull();
      expect(Number(match![1])).toBeGreaterThanOrEqual(4);
      expect(lines.filter((e) => /^connection from \S+ failed/.test(e.message))).toHaveLength(1);
      expect(lines.filter((e) => e.level !== 'verbose' && e.level !== 'warn' && e.level !== 'log')).toEqual([]);
      // The client saw the same outage the same way: one warn.
      expect(logger.entries.filter((e) => e.context === 'WireClient' && e.level === 'warn')).toHaveLength(1);
    } finally {
      client.close();
      await app.close();
      Logger.overrideLogger(false);
    }
  });
});
