/**
 * Tail latency with one slow server, without and with hedging; retries under overload;
 * outlier ejection timings. `npm run bench:tail` (or `tsc -p bench/tsconfig.json && node
 * dist/bench/tail-latency.js [calls]`). Three Nest apps with WireServer and one WireClient,
 * all in this process on loopback: absolute figures include the servers' work on the same
 * event loop; compare the rows with each other, not with other tables.
 */
import 'reflect-metadata';
import { Catch, Controller, Module, UseFilters, type RpcExceptionFilter } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import { firstValueFrom, throwError, type Observable } from 'rxjs';
import type { INestMicroservice } from '@nestjs/common';
import { WireClient, WireContext, WireOverloadedError, WireServer, type WireClientOptions } from '../lib/index.js';
import { Histogram } from './histogram.js';

class Behaviour {
  total = 0;
  stalled = 0;
  overloaded = false;
  /** Every `stallEvery`-th call this server receives waits `stallMs` (0: never). */
  stallEvery = 0;
  stallMs = 500;
}

@Catch(WireOverloadedError)
class PassOverloaded implements RpcExceptionFilter<WireOverloadedError> {
  catch(err: WireOverloadedError): Observable<never> {
    return throwError(() => err);
  }
}

function moduleFor(b: Behaviour): unknown {
  @Controller()
  @UseFilters(new PassOverloaded())
  class Work {
    @MessagePattern('work')
    async work(@Payload() id: number, @Ctx() ctx: WireContext): Promise<number> {
      const n = ++b.total;
      if (b.overloaded) throw new WireOverloadedError('overloaded');
      if (b.stallEvery > 0 && n % b.stallEvery === 0) {
        b.stalled++;
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, b.stallMs);
          ctx.getSignal().addEventListener('abort', () => (clearTimeout(t), resolve()));
        });
      }
      return id;
    }
  }
  @Module({ controllers: [Work] })
  class WorkModule {}
  return WorkModule;
}

interface Member {
  b: Behaviour;
  app: INestMicroservice;
  endpoint: string;
}

async function startFleet(n: number): Promise<Member[]> {
  const fleet: Member[] = [];
  for (let i = 0; i < n; i++) {
    const b = new Behaviour();
    const server = new WireServer({ host: '127.0.0.1', port: 0 });
    const app = await NestFactory.createMicroservice(moduleFor(b) as never, { strategy: server, logger: false });
    await app.listen();
    fleet.push({ b, app, endpoint: `127.0.0.1:${server.port}` });
  }
  return fleet;
}

async function clientFor(fleet: Member[], options: WireClientOptions): Promise<WireClient> {
  const client = new WireClient({ servers: fleet.map((m) => m.endpoint), ...options });
  await client.connect();
  while (client.stats().endpoints.some((e) => e.state !== 'ready')) await new Promise((r) => setTimeout(r, 5));
  return client;
}

const ms = (us: number) => (us / 1000).toFixed(1);

async function closedLoop(client: WireClient, calls: number, concurrency: number): Promise<Histogram> {
  const h = new Histogram();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < calls) {
        const id = next++;
        const t0 = performance.now();
        await firstValueFrom(client.send('work', id));
        h.record((performance.now() - t0) * 1000);
      }
    }),
  );
  return h;
}

/** `calls` calls started at `perSecond` (open loop: a slow call delays no other start). */
async function openLoop(client: WireClient, calls: number, perSecond: number): Promise<Histogram> {
  const h = new Histogram();
  const done: Promise<void>[] = [];
  const t0 = performance.now();
  let started = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const due = Math.min(calls, Math.floor(((performance.now() - t0) / 1000) * perSecond));
      for (; started < due; started++) {
        const s = performance.now();
        done.push(firstValueFrom(client.send('work', started)).then(() => h.record((performance.now() - s) * 1000)));
      }
      if (started >= calls) resolve(clearInterval(timer));
    }, 2);
  });
  await Promise.all(done);
  return h;
}

