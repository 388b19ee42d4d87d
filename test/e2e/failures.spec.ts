import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import { firstValueFrom, lastValueFrom, toArray } from 'rxjs';
import {
  WireClient,
  WireConnectionError,
  WireFrameTooLargeError,
  WireOptionsError,
  WireTimeoutError,
  type WireCodec,
} from '../../lib/index.js';
import { ERROR_TRANSPORT, FrameType, MAGIC } from '../../lib/protocol/frame.js';
import { decodeTransportError } from '../../lib/protocol/transport-error.js';
import { clientFor, startWireApp, type RunningServer } from '../helpers/apps.js';
import { codec, rawFrame, RawPeer, requestBody } from '../helpers/raw-peer.js';
import { recorder, TestAppModule } from '../helpers/test-app.js';
import { pause, waitFor } from '../helpers/wait.js';
import { closedPort, FakeServer } from '../helpers/fake-server.js';

function transportError(frame: { body: Buffer }): { code: string; message: string } {
  return decodeTransportError(frame.body);
}

describe('failures: every bad input gets a typed error and nothing waits forever', () => {
  let running: RunningServer;
  let client: WireClient;

  beforeAll(async () => {
    running = await startWireApp(TestAppModule, { handshakeTimeoutMs: 300, maxFrameSize: 64 * 1024 });
    client = clientFor(running);
    await client.connect();
  });
  afterAll(async () => {
    client.close();
    await running.app.close();
  });

  describe('timeouts', () => {
    it('fails a call at its timeout, frees it, and ignores the late response', async () => {
      const started = performance.now();
      const err = await firstValueFrom(client.send('delayed', { id: 1, ms: 250 }, { timeout: 60 })).catch((e) => e);
      const elapsed = performance.now() - started;
      expect(err).toBeInstanceOf(WireTimeoutError);
      expect(err.code).toBe('WIRE_TIMEOUT');
      expect(elapsed).toBeGreaterThanOrEqual(59);
      expect(elapsed).toBeLessThan(200);
      expect(client.counters().inFlight).toBe(0);
      // The server has let go of the call (answered late or dropped it on the CANCEL): a
      // later call on the same connection is read after any late answer, which is dropped.
      await waitFor(() => running.server.counters().inFlight === 0, {
        what: 'the server to let go of the timed-out call',
      });
      expect(await firstValueFrom(client.send('sum', [1, 2]))).toBe(3);
    });

    it('applies the client-wide default timeout', async () => {
      const quick = clientFor(running, { timeout: 40 });
      await expect(firstValueFrom(quick.send('delayed', { id: 1, ms: 200 }))).rejects.toBeInstanceOf(WireTimeoutError);
      quick.close();
    });

    it('lets timeout 0 disable the deadline', async () => {
      const none = clientFor(running, { timeout: 0 });
      expect(await firstValueFrom(none.send('delayed', { id: 5, ms: 30 }))).toBe(5);
      const ctx = await firstValueFrom(none.send('ctx', {}));
      expect(ctx.deadline).toBeNull();
      none.close();
    });

    it('rejects an invalid per-call timeout with a clear error', async () => {
      const err = await firstValueFrom(client.send('sum', [1], { timeout: -5 })).catch((e) => e);
      expect(err).toBeInstanceOf(WireOptionsError);
      expect(err.message).toMatch(/send\(\) option timeout/);
    });
  });

  describe('connection loss', () => {
    it('fails every call in flight at once when the client closes', async () => {
      const closing = clientFor(running);
      await closing.connect();
      const calls = Array.from({ length: 5 }, (_, i) =>
        firstValueFrom(closing.send('delayed', { id: i, ms: 5000 })).catch((e) => e),
      );
      await waitFor(() => running.server.counters().inFlight >= 5, { what: 'the 5 calls to run on the server' });
      let failedAll = false;
      const failed = Promise.all(calls).then((errors) => ((failedAll = true), errors));
      closing.close();
      // At once: before the event loop reaches its next phase, not at a timeout or the handlers' end.
      await new Promise((r) => setImmediate(r));
      expect(failedAll).toBe(true);
      for (const err of await failed) expect(err).toBeInstanceOf(WireConnectionError);
    });

    it('fails calls in flight when the server goes away before they finish', async () => {
      const server = await startWireApp(TestAppModule, { drainTimeoutMs: 100 });
      const c = clientFor(server);
      const inFlight = firstValueFrom(c.send('delayed', { id: 1, ms: 5000 })).catch((e) => e);
      await waitFor(() => server.server.counters().inFlight === 1, { what: 'the call to run on the server' });
      await server.app.close();
      const err = await inFlight;
      expect(err).toBeInstanceOf(WireConnectionError);
      await expect(firstValueFrom(c.send('sum', [1]))).rejects.toBeInstanceOf(WireConnectionError);
      c.close();
    });

    it('fails fast when nothing listens on the port', async () => {
      const port = await closedPort();
      const c = new WireClient({ host: '127.0.0.1', port });
      const started = performance.now();
      const err = await firstValueFrom(c.send('sum', [1])).catch((e) => e);
      expect(err).toBeInstanceOf(WireConnectionError);
      expect(err.message).toMatch(/ECONNREFUSED/);
      expect(performance.now() - started).toBeLessThan(1000);
      c.close();
    });

    it('fails calls when a server answers with garbage', async () => {
      const fake = await FakeServer.start((socket) => socket.on('data', () => socket.write(randomBytes(64))));
      const c = new WireClient({ host: '127.0.0.1', port: fake.port });
      c.on('error', () => {});
      const err = await firstValueFrom(c.send('sum', [1])).catch((e) => e);
      expect(err).toBeInstanceOf(WireConnectionError);
      expect(err.cause ?? err).toBeDefined();
      c.close();
      await fake.close();
    });
  });

  describe('hostile bytes on the server port', () => {
    it('drops a connection sending garbage while another client keeps being served', async () => {
      const calls = Array.from({ length: 200 }, (_, i) =>
        firstValueFrom(client.send<number>('delayed', { id: i, ms: 20 })),
      );
      const peers = await Promise.all(Array.from({ length: 5 }, () => RawPeer.connect(running.port)));
      for (const peer of peers) peer.write(randomBytes(4096));
      await Promise.all(peers.map((p) => p.closed));
      expect(await Promise.all(calls)).toEqual(Array.from({ length: 200 }, (_, i) => i));
      expect(await firstValueFrom(client.send('sum', [4, 4]))).toBe(8);
    });

    it('refuses a peer that does not speak nest-wire', async () => {
      const peer = await RawPeer.connect(running.port);
      peer.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      await peer.closed;
    });

    it('refuses a wrong protocol version with an ERROR frame, then closes', async () => {
      const peer = await RawPeer.connect(running.port);
      peer.handshake({ version: 9 });
      const error = await peer.waitForFrame((f) => f.type === FrameType.ERROR);
      expect(error.id).toBe(0);
      expect(error.flags & ERROR_TRANSPORT).toBe(ERROR_TRANSPORT);
      expect(transportError(error)).toMatchObject({
        code: 'WIRE_HANDSHAKE',
        message: expect.stringMatching(/version 9/),
      });
      await peer.closed;
      expect(peer.received.some((f) => f.type === FrameType.HELLO)).toBe(false);
    });

    it('refuses a client whose codec differs', async () => {
      const other: WireCodec = {
        id: 200,
        name: 'json',
        encode: (v) => Buffer.from(JSON.stringify(v)),
        decode: (b) => JSON.parse(Buffer.from(b).toString()),
      };
      const c = clientFor(running, { codec: other });
      c.on('error', () => {});
      const err = await c.connect().catch((e) => e);
      expect(err).toBeInstanceOf(WireConnectionError);
      expect(err.message).toMatch(/codec 200/);
      c.close();
    });

    it('drops a peer that sends nothing within the handshake timeout', async () => {
      const peer = await RawPeer.connect(running.port);
      const started = performance.now();
      await peer.closed;
      const elapsed = performance.now() - started;
      expect(elapsed).toBeGreaterThanOrEqual(250);
      expect(elapsed).toBeLessThan(2000);
    });

    it('drops a peer that trickles the handshake slower than the timeout', async () => {
      const peer = await RawPeer.connect(running.port);
      peer.write(MAGIC.subarray(0, 2));
      await pause(100); // a real passage of time is the input here: the peer trickles
      peer.write(MAGIC.subarray(2, 3));
      await peer.closed;
    });

    it('refuses a frame above maxFrameSize before buffering it', async () => {
      const peer = await RawPeer.connect(running.port);
      peer.handshake();
      await peer.waitForFrame((f) => f.type === FrameType.HELLO);
      const header = Buffer.alloc(10);
      header.writeUInt32BE(0x7ffffff0, 0);
      header[4] = FrameType.REQUEST;
      peer.write(header);
      const error = await peer.waitForFrame((f) => f.type === FrameType.ERROR);
      expect(transportError(error).code).toBe('WIRE_FRAME_TOO_LARGE');
      await peer.closed;
    });

    it('refuses an unknown frame type', async () => {
      const peer = await RawPeer.connect(running.port);
      peer.handshake();
      peer.write(rawFrame(77, 0, 1));
      const error = await peer.waitForFrame((f) => f.type === FrameType.ERROR);
      expect(transportError(error)).toMatchObject({ code: 'WIRE_PROTOCOL', message: 'unknown frame type 77' });
      await peer.closed;
    });

    it('answers undecodable msgpack with an ERROR for that id and keeps the connection', async () => {
      const peer = await RawPeer.connect(running.port);
      peer.handshake();
      const p = Buffer.from('sum');
      const bad = Buffer.concat([Buffer.from([0, p.length]), p, Buffer.from([0x92, 0x01])]);
      peer.write(rawFrame(FrameType.REQUEST, 0, 11, bad));
      const error = await peer.waitForFrame((f) => f.type === FrameType.ERROR && f.id === 11);
      expect(transportError(error).code).toBe('WIRE_CODEC');
      peer.write(rawFrame(FrameType.REQUEST, 0, 12, requestBody('sum', [2, 3])));
      const ok = await peer.waitForFrame((f) => f.type === FrameType.RESPONSE && f.id === 12);
      expect(codec.decode(ok.body)).toBe(5);
      peer.destroy();
    });

    it('answers a truncated call body with an ERROR for that id, keeping the connection', async () => {
      const peer = await RawPeer.connect(running.port);
      peer.handshake();
      peer.write(rawFrame(FrameType.REQUEST, 0, 3, Buffer.from([0, 50, 0x61])));
      const error = await peer.waitForFrame((f) => f.type === FrameType.ERROR);
      expect(error.id).toBe(3);
      expect(transportError(error).code).toBe('WIRE_PROTOCOL');
      peer.write(rawFrame(FrameType.REQUEST, 0, 4, requestBody('sum', [2, 2])));
      const ok = await peer.waitForFrame((f) => f.type === FrameType.RESPONSE && f.id === 4);
      expect(codec.decode(ok.body)).toBe(4);
      peer.destroy();
    });

    it('closes a connection that sends a REQUEST with id 0', async () => {
      const peer = await RawPeer.connect(running.port);
      peer.handshake();
      peer.write(rawFrame(FrameType.REQUEST, 0, 0, requestBody('sum', [1])));
      const error = await peer.waitForFrame((f) => f.type === FrameType.ERROR);
      expect(transportError(error)).toMatchObject({ code: 'WIRE_PROTOCOL', message: expect.stringMatching(/id 0/) });
      await peer.closed;
    });

    it('survives a peer that disconnects in the middle of a frame', async () => {
      const peer = await RawPeer.connect(running.port);
      peer.handshake();
      peer.write(rawFrame(FrameType.REQUEST, 0, 1, requestBody('sum', [1])).subarray(0, 9));
      peer.destroy();
      await peer.closed;
      expect(await firstValueFrom(client.send('sum', [1, 1]))).toBe(2);
    });

    it('stops a running handler when its connection goes away', async () => {
      recorder.aborted = 0;
      recorder.started = 0;
      const peer = await RawPeer.connect(running.port);
      peer.handshake();
      peer.write(rawFrame(FrameType.REQUEST, 0, 1, requestBody('slow', 5000)));
      await waitFor(() => recorder.started === 1, { what: 'the slow handler to start' });
      peer.destroy();
      await waitFor(() => recorder.aborted === 1);
    });
  });

  describe('frame size limits', () => {
    it('refuses to send a request above the server limit, locally and typed', async () => {
      const err = await firstValueFrom(client.send('echo', 'x'.repeat(100_000))).catch((e) => e);
      expect(err).toBeInstanceOf(WireFrameTooLargeError);
      expect(err.limit).toBe(64 * 1024);
      expect(await firstValueFrom(client.send('sum', [1]))).toBe(1);
    });

    it('fails a response above the client limit with a typed error, keeping the connection', async () => {
      const small = clientFor(running, { maxFrameSize: 2048 });
      const err = await firstValueFrom(small.send('echo', 'y'.repeat(10_000))).catch((e) => e);
      expect(err.code).toBe('WIRE_FRAME_TOO_LARGE');
      expect(await firstValueFrom(small.send('sum', [2]))).toBe(2);
      small.close();
    });

    it('keeps streams of large values intact', async () => {
      const values = await lastValueFrom(client.send('stream', 3).pipe(toArray()));
      expect(values).toEqual([1, 2, 3]);
    });
  });
});

describe('events aimed at request handlers', () => {
  it('are dropped: an event could never cancel the endless stream it would start', async () => {
    const running = await startWireApp(TestAppModule);
    recorder.reset();
    const peer = await RawPeer.connect(running.port);
    peer.handshake();
    peer.write(rawFrame(FrameType.EVENT, 0, 0, requestBody('slow', 10)));
    peer.write(rawFrame(FrameType.EVENT, 0, 0, requestBody('infinite', {})));
    await peer.barrier(); // a later request on the same connection: both events were handled before it
    expect(recorder.started).toBe(0); // the request handler never ran
    peer.destroy();
    await running.app.close();
  });
});
