// A server in a process of its own for test/soak/push-stream-memory.soak.spec.ts: its RSS is
// measured without the test's own heap in the way.
//
// Usage: node --expose-gc --import ./test/helpers/ts-loader.mjs push-stream-server.ts <wire|tcp> '<WireServerOptions JSON>'
// Prints "PORT <n>" once listening. Reads commands on stdin, one per line:
//   reset -> full GC, then "RESET": the RSS now is the baseline; peaks are forgotten
//   stats -> "STATS <json>": rss, baselineRss, peakRss, maxRss, heapGrowth, externalGrowth (MiB), maxLagMs
// With PUSH_TRACE=1 it also writes its heap, external memory and RSS to stderr every 250 ms.
import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { MessagePattern, Payload, Transport } from '@nestjs/microservices';
import { createInterface } from 'node:readline';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { from, map, range, type Observable } from 'rxjs';
import { WireServer, type WireServerOptions } from '../../lib/index.js';

const MiB = 1024 * 1024;
const ROWS = 200_000;
/**
 * A value of 1 KiB (its text; about 1 035 bytes encoded). The text is a flat string, as one
 * read from a database or a file is: padStart() alone makes a rope, which V8 flattens into a
 * second 1 KiB string the first time it is encoded, and the loaded rows would keep both.
 */
const row = (i: number) => ({ i, text: Buffer.from(String(i).padStart(1024, '.'), 'latin1').toString('latin1') });
/** Rows the process already holds, as a service that streams a result set it has loaded. */
const LOADED = Array.from({ length: ROWS }, (_, i) => row(i));

@Controller()
class PushController {
  /** A synchronous Observable over rows the handler already holds. */
  @MessagePattern('rows')
  rows(): Observable<{ i: number; text: string }> {
    return from(LOADED);
  }

  /**
   * A fresh answer of 1 000 KiB, after a moment: a handler that builds a large result (under the
   * raw test peer's 1 MiB maxFrameSize, and a heap string: V8 makes larger ones external).
   */
  @MessagePattern('fresh.big')
  async freshBig(): Promise<string> {
    await new Promise((resolve) => setTimeout(resolve, 20));
    return Buffer.alloc(1000 * 1024, 'x').toString('latin1');
  }

  /** A synchronous Observable making a fresh 1 KiB value per emission. */
  @MessagePattern('range')
  range(@Payload() n: number): Observable<{ i: number; text: string }> {
    return range(0, n).pipe(map(row));
  }
}

@Module({ controllers: [PushController] })
class PushModule {}

async function main(): Promise<void> {
  const kind = process.argv[2];
  const options = JSON.parse(process.argv[3] ?? '{}') as WireServerOptions;
  let port: () => number;
  let inFlight = () => 0;
  let app;
  if (kind === 'wire') {
    const server = new WireServer({ host: '127.0.0.1', port: 0, ...options });
    app = await NestFactory.createMicroservice(PushModule, { strategy: server, logger: false });
    await app.listen();
    port = () => server.port;
    inFlight = () => server.counters().inFlight;
  } else {
    app = await NestFactory.createMicroservice(PushModule, {
      transport: Transport.TCP,
      options: { host: '127.0.0.1', port: 0 },
      logger: false,
    });
    await app.listen();
    const address = app.unwrap<{ address(): { port: number } }>().address();
    port = () => address.port;
  }
  const lag = monitorEventLoopDelay({ resolution: 5 });
  lag.enable();
  let baselineRss = process.memoryUsage().rss;
  let baselineHeap = 0;
  let baselineExternal = 0;
  let peakRss = 0;
  let peakHeap = 0;
  let peakExternal = 0;
  const sample = () => {
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakHeap = Math.max(peakHeap, m.heapUsed);
    peakExternal = Math.max(peakExternal, m.external);
  };
  setInterval(sample, 5).unref();
  if (process.env.PUSH_TRACE) {
    setInterval(() => {
      const m = process.memoryUsage();
      process.stderr.write(
        `t ${Math.round(performance.now())} heap ${(m.heapUsed / MiB).toFixed(0)} ext ${(m.external / MiB).toFixed(0)} rss ${(m.rss / MiB).toFixed(0)}\n`,
      );
    }, 250).unref();
  }
  const gc = (globalThis as { gc?: () => void }).gc;
  createInterface({ input: process.stdin }).on('line', (line) => {
    if (line === 'reset') {
      for (let i = 0; i < 3; i++) gc?.();
      const m = process.memoryUsage();
      baselineRss = m.rss;
      baselineHeap = m.heapUsed;
      baselineExternal = m.external;
      peakRss = baselineRss;
      peakHeap = baselineHeap;
      peakExternal = baselineExternal;
      lag.reset();
      process.stdout.write('RESET\n');
    } else if (line === 'stats') {
      sample();
      process.stdout.write(
        `STATS ${JSON.stringify({
          rss: process.memoryUsage().rss / MiB,
          baselineRss: baselineRss / MiB,
          peakRss: peakRss / MiB,
          // The kernel's high-water mark (also while the event loop was blocked and nothing sampled),
          // over the process's whole life: at startup too.
          maxRss: process.resourceUsage().maxRSS / 1024,
          heapGrowth: (peakHeap - baselineHeap) / MiB,
          externalGrowth: (peakExternal - baselineExternal) / MiB,
          maxLagMs: lag.max / 1e6,
          inFlight: inFlight(),
        })}\n`,
      );
    }
  });
  process.stdin.on('end', () => process.exit(0));
  process.stdout.write(`PORT ${port()}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(String((err as Error)?.stack ?? err));
  process.exit(1);
});
