/**
 * What tracing costs per call: one client and one server in this process, 128-byte
 * echo calls, 64 in flight, rounds alternating between
 *   off     no instrumentation enabled (the hot path reads one property per call),
 *   noop    WireInstrumentation enabled, no SDK (non-recording spans, no propagator),
 *   sdk     WireInstrumentation enabled with a tracer provider, W3C propagation, the
 *           AsyncLocalStorage context manager and a batch processor feeding an in-memory
 *           exporter (every span recorded and exported), as an application would run.
 * Prints calls/s and CPU µs per call (client + server, one process) per mode, median of
 * the rounds. On a loaded machine compare the modes with each other, not across runs.
 *
 *   tsc -p bench/tsconfig.json && node dist/bench/instrumentation-cost.js [--calls=20000] [--rounds=5] [--modes=off,noop,sdk]
 */
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { context, propagation } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BatchSpanProcessor, InMemorySpanExporter, TracerProvider } from '@opentelemetry/sdk-trace';
import { firstValueFrom } from 'rxjs';
import { WireClient, WireServer } from '../lib/index.js';
import { WireInstrumentation } from '../lib/opentelemetry/index.js';
import { EchoController } from './echo.module.js';

@Module({ controllers: [EchoController] })
class EchoModule {}

type Mode = 'off' | 'noop' | 'sdk';

function flag(name: string, fallback: number): number {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  return arg === undefined ? fallback : Number(arg.slice(name.length + 3));
}

async function run(client: WireClient, calls: number, inFlight: number, payload: string): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < calls) {
      next++;
      await firstValueFrom(client.send('echo', payload));
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
}

async function main(): Promise<void> {
  const calls = flag('calls', 20000);
  const rounds = flag('rounds', 5);
  const modesArg = process.argv.find((a) => a.startsWith('--modes='));
  const modes = (modesArg === undefined ? ['off', 'noop', 'sdk'] : modesArg.slice(8).split(',')) as Mode[];
  const payload = 'x'.repeat(128);
  const server = new WireServer({ host: '127.0.0.1', port: 0 });
  const app = await NestFactory.createMicroservice(EchoModule, { strategy: server, logger: false });
  await app.listen();
  const client = new WireClient({ host: '127.0.0.1', port: server.port });
  await client.connect();

  const exporter = new InMemorySpanExporter();
  const processor = new BatchSpanProcessor({ exporter, maxQueueSize: 1 << 20, maxExportBatchSize: 512 });
  const provider = new TracerProvider({ spanProcessors: [processor] });
  const noop = new WireInstrumentation({ enabled: false });
  const sdk = new WireInstrumentation({ enabled: false });
  sdk.setTracerProvider(provider);
  const contextManager = new AsyncLocalStorageContextManager().enable();

  const setMode = (mode: Mode) => {
    noop.disable();
    sdk.disable();
    context.disable();
    propagation.disable();
    if (mode === 'noop') noop.enable();
    if (mode === 'sdk') {
      context.setGlobalContextManager(contextManager);
      propagation.setGlobalPropagator(new W3CTraceContextPropagator());
      sdk.enable();
    }
  };

  const results: Record<Mode, { rate: number; cpu: number }[]> = { off: [], noop: [], sdk: [] };
  await run(client, calls, 64, payload); // warm-up
  for (let r = 0; r < rounds; r++) {
    for (const mode of modes) {
      setMode(mode);
      exporter.reset();
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await run(client, calls, 64, payload);
      const ms = performance.now() - t0;
      if (mode === 'sdk') await processor.forceFlush(); // the export is part of the cost
      const cpu = process.cpuUsage(cpu0);
      if (mode === 'sdk' && exporter.getFinishedSpans().length !== 2 * calls) {
        throw new Error(`expected ${2 * calls} spans, got ${exporter.getFinishedSpans().length}`);
      }
      results[mode].push({ rate: (calls / ms) * 1000, cpu: (cpu.user + cpu.system) / calls });
    }
  }
  setMode('off');
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  const base = results.off.length > 0 ? median(results.off.map((x) => x.cpu)) : NaN;
  console.log(
    `${calls} calls x ${rounds} rounds, 128 B, 64 in flight, client and server in one process (median of rounds)`,
  );
  for (const mode of modes) {
    const rate = median(results[mode].map((x) => x.rate));
    const cpu = median(results[mode].map((x) => x.cpu));
    const delta = mode === 'off' ? '' : `  (+${(cpu - base).toFixed(1)} µs, ${((cpu / base - 1) * 100).toFixed(0)} %)`;
    console.log(
      `${mode.padEnd(5)} ${Math.round(rate).toLocaleString('en-US').padStart(8)} calls/s  ${cpu.toFixed(1).padStart(6)} µs CPU/call${delta}`,
    );
  }
  client.close();
  await app.close();
  await provider.shutdown();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
