import 'reflect-metadata';
import { Controller, Inject, Module } from '@nestjs/common';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import { firstValueFrom, take, toArray, lastValueFrom } from 'rxjs';
import { WireClient, WireContext, WireTimeoutError } from '../../lib/index.js';
import { FrameType, REQUEST_HAS_DEADLINE } from '../../lib/protocol/frame.js';
import { clientFor, startWireApp, withRunningApp, type RunningServer } from '../helpers/apps.js';
import { codec, rawFrame, RawPeer } from '../helpers/raw-peer.js';
import { BarrierController, recorder, TestAppModule } from '../helpers/test-app.js';
import { barrier, waitFor } from '../helpers/wait.js';

/** What service B saw, for the chain test. */
const seenByB: { deadline?: number; startedAt?: number; aborted: boolean; started: boolean } = {
  aborted: false,
  started: false,
};

@Controller()
class ServiceBController {
  @MessagePattern('b.work')
  async work(@Payload() ms: number, @Ctx() ctx: WireContext): Promise<string> {
    seenByB.started = true;
    seenByB.startedAt = Date.now();
    seenByB.deadline = ctx.getDeadline();
    const signal = ctx.getSignal();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener('abort', () => {
        clearTimeout(timer);
        seenByB.aborted = true;
        resolve();
      });
    });
    return 'b done';
  }
}

@Module({ controllers: [ServiceBController, BarrierController] })
class ServiceBModule {}

const B_CLIENT = 'B_CLIENT';

@Controller()
class ServiceAController {
  constructor(@Inject(B_CLIENT) private readonly b: WireClient) {}

  @MessagePattern('a.work')
  async work(@Payload() ms: number): Promise<string> {
    // No deadline or signal handling here: the call to B inherits both from the call being
    // handled (through AsyncLocalStorage), although it is awaited as a plain promise.
    return firstValueFrom(this.b.send<string>('b.work', ms));
  }

  @MessagePattern('a.generator')
  generator(@Payload() ms: number): AsyncIterable<string> {
    const b = this.b;
    return (async function* () {
      yield 'first';
      // Resumed when the caller's CREDIT arrives, outside the call's first turn: the call to
      // B must still inherit the deadline and the cancellation of the call being handled.
      yield await firstValueFrom(b.send<string>('b.work', ms));
    })();
  }

  @MessagePattern('a.detached')
  async detached(@Payload() ms: number): Promise<string> {
    return firstValueFrom(this.b.send<string>('b.work', ms, { propagate: false, timeout: 0 }));
  }
}

function serviceAModule(bPort: number) {
  @Module({
    controllers: [ServiceAController, BarrierController],
    providers: [{ provide: B_CLIENT, useFactory: () => new WireClient({ host: '127.0.0.1', port: bPort }) }],
  })
  class ServiceAModule {}
  return ServiceAModule;
}

