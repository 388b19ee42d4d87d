import 'reflect-metadata';
import { AsyncLocalStorage } from 'node:async_hooks';
import { Controller, Module } from '@nestjs/common';
import { MessagePattern, Payload, RpcException, Transport } from '@nestjs/microservices';
import { firstValueFrom, Subject, type Observable } from 'rxjs';
import { WIRE_TRANSPORT, WireContext, WireNoHandlerError } from '../../lib/index.js';
import { withRunningApp } from '../helpers/apps.js';

@Controller()
class HooksController {
  @MessagePattern('double')
  double(@Payload() n: number): number {
    return n * 2;
  }

  @MessagePattern('refuse')
  refuse(): never {
    throw new RpcException({ status: 400, message: 'bad input' });
  }

  /** A stream completed from outside the handler (another call's answer, a broker message). */
  @MessagePattern('later')
  later(): Observable<number> {
    return later.asObservable();
  }

  /** Bound to nest-wire: served in a hybrid app by WireServer only. */
  @MessagePattern('wire.only', WIRE_TRANSPORT)
  wireOnly(): string {
    return 'wire';
  }

  /** Bound to Nest's TCP transport: not a nest-wire handler. */
  @MessagePattern('tcp.only', Transport.TCP)
  tcpOnly(): string {
    return 'tcp';
  }
}

const later = new Subject<number>();

@Module({ controllers: [HooksController] })
class HooksModule {}

describe("WireServer and Nest's processing hooks", () => {
  const app = withRunningApp(HooksModule);
  const seen: { transportId: unknown; pattern: string; metadata: unknown; error?: unknown }[] = [];

  beforeEach(() => {
    seen.length = 0;
    // eslint-disable-next-line @typescript-eslint/no-misused-promises -- Nest's own default hook returns done()'s promise; its type says void
    app.running.server.setOnProcessingStartHook((transportId, ctx, done) => {
      const wire = ctx as WireContext;
      seen.push({ transportId, pattern: wire.getPattern(), metadata: wire.getMetadata() });
      return done();
    });
    app.running.server.setOnProcessingEndHook((_transportId, ctx) => {
      const wire = ctx as WireContext;
      seen.find((s) => s.pattern === wire.getPattern())!.error = wire.getError();
    });
  });

  it('hooks receive the transport id WIRE_TRANSPORT (Symbol.for("nest-wire")), the pattern and the metadata', async () => {
    expect(app.running.server.transportId).toBe(Symbol.for('nest-wire'));
    expect(await firstValueFrom(app.client.send('double', 4, { metadata: { 'x-request-id': 'r-1' } }))).toBe(8);
    expect(seen).toEqual([
      { transportId: WIRE_TRANSPORT, pattern: 'double', metadata: { 'x-request-id': 'r-1' }, error: undefined },
    ]);
  });

  it('the end hook learns how the call failed: ctx.getError()', async () => {
    await expect(firstValueFrom(app.client.send('refuse', 1))).rejects.toEqual({ status: 400, message: 'bad input' });
    // Ordering barrier: a later call on the same connection, answered after the others' end hooks ran.
    await firstValueFrom(app.client.send('double', 1));
    expect(seen.find((s) => s.pattern === 'refuse')?.error).toEqual({ status: 400, message: 'bad input' });
    expect(seen.find((s) => s.pattern === 'double')?.error).toBeUndefined();
  });

  it('a start hook that throws fails its call only; the connection keeps serving', async () => {
    const before = app.client.counters().openConnections;

    app.running.server.setOnProcessingStartHook(() => {
      throw new Error('hook failure');
    });
    await expect(firstValueFrom(app.client.send('double', 1))).rejects.toEqual({
      status: 'error',
      message: 'Internal server error',
    });
    // eslint-disable-next-line @typescript-eslint/no-misused-promises -- Nest's own default hook returns done()'s promise; its type says void
    app.running.server.setOnProcessingStartHook((_t, _c, done) => done());
    expect(await firstValueFrom(app.client.send('double', 2))).toBe(4);
    expect(app.client.counters().openConnections).toBe(before);
    expect(app.client.stats().calls.failed.WIRE_CONNECTION ?? 0).toBe(0);
  });

  it('the end hook runs in the async context of its start hook, wherever the stream completes', async () => {
    // What APM agents do: the start hook opens a store, the end hook reads it back.
    const store = new AsyncLocalStorage<string>();
    const ended: (string | undefined)[] = [];
    // eslint-disable-next-line @typescript-eslint/no-misused-promises -- Nest's own default hook returns done()'s promise; its type says void
    app.running.server.setOnProcessingStartHook((_t, ctx, done) =>
      store.run(`call:${(ctx as WireContext).getPattern()}`, done),
    );
    app.running.server.setOnProcessingEndHook(() => ended.push(store.getStore()));
    const answer = firstValueFrom(app.client.send('later', 0));
    await firstValueFrom(app.client.send('double', 1)); // barrier: 'later' is running
    store.run('elsewhere', () => {
      later.next(7);
      later.complete();
    });
    expect(await answer).toBe(7);
    expect(ended).toEqual(['call:double', 'call:later']);
  });

  it('a handler bound to another transport is not served; one bound to WIRE_TRANSPORT is', async () => {
    expect(await firstValueFrom(app.client.send('wire.only', {}))).toBe('wire');
    await expect(firstValueFrom(app.client.send('tcp.only', {}))).rejects.toBeInstanceOf(WireNoHandlerError);
  });
});
