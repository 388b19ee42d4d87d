import 'reflect-metadata';
import {
  Controller,
  Module,
  UseGuards,
  UseInterceptors,
  UsePipes,
  type ArgumentMetadata,
  type CallHandler,
  type CanActivate,
  type ExecutionContext,
  type NestInterceptor,
  type PipeTransform,
} from '@nestjs/common';
import { Ctx, MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { count, firstValueFrom, from, lastValueFrom, map, Observable, Subject, toArray } from 'rxjs';
import {
  WireCancelledError,
  WireClient,
  WireConnectionError,
  WireContext,
  WireFrameTooLargeError,
  WireOptionsError,
  WireOverloadedError,
  WireProtocolError,
  WireTimeoutError,
  type WireStream,
} from '../../lib/index.js';
import { MAGIC } from '../../lib/protocol/frame.js';
import { REQUEST_STREAM_WINDOW } from '../../lib/server/request-payload.js';
import { clientFor, startWireApp, withRunningApp } from '../helpers/apps.js';
import { FakeServer } from '../helpers/fake-server.js';
import { helloFrame } from '../helpers/raw-peer.js';
import { waitFor } from '../helpers/wait.js';

/** What the handlers saw, read by the tests (client and server run in this process). */
const seen = {
  received: [] as unknown[],
  payloadError: undefined as unknown,
  signalAborted: false,
  handlerStarts: 0,
  consumed: 0,
};
/** Values the test's sources have produced (pulled or pushed). */
let produced = 0;
/** Largest `produced - seen.consumed` observed by the slow handler. */
let maxAhead = 0;

function reset(): void {
  seen.received = [];
  seen.payloadError = undefined;
  seen.signalAborted = false;
  seen.handlerStarts = 0;
  seen.consumed = 0;
  produced = 0;
  maxAhead = 0;
}

/** What the pipe, the guard and the interceptor saw of a stream call's payload. */
const pipeline = { pipeMetatype: undefined as unknown, pipeSawStream: false, guardSawStream: false, intercepted: 0 };

const isWireStream = (value: unknown): boolean =>
  value instanceof Observable &&
  typeof (value as unknown as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function';

class RecordingPipe implements PipeTransform {
  transform(value: unknown, metadata: ArgumentMetadata): unknown {
    if (metadata.type === 'body') {
      pipeline.pipeMetatype = metadata.metatype;
      pipeline.pipeSawStream = isWireStream(value);
    }
    return value;
  }
}

class RecordingGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    pipeline.guardSawStream = isWireStream(context.switchToRpc().getData());
    return true;
  }
}

class CountingInterceptor implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next.handle().pipe(
      map((value) => {
        pipeline.intercepted++;
        return value;
      }),
    );
  }
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

@Controller()
class StreamsController {
  @MessagePattern('sum')
  async sum(@Payload() payload: AsyncIterable<number>): Promise<number> {
    let total = 0;
    for await (const value of payload) total += value;
    return total;
  }

  @MessagePattern('count$')
  count$(@Payload() payload: Observable<unknown>): Observable<number> {
    return payload.pipe(count());
  }

  @MessagePattern('double')
  double(@Payload() payload: Observable<number>): Observable<number> {
    return payload.pipe(map((value) => value * 2));
  }

  @MessagePattern('digest')
  async digest(@Payload() payload: AsyncIterable<Uint8Array>): Promise<{ size: number; sha256: string }> {
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of payload) {
      size += chunk.length;
      hash.update(chunk);
    }
    return { size, sha256: hash.digest('hex') };
  }

  @MessagePattern('first')
  async first(@Payload() payload: AsyncIterable<number>): Promise<number> {
    for await (const value of payload) return value; // return() ends the payload early
    return -1;
  }

  @MessagePattern('piped')
  @UsePipes(new RecordingPipe())
  @UseGuards(new RecordingGuard())
  @UseInterceptors(new CountingInterceptor())
  piped(@Payload() payload: WireStream<number>): Observable<number> {
    return payload.pipe(map((value) => value + 1));
  }

  /** Reads one value, then fails the call while the client is still sending. */
  @MessagePattern('fail-early')
  async failEarly(@Payload() payload: AsyncIterable<number>): Promise<never> {
    for await (const _ of payload) break;
    throw new RpcException('enough');
  }

  @MessagePattern('ignore')
  ignore(): string {
    return 'not reading';
  }

  /** Records every value and how the payload ends; runs until it ends. */
  @MessagePattern('record')
  async record(@Payload() payload: AsyncIterable<unknown>, @Ctx() ctx: WireContext): Promise<number> {
    seen.handlerStarts++;
    ctx.getSignal().addEventListener('abort', () => (seen.signalAborted = true));
    try {
      for await (const value of payload) seen.received.push(value);
    } catch (err) {
      seen.payloadError = err;
      throw err;
    }
    return seen.received.length;
  }

  /** Consumes one value per event-loop turn, noting how far the source ran ahead. */
  @MessagePattern('slow')
  async slow(@Payload() payload: AsyncIterable<number>): Promise<number> {
    for await (const _ of payload) {
      seen.consumed++;
      maxAhead = Math.max(maxAhead, produced - seen.consumed);
      await nextTurn();
    }
    return seen.consumed;
  }
}

