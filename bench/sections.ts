/**
 * The bench's sections besides the payload × in-flight matrix:
 *
 * - compression: nest-wire echoing a compressible 64 KiB payload, compression off /
 *   deflate / brotli (server and client configured alike), bytes on the wire per call;
 * - head-of-line: small-call latency alone, then while the same connection carries a
 *   stream of large (8 MiB) responses;
 * - stats cost: micro-measures of `stats()` / `counters()` and of the per-call upkeep;
 * - memory: heap per call held in flight, client and server.
 */
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { MsgpackCodec } from '../lib/index.js';
import {
  DISTURBED_LOAD,
  HOST,
  ensureServer,
  runCellWithRetries,
  formatUs,
  fmtLoad,
  type RetryBudget,
  type Timing,
} from './cell.js';
import { createClient, WireBenchClient, type BenchClient } from './clients.js';
import {
  fullGc,
  heapSample,
  machineBusyUs,
  makeJsonPayloads,
  makePayloads,
  TRANSPORT_LABEL,
  type HeapSample,
  type TransportName,
} from './common.js';
import { blobOf } from './echo.module.js';
import { LoadLoop, log, sleep, watch, watchDrain, withTimeout } from './loop.js';
import type {
  CompressionSection,
  HolResult,
  HolSection,
  LatencySummary,
  MemoryResult,
  MemorySection,
  StatsCostSection,
} from './report.js';
import { ServerProc } from './server-proc.js';

const HERE = dirname(fileURLToPath(import.meta.url)); // dist/bench

export interface SectionContext {
  timing: Timing;
  transports: TransportName[];
  taskset: string | null;
  budget: RetryBudget;
  /** The running servers of the matrix, by transport (restarted here if needed). */
  servers: Map<TransportName, ServerProc>;
}

// ---------------------------------------------------------------- compression

export const COMPRESSION_SIZE = 64 * 1024;
export const COMPRESSION_IN_FLIGHT = 16;
const ALGORITHMS = ['off', 'deflate', 'brotli'] as const;

export async function runCompression(ctx: SectionContext): Promise<CompressionSection> {
  const payloads = makeJsonPayloads(COMPRESSION_SIZE);
  const rows: CompressionSection['rows'] = [];
  for (const algorithm of ALGORITHMS) {
    const compression = algorithm === 'off' ? undefined : { algorithm };
    // A server child of its own per setting: the server compresses its responses only if configured.
    const server = new ServerProc('nest-wire', ctx.taskset, null, compression === undefined ? {} : { compression });
    try {
      await server.start();
      const label = `[compression] ${`${COMPRESSION_SIZE / 1024} KiB JSON`.padStart(12)} x ${COMPRESSION_IN_FLIGHT}  ${algorithm.padEnd(8)}`;
      const result = await runCellWithRetries(
        server,
        {
          size: COMPRESSION_SIZE,
          inFlight: COMPRESSION_IN_FLIGHT,
          payloads,
          wireOptions: compression === undefined ? {} : { compression },
        },
        ctx.timing,
        ctx.budget,
        label,
      );
      rows.push({ algorithm, result });
    } finally {
      await server.stop(server.dirty);
    }
  }
  return {
    size: COMPRESSION_SIZE,
    inFlight: COMPRESSION_IN_FLIGHT,
    msgpackBytes: new MsgpackCodec().encode(payloads[0]).length,
    rows,
  };
}

// ---------------------------------------------------------------- head-of-line

export const HOL_SMALL_SIZE = 128;
export const HOL_SMALL_IN_FLIGHT = 16;
export const HOL_BLOB_BYTES = 8 * 1024 * 1024;
export const HOL_BLOB_IN_FLIGHT = 2;
/** Transports of the head-of-line cells (raw is not needed: it has no large-response path of its own). */
const HOL_TRANSPORTS: TransportName[] = ['nest-wire', 'nest-tcp'];

