import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { Ctx, MessagePattern } from '@nestjs/microservices';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { firstValueFrom } from 'rxjs';
import {
  WireAuthError,
  WireCancelledError,
  WireClient,
  WireCodecError,
  WireConnectionError,
  WireContext,
  WireDrainingError,
  WireError,
  WireErrorCode,
  WireFrameTooLargeError,
  WireHandshakeError,
  WireLimitError,
  WireNoHandlerError,
  WireOptionsError,
  WireOverloadedError,
  WireProtocolError,
  WireRemoteError,
  WireTimeoutError,
} from '../lib/index.js';
import { errorFromRemote } from '../lib/errors.js';
import { CallBody, readCallBody } from '../lib/protocol/call-body.js';
import { ERROR_TRANSPORT, FrameType, MAGIC, REQUEST_HAS_DEADLINE } from '../lib/protocol/frame.js';
import { decodeTransportError, encodeTransportError } from '../lib/protocol/transport-error.js';
import { clientFor, startWireApp, type RunningServer } from './helpers/apps.js';
import { collectingDecoder } from './helpers/frames.js';
import { helloFrame, RawPeer, rawFrame, requestBody } from './helpers/raw-peer.js';
import { TestAppModule } from './helpers/test-app.js';

/** The error each side makes for every code that is an error (all but the GOAWAY_ACK control code). */
const LOCAL: Record<string, () => WireError> = {
  [WireErrorCode.ERROR]: () => new WireError('not initialized'),
  [WireErrorCode.PROTOCOL]: () => new WireProtocolError('bad frame'),
  [WireErrorCode.FRAME_TOO_LARGE]: () => new WireFrameTooLargeError(70_000, 65_536),
  [WireErrorCode.HANDSHAKE]: () => new WireHandshakeError('bad hello'),
  [WireErrorCode.AUTH]: () => new WireAuthError(),
  [WireErrorCode.CONNECTION]: () => new WireConnectionError('connection closed'),
  [WireErrorCode.TIMEOUT]: () => new WireTimeoutError(250),
  [WireErrorCode.CANCELLED]: () => new WireCancelledError(),
  [WireErrorCode.NO_HANDLER]: () => new WireNoHandlerError(),
  [WireErrorCode.CODEC]: () => new WireCodecError('cannot encode'),
  [WireErrorCode.OVERLOADED]: () => new WireOverloadedError('server is at maxConcurrentCalls (1)'),
  [WireErrorCode.DRAINING]: () => new WireDrainingError(),
  [WireErrorCode.LIMIT]: () => new WireLimitError('pattern too long'),
  [WireErrorCode.OPTIONS]: () => new WireOptionsError('timeout must be >= 0'),
};
const ERROR_CODES = Object.keys(LOCAL);

describe('WireErrorCode', () => {
  it('is frozen, and every code but the GOAWAY_ACK control code has its own class', () => {
    expect(Object.isFrozen(WireErrorCode)).toBe(true);
    expect([...ERROR_CODES, WireErrorCode.GOAWAY_ACK].sort()).toEqual(Object.values(WireErrorCode).sort());
    const classes = ERROR_CODES.map((code) => LOCAL[code]().constructor);
    expect(new Set(classes).size).toBe(ERROR_CODES.length);
    for (const code of ERROR_CODES) expect(LOCAL[code]().code).toBe(code);
  });
});

describe('errorFromRemote', () => {
  it.each(ERROR_CODES)('rebuilds %s as the class the peer made, with its message', (code) => {
    const local = LOCAL[code]();
    const remote = errorFromRemote(local.code, local.message);
    expect(Object.getPrototypeOf(remote)).toBe(Object.getPrototypeOf(local));
    expect(remote).toBeInstanceOf(local.constructor);
    expect(remote.code).toBe(code);
    expect(remote.message).toBe(local.message);
    expect(remote.name).toBe(local.name);
  });

  it('keeps an unknown code, and a control code misused as an error, in a WireRemoteError', () => {
    for (const code of ['WIRE_FROM_A_NEWER_PEER', WireErrorCode.GOAWAY_ACK]) {
      const err = errorFromRemote(code, 'something');
      expect(err).toBeInstanceOf(WireRemoteError);
      expect(err.code).toBe(code);
      expect(err.message).toBe('something');
    }
  });

  it('makes a drained call a WireOverloadedError too (both are refusals to send elsewhere)', () => {
    const err = errorFromRemote(WireErrorCode.DRAINING, 'server is shutting down');
    expect(err).toBeInstanceOf(WireDrainingError);
    expect(err).toBeInstanceOf(WireOverloadedError);
    expect(err).not.toBeInstanceOf(WireRemoteError);
    expect(new WireOverloadedError('busy')).not.toBeInstanceOf(WireDrainingError);
  });
});

/**
 * A server that completes the handshake and answers every REQUEST whose pattern is a code with
 * an ERROR (TRANSPORT) carrying that code, or, for `nack:<code>`, a NACK with it.
 */
