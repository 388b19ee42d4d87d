// A nest-wire server in a process of its own, for the hardening tests: they attack it over
// real sockets and read its memory and event-loop figures, without their own heap in the way.
//
// Usage: node --import ./test/helpers/ts-loader.mjs [--max-old-space-size=N] target-server.ts '<WireServerOptions JSON>'
// Prints "PORT <n>" once listening. Reads commands on stdin, one per line:
//   stats  -> "STATS <json>": rss, heapUsed, peakRss, peakHeapUsed (MiB), maxLagMs, connections, inFlight
//   reset  -> forgets the peaks
import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { createInterface } from 'node:readline';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Observable } from 'rxjs';
import { WireServer, type WireServerOptions } from '../../lib/index.js';

const MiB = 1024 * 1024;
const ONE_MIB_TEXT = 'x'.repeat(MiB);
const VALUE_16K = Buffer.alloc(16 * 1024, 7);
/** How long `hold` keeps its input alive across an await. */
const HOLD_MS = 3000;

@Controller()
class TargetController {
  @MessagePattern('sum')
  sum(@Payload() data: number[]): number {
    return data.reduce((a, b) => a + b, 0);
  }

  @MessagePattern('echo')
  echo(@Payload() data: unknown): unknown {
    return data;
  }

  /** Keeps its input across an await, as many real handlers do. */
  @MessagePattern('hold')
  async hold(@Payload() data: unknown): Promise<number> {
    await new Promise((r) => setTimeout(r, HOLD_MS));
    return Array.isArray(data) ? data.length : 0;
  }

  /** A 1 MiB answer. */
  @MessagePattern('big')
  big(): string {
    return ONE_MIB_TEXT;
  }

  /** A request stream read slowly (1 ms per value): the caller's memory must stay bounded. */
  @MessagePattern('slow-count')
  async slowCount(@Payload() values: AsyncIterable<unknown>): Promise<number> {
    let n = 0;
    for await (const _ of values) {
      n++;
      await new Promise((r) => setTimeout(r, 1));
    }
    return n;
  }

  /** 16 KiB values for as long as the caller wants them. */
  @MessagePattern('flood')
  flood(): Observable<Buffer> {
    return new Observable<Buffer>((subscriber) => {
      let stopped = false;
      const tick = () => {
        if (stopped) return;
        for (let i = 0; i < 16 && !stopped; i++) subscriber.next(VALUE_16K);
        setImmediate(tick);
      };
      setImmediate(tick);
      return () => {
        stopped = true;
      };
    });
  }
}

@Module({ controllers: [TargetController] })
class TargetModule {}

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? '{}') as WireServerOptions;
  const server = new WireServer({ host: '127.0.0.1', port: 0, ...options });
  const app = await NestFactory.createMicroservice(TargetModule, { strategy: server, logger: false });
  server.on('connectionError', () => {});
  await app.listen();
  const lag = monitorEventLoopDelay({ resolution: 5 });
  lag.enable();
  let peakRss = 0;
  let peakHeap = 0;
  const sample = () => {
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakHeap = Math.max(peakHeap, m.heapUsed);
  };
  setInterval(sample, 10).unref();
  createInterface({ input: process.stdin }).on('line', (line) => {
    if (line === 'reset') {
      sample();
      peakRss = peakHeap = 0;
      lag.reset();
      sample();
      process.stdout.write('RESET\n');
    } else if (line === 'stats') {
      sample();
      const m = process.memoryUsage();
      const c = server.counters();
      process.stdout.write(
        `STATS ${JSON.stringify({
          rss: m.rss / MiB,
          heapUsed: m.heapUsed / MiB,
          peakRss: peakRss / MiB,
          peakHeapUsed: peakHeap / MiB,
          maxLagMs: lag.max / 1e6,
          connections: c.connections,
          inFlight: c.inFlight,
        })}\n`,
      );
    }
  });
  process.stdin.on('end', () => process.exit(0));
  process.stdout.write(`PORT ${server.port}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(String((err as Error)?.stack ?? err));
  process.exit(1);
});
