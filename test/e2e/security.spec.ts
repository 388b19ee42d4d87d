import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { firstValueFrom } from 'rxjs';
import {
  WireAuthError,
  WireClient,
  WireConnectionError,
  WireError,
  WireLimitError,
  type WireAuthInfo,
} from '../../lib/index.js';
import { FrameType, MAGIC } from '../../lib/protocol/frame.js';
import { clientFor, startWireApp, type RunningServer } from '../helpers/apps.js';
import { codec, helloFrame, rawFrame, RawPeer, requestBody } from '../helpers/raw-peer.js';
import { recorder, TestAppModule } from '../helpers/test-app.js';
import { pause, waitFor } from '../helpers/wait.js';

const fixture = (name: string) => readFileSync(join(process.cwd(), 'test/fixtures/tls', name));
const ca = fixture('ca.crt');
const serverTls = { key: fixture('server.key'), cert: fixture('server.crt') };

async function failure(client: WireClient): Promise<WireError> {
  client.on('error', () => {});
  const err = await firstValueFrom(client.send('sum', [1])).catch((e) => e);
  client.close();
  return err;
}

describe('security', () => {
  describe('TLS', () => {
    let running: RunningServer;
    beforeAll(async () => {
      running = await startWireApp(TestAppModule, { tls: serverTls });
    });
    afterAll(() => running.app.close());

    it('carries calls over TLS to a trusted server', async () => {
      const client = clientFor(running, { tls: { ca } });
      expect(await firstValueFrom(client.send('sum', [20, 22]))).toBe(42);
      client.close();
    });

    it('verifies the server name when connecting by hostname', async () => {
      const client = new WireClient({ host: 'localhost', port: running.port, tls: { ca } });
      client.on('error', () => {});
      const result = await firstValueFrom(client.send('sum', [1])).catch((e) => e);
      // localhost may resolve to ::1 where nothing listens; either way it must not be a certificate error.
      if (result instanceof Error) expect(result.message).not.toMatch(/certificate/i);
      else expect(result).toBe(1);
      client.close();
    });

    it('fails with a clear error when the server certificate is not trusted', async () => {
      const err = await failure(clientFor(running, { tls: { ca: fixture('other-ca.crt') } }));
      expect(err).toBeInstanceOf(WireConnectionError);
      expect(err.message).toMatch(/certificate/i);
    });

    it('refuses a plaintext client', async () => {
      const err = await failure(clientFor(running));
      expect(err).toBeInstanceOf(WireConnectionError);
      expect(err.message).toMatch(/no server reachable/);
    });

    it('a TLS client cannot talk to a plaintext server', async () => {
      const plain = await startWireApp(TestAppModule);
      const err = await failure(clientFor(plain, { tls: { ca } }));
      expect(err).toBeInstanceOf(WireConnectionError);
      await plain.app.close();
    });
  });

  describe('mutual TLS', () => {
    let running: RunningServer;
    const seen: WireAuthInfo[] = [];
    beforeAll(async () => {
      running = await startWireApp(TestAppModule, {
        tls: { ...serverTls, ca, requestCert: true, rejectUnauthorized: true },
        authenticate: (_credentials, info) => {
          seen.push(info);
          return info.tlsPeerCertificate?.subject?.CN === 'test-client';
        },
      });
    });
    afterAll(() => running.app.close());

    it('accepts a client with a certificate signed by the CA, and shows it to authenticate', async () => {
      const client = clientFor(running, { tls: { ca, key: fixture('client.key'), cert: fixture('client.crt') } });
      expect(await firstValueFrom(client.send('sum', [1, 1]))).toBe(2);
      expect(seen.at(-1)?.tlsPeerCertificate?.subject?.CN).toBe('test-client');
      expect(seen.at(-1)?.remoteAddress).toMatch(/^127\.0\.0\.1:/);
      client.close();
    });

    it('refuses a client without a certificate', async () => {
      const err = await failure(clientFor(running, { tls: { ca } }));
      expect(err).toBeInstanceOf(WireConnectionError);
    });
  });

  describe('authentication', () => {
    let running: RunningServer;
    let checks = 0;
    beforeAll(async () => {
      running = await startWireApp(TestAppModule, {
        authenticate: async (credentials) => {
          checks++;
          await pause(5); // kept: an authenticator that takes a while is the input
          const token = (credentials as { token?: string } | undefined)?.token;
          return token === 'secret' || token === 'rotated-2';
        },
      });
    });
    afterAll(() => running.app.close());
    beforeEach(() => recorder.reset());

    it('accepts valid credentials', async () => {
      const client = clientFor(running, { credentials: { token: 'secret' } });
      expect(await firstValueFrom(client.send('sum', [2, 3]))).toBe(5);
      client.close();
    });

    it('rejects invalid credentials with WireAuthError', async () => {
      const err = await failure(clientFor(running, { credentials: { token: 'wrong' } }));
      expect(err).toBeInstanceOf(WireAuthError);
      expect(err.code).toBe('WIRE_AUTH');
    });

    it('rejects a client without credentials', async () => {
      expect(await failure(clientFor(running))).toBeInstanceOf(WireAuthError);
    });

    it('asks a credentials function again for every connection, so tokens can rotate', async () => {
      let n = 0;
      const client = clientFor(running, {
        credentials: async () => ({ token: `rotated-${++n}` }),
        reconnect: { initialDelayMs: 5, maxDelayMs: 20 },
      });
      client.on('error', () => {});
      // rotated-1 is refused, the reconnect asks again and rotated-2 is accepted.
      await expect(client.connect()).rejects.toBeInstanceOf(WireAuthError);
      await waitFor(() => client.counters().openConnections === 1, 2000);
      expect(n).toBeGreaterThanOrEqual(2);
      expect(await firstValueFrom(client.send('sum', [4]))).toBe(4);
      client.close();
    });

    it('reports a failing credentials provider as WireAuthError', async () => {
      const err = await failure(
        clientFor(running, {
          credentials: () => {
            throw new Error('vault unreachable');
          },
        }),
      );
      expect(err).toBeInstanceOf(WireAuthError);
      expect(err.message).toMatch(/vault unreachable/);
    });

    it('dispatches no frame from a connection before it is authenticated', async () => {
      const before = checks;
      const peer = await RawPeer.connect(running.port);
      // HELLO with wrong credentials, immediately followed by a request and an event.
      const extension = codec.encode({ credentials: { token: 'wrong' } });
      peer.write(
        Buffer.concat([
          MAGIC,
          helloFrame({ extension: Buffer.from(extension) }),
          rawFrame(FrameType.REQUEST, 0, 1, requestBody('slow', 10)),
          rawFrame(FrameType.EVENT, 0, 0, requestBody('user.created', { name: 'intruder' })),
        ]),
      );
      const error = await peer.waitForFrame((f) => f.type === FrameType.ERROR);
      expect(error.id).toBe(0);
      expect(error.body.toString('latin1')).toContain('WIRE_AUTH');
      await peer.closed;
      // No barrier on a refused connection: wait for the server to be done with it (its
      // session has left the table, every frame it read has been dealt with).
      await waitFor(() => running.server.connectionCount === 0, { what: 'the server to drop the refused session' });
      expect(checks).toBe(before + 1);
      expect(recorder.started).toBe(0);
      expect(recorder.events).toEqual([]);
      expect(peer.received.some((f) => f.type === FrameType.RESPONSE || f.type === FrameType.HELLO)).toBe(false);
    });
  });

  describe('limits', () => {
    let running: RunningServer;
    beforeAll(async () => {
      running = await startWireApp(TestAppModule, {
        maxPatternBytes: 32,
        maxMetadataEntries: 3,
        maxMetadataBytes: 256,
        maxConnections: 3,
      });
    });
    afterAll(() => running.app.close());

    it('refuses a pattern longer than maxPatternBytes', async () => {
      const client = clientFor(running);
      const err = await firstValueFrom(client.send('p'.repeat(33), {})).catch((e) => e);
      expect(err).toBeInstanceOf(WireLimitError);
      expect(await firstValueFrom(client.send('sum', [1]))).toBe(1);
      client.close();
    });

    it('refuses metadata with too many entries or too many bytes', async () => {
      const client = clientFor(running);
      const many = await firstValueFrom(
        client.send('sum', [1], { metadata: { a: '1', b: '2', c: '3', d: '4' } }),
      ).catch((e) => e);
      expect(many).toBeInstanceOf(WireLimitError);
      const big = await firstValueFrom(client.send('sum', [1], { metadata: { a: 'x'.repeat(300) } })).catch((e) => e);
      expect(big).toBeInstanceOf(WireLimitError);
      expect(await firstValueFrom(client.send('sum', [1], { metadata: { a: 'ok' } }))).toBe(1);
      client.close();
    });

    it('refuses connections past maxConnections, with a reason', async () => {
      const clients = [0, 1, 2].map(() => clientFor(running));
      await Promise.all(clients.map((c) => c.connect()));
      await waitFor(() => running.server.connectionCount === 3);
      const extra = clientFor(running);
      const err = await failure(extra);
      expect(err).toBeInstanceOf(WireConnectionError);
      expect(err.message).toMatch(/maxConnections/);
      for (const c of clients) c.close();
      await waitFor(() => running.server.connectionCount === 0);
    });

    it('leaves Object.prototype alone whatever the payload or metadata says', async () => {
      const peer = await RawPeer.connect(running.port);
      peer.handshake();
      // echo { "__proto__": { "polluted": true } } and metadata of the same shape.
      const evil = Buffer.from('81a95f5f70726f746f5f5f81a8706f6c6c75746564c3', 'hex');
      const p = Buffer.from('echo');
      const meta = Buffer.alloc(4);
      meta.writeUInt32BE(evil.length);
      const body = Buffer.concat([Buffer.from([0, p.length]), p, meta, evil, evil]);
      peer.write(rawFrame(FrameType.REQUEST, 0x02, 1, body));
      await peer.waitForFrame((f) => f.id === 1);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      peer.destroy();
    });
  });

  it('drains connections idle for longer than idleTimeoutMs', async () => {
    const running = await startWireApp(TestAppModule, { idleTimeoutMs: 100 });
    const client = clientFor(running, { reconnect: { initialDelayMs: 1000, maxDelayMs: 1000 } });
    await client.connect();
    expect(running.server.connectionCount).toBe(1);
    await waitFor(() => running.server.connectionCount === 0, 1000);
    client.close();
    await running.app.close();
  });
});
