import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { firstValueFrom, from, map, Observable, range } from 'rxjs';
import { WireOptionsError, WireOverloadedError, WireServer, type WireClient, type WireError } from '../../lib/index.js';
import { FrameType, REQUEST_HAS_CREDIT, RESPONSE_END } from '../../lib/protocol/frame.js';
import { decodeTransportError } from '../../lib/protocol/transport-error.js';
import { clientFor, startWireApp, withRunningApp, type RunningServer } from '../helpers/apps.js';
import { codec, rawFrame, RawPeer } from '../helpers/raw-peer.js';
import { BarrierController } from '../helpers/test-app.js';

/**
 * Issue 15, "push streams must not fail for being fast": a handler returning a push
 * Observable (from(rows), range().pipe(map()), a loop of subscriber.next()) to a consumer
 * slower than the producer completes, in order, as it does over Nest TCP. The values beyond
 * the credit wait unencoded and are encoded when sent; maxStreamBufferValues bounds how many
 * the streams of one connection may hold. (The 200 000 × 1 KiB memory figure is measured in
 * test/soak/push-stream-memory.soak.spec.ts.)
 */

const KiB = 1024;
const row = (i: number) => ({ i, text: String(i).padStart(KiB, '.') });

@Controller()
class PushController {
  /** A synchronous Observable over rows the handler already holds. */
  @MessagePattern('push.rows')
  rows(@Payload() n: number): Observable<{ i: number; text: string }> {
    return from(Array.from({ length: n }, (_, i) => row(i)));
  }

  /** A fresh value per emission. */
  @MessagePattern('push.range')
  range(@Payload() n: number): Observable<{ i: number; text: string }> {
    return range(0, n).pipe(map(row));
  }

  /** A loop of subscriber.next(), then an error or the end. */
  @MessagePattern('push.loop')
  loop(@Payload() p: { n: number; fail?: boolean; unencodableAt?: number }): Observable<unknown> {
    return new Observable((subscriber) => {
      for (let i = 0; i < p.n; i++) subscriber.next(i === p.unencodableAt ? 2n ** 70n : i);
      if (p.fail) subscriber.error(new RpcException('loop failed after its values'));
      else subscriber.complete();
    });
  }

  @MessagePattern('push.sum')
  sum(@Payload() data: number[]): number {
    return data.reduce((a, b) => a + b, 0);
  }
}

@Module({ controllers: [PushController, BarrierController] })
class PushModule {}

/** Subscribes and collects everything; resolves with the values and how the stream ended. */
function collect<T>(
  client: WireClient,
  pattern: string,
  data: unknown,
  onValue: (v: T, n: number) => void = () => {},
): Promise<{ values: T[]; err: unknown }> {
  const values: T[] = [];
  return new Promise((resolve) =>
    client.send<T>(pattern, data).subscribe({
      next: (v) => {
        values.push(v);
        onValue(v, values.length);
      },
      error: (err: unknown) => resolve({ values, err }),
      complete: () => resolve({ values, err: null }),
    }),
  );
}

/** A REQUEST frame granting `credit` values. */
function streamRequest(id: number, pattern: string, payload: unknown, credit: number): Buffer {
  const p = Buffer.from(pattern);
  const head = Buffer.alloc(4 + 2);
  head.writeUInt32BE(credit, 0);
  head.writeUInt16BE(p.length, 4);
  return rawFrame(FrameType.REQUEST, REQUEST_HAS_CREDIT, id, Buffer.concat([head, p, codec.encode(payload)]));
}

function creditFrame(id: number, n: number): Buffer {
  const body = Buffer.alloc(4);
  body.writeUInt32BE(n, 0);
  return rawFrame(FrameType.CREDIT, 0, id, body);
}