describe('cancellation and deadlines', () => {
  const app = withRunningApp(TestAppModule);
  beforeEach(() => recorder.reset());

  it('take(1) on an infinite stream ends the server subscription before the next request is answered', async () => {
    const values = await lastValueFrom(app.client.send<number>('infinite', {}).pipe(take(3), toArray()));
    expect(values).toEqual([0, 1, 2]);
    // The CANCEL went out when take(3) unsubscribed, before the barrier on the same connection:
    // once the barrier is answered the server has handled it, and its teardown has run.
    // (Was "within 50 ms" of wall time, which a loaded machine exceeded with nothing wrong.)
    await barrier(app.client);
    expect(recorder.teardowns).toBe(1);
    expect(app.running.server.counters().inFlight).toBe(0);
    expect(await firstValueFrom(app.client.send('sum', [1, 2]))).toBe(3); // connection healthy
  });

  it('unsubscribing aborts the signal of a handler awaiting I/O', async () => {
    const sub = app.client.send('slow', 5000).subscribe();
    await waitFor(() => recorder.started === 1);
    sub.unsubscribe();
    await waitFor(() => recorder.aborted === 1, 1000);
    expect(recorder.finished).toBe(1); // the handler ran to its end, having seen the abort
  });

  it('a client timeout aborts the handler at about the same time', async () => {
    const started = performance.now();
    const err = await firstValueFrom(app.client.send('slow', 1000, { timeout: 100 })).catch((e) => e);
    const clientElapsed = performance.now() - started;
    expect(err).toBeInstanceOf(WireTimeoutError);
    expect(clientElapsed).toBeGreaterThanOrEqual(99);
    expect(clientElapsed).toBeLessThan(300);
    await waitFor(() => recorder.aborted === 1, 1000);
    expect(recorder.abortedAt - started).toBeGreaterThanOrEqual(90);
    expect(recorder.abortedAt - started).toBeLessThan(300);
  });

  it('the server aborts a call when its budget runs out, even if the client never cancels', async () => {
    const peer = await RawPeer.connect(app.running.port);
    peer.handshake();
    const pattern = Buffer.from('slow');
    const body = Buffer.concat([Buffer.from([0, 0, 0, 80, 0, pattern.length]), pattern, codec.encode(5000)]);
    const sent = performance.now();
    peer.write(rawFrame(FrameType.REQUEST, REQUEST_HAS_DEADLINE, 1, body));
    const error = await peer.waitForFrame((f) => f.type === FrameType.ERROR && f.id === 1);
    expect(performance.now() - sent).toBeGreaterThanOrEqual(75);
    expect(error.body.toString('latin1')).toContain('WIRE_TIMEOUT');
    expect(recorder.aborted).toBe(1);
    peer.destroy();
  });

  it('a request that arrives with an expired budget never runs its handler', async () => {
    const peer = await RawPeer.connect(app.running.port);
    peer.handshake();
    const pattern = Buffer.from('slow');
    const body = Buffer.concat([Buffer.from([0, 0, 0, 0, 0, pattern.length]), pattern, codec.encode(10)]);
    peer.write(rawFrame(FrameType.REQUEST, REQUEST_HAS_DEADLINE, 1, body));
    const error = await peer.waitForFrame((f) => f.type === FrameType.ERROR && f.id === 1);
    expect(error.body.toString('latin1')).toContain('WIRE_TIMEOUT');
    await peer.barrier(); // handled after the expired request: had it started its handler, started would be 1
    expect(recorder.started).toBe(0);
    peer.destroy();
  });

  describe('a chain gateway → A → B', () => {
    let b: RunningServer;
    let a: RunningServer;
    beforeAll(async () => {
      b = await startWireApp(ServiceBModule);
      a = await startWireApp(serviceAModule(b.port));
    });
    afterAll(async () => {
      await a.app.close();
      await b.app.close();
    });
    beforeEach(() => {
      seenByB.started = false;
      seenByB.aborted = false;
      seenByB.deadline = undefined;
      seenByB.startedAt = undefined;
    });

    it('cancelling at the gateway stops B, and B sees a deadline no later than the gateway deadline', async () => {
      const gateway = clientFor(a, { timeout: 2000 });
      const sentAt = Date.now();
      const gatewayDeadline = sentAt + 2000;
      const sub = gateway.send('a.work', 5000).subscribe();
      await waitFor(() => seenByB.started);
      expect(seenByB.deadline).toBeDefined();
      // Deadlines travel as a time budget, so each hop's deadline moves later by the time the
      // frame spent in transit (and up to 1 ms of rounding per hop): B's is the gateway's plus at
      // most the time from sending to B starting, measured, plus 3 ms. B's own default timeout
      // (30 s), or A's, would be far past it.
      expect(seenByB.deadline!).toBeLessThanOrEqual(gatewayDeadline + (seenByB.startedAt! - sentAt) + 3);
      sub.unsubscribe();
      await waitFor(() => seenByB.aborted, 1000);
      gateway.close();
    });

    it('a gateway timeout propagates down the chain', async () => {
      const gateway = clientFor(a);
      const result = firstValueFrom(gateway.send('a.work', 5000, { timeout: 400 })).catch((e) => e);
      await waitFor(() => seenByB.started);
      // A's call to B shares the gateway's deadline, so two timers race: the gateway's own
      // (WireTimeoutError), or A's call to B failing first, which A's exception filter turns
      // into Nest's error object. Either way the gateway gets an error at its deadline.
      const outcome = await result;
      if (!(outcome instanceof WireTimeoutError))
        expect(outcome).toEqual({ status: 'error', message: 'Internal server error' });
      await waitFor(() => seenByB.aborted, 1000);
      gateway.close();
    });

    it('a call made by an AsyncIterable handler resumed by CREDIT inherits the deadline and the cancellation', async () => {
      // streamCredit 1: the second value is pulled only once the gateway's CREDIT for the first arrives.
      const gateway = clientFor(a, { timeout: 2000, streamCredit: 1 });
      const gatewayDeadline = Date.now() + 2000;
      const values: string[] = [];
      const sub = gateway.send<string>('a.generator', 5000).subscribe((v) => values.push(v));
      await waitFor(() => seenByB.started);
      expect(values).toEqual(['first']);
      expect(seenByB.deadline).toBeDefined();
      expect(seenByB.deadline!).toBeLessThanOrEqual(gatewayDeadline + 5);
      sub.unsubscribe();
      await waitFor(() => seenByB.aborted, 1000);
      gateway.close();
    });

    it('propagate: false opts a call out of the chain', async () => {
      const gateway = clientFor(a, { timeout: 0 });
      const sub = gateway.send('a.detached', 300).subscribe();
      await waitFor(() => seenByB.started);
      expect(seenByB.deadline).toBeUndefined();
      sub.unsubscribe();
      // Ordering barriers, hop by hop: A has handled the gateway's CANCEL (and aborted its
      // handler's signal); then B has handled everything A sent it since, a CANCEL included.
      await barrier(gateway);
      await barrier(a.app.get<WireClient>(B_CLIENT));
      expect(seenByB.aborted).toBe(false); // B keeps working: it was not tied to A's call
      gateway.close();
    });
  });
});