@Module({ controllers: [StreamsController] })
class StreamsModule {}

async function* numbers(n: number, onFinally?: () => void): AsyncGenerator<number> {
  try {
    for (let i = 1; i <= n; i++) {
      produced++;
      yield i;
    }
  } finally {
    onFinally?.();
  }
}

describe('client streaming and bidirectional calls (end to end)', () => {
  const app = withRunningApp(StreamsModule);
  beforeEach(reset);

  describe('the API', () => {
    it('an async generator source: the handler reads it with for await and answers once', async () => {
      await expect(firstValueFrom(app.client.send<number>('sum', numbers(100)))).resolves.toBe(5050);
    });

    it('an Observable source: the handler may consume the payload as an Observable', async () => {
      await expect(firstValueFrom(app.client.send<number>('count$', from(['a', 'b', 'c'])))).resolves.toBe(3);
    });

    it('a Node Readable source (objectMode)', async () => {
      await expect(firstValueFrom(app.client.send<number>('sum', Readable.from([1, 2, 3, 4])))).resolves.toBe(10);
    });

    it('bidirectional: the answer streams while the request streams, in order', async () => {
      const values = await lastValueFrom(app.client.send<number>('double', numbers(300)).pipe(toArray()));
      expect(values).toEqual(Array.from({ length: 300 }, (_, i) => (i + 1) * 2));
    });

    it('large values leave in fragments (past the 256 KiB window), and arrive whole and in order', async () => {
      const chunks = [0x11, 0x22, 0x33].map((b, i) => Buffer.alloc(600 * 1024 + i, b));
      const expected = createHash('sha256');
      for (const c of chunks) expected.update(c);
      const answer = await firstValueFrom(app.client.send('digest', from(chunks)));
      expect(answer).toEqual({ size: 3 * 600 * 1024 + 3, sha256: expected.digest('hex') });
    });

    it('an empty source completes the payload at once', async () => {
      await expect(firstValueFrom(app.client.send<number>('sum', from([] as number[])))).resolves.toBe(0);
    });

    it('a value that is neither Observable nor AsyncIterable stays an ordinary call (arrays included)', async () => {
      // 'record' iterates its payload; an ordinary array payload is iterable (sync) and works too.
      await expect(firstValueFrom(app.client.send<number>('record', [7, 8]))).resolves.toBe(2);
      expect(seen.received).toEqual([7, 8]);
    });

    it("the payload goes through Nest's pipeline: pipe, guard and interceptor see the stream; WireStream is Object to a pipe", async () => {
      const values = await lastValueFrom(app.client.send<number>('piped', from([1, 2, 3])).pipe(toArray()));
      expect(values).toEqual([2, 3, 4]);
      expect(pipeline.pipeSawStream).toBe(true);
      expect(pipeline.guardSawStream).toBe(true);
      expect(pipeline.intercepted).toBe(3);
      // A type alias: what ValidationPipe skips (it validates only class metatypes).
      expect(pipeline.pipeMetatype).toBe(Object);
    });

    it('stats count a stream call like any other', async () => {
      const before = app.client.stats().calls.started;
      const serverBefore = app.running.server.stats().calls.started;
      await firstValueFrom(app.client.send<number>('sum', numbers(3)));
      expect(app.client.stats().calls.started).toBe(before + 1);
      expect(app.running.server.stats().calls.started).toBe(serverBefore + 1);
    });

    it('emit() with a stream source is refused with WireOptionsError', async () => {
      await expect(lastValueFrom(app.client.emit('sum', numbers(1)), { defaultValue: null })).rejects.toBeInstanceOf(
        WireOptionsError,
      );
    });

    it('{ idempotent: true } with a stream source is refused with WireOptionsError (at most once)', async () => {
      await expect(firstValueFrom(app.client.send('sum', numbers(1), { idempotent: true }))).rejects.toBeInstanceOf(
        WireOptionsError,
      );
    });
  });

  describe('flow control', () => {
    it('a slow handler: an AsyncIterable source is pulled only within the credit it grants', async () => {
      await expect(firstValueFrom(app.client.send<number>('slow', numbers(500)))).resolves.toBe(500);
      // Granted: the window, renewed by what was consumed. One more is pulled while the last
      // value is in flight at most.
      expect(maxAhead).toBeLessThanOrEqual(REQUEST_STREAM_WINDOW + 1);
      expect(maxAhead).toBeGreaterThan(0);
    });

    it('an Observable source pushing faster than the handler reads is held, bounded by maxStreamHeldValues', async () => {
      const client = clientFor(app.running, { maxStreamHeldValues: 50 });
      try {
        // 10 000 values pushed synchronously on the first credit: far beyond 16 + 50.
        const source = new Observable<number>((subscriber) => {
          for (let i = 0; i < 10_000 && !subscriber.closed; i++) subscriber.next(i);
          subscriber.complete();
        });
        const err = await firstValueFrom(client.send('record', source)).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(WireOverloadedError);
        expect((err as Error).message).toMatch(/maxStreamHeldValues/);
        // The server's payload failed with the same typed error, and the handler stopped.
        await waitFor(() => seen.payloadError !== undefined, { what: 'the payload to fail' });
        expect(seen.payloadError).toBeInstanceOf(WireOverloadedError);
        expect(seen.received.length).toBeLessThanOrEqual(REQUEST_STREAM_WINDOW);
      } finally {
        client.close();
      }
    });

    it('an Observable source within the bound completes, every value in order', async () => {
      const source = new Observable<number>((subscriber) => {
        for (let i = 0; i < 800; i++) subscriber.next(i);
        subscriber.complete();
      });
      await expect(firstValueFrom(app.client.send<number>('record', source))).resolves.toBe(800);
      expect(seen.received).toEqual(Array.from({ length: 800 }, (_, i) => i));
    });
  });

  describe('lifecycles', () => {
    it('source completes → the payload completes (the handler answers)', async () => {
      await expect(firstValueFrom(app.client.send<number>('record', numbers(5)))).resolves.toBe(5);
      expect(seen.received).toEqual([1, 2, 3, 4, 5]);
      expect(seen.payloadError).toBeUndefined();
    });

    it("source errors → the payload errors with the error's message (RpcException-shaped), the call fails with it", async () => {
      const failing = (async function* () {
        yield 1;
        yield 2;
        throw new Error('disk on fire');
      })();
      const err = await firstValueFrom(app.client.send('record', failing)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toBe('disk on fire');
      await waitFor(() => seen.payloadError !== undefined, { what: 'the payload to fail' });
      expect(seen.payloadError).toEqual({ status: 'error', message: 'disk on fire' });
      // The payload fails at once: a value received but not yet pulled by for-await is dropped.
      expect([[1], [1, 2]]).toContainEqual(seen.received);
      await waitFor(() => seen.signalAborted, { what: 'the signal to abort' });
    });

    it('an Observable source that errors: the same', async () => {
      const source = new Subject<number>();
      const answer = firstValueFrom(app.client.send('record', source)).catch((e: unknown) => e);
      await waitFor(() => source.observed, { what: 'the source to be subscribed (first credit)' });
      source.next(1);
      await waitFor(() => seen.received.length === 1, { what: 'the first value' });
      source.error(new Error('upstream broke'));
      expect(((await answer) as Error).message).toBe('upstream broke');
      await waitFor(() => seen.payloadError !== undefined, { what: 'the payload to fail' });
      expect(seen.payloadError).toEqual({ status: 'error', message: 'upstream broke' });
    });

    it('caller unsubscribes → CANCEL: the payload errors with WireCancelledError, the signal aborts, the source is released', async () => {
      let released = false;
      const source = new Observable<number>((subscriber) => {
        subscriber.next(1);
        return () => (released = true);
      });
      const subscription = app.client.send('record', source).subscribe({ error: () => {} });
      await waitFor(() => seen.received.length === 1, { what: 'the first value' });
      subscription.unsubscribe();
      expect(released).toBe(true);
      await waitFor(() => seen.payloadError !== undefined, { what: 'the payload to fail' });
      expect(seen.payloadError).toBeInstanceOf(WireCancelledError);
      expect(seen.signalAborted).toBe(true);
    });

    it("caller's timeout → the call fails with WireTimeoutError, the payload errors, the signal aborts, the iterator is return()ed", async () => {
      let returned = false;
      const endless = (async function* () {
        try {
          yield 1;
          await new Promise(() => {}); // never produces a second value
        } finally {
          returned = true;
        }
      })();
      const err = await firstValueFrom(app.client.send('record', endless, { timeout: 150 })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WireTimeoutError);
      await waitFor(() => seen.payloadError !== undefined, { what: 'the payload to fail' });
      // The client's timer sends CANCEL; the server's own copy of the deadline (propagated as
      // the budget) may fire first: either way the handler's payload fails and its signal aborts.
      expect(seen.payloadError instanceof WireCancelledError || seen.payloadError instanceof WireTimeoutError).toBe(
        true,
      );
      expect(seen.signalAborted).toBe(true);
      // return() on a generator suspended in an await runs once that await settles; this one
      // never does, so "returned" is asserted on a source that is suspended at a yield instead:
      expect(returned).toBe(false);
    });

    it('timeout with a source suspended at a yield: its iterator is return()ed (finally runs)', async () => {
      let returned = false;
      const source = numbers(1_000_000, () => (returned = true));
      // 'slow' consumes one value per turn: 1 000 000 values take far longer than 150 ms.
      const err = await firstValueFrom(app.client.send('slow', source, { timeout: 150 })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WireTimeoutError);
      await waitFor(() => returned, { what: 'the generator to be return()ed' });
    });

    it("the handler's answer ends before the payload is consumed → the client stops pulling and releases the source", async () => {
      let returned = false;
      await expect(
        firstValueFrom(
          app.client.send<number>(
            'first',
            numbers(1_000_000, () => (returned = true)),
          ),
        ),
      ).resolves.toBe(1);
      await waitFor(() => returned, { what: 'the generator to be return()ed' });
      // Pulled within one window of credit, not the million values.
      expect(produced).toBeLessThanOrEqual(REQUEST_STREAM_WINDOW + 1);
    });

    it("the handler's answer fails before the payload is consumed → the call fails, the source is released", async () => {
      let returned = false;
      const err = await firstValueFrom(
        app.client.send(
          'fail-early',
          numbers(1_000_000, () => (returned = true)),
        ),
      ).catch((e: unknown) => e);
      expect(err).toEqual({ status: 'error', message: 'enough' });
      await waitFor(() => returned, { what: 'the generator to be return()ed' });
      expect(produced).toBeLessThanOrEqual(REQUEST_STREAM_WINDOW + 1);
    });

    it('a handler that never reads: the source is never started, and is released when the answer ends', async () => {
      let subscribed = false;
      let released = false;
      const source = new Observable<number>(() => {
        subscribed = true;
        return () => (released = true);
      });
      await expect(firstValueFrom(app.client.send('ignore', source))).resolves.toBe('not reading');
      expect(subscribed).toBe(false);
      expect(released).toBe(false);
    });

    it('connection drops → both sides see WireConnectionError; the call is not retried even if idempotent by pattern', async () => {
      const client = clientFor(app.running, { idempotent: () => true });
      await client.connect();
      try {
        const source = new Subject<number>();
        const answer = firstValueFrom(client.send('record', source)).catch((e: unknown) => e);
        await waitFor(() => source.observed, { what: 'the source to be subscribed' });
        source.next(1);
        await waitFor(() => seen.received.length === 1, { what: 'the first value' });
        for (const socket of client.unwrap<Socket[]>()) socket.destroy();
        expect(await answer).toBeInstanceOf(WireConnectionError);
        await waitFor(() => seen.payloadError !== undefined, { what: 'the payload to fail' });
        expect(seen.payloadError).toBeInstanceOf(WireConnectionError);
        expect(seen.signalAborted).toBe(true);
        expect(source.observed).toBe(false);
        expect(seen.handlerStarts).toBe(1);
      } finally {
        client.close();
      }
    });

    it('the server deadline covers the whole call: a propagated budget fails the call with WireTimeoutError', async () => {
      const source = new Subject<number>();
      const err = await firstValueFrom(app.client.send('record', source, { timeout: 200 })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WireTimeoutError);
      expect(source.observed).toBe(false);
    });
  });

  describe('with the server at its limits', () => {
    it('maxInFlightPerConnection: calls waiting for their request stream do not stop the server reading it', async () => {
      const small = await startWireApp(StreamsModule, { maxInFlightPerConnection: 2 });
      const client = clientFor(small);
      try {
        // Two calls fill the connection; their STREAM frames come after both REQUESTs, and must be read.
        const sources = [new Subject<number>(), new Subject<number>(), new Subject<number>()];
        const answers = sources.map((source) => firstValueFrom(client.send<number>('sum', source)));
        await waitFor(() => sources[0].observed && sources[1].observed, { what: 'two sources started' });
        for (const [i, source] of sources.slice(0, 2).entries()) {
          source.next(i + 1);
          source.next(10);
          source.complete();
        }
        await expect(answers[0]).resolves.toBe(11);
        await expect(answers[1]).resolves.toBe(12);
        // The third was queued on the client (the connection was full) and runs now.
        await waitFor(() => sources[2].observed, { what: 'the third source started' });
        sources[2].next(5);
        sources[2].complete();
        await expect(answers[2]).resolves.toBe(5);
      } finally {
        client.close();
        await small.app.close();
      }
    });

    it('a server draining (app.close()) lets a running upload finish, then closes', async () => {
      const draining = await startWireApp(StreamsModule);
      const client = clientFor(draining);
      try {
        const source = new Subject<number>();
        const answer = firstValueFrom(client.send<number>('sum', source));
        await waitFor(() => source.observed, { what: 'the source to start' });
        source.next(1);
        const closed = draining.app.close();
        // The client has read the GOAWAY (its connection left rotation); the call still runs and reads its stream.
        await waitFor(() => client.counters().openConnections === 0, { what: 'the GOAWAY to reach the client' });
        source.next(2);
        source.next(3);
        source.complete();
        await expect(answer).resolves.toBe(6);
        await closed;
      } finally {
        client.close();
      }
    });
  });

  describe('values on the wire', () => {
    it('compressed when negotiated (deflate both ways): the server inflates each STREAM value', async () => {
      const compressed = await startWireApp(StreamsModule, { compression: { algorithm: 'deflate' } });
      const client = clientFor(compressed, { compression: { algorithm: 'deflate', thresholdBytes: 64 } });
      try {
        const text = 'abcdefgh'.repeat(4096); // 32 KiB, compresses well
        const chunks = Array.from({ length: 20 }, (_, i) => Buffer.from(`${i}:${text}`));
        const expected = createHash('sha256');
        for (const c of chunks) expected.update(c);
        const answer = await firstValueFrom(client.send('digest', from(chunks)));
        expect(answer).toEqual({ size: chunks.reduce((n, c) => n + c.length, 0), sha256: expected.digest('hex') });
        // Far fewer bytes went out than the 640 KiB uploaded.
        expect(client.stats().transport.bytesOut).toBeLessThan(100 * 1024);
      } finally {
        client.close();
        await compressed.app.close();
      }
    });

    it("a value larger than the server's maxFrameSize fails the call with WireFrameTooLargeError, and the payload with it", async () => {
      const small = await startWireApp(StreamsModule, { maxFrameSize: 1024 * 1024 });
      const client = clientFor(small);
      try {
        const err = await firstValueFrom(
          client.send('record', from([Buffer.alloc(10), Buffer.alloc(2 * 1024 * 1024)])),
        ).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(WireFrameTooLargeError);
        await waitFor(() => seen.payloadError !== undefined, { what: 'the payload to fail' });
        expect(seen.payloadError).toBeInstanceOf(WireFrameTooLargeError);
        expect(seen.received).toHaveLength(1);
      } finally {
        client.close();
        await small.app.close();
      }
    });
  });

  it('a server that did not announce REQUEST_STREAMS: the call fails with WireProtocolError, no hang', async () => {
    const fake = await FakeServer.start((socket) => {
      socket.write(Buffer.concat([MAGIC, helloFrame({ maxInFlight: 16 })])); // features 0
    });
    const client = new WireClient({ host: '127.0.0.1', port: fake.port, timeout: 5000 });
    try {
      await client.connect();
      const err = await firstValueFrom(client.send('sum', numbers(3))).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WireProtocolError);
      expect((err as Error).message).toMatch(/REQUEST_STREAMS/);
    } finally {
      client.close();
      await fake.close();
    }
  });
});
