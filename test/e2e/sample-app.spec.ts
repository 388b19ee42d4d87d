import request from 'supertest';
import { get as httpGet, type ClientRequest, type IncomingMessage } from 'node:http';
import { createServer } from 'node:net';
import { startGateway, startService, type RunningGateway, type RunningService } from '../../sample-app/bootstrap.js';
import { loadConfig } from '../../sample-app/config.js';
import { curlExamples } from '../../sample-app/curl-examples.js';
import type { GatewayStats, ServerReport } from '../../sample-app/gateway/stats.controller.js';
import type { RecordedUserEvent, ServerInfo } from '../../sample-app/patterns.js';
import { CountdownTracker } from '../../sample-app/service/countdown-tracker.js';
import { eventually, pause } from '../helpers/wait.js';

/** Collects a text/event-stream body as a string (superagent does not buffer it by itself). */
function collectText(res: unknown, callback: (err: Error | null, body: string) => void): void {
  const stream = res as NodeJS.ReadableStream;
  let text = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => (text += chunk));
  stream.on('end', () => callback(null, text));
}

/** The `data:` lines of a server-sent events body. */
function sseData(body: string): string[] {
  return body
    .split('\n')
    .filter((line) => line.startsWith('data:'))
    .map((line) => line.slice('data:'.length).trim());
}

/**
 * Opens a server-sent events stream with a plain `http.get`, as a browser's
 * EventSource would, and resolves once `count` events have arrived.
 */
function openSse(url: string, count: number): Promise<{ req: ClientRequest; res: IncomingMessage; data: string[] }> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { headers: { accept: 'text/event-stream' } }, (res) => {
      const data: string[] = [];
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        const events = text.split('\n\n');
        text = events.pop()!;
        data.push(...events.flatMap((event) => sseData(event)));
        if (data.length >= count) resolve({ req, res, data });
      });
      res.on('end', () => reject(new Error(`stream ended after ${data.length} events`)));
    });
    req.on('error', reject);
  });
}