/** Runs `loop` (and whatever else is running) for a window; null on a stall. */
async function window(
  loop: LoadLoop,
  server: ServerProc,
  ms: number,
  stallMs: number,
  others: LoadLoop[] = [],
): Promise<LatencySummary | null> {
  loop.resetWindow();
  for (const o of others) o.resetWindow();
  const s0 = await server.stats(stallMs);
  const c0 = process.cpuUsage();
  const m0 = machineBusyUs();
  const t0 = performance.now();
  if ((await watch(loop, ms, stallMs)) === 'stall') return null;
  const seconds = (performance.now() - t0) / 1000;
  const c1 = process.cpuUsage(c0);
  const m1 = machineBusyUs();
  const s1 = await server.stats(stallMs);
  const clientUs = c1.user + c1.system;
  const serverUs = s1.cpu.user + s1.cpu.system - (s0.cpu.user + s0.cpu.system);
  const otherLoad = m0 !== null && m1 !== null ? Math.max(0, m1 - m0 - clientUs - serverUs) / (seconds * 1e6) : NaN;
  return {
    calls: loop.completed,
    rps: loop.completed / seconds,
    p50Us: loop.hist.percentile(0.5),
    p99Us: loop.hist.percentile(0.99),
    maxUs: loop.hist.count > 0 ? loop.hist.max : NaN,
    clientCores: clientUs / (seconds * 1e6),
    serverCores: serverUs / (seconds * 1e6),
    otherLoad,
  };
}

async function runHolCell(server: ServerProc, ctx: SectionContext, stallMs: number): Promise<HolResult> {
  try {
    return await holCell(server, ctx, stallMs);
  } catch (err) {
    server.dirty = true;
    return {
      transport: server.transport,
      status: 'failed',
      note: (err as Error).message,
      alone: null,
      withBlobs: null,
      blobs: null,
      errors: 0,
      firstError: null,
    };
  }
}

async function holCell(server: ServerProc, ctx: SectionContext, stallMs: number): Promise<HolResult> {
  const t = server.transport;
  const payloads = makePayloads(HOL_SMALL_SIZE);
  const expectedBlob = blobOf(HOL_BLOB_BYTES);
  const result: HolResult = {
    transport: t,
    status: 'ok',
    note: null,
    alone: null,
    withBlobs: null,
    blobs: null,
    errors: 0,
    firstError: null,
  };
  // poolSize 1 (the default, stated): small calls and large responses share one connection.
  const client = createClient(t, HOST, server.port, payloads, { poolSize: 1 });
  const small = new LoadLoop((k, done) => client.call(k, done), HOL_SMALL_IN_FLIGHT, payloads.length);
  const blobs = new LoadLoop(
    (_k, done) => client.request('blob', HOL_BLOB_BYTES, expectedBlob, done),
    HOL_BLOB_IN_FLIGHT,
    1,
  );
  const finish = (status: HolResult['status'], note: string | null): HolResult => {
    small.finish();
    blobs.finish();
    client.destroy();
    if (status !== 'ok') server.dirty = true;
    result.status = status;
    result.note = note;
    result.errors = small.totalErrors + blobs.totalErrors;
    result.firstError = small.firstError ?? blobs.firstError;
    return result;
  };
  try {
    await withTimeout(client.connect(), 5000, 'connect');
  } catch (err) {
    return finish('failed', `connect failed: ${(err as Error).message}`);
  }
  try {
    return await holWindows(server, ctx, stallMs, result, small, blobs, finish);
  } catch (err) {
    return finish('failed', (err as Error).message);
  }
}

async function holWindows(
  server: ServerProc,
  ctx: SectionContext,
  stallMs: number,
  result: HolResult,
  small: LoadLoop,
  blobs: LoadLoop,
  finish: (status: HolResult['status'], note: string | null) => HolResult,
): Promise<HolResult> {
  const { warmupMs, durationMs } = ctx.timing;
  small.start();
  if ((await watch(small, warmupMs, stallMs)) === 'stall')
    return finish('hang', `small calls alone: no response for ${stallMs} ms during warm-up`);
  result.alone = await window(small, server, durationMs, stallMs);
  if (result.alone === null) return finish('hang', `small calls alone: no response for ${stallMs} ms`);

  // The large responses join on the same connection; the window starts once one has arrived.
  blobs.start();
  const warmEnd = performance.now() + Math.max(warmupMs, 200);
  while (performance.now() < warmEnd || blobs.completed + blobs.totalErrors === 0) {
    await sleep(20);
    const now = performance.now();
    if (small.outstanding > 0 && now - small.lastProgress > stallMs) {
      return finish(
        'hang',
        `small calls stopped for ${stallMs} ms once the ${HOL_BLOB_BYTES / 1048576} MiB responses started`,
      );
    }
    if (blobs.completed + blobs.totalErrors === 0 && now - blobs.lastProgress > stallMs) {
      return finish('hang', `no ${HOL_BLOB_BYTES / 1048576} MiB response within ${stallMs} ms`);
    }
  }
  result.withBlobs = await window(small, server, durationMs, stallMs, [blobs]);
  if (result.withBlobs === null)
    return finish('hang', `small calls stopped for ${stallMs} ms while the large responses streamed`);
  const seconds = durationMs / 1000;
  result.blobs = {
    completed: blobs.completed,
    mibPerSec: (blobs.completed * HOL_BLOB_BYTES) / 1048576 / seconds,
    p50Us: blobs.hist.percentile(0.5),
    maxUs: blobs.hist.count > 0 ? blobs.hist.max : NaN,
  };
  small.stop();
  blobs.stop();
  const [d1, d2] = await Promise.all([watchDrain(small, stallMs), watchDrain(blobs, stallMs)]);
  if (d1 !== 'ok' || d2 !== 'ok')
    return finish('hang', `calls did not come back after the window (small: ${d1}, large: ${d2})`);
  const note = blobs.completed === 0 ? `no ${HOL_BLOB_BYTES / 1048576} MiB response completed within the window` : null;
  return finish('ok', note);
}

