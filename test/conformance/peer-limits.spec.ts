import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import { MIN_MAX_FRAME_SIZE, FrameType, REQUEST_HAS_DEADLINE, REQUEST_HAS_METADATA } from '../../lib/protocol/frame.js';
import { decodeTransportError } from '../../lib/protocol/transport-error.js';
import { WireContext } from '../../lib/index.js';
import { startWireApp, type RunningServer } from '../helpers/apps.js';
import { codec, rawFrame, RawPeer, requestBody } from '../helpers/raw-peer.js';
import { ConformanceAppModule } from './conformance-app.js';

/** A request body with metadata (and optionally a budget), by docs/PROTOCOL.md §2.2. */
function bodyWith(
  pattern: string,
  payload: unknown,
  metadata: Uint8Array | null,
  budgetMs = -1,
): { flags: number; body: Buffer } {
  const parts: Buffer[] = [];
  let flags = 0;
  if (budgetMs >= 0) {
    flags |= REQUEST_HAS_DEADLINE;
    parts.push(Buffer.from([budgetMs >>> 24, (budgetMs >>> 16) & 0xff, (budgetMs >>> 8) & 0xff, budgetMs & 0xff]));
  }
  const p = Buffer.from(pattern);
  parts.push(Buffer.from([p.length >> 8, p.length & 0xff]), p);
  if (metadata !== null) {
    flags |= REQUEST_HAS_METADATA;
    const len = Buffer.alloc(4);
    len.writeUInt32BE(metadata.length);
    parts.push(len, Buffer.from(metadata));
  }
  parts.push(Buffer.from(codec.encode(payload)));
  return { flags, body: Buffer.concat(parts) };
}

/**
 * docs/PROTOCOL.md §2: no frame ever exceeds the peer's announced maxFrameSize — refusals and
 * drain included. A raw client announcing the protocol minimum (1 024) provokes every refusal
 * whose message or value could be long, then the server shuts down under it.
 */
describe('a client announcing the minimum maxFrameSize', () => {
  let running: RunningServer;
  beforeAll(async () => {
    running = await startWireApp(ConformanceAppModule);
  });
  afterAll(async () => {
    await running?.app.close();
  });

  it('receives no frame longer than 1 024 bytes, whatever it provokes', async () => {
    const peer = await RawPeer.connect(running.port);
    peer.handshake({ maxFrameSize: MIN_MAX_FRAME_SIZE, features: 0x0100 });
    await peer.waitForFrame((f) => f.type === FrameType.HELLO);
    const longKey = 'k' + '€'.repeat(2000); // 6 001 bytes, within maxMetadataBytes
    const provocations: [number, { flags: number; body: Buffer }][] = [
      [1, { flags: 0, body: requestBody('big', 5000) }], // value too large
      [2, { flags: 0, body: requestBody('fail', 5000) }], // application error too large
      [3, bodyWith('echo', 'a', codec.encode({ [longKey]: 1 }))], // transport error naming a long key
      [4, { flags: 0, body: requestBody('p'.repeat(1025), 1) }], // pattern over maxPatternBytes
      [5, { flags: 0, body: requestBody('no.such', 1) }], // no handler
      [6, bodyWith('echo', 'a', null, 0)], // budget 0
      [7, { flags: 0, body: requestBody('big', 1015) }], // a value of exactly 1 024 bytes of frame
      [8, { flags: 0, body: requestBody('stream', 50) }], // many small frames
      [9, { flags: 0, body: requestBody('delayed', 3000) }], // still running when the server drains
    ];
    for (const [id, { flags, body }] of provocations) peer.write(rawFrame(FrameType.REQUEST, flags, id, body));
    // Every call but the running one has answered (a stream: its END).
    for (const id of [1, 2, 3, 4, 5, 6, 7, 8]) {
      await peer.waitForFrame((f) => f.id === id && (f.type === FrameType.ERROR || (f.flags & 0x01) !== 0));
    }
    const close = running.app.close();
    await peer.waitForFrame((f) => f.type === FrameType.GOAWAY);
    peer.write(rawFrame(FrameType.REQUEST, 0, 10, requestBody('echo', 'late')));
    await peer.waitForFrame((f) => f.type === FrameType.NACK && f.id === 10);
    peer.destroy();
    await close;
    running = null as unknown as RunningServer;

    for (const f of peer.received) expect(f.body.length + 6).toBeLessThanOrEqual(MIN_MAX_FRAME_SIZE);
    const byId = (id: number) => peer.received.find((f) => f.id === id && f.type === FrameType.ERROR)!;
    expect(decodeTransportError(byId(1).body).code).toBe('WIRE_FRAME_TOO_LARGE');
    expect(decodeTransportError(byId(2).body).code).toBe('WIRE_FRAME_TOO_LARGE');
    const truncated = decodeTransportError(byId(3).body);
    expect(truncated.code).toBe('WIRE_PROTOCOL');
    expect(byId(3).body.length + 6).toBeGreaterThan(MIN_MAX_FRAME_SIZE - 3); // cut to fit, at a character boundary
    expect(`metadata value "${longKey}" is not a string`.startsWith(truncated.message)).toBe(true);
    expect(peer.received.find((f) => f.id === 7 && f.type === FrameType.RESPONSE)!.body.length + 6).toBe(
      MIN_MAX_FRAME_SIZE,
    );
  });
});

/** Records what happens to the one call it runs, for the id-reuse test. */
const seen = { aborted: 0, finished: 0 };

@Controller()
class WaitController {
  @MessagePattern('wait')
  wait(@Payload() ms: number, @Ctx() ctx: WireContext): Promise<string> {
    const signal = ctx.getSignal();
    return new Promise((resolve) => {
      if (signal.aborted) {
        seen.aborted++;
        return resolve('aborted');
      }
      const timer = setTimeout(() => {
        seen.finished++;
        resolve('waited');
      }, ms);
      signal.addEventListener('abort', () => {
        clearTimeout(timer);
        seen.aborted++;
        resolve('aborted');
      });
    });
  }
}

@Module({ controllers: [WaitController] })
class WaitModule {}

describe('a REQUEST reusing the id of a running call', () => {
  it('closes the connection with ERROR id 0 WIRE_PROTOCOL and stops the running call, which never answers', async () => {
    const running = await startWireApp(WaitModule);
    try {
      const peer = await RawPeer.connect(running.port);
      peer.handshake();
      await peer.waitForFrame((f) => f.type === FrameType.HELLO);
      peer.write(rawFrame(FrameType.REQUEST, 0, 5, requestBody('wait', 5000)));
      // The call is running once its handler could abort; a PING round trip orders the reads.
      peer.write(rawFrame(FrameType.PING, 0, 1, Buffer.alloc(4)));
      await peer.waitForFrame((f) => f.type === FrameType.PONG);
      peer.write(rawFrame(FrameType.REQUEST, 0, 5, requestBody('wait', 1)));
      await peer.closed;
      const after = peer.received.filter((f) => f.type !== FrameType.HELLO && f.type !== FrameType.PONG);
      expect(after).toHaveLength(1);
      expect(after[0]).toMatchObject({ type: FrameType.ERROR, flags: 1, id: 0 });
      expect(decodeTransportError(after[0].body)).toEqual({
        code: 'WIRE_PROTOCOL',
        message: 'REQUEST id 5 is already in use by a running call',
      });
      expect(seen).toEqual({ aborted: 1, finished: 0 });
    } finally {
      await running.app.close();
    }
  });
});
