import request from 'supertest';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  startGateway,
  startService,
  type RunningGateway,
  type RunningService,
} from '../../sample-app/bootstrap.js';
import type { RecordedUserEvent } from '../../sample-app/patterns.js';

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

    it('answers 400 for a countdown out of range', async () => {
      const res = await http().get('/countdown/101').expect(400);
      expect(res.body.message).toBe('expected an integer from 0 to 100, got 101');
    });
  });

  describe('POST /users (event) and GET /users/events', () => {
    it('emits user.created, which the service records', async () => {
      const created = await http()
        .post('/users')
        .send({ name: 'Ada', email: 'ada@example.com' })
        .expect(202);
      expect(created.body).toEqual({
        id: expect.any(String),
        name: 'Ada',
        email: 'ada@example.com',
        createdAt: expect.any(String),
      });

      // An event is not answered: the service may handle it just after the 202.
      let recorded: RecordedUserEvent | undefined;
      for (let attempt = 0; attempt < 100 && recorded === undefined; attempt++) {
        if (attempt > 0) await sleep(10);
        const events = await http().get('/users/events').expect(200);
        recorded = (events.body as RecordedUserEvent[]).find((e) => e.id === created.body.id);
      }
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

  describe('GET /health', () => {
    it('reports the gateway and the service up', async () => {
      const res = await http().get('/health').expect(200);
      expect(res.body).toEqual({
        status: 'ok',
        gateway: 'up',
        service: 'up',
        serviceUptimeSeconds: expect.any(Number),
      });
    });
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
      expect(res.body).toEqual({ status: 'degraded', gateway: 'up', service: 'down', reason: expect.any(String) });
    });

    it('calls answer 503', async () => {
      const res = await request(orphan.url).get('/sum?numbers=1,2').expect(503);
      expect(res.body.message).toMatch(/^math service: /);
    });
  });
});