export async function runHeadOfLine(ctx: SectionContext): Promise<HolSection> {
  const stallMs = Math.max(ctx.timing.stallMs * 3, 6000);
  const rows: HolResult[] = [];
  for (const t of HOL_TRANSPORTS.filter((x) => ctx.transports.includes(x))) {
    const server = ctx.servers.get(t)!;
    await ensureServer(server);
    let r = await runHolCell(server, ctx, stallMs);
    log(`[head-of-line] ${TRANSPORT_LABEL[t].padEnd(10)} ${describeHol(r)}`);
    // Disturbed by other processes: measure again (within the run's budget), keep the quieter run.
    for (
      let attempt = 1;
      attempt <= 2 && r.status === 'ok' && holLoad(r) > DISTURBED_LOAD && ctx.budget.left > 0;
      attempt++
    ) {
      ctx.budget.left--;
      ctx.budget.used++;
      await sleep(500);
      await ensureServer(server, false);
      const again = await runHolCell(server, ctx, stallMs);
      log(`[head-of-line] ${'(again)'.padEnd(10)} ${describeHol(again)}`);
      if (again.status === 'ok' && holLoad(again) < holLoad(r)) r = again;
    }
    rows.push(r);
    await sleep(50);
  }
  return {
    smallSize: HOL_SMALL_SIZE,
    smallInFlight: HOL_SMALL_IN_FLIGHT,
    blobBytes: HOL_BLOB_BYTES,
    blobInFlight: HOL_BLOB_IN_FLIGHT,
    stallMs,
    rows,
  };
}

/** The larger other load of the two windows. */
function holLoad(r: HolResult): number {
  return Math.max(r.alone?.otherLoad ?? 0, r.withBlobs?.otherLoad ?? 0);
}

function describeHol(r: HolResult): string {
  const s = (x: LatencySummary | null) =>
    x === null
      ? '–'
      : `${Math.round(x.rps).toLocaleString('en-US')} req/s p50 ${formatUs(x.p50Us)} p99 ${formatUs(x.p99Us)} max ${formatUs(x.maxUs)} (busy: client ${x.clientCores.toFixed(2)}, server ${x.serverCores.toFixed(2)} cores; other load ${fmtLoad(x.otherLoad)})`;
  const b =
    r.blobs === null
      ? ''
      : `; ${r.blobs.completed} large responses (${r.blobs.mibPerSec.toFixed(0)} MiB/s, p50 ${formatUs(r.blobs.p50Us)})`;
  const e = r.errors > 0 ? `; ${r.errors} errors (${r.firstError})` : '';
  return `${r.status === 'ok' ? '' : `${r.status.toUpperCase()}: ${r.note} | `}alone: ${s(r.alone)} | with large responses: ${s(r.withBlobs)}${b}${e}`;
}

// ---------------------------------------------------------------- stats cost