describe('a transport error in a real ERROR or NACK frame', () => {
  let fake: Server;
  let client: WireClient;
  const sockets = new Set<Socket>();

  beforeAll(async () => {
    fake = createServer((s) => {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
      const decoder = collectingDecoder({ maxFrameSize: 1 << 20, expectMagic: true });
      s.on('data', (d: Buffer) => {
        decoder.decoder.push(d);
        for (const f of decoder.frames.splice(0)) {
          if (f.type === FrameType.HELLO) s.write(Buffer.concat([MAGIC, helloFrame({ maxFrameSize: 1 << 20 })]));
          if (f.type !== FrameType.REQUEST) continue;
          const body = new CallBody();
          readCallBody(f.body, f.flags, body);
          const pattern = body.pattern;
          if (pattern.startsWith('nack:')) {
            const code = pattern.slice(5);
            s.write(rawFrame(FrameType.NACK, 0, f.id, encodeTransportError(code, `nacked with ${code}`)));
          } else {
            const local = LOCAL[pattern]();
            s.write(rawFrame(FrameType.ERROR, ERROR_TRANSPORT, f.id, encodeTransportError(local.code, local.message)));
          }
        }
      });
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    // No timeout: a WIRE_TIMEOUT from the server is then reported as it came.
    client = new WireClient({
      host: '127.0.0.1',
      port: (fake.address() as AddressInfo).port,
      timeout: 0,
      nackRetries: 0,
    });
    await client.connect();
  });

  afterAll(async () => {
    client.close();
    for (const s of sockets) s.destroy();
    await new Promise((r) => fake.close(r));
  });

  it.each(ERROR_CODES)('%s reaches the caller as the same class as the server-side error', async (code) => {
    const local = LOCAL[code]();
    const err = (await firstValueFrom(client.send(code, 1)).catch((e: unknown) => e)) as WireError;
    expect(Object.getPrototypeOf(err)).toBe(Object.getPrototypeOf(local));
    expect(err.code).toBe(code);
    expect(err.message).toBe(local.message);
  });

  it('a call NACKed with WIRE_DRAINING past nackRetries fails with WireDrainingError, not WireRemoteError', async () => {
    const err: unknown = await firstValueFrom(client.send(`nack:${WireErrorCode.DRAINING}`, 1)).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WireDrainingError);
    expect(err).toBeInstanceOf(WireOverloadedError);
    expect(err).not.toBeInstanceOf(WireRemoteError);
    expect((err as WireError).code).toBe(WireErrorCode.DRAINING);
    expect((err as WireError).message).toBe(`nacked with ${WireErrorCode.DRAINING}`);
  });

  it('a call NACKed with WIRE_OVERLOADED fails with WireOverloadedError, which is not WireDrainingError', async () => {
    const err: unknown = await firstValueFrom(client.send(`nack:${WireErrorCode.OVERLOADED}`, 1)).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WireOverloadedError);
    expect(err).not.toBeInstanceOf(WireDrainingError);
    expect((err as WireError).code).toBe(WireErrorCode.OVERLOADED);
  });
});

describe('an error means the same on both sides (real Nest server)', () => {
  let running: RunningServer;

  beforeAll(async () => {
    running = await startWireApp(ErrorsAppModule);
  });
  afterAll(async () => {
    await running.app.close();
  });

  it('a response too large for the client is a WireFrameTooLargeError, as when the client notices', async () => {
    const small = clientFor(running, { maxFrameSize: 2048 });
    try {
      const remote: unknown = await firstValueFrom(small.send('echo', 'y'.repeat(10_000))).catch((e: unknown) => e);
      expect(remote).toBeInstanceOf(WireFrameTooLargeError);
      expect((remote as WireError).code).toBe(WireErrorCode.FRAME_TOO_LARGE);
      // Noticed on the client (the request is too large for the server's 64 KiB).
      const local: unknown = await firstValueFrom(small.send('echo', 'x'.repeat(100_000))).catch((e: unknown) => e);
      expect(local).toBeInstanceOf(WireFrameTooLargeError);
      expect(Object.getPrototypeOf(remote)).toBe(Object.getPrototypeOf(local));
    } finally {
      small.close();
    }
  });

  it('a server-side deadline reports the budget the request carried, not 0', async () => {
    // A raw client: it carries a budget and never cancels, so the server's own deadline ends the call.
    const peer = await RawPeer.connect(running.port);
    try {
      peer.handshake();
      const budget = Buffer.alloc(4);
      budget.writeUInt32BE(150);
      peer.write(
        rawFrame(
          FrameType.REQUEST,
          REQUEST_HAS_DEADLINE,
          1,
          Buffer.concat([budget, requestBody('wait.for.abort', null)]),
        ),
      );
      const frame = await peer.waitForFrame((f) => f.type === FrameType.ERROR && f.id === 1);
      const sent = decodeTransportError(frame.body);
      expect(sent.code).toBe(WireErrorCode.TIMEOUT);
      const reason = await aborted;
      expect(reason).toBeInstanceOf(WireTimeoutError);
      expect((reason as WireTimeoutError).timeoutMs).toBe(150);
      expect(errorFromRemote(sent.code, sent.message)).toBeInstanceOf(WireTimeoutError);
    } finally {
      peer.destroy();
    }
  });

  it('unwrap() before listen() throws a WireError, not a bare Error', async () => {
    const { WireServer } = await import('../lib/index.js');
    expect(() => new WireServer({ port: 0 }).unwrap()).toThrow(WireError);
  });
});

let resolveAborted: (reason: unknown) => void;
const aborted = new Promise<unknown>((resolve) => (resolveAborted = resolve));

@Controller()
class ErrorsController {
  /** Never answers: resolves `aborted` with the signal's reason once the server stops the call. */
  @MessagePattern('wait.for.abort')
  waitForAbort(@Ctx() ctx: WireContext): Promise<null> {
    const signal = ctx.getSignal();
    return new Promise((resolve) =>
      signal.addEventListener('abort', () => {
        resolveAborted(signal.reason);
        resolve(null);
      }),
    );
  }
}

@Module({ imports: [TestAppModule], controllers: [ErrorsController] })
class ErrorsAppModule {}