async function tail(fleet: Member[], calls: number, load: 'closed' | 'open', stallEvery: number): Promise<void> {
  const how = load === 'closed' ? '16 at a time (closed loop)' : 'started at 500/s (open loop)';
  const share = `${Math.round(100 / stallEvery)} %`;
  console.log(
    `\n### One slow server: b stalls every ${stallEvery}th call it gets (${share}) by 500 ms; ${calls} calls, ${how}\n`,
  );
  console.log(
    '| client | p50 ms | p99 ms | p99.9 ms | max ms | calls stalled on b (of all calls) | hedges | hedge wins | extra calls |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|');
  const modes: [string, WireClientOptions][] = [
    ['no hedging', { idempotent: ['work'] }],
    ['hedge: { delayMs: 20 }', { idempotent: ['work'], hedge: { delayMs: 20 } }],
    ["hedge: { delayMs: 'p95' }", { idempotent: ['work'], hedge: { delayMs: 'p95' } }],
  ];
  fleet[1].b.stallEvery = stallEvery;
  for (const [name, options] of modes) {
    const client = await clientFor(fleet, options);
    await closedLoop(client, 300, 16); // warm-up (and the p95 samples)
    const before = fleet.reduce((s, m) => s + m.b.total, 0);
    const stalled0 = fleet[1].b.stalled;
    const s0 = client.stats().calls;
    const h = load === 'closed' ? await closedLoop(client, calls, 16) : await openLoop(client, calls, 500);
    const s1 = client.stats().calls;
    const runs = fleet.reduce((s, m) => s + m.b.total, 0) - before;
    const hedges = s1.hedges - s0.hedges;
    console.log(
      `| ${name} | ${ms(h.percentile(0.5))} | ${ms(h.percentile(0.99))} | ${ms(h.percentile(0.999))} | ${ms(h.max)} | ${fleet[1].b.stalled - stalled0} (${(((fleet[1].b.stalled - stalled0) / calls) * 100).toFixed(1)} %) | ${hedges} | ${s1.hedgeWins - s0.hedgeWins} | ${(((runs - calls) / calls) * 100).toFixed(1)} % |`,
    );
    client.close();
  }
  fleet[1].b.stallEvery = 0;
}

async function budget(fleet: Member[]): Promise<void> {
  console.log('\n### Retry budget: ~500 calls/s, 1 s healthy, then every server answers WIRE_OVERLOADED for 2 s\n');
  const client = await clientFor(fleet, { idempotent: ['work'], timeout: 5000 });
  const failLatency = new Histogram();
  const results: Promise<void>[] = [];
  let failed = 0;
  let id = 0;
  const before = fleet.reduce((s, m) => s + m.b.total, 0);
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const t = performance.now() - t0;
      for (const m of fleet) m.b.overloaded = t >= 1000;
      if (t >= 3000) return resolve(clearInterval(timer));
      for (let k = 0; k < 5; k++) {
        const start = performance.now();
        results.push(
          firstValueFrom(client.send('work', id++)).then(
            () => {},
            () => {
              failed++;
              failLatency.record((performance.now() - start) * 1000);
            },
          ),
        );
      }
    }, 10);
  });
  await Promise.all(results);
  for (const m of fleet) m.b.overloaded = false;
  const seconds = (performance.now() - t0) / 1000;
  const retries = fleet.reduce((s, m) => s + m.b.total, 0) - before - id;
  const stats = client.stats().calls;
  console.log(
    '| calls | seconds | retries (counted on the servers) | bound: 20 % of calls + 10/s | budget exhausted | failed | failed-call p50 / p99 ms |',
  );
  console.log('|---|---|---|---|---|---|---|');
  console.log(
    `| ${id} | ${seconds.toFixed(1)} | ${retries} | ${Math.floor(0.2 * id + 10 * Math.ceil(seconds))} | ${stats.retryBudgetExhausted} | ${failed} | ${ms(failLatency.percentile(0.5))} / ${ms(failLatency.percentile(0.99))} |`,
  );
  client.close();
}

async function ejection(fleet: Member[]): Promise<void> {
  console.log(
    '\n### Outlier ejection: b answers WIRE_OVERLOADED to everything (consecutiveFailures 5, baseEjectionMs 1 000)\n',
  );
  const client = await clientFor(fleet, { outlierDetection: { consecutiveFailures: 5, baseEjectionMs: 1000 } });
  const b = fleet[1];
  const ep = () => client.stats().endpoints.find((e) => e.endpoint === b.endpoint)!;
  b.b.overloaded = true;
  const t0 = performance.now();
  const total0 = b.b.total;
  let id = 0;
  while (!ep().ejected) await firstValueFrom(client.send('work', id++)).catch(() => {});
  const toEject = performance.now() - t0;
  const ejectedAt = Date.now();
  const failuresOnB = b.b.total - total0;
  b.b.overloaded = false;
  const recovered = performance.now();
  const until = ep().ejectedUntil ?? 0;
  while (ep().ejected) {
    await firstValueFrom(client.send('work', id++));
    await new Promise((r) => setTimeout(r, 2));
  }
  const back = performance.now() - recovered;
  console.log(
    '| calls until ejected | of them on b (all failed) | time to ejection ms | ejection time (ejectedUntil − moment seen ejected) ms | b recovers → back in rotation (PING answered) ms |',
  );
  console.log('|---|---|---|---|---|');
  console.log(`| ${id} | ${failuresOnB} | ${toEject.toFixed(1)} | ${until - ejectedAt} | ${back.toFixed(0)} |`);
  client.close();
}

async function main(): Promise<void> {
  const calls = Number(process.argv[2] ?? 4000);
  const fleet = await startFleet(3);
  try {
    await tail(fleet, calls, 'closed', 20);
    await tail(fleet, calls, 'open', 20);
    // Stalls frequent enough to reach p99 (about 5 % of all calls, as b gets a third of them at most).
    await tail(fleet, calls, 'open', 4);
    await budget(fleet);
    await ejection(fleet);
  } finally {
    for (const m of fleet) await m.app.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