export async function runStatsCost(ctx: SectionContext, iterations: number): Promise<StatsCostSection> {
  const out: StatsCostSection = {
    iterations,
    batches: STATS_BATCHES,
    clientStatsUs: null,
    clientCountersUs: null,
    serverStatsUs: null,
    upkeepNs: null,
    note: null,
  };
  const server = ctx.servers.get('nest-wire');
  if (server === undefined) {
    out.note = 'nest-wire not among the transports of this run';
    return out;
  }
  await ensureServer(server);
  const payloads = makePayloads(128);
  const bench = new WireBenchClient(HOST, server.port, payloads);
  try {
    await withTimeout(bench.connect(), 5000, 'connect');
    // Some traffic first, so the histograms and counters hold data.
    const loop = new LoadLoop((k, done) => bench.call(k, done), 16, payloads.length);
    loop.start();
    await watch(loop, 300, ctx.timing.stallMs);
    loop.stop();
    await watchDrain(loop, ctx.timing.stallMs);
    loop.finish();
    const client = bench.client;
    let sink = 0;
    // The median of several batches: one GC pause inside a batch of microsecond calls would dominate its mean.
    const time = (fn: () => number): number => {
      for (let i = 0; i < 1000; i++) sink += fn(); // warm-up
      const perCall: number[] = [];
      for (let batch = 0; batch < STATS_BATCHES; batch++) {
        const t0 = performance.now();
        for (let i = 0; i < iterations; i++) sink += fn();
        perCall.push(((performance.now() - t0) * 1000) / iterations);
      }
      return median(perCall);
    };
    out.clientStatsUs = time(() => client.stats().calls.started);
    out.clientCountersUs = time(() => client.counters().writes);
    if (sink < 0) out.note = 'impossible';
    out.serverStatsUs = await server.statsCost(iterations, STATS_BATCHES, 30_000);
  } catch (err) {
    out.note = `failed: ${(err as Error).message}`;
  } finally {
    bench.destroy();
  }
  out.upkeepNs = await upkeepNs();
  log(
    `[stats cost] stats() client ${fmtUsFine(out.clientStatsUs)}, server ${fmtUsFine(out.serverStatsUs)}; counters() client ${fmtUsFine(out.clientCountersUs)}; ` +
      `per-call upkeep (CallStats.settled) ${out.upkeepNs === null ? '?' : `${out.upkeepNs.toFixed(0)} ns`}${out.note ? ` (${out.note})` : ''}`,
  );
  return out;
}

/** Batches of the stats() micro-measures (the median batch is reported). */
export const STATS_BATCHES = 5;

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

export function fmtUsFine(us: number | null): string {
  return us === null || !Number.isFinite(us) ? '–' : us < 10 ? `${us.toFixed(2)} µs` : formatUs(us);
}

/**
 * The always-on per-call bookkeeping, in isolation: `CallStats.settled()` (a counter, a
 * `performance.now()` and a histogram record) timed over a million calls. The class is
 * internal: it is loaded from the compiled library by path, and null is returned if it
 * moved or changed shape.
 */
async function upkeepNs(): Promise<number | null> {
  try {
    const url = pathToFileURL(join(HERE, '..', 'lib', 'stats', 'call-stats.js')).href;
    const mod = (await import(url)) as {
      CallStats?: new () => { started: number; settled(startedAt: number, outcome: null): void };
    };
    if (typeof mod.CallStats !== 'function') return null;
    const stats = new mod.CallStats();
    const n = 200_000;
    const run = (count: number) => {
      for (let i = 0; i < count; i++) {
        stats.started++;
        stats.settled(performance.now() - 0.1, null);
      }
    };
    run(50_000); // warm-up
    const perCall: number[] = [];
    for (let batch = 0; batch < STATS_BATCHES; batch++) {
      const t0 = performance.now();
      run(n);
      // Minus the caller's own performance.now() of the loop above.
      const t1 = performance.now();
      for (let i = 0; i < n; i++) stats.started += performance.now() > 0 ? 0 : 1;
      const t2 = performance.now();
      perCall.push(Math.max(0, ((t1 - t0 - (t2 - t1)) * 1e6) / n));
    }
    return median(perCall);
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------- memory

/** Full GC in this process: `--expose-gc` set at run time, `gc` taken from a fresh context. */
let clientGc: (() => void) | null | undefined;
export function getClientGc(): (() => void) | null {
  if (clientGc !== undefined) return clientGc;
  try {
    const gc = globalThis.gc;
    if (typeof gc === 'function') clientGc = () => void gc();
    else {
      setFlagsFromString('--expose-gc');
      clientGc = runInNewContext('gc') as () => void;
    }
  } catch {
    clientGc = null;
  }
  return clientGc;
}

/** Transports of the memory cells (the raw client holds no per-call state worth measuring). */
const MEMORY_TRANSPORTS: TransportName[] = ['nest-wire', 'nest-tcp'];

function perCall(a: HeapSample | null, b: HeapSample | null, n: number): { heap: number; external: number } | null {
  if (a === null || b === null) return null;
  return { heap: (b.heapUsed - a.heapUsed) / n, external: (b.external - a.external) / n };
}

async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (performance.now() > end) throw new Error(`${what} (waited ${timeoutMs} ms)`);
    await sleep(20);
  }
}

