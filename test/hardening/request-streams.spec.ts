import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import {
  ERROR_TRANSPORT,
  FrameType,
  REQUEST_HAS_CREDIT,
  REQUEST_STREAM,
  RESPONSE_MORE,
} from '../../lib/protocol/frame.js';
import { decodeTransportError } from '../../lib/protocol/transport-error.js';
import type { WireContext } from '../../lib/index.js';
import { startWireApp, type RunningServer } from '../helpers/apps.js';
import { codec, rawFrame, RawPeer, requestBody } from '../helpers/raw-peer.js';
import { BarrierController } from '../helpers/test-app.js';

/**
 * A hostile client against the request-stream limits of a real WireServer: it ignores
 * the credit, floods values a handler does not read, and leaves values half sent in
 * fragments on many calls. Each must fail only its call, with a typed error, within the
 * documented bounds (docs/PROTOCOL.md §3.11, with maxDecodedBytesPerConnection 1 MiB here).
 */

let consumedFirst = 0;

@Controller()
class HostileTargetController {
  /** Reads one value, then waits for the call to end: the rest queues (within the window). */
  @MessagePattern('stall')
  async stall(@Payload() payload: AsyncIterable<unknown>, @Ctx() ctx: WireContext): Promise<string> {
    const iterator = payload[Symbol.asyncIterator]();
    await iterator.next();
    consumedFirst++;
    await new Promise<void>((resolve) => ctx.getSignal().addEventListener('abort', () => resolve()));
    return 'never';
  }
}

@Module({ controllers: [HostileTargetController, BarrierController] })
class HostileTargetModule {}

const MiB = 1024 * 1024;

function streamRequest(id: number, pattern: string): Buffer {
  const credit = Buffer.alloc(4);
  credit.writeUInt32BE(256);
  return rawFrame(
    FrameType.REQUEST,
    REQUEST_HAS_CREDIT | REQUEST_STREAM,
    id,
    Buffer.concat([credit, requestBody(pattern, null)]),
  );
}

async function transportErrorOf(peer: RawPeer, id: number): Promise<string> {
  return await peer
    .waitForFrame((f) => f.type === FrameType.ERROR && f.id === id, 5000)
    .then((f) => {
      expect(f.flags & ERROR_TRANSPORT).toBe(ERROR_TRANSPORT);
      return decodeTransportError(f.body).code;
    });
}

describe('request streams against a hostile client', () => {
  let running: RunningServer;
  beforeAll(async () => {
    running = await startWireApp(HostileTargetModule, { maxDecodedBytesPerConnection: MiB });
  });
  afterAll(async () => {
    await running.app.close();
  });

  it('a value sent without credit fails its call with WIRE_PROTOCOL; the connection keeps serving', async () => {
    const peer = await RawPeer.connect(running.port);
    try {
      peer.handshake();
      // 'stall' reads once: 16 granted. Sent at once: 40 values, far past the grant.
      peer.write(streamRequest(1, 'stall'));
      await peer.waitForFrame((f) => f.type === FrameType.CREDIT && f.id === 1);
      for (let i = 0; i < 40; i++) peer.write(rawFrame(FrameType.STREAM, 0, 1, codec.encode(i)));
      expect(await transportErrorOf(peer, 1)).toBe('WIRE_PROTOCOL');
      await peer.barrier();
    } finally {
      peer.destroy();
    }
  });

  it('values queued for a handler that does not read are bounded by maxDecodedBytesPerConnection (WIRE_OVERLOADED)', async () => {
    const peer = await RawPeer.connect(running.port);
    try {
      peer.handshake();
      peer.write(streamRequest(1, 'stall'));
      await peer.waitForFrame((f) => f.type === FrameType.CREDIT && f.id === 1);
      // 16 values of 200 KiB (within the credit): 3.2 MiB would be queued against a 1 MiB budget.
      const value = codec.encode(Buffer.alloc(200 * 1024, 1));
      for (let i = 0; i < 16; i++) peer.write(rawFrame(FrameType.STREAM, 0, 1, value));
      expect(await transportErrorOf(peer, 1)).toBe('WIRE_OVERLOADED');
      await peer.barrier();
      expect(running.server.counters().inFlight).toBe(0);
    } finally {
      peer.destroy();
    }
  });

  it('values left half sent in fragments on many calls are bounded in all (WIRE_LIMIT), not per call only', async () => {
    const peer = await RawPeer.connect(running.port);
    try {
      peer.handshake();
      const before = consumedFirst;
      for (let id = 1; id <= 6; id++) peer.write(streamRequest(id, 'stall'));
      for (let id = 1; id <= 6; id++) await peer.waitForFrame((f) => f.type === FrameType.CREDIT && f.id === id);
      // Each call: one small value (so the handler stalls), then 4 × 64 KiB of a value never finished.
      for (let id = 1; id <= 6; id++) peer.write(rawFrame(FrameType.STREAM, 0, id, codec.encode(0)));
      const piece = Buffer.alloc(64 * 1024, 7);
      for (let round = 0; round < 4; round++) {
        for (let id = 1; id <= 6; id++) peer.write(rawFrame(FrameType.STREAM, RESPONSE_MORE, id, piece));
      }
      // 6 × 256 KiB = 1.5 MiB of partial values against 1 MiB: the calls whose fragment passes it fail.
      await peer.barrier();
      const errors = peer.received.filter((f) => f.type === FrameType.ERROR && f.id >= 1 && f.id <= 6);
      expect(errors.map((f) => decodeTransportError(f.body).code)).toEqual(['WIRE_LIMIT', 'WIRE_LIMIT']);
      expect(consumedFirst - before).toBe(6);
    } finally {
      peer.destroy();
    }
  });
});
