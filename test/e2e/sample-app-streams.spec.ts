import request from 'supertest';
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { startGateway, startService, type RunningGateway, type RunningService } from '../../sample-app/bootstrap.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The sample app's streams in both directions, over HTTP: an upload whose request body is
 * streamed to the service as a client stream (size and SHA-256 computed as it reads), and a
 * bidirectional call that answers each line while the body is still being sent.
 */
describe('sample app: streams in both directions (HTTP → nest-wire → service)', () => {
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

  it('POST /files streams the body to the service, which answers its size and SHA-256', async () => {
    const body = randomBytes(5 * 1024 * 1024 + 17);
    const res = await request(gateway.url)
      .post('/files')
      .set('content-type', 'application/octet-stream')
      .send(body)
      .expect(201);
    expect(res.body.size).toBe(body.length);
    expect(res.body.sha256).toBe(createHash('sha256').update(body).digest('hex'));
    // Read as the socket delivered it: many chunks, not one buffered body.
    expect(res.body.chunks).toBeGreaterThan(1);
    const calls = service.server.stats().calls;
    expect(calls.started).toBeGreaterThan(0);
  });

  it('POST /files with an empty body: size 0', async () => {
    const res = await request(gateway.url).post('/files').set('content-type', 'application/octet-stream').expect(201);
    expect(res.body).toEqual({ size: 0, sha256: createHash('sha256').digest('hex'), chunks: 0 });
  });

  it('POST /files with a JSON body (already read by the body parser) is refused with 415', async () => {
    await request(gateway.url).post('/files').send({ a: 1 }).expect(415);
  });

  it('POST /text/uppercase answers every line upper-cased', async () => {
    const res = await request(gateway.url)
      .post('/text/uppercase')
      .set('content-type', 'text/plain')
      .send('one\ntwo\nthree\n')
      .expect(200);
    expect(res.text).toBe('ONE\nTWO\nTHREE\n');
  });

  it('POST /text/uppercase is bidirectional: a line is answered before the next one is sent', async () => {
    const url = new URL('/text/uppercase', gateway.url);
    let received = '';
    let response: IncomingMessage | null = null;
    const req = httpRequest(url, { method: 'POST', headers: { 'content-type': 'text/plain' } }, (res) => {
      response = res;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (received += chunk));
    });
    req.on('error', () => {});
    const ended = new Promise<void>((resolve) => req.on('response', (res) => res.on('end', () => resolve())));
    req.write('first\n');
    // The body is still open: the answer to the first line arrives anyway.
    await waitFor(() => received === 'FIRST\n', { timeoutMs: 5000, what: 'the first line answered' });
    req.write('sec');
    req.write('ond\nthird');
    await waitFor(() => received === 'FIRST\nSECOND\n', { timeoutMs: 5000, what: 'the second line answered' });
    req.end();
    await ended;
    expect(received).toBe('FIRST\nSECOND\nTHIRD\n');
    expect(response!.statusCode).toBe(200);
  });
});