/** Issues `n` hold calls; returns a tracker of how many came back, and how many failed. */
function holdCalls(client: BenchClient, n: number): { done: number; errors: number; firstError: string | null } {
  const state = { done: 0, errors: 0, firstError: null as string | null };
  for (let i = 0; i < n; i++) {
    client.request('hold', 0, 'held', (ok, err) => {
      state.done++;
      if (!ok) {
        state.errors++;
        state.firstError ??= err instanceof Error ? err.message : String(err);
      }
    });
  }
  return state;
}

async function runMemoryCell(t: TransportName, n: number, ctx: SectionContext): Promise<MemoryResult> {
  const result: MemoryResult = {
    transport: t,
    status: 'ok',
    note: null,
    n,
    client: null,
    server: null,
    clientAfter: null,
    serverAfter: null,
    errors: 0,
    firstError: null,
  };
  const gc = getClientGc();
  // The server must run all n at once (its default is 1 024 per connection; past it the
  // client would queue them instead), and the client must accept n pending calls.
  const server = new ServerProc(t, ctx.taskset, null, t === 'nest-wire' ? { maxInFlightPerConnection: n } : {});
  let released = false;
  try {
    await server.start();
    const real = createClient(t, HOST, server.port, makePayloads(128), { maxPendingCalls: n, poolSize: 1 });
    try {
      await withTimeout(real.connect(), 5000, 'connect');
      // Warm-up: the code paths of echo and hold, on a small scale.
      for (let round = 0; round < 3; round++) {
        const w = holdCalls(real, 64);
        await waitFor(
          async () => (await server.stats(5000)).held >= 64,
          10_000,
          'warm-up hold calls did not all arrive',
        );
        server.release();
        await waitFor(() => w.done === 64, 10_000, 'warm-up hold calls did not come back');
      }
      fullGc(gc);
      const clientBase = gc !== null ? heapSample() : null;
      const serverBase = (await server.heap(10_000)).heap;

      const calls = holdCalls(real, n);
      await waitFor(
        async () => (await server.stats(5000)).held >= n || calls.done > 0,
        30_000,
        `${n} hold calls did not all reach the handler`,
      );
      if (calls.done > 0)
        throw new Error(`${calls.errors} of the hold calls failed before release: ${calls.firstError}`);
      fullGc(gc);
      const clientWith = gc !== null ? heapSample() : null;
      const serverWith = (await server.heap(10_000)).heap;

      server.release();
      released = true;
      await waitFor(() => calls.done === n, 30_000, `not all ${n} hold calls came back after release (${calls.done})`);
      await sleep(50);
      fullGc(gc);
      const clientAfter = gc !== null ? heapSample() : null;
      const serverAfter = (await server.heap(10_000)).heap;

      result.client = perCall(clientBase, clientWith, n);
      result.server = perCall(serverBase, serverWith, n);
      result.clientAfter = perCall(clientBase, clientAfter, n);
      result.serverAfter = perCall(serverBase, serverAfter, n);
      result.errors = calls.errors;
      result.firstError = calls.firstError;
      if (gc === null) result.note = 'no gc() in the bench process: client side not measured';
    } finally {
      if (!released) server.release();
      real.destroy();
    }
  } catch (err) {
    result.status = 'failed';
    result.note = (err as Error).message;
  } finally {
    await server.stop(result.status !== 'ok');
  }
  return result;
}

export async function runMemory(ctx: SectionContext, n: number): Promise<MemorySection> {
  const rows: MemoryResult[] = [];
  for (const t of MEMORY_TRANSPORTS.filter((x) => ctx.transports.includes(x))) {
    const r = await runMemoryCell(t, n, ctx);
    rows.push(r);
    const f = (x: { heap: number; external: number } | null) =>
      x === null ? '–' : `${Math.round(x.heap)} B heap + ${Math.round(x.external)} B external`;
    log(
      `[memory] ${TRANSPORT_LABEL[t].padEnd(10)} ${n} calls in flight: ${r.status === 'ok' ? '' : `FAILED: ${r.note} | `}` +
        `per call client ${f(r.client)}, server ${f(r.server)}; left after completion: client ${f(r.clientAfter)}, server ${f(r.serverAfter)}` +
        `${r.errors > 0 ? `; ${r.errors} errors (${r.firstError})` : ''}`,
    );
  }
  return { n, gcClient: getClientGc() !== null, rows };
}
