import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import { Controller, Inject, Module } from '@nestjs/common';
import { ClientsModule, Ctx, EventPattern, MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { SpanKind, SpanStatusCode, trace, type Tracer } from '@opentelemetry/api';
import { registerInstrumentations, type Instrumentation } from '@opentelemetry/instrumentation';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { firstValueFrom, interval, lastValueFrom, range, toArray, type Observable } from 'rxjs';
import { WireClient, WireContext, type WireClientOptions } from 'nest-wire';
import { INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION, WireInstrumentation } from 'nest-wire/opentelemetry';
import { clientFor, startWireApp, type RunningServer } from '../helpers/apps.js';

/** What service B saw: the metadata of each call and event, by pattern. */
const seenByB: { pattern: string; metadata: Record<string, string> | undefined }[] = [];
/** `ctx.getError()` as service B's processing end hook saw it, per call. */
const endHookSaw: { pattern: string; error: unknown }[] = [];
let auditReceived: (() => void) | null = null;

@Controller()
class ServiceB {
  @MessagePattern('b.double')
  double(@Payload() n: number, @Ctx() ctx: WireContext): number {
    seenByB.push({ pattern: ctx.getPattern(), metadata: ctx.getMetadata() });
    return n * 2;
  }

  @MessagePattern('b.fail')
  fail(): never {
    throw new RpcException({ status: 400, message: 'bad input' });
  }

  @MessagePattern('b.count')
  count(@Payload() n: number, @Ctx() ctx: WireContext): Observable<number> {
    seenByB.push({ pattern: ctx.getPattern(), metadata: ctx.getMetadata() });
    return range(1, n);
  }

  /** Never completes: only a cancellation ends it. */
  @MessagePattern('b.forever')
  forever(): Observable<number> {
    return interval(5);
  }

  @EventPattern('b.audit')
  audit(@Payload() _data: unknown, @Ctx() context: unknown): void {
    const ctx = context as WireContext;
    seenByB.push({ pattern: ctx.getPattern(), metadata: ctx.getMetadata() });
    auditReceived?.();
  }
}

@Module({ controllers: [ServiceB] })
class ServiceBModule {}

@Controller()
class ServiceA {
  constructor(@Inject('B') private readonly b: WireClient) {}

  /** Returns the Observable: Nest subscribes to it after the handler has returned. */
  @MessagePattern('a.observable')
  viaObservable(@Payload() n: number): Observable<number> {
    return this.b.send('b.double', n);
  }

  @MessagePattern('a.async')
  async viaAwait(@Payload() n: number): Promise<number> {
    await new Promise((resolve) => setImmediate(resolve)); // a later turn: the context must survive it
    return (await firstValueFrom(this.b.send<number>('b.double', n))) + 1;
  }

  @MessagePattern('a.stream')
  stream(@Payload() n: number): Observable<number> {
    return this.b.send('b.count', n);
  }

  @MessagePattern('a.forever')
  forever(): Observable<number> {
    return this.b.send('b.forever', {});
  }

  @MessagePattern('a.fail')
  fail(@Payload() n: number): Observable<number> {
    return this.b.send('b.fail', n);
  }

  @MessagePattern('a.missing')
  missing(@Payload() n: number): Observable<number> {
    return this.b.send('b.nothing', n);
  }

  /** An AsyncIterable, pulled at the caller's pace: the nested call comes after the generator was resumed by a CREDIT. */
  @MessagePattern('a.generate')
  async *generate(@Payload() n: number): AsyncGenerator<number> {
    for (let i = 1; i < n; i++) yield i;
    yield await firstValueFrom(this.b.send<number>('b.double', n));
  }

  @EventPattern('a.notify')
  notify(@Payload() data: unknown): Observable<unknown> {
    return this.b.emit('b.audit', data);
  }
}

/** Service A reaches B through a client `ClientsModule` creates, as an app would. */
function serviceAModule(bPort: number): unknown {
  @Module({
    imports: [
      ClientsModule.register([
        { name: 'B', customClass: WireClient, options: { host: '127.0.0.1', port: bPort } satisfies WireClientOptions },
      ]),
    ],
    controllers: [ServiceA],
  })
  class ServiceAModule {}
  return ServiceAModule;
}

const exporter = new InMemorySpanExporter();
const processor = new SimpleSpanProcessor({ exporter });

async function finishedSpans(): Promise<ReadableSpan[]> {
  await processor.forceFlush();
  return exporter.getFinishedSpans();
}

function parentOf(span: ReadableSpan): string | undefined {
  return span.parentSpanContext?.spanId;
}

function idOf(span: ReadableSpan): string {
  return span.spanContext().spanId;
}

/** The one span of `spans` with this name and kind. */
function only(spans: ReadableSpan[], name: string, kind: SpanKind): ReadableSpan {
  const found = spans.filter((s) => s.name === name && s.kind === kind);
  expect(found.map((s) => `${s.name}/${SpanKind[s.kind]}`)).toEqual([`${name}/${SpanKind[kind]}`]);
  return found[0];
}

describe('OpenTelemetry: WireInstrumentation across gateway → A → B', () => {
  let b: RunningServer;
  let a: RunningServer;
  let gateway: WireClient;
  let sdk: NodeSDK;
  let instrumentationOfSdk: WireInstrumentation;
  let tracer: Tracer;

  beforeAll(async () => {
    // The apps and their clients exist before the instrumentation is enabled: they are instrumented all the same.
    b = await startWireApp(ServiceBModule);
    b.server.setOnProcessingEndHook((_transportId, ctx) => {
      const wire = ctx as WireContext;
      endHookSaw.push({ pattern: wire.getPattern(), error: wire.getError() });
    });
    a = await startWireApp(serviceAModule(b.port));
    gateway = clientFor(a);
    await gateway.connect();

    instrumentationOfSdk = new WireInstrumentation();
    sdk = new NodeSDK({
      spanProcessors: [processor],
      instrumentations: [instrumentationOfSdk],
      resourceDetectors: [],
      metricReaders: [],
      logRecordProcessors: [],
    });
    sdk.start();
    tracer = trace.getTracer('gateway');
  });

  afterAll(async () => {
    gateway.close();
    await a.app.close();
    await b.app.close();
    await sdk.shutdown();
  });

  beforeEach(() => {
    exporter.reset();
    seenByB.length = 0;
    endHookSaw.length = 0;
  });

  it('is an Instrumentation of @opentelemetry/instrumentation, named nest-wire at the package version', () => {
    const asInstrumentation: Instrumentation = instrumentationOfSdk; // checked by the compiler
    expect(asInstrumentation.instrumentationName).toBe(INSTRUMENTATION_NAME);
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(INSTRUMENTATION_VERSION).toBe(pkg.version);
    expect(instrumentationOfSdk.getConfig()).toEqual({ enabled: true });
  });

  it('one trace: gateway span → CLIENT → SERVER (A) → CLIENT → SERVER (B), when A returns the Observable', async () => {
    const result = await tracer.startActiveSpan('gateway', async (root) => {
      try {
        return await firstValueFrom(gateway.send<number>('a.observable', 21));
      } finally {
        root.end();
      }
    });
    expect(result).toBe(42);
    const spans = await finishedSpans();
    expect(spans).toHaveLength(5);
    const root = only(spans, 'gateway', SpanKind.INTERNAL);
    const clientA = only(spans, 'a.observable', SpanKind.CLIENT);
    const serverA = only(spans, 'a.observable', SpanKind.SERVER);
    const clientB = only(spans, 'b.double', SpanKind.CLIENT);
    const serverB = only(spans, 'b.double', SpanKind.SERVER);
    const traceId = root.spanContext().traceId;
    for (const s of spans) expect(s.spanContext().traceId).toBe(traceId);
    expect(parentOf(clientA)).toBe(idOf(root));
    expect(parentOf(serverA)).toBe(idOf(clientA));
    expect(parentOf(clientB)).toBe(idOf(serverA));
    expect(parentOf(serverB)).toBe(idOf(clientB));
    expect(serverA.parentSpanContext?.isRemote).toBe(true);

    // What travelled: W3C trace context in the metadata B received, naming A's CLIENT span.
    expect(seenByB).toHaveLength(1);
    expect(seenByB[0].metadata?.traceparent).toBe(`00-${traceId}-${idOf(clientB)}-01`);

    expect(clientA.attributes).toEqual({
      'rpc.system': 'nest-wire',
      'rpc.system.name': 'nest-wire',
      'rpc.method': 'a.observable',
      'rpc.status_code': 'OK',
      'server.address': '127.0.0.1',
      'server.port': a.port,
      'network.peer.address': '127.0.0.1',
      'network.peer.port': a.port,
      'network.transport': 'tcp',
    });
    expect(serverB.attributes).toMatchObject({
      'rpc.system': 'nest-wire',
      'rpc.method': 'b.double',
      'rpc.status_code': 'OK',
      'network.peer.address': '127.0.0.1',
      'network.transport': 'tcp',
    });
    expect(serverB.attributes['network.peer.port']).toEqual(expect.any(Number));
    expect(clientB.attributes['server.port']).toBe(b.port);
    for (const s of spans) expect(s.status.code).toBe(SpanStatusCode.UNSET);
    expect(clientA.instrumentationScope).toMatchObject({ name: 'nest-wire', version: INSTRUMENTATION_VERSION });
    // Each side's span covers its part: the caller's starts first and ends last.
    expect(hrNanos(clientA.startTime)).toBeLessThanOrEqual(hrNanos(serverA.startTime));
    expect(hrNanos(serverB.endTime)).toBeLessThanOrEqual(hrNanos(clientB.endTime));
  });

  it('a handler that awaits a nested send() in a later turn continues the trace; a call without a parent starts one', async () => {
    expect(await firstValueFrom(gateway.send<number>('a.async', 5))).toBe(11);
    const spans = await finishedSpans();
    expect(spans).toHaveLength(4);
    const clientA = only(spans, 'a.async', SpanKind.CLIENT);
    const serverA = only(spans, 'a.async', SpanKind.SERVER);
    const clientB = only(spans, 'b.double', SpanKind.CLIENT);
    const serverB = only(spans, 'b.double', SpanKind.SERVER);
    expect(clientA.parentSpanContext).toBeUndefined();
    expect(parentOf(serverA)).toBe(idOf(clientA));
    expect(parentOf(clientB)).toBe(idOf(serverA));
    expect(parentOf(serverB)).toBe(idOf(clientB));
    expect(new Set(spans.map((s) => s.spanContext().traceId)).size).toBe(1);
  });

  it('streams: one span per call on each side, trace context propagated', async () => {
    expect(await lastValueFrom(gateway.send<number>('a.stream', 3).pipe(toArray()))).toEqual([1, 2, 3]);
    const spans = await finishedSpans();
    expect(spans).toHaveLength(4);
    const serverA = only(spans, 'a.stream', SpanKind.SERVER);
    const clientB = only(spans, 'b.count', SpanKind.CLIENT);
    const serverB = only(spans, 'b.count', SpanKind.SERVER);
    expect(parentOf(clientB)).toBe(idOf(serverA));
    expect(parentOf(serverB)).toBe(idOf(clientB));
    expect(seenByB[0].metadata?.traceparent).toBe(`00-${clientB.spanContext().traceId}-${idOf(clientB)}-01`);
  });

  it("an AsyncIterable resumed by the caller's CREDIT still runs inside its span", async () => {
    const paced = clientFor(a, { streamCredit: 2 });
    const values = await lastValueFrom(paced.send<number>('a.generate', 6).pipe(toArray()));
    paced.close();
    expect(values).toEqual([1, 2, 3, 4, 5, 12]);
    const spans = await finishedSpans();
    const serverA = only(spans, 'a.generate', SpanKind.SERVER);
    const clientB = only(spans, 'b.double', SpanKind.CLIENT);
    expect(parentOf(clientB)).toBe(idOf(serverA));
    expect(clientB.spanContext().traceId).toBe(serverA.spanContext().traceId);
  });

  it('events: PRODUCER → CONSUMER spans, trace context propagated in the event metadata', async () => {
    const received = new Promise<void>((resolve) => (auditReceived = resolve));
    await tracer.startActiveSpan('gateway', async (root) => {
      await lastValueFrom(gateway.emit('a.notify', { user: 7 }), { defaultValue: undefined });
      root.end();
    });
    await received;
    auditReceived = null;
    // Ordering barrier: a call through A and B after the event, so the event handlers have settled.
    await firstValueFrom(gateway.send('a.observable', 1));
    const spans = (await finishedSpans()).filter((s) => s.name !== 'a.observable' && s.name !== 'b.double');
    const root = only(spans, 'gateway', SpanKind.INTERNAL);
    const producerA = only(spans, 'a.notify', SpanKind.PRODUCER);
    const consumerA = only(spans, 'a.notify', SpanKind.CONSUMER);
    const producerB = only(spans, 'b.audit', SpanKind.PRODUCER);
    const consumerB = only(spans, 'b.audit', SpanKind.CONSUMER);
    expect(parentOf(producerA)).toBe(idOf(root));
    expect(parentOf(consumerA)).toBe(idOf(producerA));
    expect(parentOf(producerB)).toBe(idOf(consumerA));
    expect(parentOf(consumerB)).toBe(idOf(producerB));
    expect(producerA.attributes).toMatchObject({
      'rpc.method': 'a.notify',
      'server.port': a.port,
      'rpc.status_code': 'OK',
    });
    const audit = seenByB.find((s) => s.pattern === 'b.audit');
    expect(audit?.metadata?.traceparent).toBe(`00-${root.spanContext().traceId}-${idOf(producerB)}-01`);
  });

  it('a failed call (RpcException in B): ERROR status and code on every span of the chain; the end hook learns the error', async () => {
    await expect(firstValueFrom(gateway.send('a.fail', 1))).rejects.toEqual({
      status: 'error',
      message: 'Internal server error',
    });
    const spans = await finishedSpans();
    expect(spans).toHaveLength(4);
    const serverB = only(spans, 'b.fail', SpanKind.SERVER);
    const clientB = only(spans, 'b.fail', SpanKind.CLIENT);
    for (const s of [serverB, clientB]) {
      expect(s.status).toEqual({ code: SpanStatusCode.ERROR, message: 'bad input' });
      expect(s.attributes).toMatchObject({ 'rpc.status_code': 'APPLICATION', 'error.type': 'APPLICATION' });
    }
    for (const s of [only(spans, 'a.fail', SpanKind.SERVER), only(spans, 'a.fail', SpanKind.CLIENT)]) {
      expect(s.status).toEqual({ code: SpanStatusCode.ERROR, message: 'Internal server error' });
      expect(s.attributes['error.type']).toBe('APPLICATION');
    }
    // B's processing end hook (Nest's setOnProcessingEndHook) found the error in the context.
    expect(endHookSaw).toEqual([{ pattern: 'b.fail', error: { status: 400, message: 'bad input' } }]);
    await firstValueFrom(gateway.send('a.observable', 1));
    expect(endHookSaw[1]).toEqual({ pattern: 'b.double', error: undefined });
  });

  it('WIRE_NO_HANDLER: the caller span fails with the code; B records the request as _OTHER', async () => {
    await expect(firstValueFrom(gateway.send('a.missing', 1))).rejects.toMatchObject({
      message: 'Internal server error',
    });
    const spans = await finishedSpans();
    const clientB = only(spans, 'b.nothing', SpanKind.CLIENT);
    expect(clientB.status.code).toBe(SpanStatusCode.ERROR);
    expect(clientB.attributes).toMatchObject({ 'rpc.status_code': 'WIRE_NO_HANDLER', 'error.type': 'WIRE_NO_HANDLER' });
    const unhandled = only(spans, '_OTHER', SpanKind.SERVER);
    expect(parentOf(unhandled)).toBe(idOf(clientB));
    expect(unhandled.status.code).toBe(SpanStatusCode.ERROR);
    expect(unhandled.attributes).toMatchObject({
      'rpc.method': '_OTHER',
      'rpc.method_original': 'b.nothing',
      'rpc.status_code': 'WIRE_NO_HANDLER',
    });
    expect(only(spans, 'a.missing', SpanKind.SERVER).status.code).toBe(SpanStatusCode.ERROR);
  });

  it('a call the caller cancels ends the spans of the whole chain, without an error', async () => {
    const values: number[] = [];
    await new Promise<void>((resolve) => {
      const sub = gateway.send<number>('a.forever', 0).subscribe((v) => {
        values.push(v);
        if (values.length === 2) {
          sub.unsubscribe();
          resolve();
        }
      });
    });
    // Ordering barrier: a call after the CANCEL on the same connections (gateway → A, A → B),
    // so A and B have processed it and ended their spans.
    await firstValueFrom(gateway.send('a.observable', 1));
    const spans = await finishedSpans();
    const cancelled = [
      only(spans, 'a.forever', SpanKind.CLIENT),
      only(spans, 'a.forever', SpanKind.SERVER),
      only(spans, 'b.forever', SpanKind.CLIENT),
      only(spans, 'b.forever', SpanKind.SERVER),
    ];
    for (const span of cancelled) {
      expect(span.attributes['rpc.status_code']).toBe('WIRE_CANCELLED');
      expect(span.status.code).toBe(SpanStatusCode.UNSET);
    }
  });

  it('the dispatch hook and per-call metadata still travel, next to traceparent', async () => {
    const direct = clientFor(b);
    direct.setOnDispatchHook((packet) => {
      packet.metadata = { tenant: 'acme' };
    });
    await firstValueFrom(direct.send('b.double', 1, { metadata: { 'x-request-id': 'r1' } }));
    expect(seenByB[0].metadata).toEqual({
      tenant: 'acme',
      'x-request-id': 'r1',
      traceparent: expect.stringMatching(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/) as unknown,
    });
    direct.close();
  });

  it('registerInstrumentations with its own tracer provider; disable() stops the spans', async () => {
    const ownExporter = new InMemorySpanExporter();
    const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: ownExporter })] });
    const own = new WireInstrumentation({ enabled: false });
    const unregister = registerInstrumentations({ instrumentations: [own], tracerProvider: provider });
    try {
      await firstValueFrom(gateway.send('a.observable', 2));
      expect(
        ownExporter
          .getFinishedSpans()
          .map((s) => `${s.name}/${SpanKind[s.kind]}`)
          .sort(),
      ).toEqual(['a.observable/CLIENT', 'a.observable/SERVER', 'b.double/CLIENT', 'b.double/SERVER']);
      expect(await finishedSpans()).toEqual([]); // the SDK's instrumentation was replaced
    } finally {
      unregister(); // disables `own`
    }
    seenByB.length = 0;
    await firstValueFrom(gateway.send('a.observable', 3));
    const received = new Promise<void>((resolve) => (auditReceived = resolve));
    await lastValueFrom(gateway.emit('a.notify', {}), { defaultValue: undefined });
    await received;
    auditReceived = null;
    expect(await finishedSpans()).toEqual([]);
    expect(seenByB).toEqual([
      { pattern: 'b.double', metadata: undefined },
      { pattern: 'b.audit', metadata: undefined },
    ]);

    instrumentationOfSdk.enable();
    await firstValueFrom(gateway.send('a.observable', 4));
    expect(await finishedSpans()).toHaveLength(4);
    await provider.shutdown();
  });

  it('refuses an unknown option', () => {
    expect(() => new WireInstrumentation({ enabld: false } as never)).toThrow(
      /unknown WireInstrumentation option "enabld"/,
    );
    expect(() => new WireInstrumentation({ enabled: 'yes' } as never)).toThrow(/enabled must be a boolean/);
  });
});

function hrNanos([seconds, nanos]: [number, number]): number {
  return seconds * 1e9 + nanos;
}
