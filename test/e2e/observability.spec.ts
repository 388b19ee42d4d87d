import 'reflect-metadata';
import { Controller, Get, Inject, Module } from '@nestjs/common';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { firstValueFrom } from 'rxjs';
import { WireClient, WireConnectionError, WireContext } from '../../lib/index.js';
import { WireHealthIndicator } from '../../lib/terminus/index.js';
import { clientFor, startWireApp, type RunningServer } from '../helpers/apps.js';
import { TestAppModule } from '../helpers/test-app.js';
import { waitFor } from '../helpers/wait.js';

describe('observability', () => {
  let running: RunningServer;
  beforeAll(async () => {
    running = await startWireApp(TestAppModule);
  });
  afterAll(() => running.app.close());

  it('stats(): calls by outcome, latency percentiles, coalescing, bytes, endpoints', async () => {
    const client = clientFor(running);
    await Promise.all(Array.from({ length: 200 }, (_, i) => firstValueFrom(client.send('sum', [i]))));
    await firstValueFrom(client.send('rpc.error', 'string')).catch(() => {});
    await firstValueFrom(client.send('no.such', {})).catch(() => {});
    await firstValueFrom(client.send('slow', 1000, { timeout: 30 })).catch(() => {});
    client.send('slow', 1000).subscribe().unsubscribe();
    await new Promise((r) => setImmediate(r)); // let the last frames (REQUEST, CANCELs) be written
    const stats = client.stats();
    expect(stats.calls).toMatchObject({
      started: 204,
      succeeded: 200,
      cancelled: 1,
      failed: { APPLICATION: 1, WIRE_NO_HANDLER: 1, WIRE_TIMEOUT: 1 },
      inFlight: 0,
      pending: 0,
      queued: 0,
    });
    expect(stats.calls.latencyMs.count).toBe(203);
    expect(stats.calls.latencyMs.p50).toBeGreaterThan(0);
    expect(stats.calls.latencyMs.p99).toBeGreaterThanOrEqual(stats.calls.latencyMs.p50);
    expect(stats.calls.latencyMs.max).toBeGreaterThanOrEqual(30);
    // HELLO, the requests, the unsubscribed call's CANCEL, and the timed-out call's CANCEL
    // unless the server's own deadline answered first.
    expect(stats.transport.framesOut).toBeGreaterThanOrEqual(1 + 204 + 1);
    expect(stats.transport.framesOut).toBeLessThanOrEqual(1 + 204 + 2);
    expect(stats.transport.writes).toBeLessThan(stats.transport.framesOut / 5);
    expect(stats.transport.bytesIn).toBeGreaterThan(0);
    expect(stats.transport.bytesOut).toBeGreaterThan(0);
    expect(stats.endpoints).toEqual([
      { endpoint: `127.0.0.1:${running.port}`, state: 'ready', connections: 1, inFlight: 0, failedAttempts: 0 },
    ]);
    client.close();
  });

  it('server stats(): calls by outcome and latency', async () => {
    // The previous test's connection is gone and its calls have ended on the server.
    await waitFor(() => running.server.counters().connections === 0 && running.server.counters().inFlight === 0, {
      what: "the previous test's connection to be gone",
    });
    const before = running.server.stats();
    const client = clientFor(running);
    await Promise.all(Array.from({ length: 50 }, () => firstValueFrom(client.send('sum', [1]))));
    await firstValueFrom(client.send('no.such', {})).catch(() => {});
    const after = running.server.stats();
    expect(after.calls.started - before.calls.started).toBe(51);
    expect(after.calls.succeeded - before.calls.succeeded).toBe(50);
    expect((after.calls.failed.WIRE_NO_HANDLER ?? 0) - (before.calls.failed.WIRE_NO_HANDLER ?? 0)).toBe(1);
    expect(after.calls.latencyMs.count).toBeGreaterThan(before.calls.latencyMs.count);
    expect(after.connections).toBeGreaterThanOrEqual(1);
    client.close();
  });

  it('ping() measures a round trip, and fails when no server answers', async () => {
    const client = clientFor(running);
    const rtt = await client.ping();
    expect(rtt).toBeGreaterThan(0);
    expect(rtt).toBeLessThan(1000);
    client.close();
    const dead = new WireClient({ host: '127.0.0.1', port: 1 });
    dead.on('error', () => {});
    await expect(dead.ping()).rejects.toBeInstanceOf(WireConnectionError);
    dead.close();
  });

  it("runs Nest 12's dispatch and processing hooks: one span per handled call, trace id carried", async () => {
    const spans: { traceId?: string; ended: boolean }[] = [];
    const open = new Map<unknown, { traceId?: string; ended: boolean }>();
    // eslint-disable-next-line @typescript-eslint/no-misused-promises -- Nest's own default hook returns done()'s promise; its type says void
    running.server.setOnProcessingStartHook((_transport, ctx, done) => {
      const span = { traceId: (ctx as WireContext).getMetadata()?.traceId, ended: false };
      spans.push(span);
      open.set(ctx, span);
      return done();
    });
    running.server.setOnProcessingEndHook((_transport, ctx) => {
      open.get(ctx)!.ended = true;
    });
    const client = clientFor(running);
    let n = 0;
    client.setOnDispatchHook((packet) => {
      packet.metadata = { traceId: `trace-${++n}` };
    });
    await Promise.all([1, 2, 3].map((i) => firstValueFrom(client.send('sum', [i]))));
    await firstValueFrom(client.send('rpc.error', 'x')).catch(() => {});
    expect(spans.map((s) => s.traceId).sort()).toEqual(['trace-1', 'trace-2', 'trace-3', 'trace-4']);
    expect(spans.every((s) => s.ended)).toBe(true);
    // eslint-disable-next-line @typescript-eslint/no-misused-promises -- Nest's own default hook returns done()'s promise; its type says void
    running.server.setOnProcessingStartHook((_t, _c, done) => done());
    running.server.setOnProcessingEndHook(() => {});
    client.close();
  });

  describe('terminus health indicator', () => {
    const MATH = 'MATH';
    @Controller()
    class HealthController {
      constructor(
        private readonly health: HealthCheckService,
        private readonly wire: WireHealthIndicator,
        @Inject(MATH) private readonly math: WireClient,
      ) {}

      @Get('health')
      @HealthCheck()
      check() {
        return this.health.check([() => this.wire.pingCheck('math', this.math, { timeoutMs: 500 })]);
      }
    }

    async function gateway(port: number) {
      @Module({
        imports: [TerminusModule.forRoot({ logger: false })],
        controllers: [HealthController],
        providers: [
          WireHealthIndicator,
          { provide: MATH, useFactory: () => new WireClient({ host: '127.0.0.1', port }) },
        ],
      })
      class HealthModule {}
      const moduleRef = await Test.createTestingModule({ imports: [HealthModule] }).compile();
      const app = moduleRef.createNestApplication({ logger: false });
      await app.init();
      return app;
    }

    it('reports up with the round-trip time, and down when the service is gone', async () => {
      const service = await startWireApp(TestAppModule);
      const app = await gateway(service.port);
      const up = await request(app.getHttpServer()).get('/health').expect(200);
      expect(up.body.status).toBe('ok');
      expect(up.body.details.math.status).toBe('up');
      expect(up.body.details.math.rttMs).toBeGreaterThan(0);
      await service.app.close();
      const down = await request(app.getHttpServer()).get('/health').expect(503);
      expect(down.body.details.math.status).toBe('down');
      expect(down.body.details.math.code).toBe('WIRE_CONNECTION');
      app.get<WireClient>(MATH).close();
      await app.close();
    });
  });
});