describe('push streams faster than their consumer (issue 15)', () => {
  describe('complete, in order, with the default bound', () => {
    // Credit 16: nearly every value waits on the server for a CREDIT frame.
    const app = withRunningApp(PushModule, {}, { streamCredit: 16, timeout: 60_000 });

    it.each([
      ['from(rows)', 'push.rows'],
      ['range().pipe(map())', 'push.range'],
    ])('%s: 20 000 values of 1 KiB arrive whole and in order', async (_what, pattern) => {
      const { values, err } = await collect<{ i: number; text: string }>(app.client, pattern, 20_000);
      expect(err).toBeNull();
      expect(values).toHaveLength(20_000);
      expect(values.every((v, i) => v.i === i && v.text === row(i).text)).toBe(true);
    });

    it('a loop of subscriber.next() to a consumer whose event loop is busy: every value, in order', async () => {
      // The consumer blocks its event loop (synchronous work, as a busy gateway does) on the
      // first value and every 5 000th: meanwhile it reads nothing and grants no credit.
      const { values, err } = await collect<number>(app.client, 'push.loop', { n: 20_000 }, (_v, n) => {
        if (n === 1 || n % 5_000 === 0) {
          const until = performance.now() + 200;
          while (performance.now() < until);
        }
      });
      expect(err).toBeNull();
      expect(values).toEqual(Array.from({ length: 20_000 }, (_, i) => i));
    });

    it('an error after the values arrives after all of them', async () => {
      const { values, err } = await collect<number>(app.client, 'push.loop', { n: 5_000, fail: true });
      expect(values).toEqual(Array.from({ length: 5_000 }, (_, i) => i));
      expect(err).toMatchObject({ message: 'loop failed after its values' });
    });

    it('values are encoded when sent: one that cannot be fails the call there, after the values before it', async () => {
      const { values, err } = await collect<number>(app.client, 'push.loop', { n: 5_000, unencodableAt: 3_000 });
      expect(values).toEqual(Array.from({ length: 3_000 }, (_, i) => i));
      expect((err as WireError).code).toBe('WIRE_CODEC');
      expect(await firstValueFrom(app.client.send('push.sum', [1, 2]))).toBe(3);
    });
  });

  describe('the END still folds into the last value frame when it follows held values', () => {
    let running: RunningServer;
    beforeAll(async () => {
      running = await startWireApp(PushModule);
    });
    afterAll(() => running.app.close());

    it('credit 1, three values: the third value frame carries END, and no END frame follows', async () => {
      const peer = await RawPeer.connect(running.port);
      try {
        peer.handshake();
        peer.write(streamRequest(1, 'push.loop', { n: 3 }, 1));
        await peer.waitForFrame((f) => f.id === 1 && f.type === FrameType.RESPONSE);
        peer.write(creditFrame(1, 1));
        await peer.waitForFrame((f) => f.id === 1 && f.type === FrameType.RESPONSE && codec.decode(f.body) === 1);
        peer.write(creditFrame(1, 1));
        await peer.waitForFrame((f) => f.id === 1 && (f.flags & RESPONSE_END) !== 0);
        await peer.barrier(); // anything the call still sent would have arrived before this answer
        const frames = peer.received.filter((f) => f.id === 1);
        expect(frames.map((f) => [f.type, codec.decode(f.body), (f.flags & RESPONSE_END) !== 0])).toEqual([
          [FrameType.RESPONSE, 0, false],
          [FrameType.RESPONSE, 1, false],
          [FrameType.RESPONSE, 2, true],
        ]);
      } finally {
        peer.destroy();
      }
    });
  });

  describe('maxStreamBufferValues bounds what the streams of one connection hold', () => {
    let running: RunningServer;
    let client: WireClient;
    beforeAll(async () => {
      running = await startWireApp(PushModule, { maxStreamBufferValues: 1_000 });
      client = clientFor(running, { timeout: 30_000 });
    });
    afterAll(async () => {
      client.close();
      await running.app.close();
    });

    it('a stream holding more fails with WireOverloadedError naming the option; the values before it arrived in order', async () => {
      // Credit 256 (the default): the first 256 values go at once, the next 1 000 wait, the 1 257th is one too many.
      const { values, err } = await collect<number>(client, 'push.loop', { n: 5_000 });
      expect(err).toBeInstanceOf(WireOverloadedError);
      expect((err as WireOverloadedError).code).toBe('WIRE_OVERLOADED');
      expect((err as Error).message).toMatch(/maxStreamBufferValues \(1000\)/);
      expect(values.length).toBeGreaterThanOrEqual(256);
      expect(values.length).toBeLessThan(5_000);
      expect(values).toEqual(Array.from({ length: values.length }, (_, i) => i));
      // The connection is unharmed, and a stream under the bound completes on it.
      expect(await firstValueFrom(client.send('push.sum', [1, 2]))).toBe(3);
      const under = await collect<number>(client, 'push.loop', { n: 1_200 });
      expect(under.err).toBeNull();
      expect(under.values).toHaveLength(1_200);
    });

    it('the bound is per connection: two streams that hold 800 each cannot both hold them', async () => {
      const peer = await RawPeer.connect(running.port);
      try {
        peer.handshake();
        // Credit 1 each, and no CREDIT before call 2 has failed: call 1 still holds its 800 values when call 2 emits.
        peer.write(
          Buffer.concat([streamRequest(1, 'push.loop', { n: 801 }, 1), streamRequest(2, 'push.loop', { n: 801 }, 1)]),
        );
        const failed = await peer.waitForFrame((f) => f.id === 2 && f.type === FrameType.ERROR);
        expect(decodeTransportError(failed.body).code).toBe('WIRE_OVERLOADED');
        // The first call keeps its 800 held values: with credit they all arrive, then its END.
        peer.write(creditFrame(1, 1_000));
        await peer.waitForFrame((f) => f.id === 1 && (f.flags & RESPONSE_END) !== 0);
        const first = peer.received.filter((f) => f.id === 1).map((f) => codec.decode(f.body));
        expect(first).toEqual(Array.from({ length: 801 }, (_, i) => i));
        // Released: the same stream fits again.
        peer.write(streamRequest(3, 'push.loop', { n: 801 }, 1_000));
        await peer.waitForFrame((f) => f.id === 3 && (f.flags & RESPONSE_END) !== 0);
        expect(peer.received.filter((f) => f.id === 3 && f.type === FrameType.ERROR)).toEqual([]);
      } finally {
        peer.destroy();
      }
    });
  });

  it('maxStreamBufferBytes, which bounded encoded bytes, is refused with a pointer to maxStreamBufferValues', () => {
    let err: unknown;
    try {
      new WireServer({ maxStreamBufferBytes: 4 << 20 } as never);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WireOptionsError);
    expect((err as Error).message).toMatch(
      /unknown option 'maxStreamBufferBytes'; did you mean 'maxStreamBufferValues'\?.*held unencoded and encoded when sent/,
    );
  });
});
