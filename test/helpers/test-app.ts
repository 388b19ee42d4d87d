import 'reflect-metadata';
import {
  CallHandler,
  CanActivate,
  Controller,
  ExecutionContext,
  Injectable,
  Module,
  NestInterceptor,
  ParseIntPipe,
  UseGuards,
  UseInterceptors,
} from '@nestjs/common';
import { Ctx, EventPattern, MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { finalize, from, interval, map, Observable, range, take, throwError } from 'rxjs';
import { WireContext } from '../../lib/index.js';
import { BARRIER_PATTERN, pause } from './wait.js';

/** What the test app's event handlers and slow handlers record, for assertions. */
export class Recorder {
  events: { pattern: string; data: unknown; metadata?: Record<string, string> }[] = [];
  started = 0;
  finished = 0;
  aborted = 0;
  /** When the last `slow` handler saw its signal abort (performance.now()). */
  abortedAt = 0;
  /** Teardowns of the `infinite` stream. */
  teardowns = 0;
  /** Values the `generate` iterable has produced. */
  generated = 0;
  generatorFinalized = 0;
  lastContext: WireContext | null = null;

  reset(): void {
    this.events = [];
    this.started = this.finished = this.aborted = this.abortedAt = 0;
    this.teardowns = this.generated = this.generatorFinalized = 0;
    this.lastContext = null;
  }
}

export const recorder = new Recorder();

@Injectable()
class TokenGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const data = context.switchToRpc().getData<{ token?: string }>();
    return data?.token === 'let-me-in';
  }
}

@Injectable()
class DoubleInterceptor implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next.handle().pipe(map((v) => (v as number) * 2));
  }
}

@Controller()
export class TestController {
  @MessagePattern('sum')
  sum(@Payload() data: number[]): number {
    return data.reduce((a, b) => a + b, 0);
  }

  @MessagePattern({ cmd: 'sum', version: 2 })
  sumObject(@Payload() data: number[]): number {
    return data.reduce((a, b) => a + b, 0) + 1000;
  }

  /** Answers `true`: the ordering barrier of helpers/wait.ts. */
  @MessagePattern(BARRIER_PATTERN)
  barrier(): boolean {
    return true;
  }

  @MessagePattern('echo')
  echo(@Payload() data: unknown): unknown {
    return data;
  }

  @MessagePattern('nothing')
  nothing(): void {}

  @MessagePattern('delayed')
  async delayed(@Payload() data: { id: number; ms: number }, @Ctx() ctx: WireContext): Promise<number> {
    await pause(data.ms, ctx.getSignal()); // less if the call is cancelled: no timer left behind
    return data.id;
  }

  @MessagePattern('stream')
  stream(@Payload() count: number): Observable<number> {
    return range(1, count);
  }

  @MessagePattern('undefined.last')
  undefinedLast(): Observable<number | undefined> {
    return from([1, undefined]);
  }

  @MessagePattern('big')
  big(@Payload() bytes: number): string {
    return 'b'.repeat(bytes);
  }

  @MessagePattern('mixed.stream')
  mixedStream(): Observable<string> {
    return from(['x'.repeat(300_000), 'abc', 'y'.repeat(200_000), 'z']);
  }

  @MessagePattern('ticks')
  ticks(@Payload() count: number): Observable<number> {
    return interval(5).pipe(take(count));
  }

  @MessagePattern('stream.fails')
  streamFails(): Observable<number> {
    return new Observable<number>((s) => {
      s.next(1);
      s.next(2);
      s.error(new RpcException('stream broke'));
    });
  }

  @MessagePattern('rpc.error')
  rpcError(@Payload() kind: string): never {
    if (kind === 'object') throw new RpcException({ status: 418, message: 'teapot', details: { a: 1 } });
    throw new RpcException('plain failure');
  }

  @MessagePattern('plain.error')
  plainError(): never {
    throw new Error('not an RpcException');
  }

  @MessagePattern('observable.error')
  observableError(): Observable<never> {
    return throwError(() => new RpcException('from observable'));
  }

  @MessagePattern('ctx')
  context(@Payload() _data: unknown, @Ctx() ctx: WireContext) {
    recorder.lastContext = ctx;
    return {
      pattern: ctx.getPattern(),
      metadata: ctx.getMetadata() ?? null,
      requestId: ctx.getRequestId(),
      deadline: ctx.getDeadline() ?? null,
      remote: ctx.getRemoteAddress(),
      aborted: ctx.getSignal().aborted,
    };
  }

  @MessagePattern('pipe')
  pipe(@Payload(ParseIntPipe) n: number): number {
    return n + 1;
  }

  @UseGuards(TokenGuard)
  @MessagePattern('guarded')
  guarded(): string {
    return 'secret';
  }

  @UseInterceptors(DoubleInterceptor)
  @MessagePattern('intercepted')
  intercepted(@Payload() n: number): number {
    return n;
  }

  @MessagePattern('slow')
  async slow(@Payload() ms: number, @Ctx() ctx: WireContext): Promise<string> {
    recorder.started++;
    const signal = ctx.getSignal();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener('abort', () => {
        clearTimeout(timer);
        recorder.aborted++;
        recorder.abortedAt = performance.now();
        resolve();
      });
    });
    recorder.finished++;
    return 'slow done';
  }

  @MessagePattern('infinite')
  infinite(): Observable<number> {
    return interval(1).pipe(finalize(() => recorder.teardowns++));
  }

  /** Pull-based stream: produces only as fast as the client grants credit. */
  @MessagePattern('generate')
  generate(@Payload() count: number): AsyncIterable<number> {
    return (async function* () {
      try {
        for (let i = 0; i < count; i++) {
          recorder.generated++;
          yield i;
        }
      } finally {
        recorder.generatorFinalized++;
      }
    })();
  }

  /** Push-based stream that ignores backpressure: a million values at once. */
  @MessagePattern('firehose')
  firehose(@Payload() count: number): Observable<string> {
    return range(0, count).pipe(map((i) => `value-${i}-${'x'.repeat(100)}`));
  }

  // Nest 12 types event handlers as (data, ...args: unknown[]): the context arrives as unknown.
  @EventPattern('user.created')
  userCreated(@Payload() data: unknown, @Ctx() context: unknown): void {
    const ctx = context as WireContext;
    recorder.events.push({ pattern: ctx.getPattern(), data, metadata: ctx.getMetadata() });
  }

  @EventPattern('event.throws')
  eventThrows(_data: unknown): void {
    throw new Error('event handler failure');
  }
}

@Module({ controllers: [TestController] })
export class TestAppModule {}

/** The barrier pattern alone, for test apps that do not include TestController. */
@Controller()
export class BarrierController {
  @MessagePattern(BARRIER_PATTERN)
  barrier(): boolean {
    return true;
  }
}