function isServerInfo(report: ServerReport | undefined): report is ServerInfo {
  return report !== undefined && !('error' in report);
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('sample app: HTTP gateway → nest-wire → math service', () => {
  let service: RunningService;
  let gateway: RunningGateway;

  beforeAll(async () => {
    service = await startService(0, { logger: false });
    gateway = await startGateway(0, service.port, { logger: false });
  });

  afterAll(async () => {
    await gateway?.app.close();
    await service?.app.close();
  });

  const http = () => request(gateway.url);

  describe('GET /sum (request/response)', () => {
    it('adds the numbers in the service', async () => {
      const res = await http().get('/sum?numbers=1,2,3.5').expect(200);
      expect(res.body).toEqual({ numbers: [1, 2, 3.5], sum: 6.5 });
    });

    it('answers 400 for a malformed list', async () => {
      const res = await http().get('/sum?numbers=1,,x').expect(400);
      expect(res.body.message).toMatch(/comma-separated list of numbers/);
    });
  });

  describe('GET /divide (object pattern, RpcException)', () => {
    it('returns the quotient', async () => {
      const res = await http().get('/divide?a=10&b=4').expect(200);
      expect(res.body).toEqual({ a: 10, b: 4, quotient: 2.5 });
    });

    it("maps the service's RpcException for a division by zero to a 400 with its message", async () => {
      const res = await http().get('/divide?a=1&b=0').expect(400);
      expect(res.body).toEqual({ statusCode: 400, message: 'Division by zero', error: 'Bad Request' });
    });
  });

  describe('GET /countdown/:from (streaming)', () => {
    it('collects every streamed value into an array', async () => {
      const res = await http().get('/countdown/3?tickMs=5').expect(200);
      expect(res.body).toEqual({ from: 3, values: [3, 2, 1, 0] });
    });

    it('relays the stream as server-sent events', async () => {
      const res = await http()
        .get('/countdown/4/stream?tickMs=5')
        .buffer(true)
        .parse(collectText)
        .expect(200)
        .expect('content-type', /text\/event-stream/);
      expect(sseData(res.body as string)).toEqual(['4', '3', '2', '1', '0']);
    });

    it("stops the service's stream when the SSE client disconnects (CANCEL, teardown, aborted signal)", async () => {
      const tracker = service.app.get(CountdownTracker);
      const before = tracker.snapshot();
      const clientBefore = (await http().get('/stats').expect(200)).body as GatewayStats;

      // 100 values at 20 ms would take 2 s: the client leaves after three.
      const { req, res, data } = await openSse(`${gateway.url}/countdown/100/stream?tickMs=20`, 3);
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-type']).toMatch(/text\/event-stream/);
      expect(data.slice(0, 3)).toEqual(['100', '99', '98']);
      expect(tracker.snapshot().active).toBe(before.active + 1);
      req.destroy();

      // The gateway's Observable is unsubscribed, its CANCEL reaches the service, which
      // unsubscribes the handler's stream (its teardown runs) and aborts ctx.getSignal().
      const after = await eventually(
        () => tracker.snapshot(),
        (counts) => counts.stopped > before.stopped && counts.aborted > before.aborted,
      );
      expect(after).toMatchObject({
        started: before.started + 1,
        active: before.active,
        completed: before.completed,
        stopped: before.stopped + 1,
        aborted: before.aborted + 1,
      });
      // ... and produces nothing more.
      // Kept as a time passage, and still a barrier: the stream ticks every 20 ms, and timers
      // run in the order they expire, so a tick that was still scheduled would run before this.
      await pause(100);
      expect(tracker.snapshot().values).toBe(after.values);
      expect(after.values - before.values).toBeLessThan(100);

      // Both ends counted the call as cancelled.
      const stats = (await http().get('/stats').expect(200)).body as GatewayStats;
      expect(stats.client.calls.cancelled).toBe(clientBefore.client.calls.cancelled + 1);
      const [server] = stats.servers;
      expect(isServerInfo(server) && isServerInfo(clientBefore.servers[0])).toBe(true);
      if (isServerInfo(server) && isServerInfo(clientBefore.servers[0])) {
        expect(server.server.calls.cancelled).toBe(clientBefore.servers[0].server.calls.cancelled + 1);
        expect(server.countdowns).toEqual(after);
      }
    });

    it('answers 400 for a countdown out of range', async () => {
      const res = await http().get('/countdown/101').expect(400);
      expect(res.body.message).toBe('expected an integer from 0 to 100, got 101');
    });
  });

  describe('POST /users (event) and GET /users/events', () => {
    it('emits user.created, which the service records', async () => {
      const created = await http().post('/users').send({ name: 'Ada', email: 'ada@example.com' }).expect(202);
      expect(created.body).toEqual({
        id: expect.any(String),
        name: 'Ada',
        email: 'ada@example.com',
        createdAt: expect.any(String),
      });

      // An event is not answered: the service may handle it just after the 202.
      const recorded = await eventually(
        async () =>
          ((await http().get('/users/events').expect(200)).body as RecordedUserEvent[]).find(
            (e) => e.id === created.body.id,
          ),
        (found) => found !== undefined,
      );
      expect(recorded).toEqual({ ...created.body, receivedAt: expect.any(String) });
    });

    it('answers 400 for an invalid user without emitting anything', async () => {
      const res = await http().post('/users').send({ name: 'Bob', email: 'not-an-email' }).expect(400);
      expect(res.body.message).toBe('email must be an email address');
      const events = await http().get('/users/events').expect(200);
      expect((events.body as RecordedUserEvent[]).some((e) => e.name === 'Bob')).toBe(false);
    });
  });

  describe('GET /metadata (WireContext)', () => {
    it("carries the caller's per-call metadata and deadline to the handler's context", async () => {
      const before = Date.now();
      const res = await http().get('/metadata').set('x-request-id', 'req-42').expect(200);
      expect(res.body).toEqual({
        pattern: 'diag.call-info',
        metadata: { 'x-request-id': 'req-42', 'x-caller': 'gateway' },
        deadline: expect.any(String),
        remoteAddress: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
      });
      // The gateway's client has a 5 s default timeout, which the service sees as a deadline.
      expect(Date.parse(res.body.deadline)).toBeGreaterThan(before + 4000);
    });

    it('generates a request id when the HTTP request has none', async () => {
      const res = await http().get('/metadata').expect(200);
      expect(res.body.metadata['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    });
  });

  describe('GET /slow (per-call timeout of 500 ms)', () => {
    it('answers when the service is quick enough', async () => {
      const res = await http().get('/slow?ms=20').expect(200);
      expect(res.body).toEqual({ sleptMs: 20 });
    });

    it('gives up after 500 ms with a 504', async () => {
      const started = Date.now();
      const res = await http().get('/slow?ms=3000').expect(504);
      const elapsed = Date.now() - started;
      // The client's timer or the service's deadline (it knows the call's budget) fires first:
      // a WireTimeoutError either way, though its message differs.
      expect(res.body).toEqual({
        statusCode: 504,
        error: 'Gateway Timeout',
        message: expect.stringMatching(/^math service: /),
      });
      expect(elapsed).toBeGreaterThanOrEqual(450);
      expect(elapsed).toBeLessThan(2000);
    });

    it("passes on the service's validation error as a 400", async () => {
      const res = await http().get('/slow?ms=-1').expect(400);
      expect(res.body.message).toBe('ms must be an integer from 0 to 60000');
    });
  });

  describe('GET /health (@nestjs/terminus, WireHealthIndicator)', () => {
    it('reports the service up with the PING round-trip time', async () => {
      const res = await http().get('/health').expect(200);
      const math = { status: 'up', rttMs: expect.any(Number) };
      expect(res.body).toEqual({ status: 'ok', info: { math }, error: {}, details: { math } });
      expect(res.body.info.math.rttMs).toBeGreaterThanOrEqual(0);
      expect(res.body.info.math.rttMs).toBeLessThan(1000);
    });
  });

  describe('GET /stats', () => {
    it("reports the gateway client's statistics and the service's own", async () => {
      await http().get('/sum?numbers=1,2').expect(200);
      await http().get('/divide?a=1&b=0').expect(400);
      const res = await http().get('/stats').expect(200);
      const stats = res.body as GatewayStats;
      expect(stats.client.calls).toMatchObject({
        started: expect.any(Number),
        succeeded: expect.any(Number),
        failed: expect.objectContaining({ APPLICATION: expect.any(Number), WIRE_TIMEOUT: expect.any(Number) }),
        latencyMs: expect.objectContaining({ p50: expect.any(Number), p99: expect.any(Number) }),
        inFlight: 0,
      });
      expect(stats.client.calls.succeeded).toBeGreaterThan(0);
      expect(stats.client.endpoints).toEqual([
        { endpoint: `127.0.0.1:${service.port}`, state: 'ready', connections: 1, inFlight: 0, failedAttempts: 0 },
      ]);
      expect(stats.client.transport.framesOut).toBeGreaterThan(0);

      expect(stats.servers).toHaveLength(1);
      const [server] = stats.servers;
      expect(server).toMatchObject({ address: `127.0.0.1:${service.port}`, pid: process.pid });
      if (!isServerInfo(server)) throw new Error(`no stats from the service: ${JSON.stringify(server)}`);
      // The service counted the gateway's calls, and the probe's own, still running.
      expect(server.server.calls.succeeded).toBeGreaterThanOrEqual(stats.client.calls.succeeded);
      expect(server.server.calls.inFlight).toBe(1);
      expect(server.server.connections).toBeGreaterThanOrEqual(2);
    });
  });

  it('reads its settings from the environment', () => {
    expect(loadConfig({})).toEqual({
      wireHost: '127.0.0.1',
      wirePort: 4100,
      wireServers: undefined,
      clusterWirePorts: [4101, 4102],
      httpHost: '127.0.0.1',
      httpPort: 3000,
    });
    expect(loadConfig({ WIRE_SERVERS: ' 10.0.0.1:4101, [::1]:4102 ', WIRE_PORTS: '5001,5002,5003' })).toMatchObject({
      wireServers: ['10.0.0.1:4101', '[::1]:4102'],
      clusterWirePorts: [5001, 5002, 5003],
    });
    expect(() => loadConfig({ WIRE_PORTS: '4101,x' })).toThrow(
      'WIRE_PORTS must be a port number from 0 to 65535, got "x"',
    );
    expect(() => loadConfig({ HTTP_PORT: '70000' })).toThrow(/HTTP_PORT/);
  });

  it('prints a curl line for every endpoint', () => {
    const paths = curlExamples('http://h').map((line) => new URL(line.match(/'(http:\/\/h[^']*)'/)![1]).pathname);
    expect(new Set(paths)).toEqual(
      new Set([
        '/sum',
        '/divide',
        '/countdown/5',
        '/countdown/5/stream',
        '/users',
        '/users/events',
        '/metadata',
        '/slow',
        '/files',
        '/text/uppercase',
        '/health',
        '/stats',
      ]),
    );
  });

  describe('with the service unreachable', () => {
    let orphan: RunningGateway;

    beforeAll(async () => {
      orphan = await startGateway(0, await closedPort(), { logger: false });
    });

    afterAll(async () => {
      await orphan?.app.close();
    });

    it('GET /health answers 503 with the service down', async () => {
      const res = await request(orphan.url).get('/health').expect(503);
      const math = { status: 'down', code: 'WIRE_CONNECTION', message: expect.stringMatching(/ECONNREFUSED/) };
      expect(res.body).toEqual({ status: 'error', info: {}, error: { math }, details: { math } });
    });

    it('calls answer 503', async () => {
      const res = await request(orphan.url).get('/sum?numbers=1,2').expect(503);
      expect(res.body.message).toMatch(/^math service: /);
    });

    it('GET /stats still answers, reporting the service unreachable', async () => {
      const res = await request(orphan.url).get('/stats').expect(200);
      const stats = res.body as GatewayStats;
      expect(stats.client.endpoints).toEqual([
        expect.objectContaining({ state: expect.stringMatching(/^(backoff|connecting)$/), connections: 0 }),
      ]);
      expect(stats.servers).toEqual([{ address: expect.any(String), error: expect.stringMatching(/ECONNREFUSED/) }]);
    });
  });

  describe('with two services (the start:cluster layout)', () => {
    let services: RunningService[];
    let cluster: RunningGateway;

    beforeAll(async () => {
      services = [await startService(0, { logger: false }), await startService(0, { logger: false })];
      cluster = await startGateway(
        0,
        services.map((s) => `127.0.0.1:${s.port}`),
        { logger: false },
      );
    });

    afterAll(async () => {
      await cluster?.app.close();
      for (const s of services ?? []) await s.app.close();
    });

    const handled = (stats: GatewayStats): number[] =>
      stats.servers.map((report) => (isServerInfo(report) ? report.server.calls.succeeded : -1));

    it('spreads concurrent calls over both, and keeps answering when one stops', async () => {
      const sums = (n: number) =>
        Promise.all(Array.from({ length: n }, (_, i) => request(cluster.url).get(`/sum?numbers=${i},1`)));
      await request(cluster.url).get('/sum?numbers=0').expect(200); // connects to both
      const ready = await eventually(
        async () => (await request(cluster.url).get('/stats')).body as GatewayStats,
        (stats) => stats.client.endpoints.every((ep) => ep.state === 'ready'),
      );
      expect(ready.client.endpoints.map((ep) => ep.state)).toEqual(['ready', 'ready']);

      expect((await sums(40)).every((res) => res.status === 200)).toBe(true);
      const before = (await request(cluster.url).get('/stats').expect(200)).body as GatewayStats;
      // Calls each service answered since `ready`, less the probe `ready` made (still running then).
      const spread = handled(before).map((n, i) => n - handled(ready)[i] - 1);
      expect(spread[0] + spread[1]).toBe(40);
      expect(Math.min(...spread)).toBeGreaterThan(0);

      await services[0].app.close(); // GOAWAY: the gateway takes it out of rotation
      const results = await sums(40);
      expect(results.map((res) => res.status)).toEqual(results.map(() => 200));
      expect(results.map((res) => res.body.sum)).toEqual(results.map((_, i) => i + 1));

      const after = (await request(cluster.url).get('/stats').expect(200)).body as GatewayStats;
      expect(after.client.endpoints[0].state).not.toBe('ready');
      expect(after.client.endpoints[1].state).toBe('ready');
      expect(after.servers[0]).toEqual({ address: `127.0.0.1:${services[0].port}`, error: expect.any(String) });
      // The 40 calls and the probe were answered by the service still running.
      expect(handled(after)[1]).toBeGreaterThanOrEqual(handled(before)[1] + 40);
      expect((await request(cluster.url).get('/health').expect(200)).body.status).toBe('ok');
    });
  });
});
