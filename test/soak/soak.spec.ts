import 'reflect-metadata';
import type { Socket } from 'node:net';
import { take, type Observable } from 'rxjs';
import { WireClient, WireError } from '../../lib/index.js';
import { startWireApp, type RunningServer } from '../helpers/apps.js';
import { prng } from '../helpers/fuzz.js';
import { settledHeap } from '../helpers/gc.js';
import { TestAppModule } from '../helpers/test-app.js';
import { pause, waitFor } from '../helpers/wait.js';

/**
 * Soak: SOAK_CALLS calls (default 20 000; `npm run soak` runs 1 000 000, `.ci/run` 20 000)
 * through one client, SOAK_CONCURRENCY (256) in flight, a mix of echoes from 16 B to
 * 64 KiB, streams, timeouts, cancellations (unsubscribe before, right after and well
 * after writing; `take(n)` on an endless stream), application errors and empty results.
 * Every answer is checked. Afterwards every table, timer and listener must be back where
 * it started, and the heap after a forced GC within HEAP_BOUND_BYTES of where it started.
 */

const CALLS = envInt('SOAK_CALLS', 20_000);
const CONCURRENCY = envInt('SOAK_CONCURRENCY', 256);
const WARMUP_CALLS = Math.min(5_000, Math.max(1_000, Math.floor(CALLS / 20)));
/** Largest growth of the settled heap accepted across the run. */
const HEAP_BOUND_BYTES = 8 * 1024 * 1024;
/** No call may stay unsettled this long: the run fails as hung. */
const STALL_MS = 15_000;

function envInt(name: string, fallback: number): number {
  const v = Number(process.env[name] ?? '');
  return Number.isInteger(v) && v > 0 ? v : fallback;
}

/** Echo sizes and how often each is picked (weights sum to 100). */
const SIZES: [bytes: number, weight: number][] = [
  [16, 25],
  [64, 20],
  [256, 18],
  [1024, 15],
  [4096, 10],
  [16 * 1024, 8],
  [64 * 1024, 4],
];
const PAYLOADS = new Map<number, string[]>(
  SIZES.map(([size]) => [size, Array.from({ length: 4 }, (_, i) => String.fromCharCode(97 + i).repeat(size))]),
);

interface Stats {
  echo: number;
  echoBytes: number;
  sum: number;
  stream: number;
  streamValues: number;
  timeouts: number;
  cancelled: number;
  takeN: number;
  appErrors: number;
  empty: number;
  mismatches: string[];
}

function newStats(): Stats {
  return {
    echo: 0,
    echoBytes: 0,
    sum: 0,
    stream: 0,
    streamValues: 0,
    timeouts: 0,
    cancelled: 0,
    takeN: 0,
    appErrors: 0,
    empty: 0,
    mismatches: [],
  };
}

/** Settles with every value, or the error. */
function collect(obs: Observable<unknown>): Promise<{ values: unknown[]; err: unknown }> {
  return new Promise((resolve) => {
    const values: unknown[] = [];
    obs.subscribe({
      next: (v) => values.push(v),
      error: (err) => resolve({ values, err }),
      complete: () => resolve({ values, err: null }),
    });
  });
}

const sameJson = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** One call of the mix, checked. */
async function oneCall(client: WireClient, rand: () => number, stats: Stats): Promise<void> {
  const mismatch = (what: string, got: unknown) => {
    if (stats.mismatches.length < 20)
      stats.mismatches.push(`${what}: ${String((got as Error)?.message ?? JSON.stringify(got)).slice(0, 200)}`);
  };
  const r = rand();
  if (r < 0.7) {
    let w = rand() * 100;
    let size = SIZES[0][0];
    for (const [s, weight] of SIZES) {
      size = s;
      if ((w -= weight) < 0) break;
    }
    const payload = PAYLOADS.get(size)![Math.floor(rand() * 4)];
    const { values, err } = await collect(client.send('echo', payload));
    if (err !== null || values.length !== 1 || values[0] !== payload) mismatch(`echo ${size}`, err ?? values.length);
    stats.echo++;
    stats.echoBytes += size;
  } else if (r < 0.8) {
    const a = Math.floor(rand() * 1e6);
    const { values, err } = await collect(client.send('sum', [a, 1, 2]));
    if (err !== null || !sameJson(values, [a + 3])) mismatch('sum', err ?? values);
    stats.sum++;
  } else if (r < 0.88) {
    const n = 1 + Math.floor(rand() * 16);
    const { values, err } = await collect(client.send('stream', n));
    if (
      err !== null ||
      !sameJson(
        values,
        Array.from({ length: n }, (_, i) => i + 1),
      )
    )
      mismatch('stream', err ?? values);
    stats.stream++;
    stats.streamValues += n;
  } else if (r < 0.91) {
    // The handler sleeps 200 ms; the call gives up after 5: WIRE_TIMEOUT, CANCEL sent, handler stopped.
    const { err } = await collect(client.send('delayed', { id: 1, ms: 200 }, { timeout: 5 }));
    if (!(err instanceof WireError) || err.code !== 'WIRE_TIMEOUT') mismatch('timeout', err);
    stats.timeouts++;
  } else if (r < 0.95) {
    // Unsubscribe before the frame is written, right after, or once the handler is running.
    const when = rand();
    await new Promise<void>((resolve) => {
      const sub = client.send('delayed', { id: 2, ms: 200 }).subscribe({
        next: (v) => mismatch('cancelled call delivered', v),
        error: (e) => mismatch('cancelled call failed', e),
      });
      if (when < 0.3) {
        sub.unsubscribe();
        resolve();
      } else if (when < 0.6) {
        setImmediate(() => {
          sub.unsubscribe();
          resolve();
        });
      } else {
        setTimeout(
          () => {
            sub.unsubscribe();
            resolve();
          },
          1 + Math.floor(rand() * 3),
        );
      }
    });
    stats.cancelled++;
  } else if (r < 0.97) {
    // An endless stream cut by take(3): unsubscribing sends CANCEL, the server tears it down.
    const { values, err } = await collect(client.send('infinite', {}).pipe(take(3)));
    if (err !== null || !sameJson(values, [0, 1, 2])) mismatch('take(3)', err ?? values);
    stats.takeN++;
  } else if (r < 0.99) {
    const { err } = await collect(client.send('rpc.error', 'plain'));
    if (!sameJson(err, { status: 'error', message: 'plain failure' })) mismatch('rpc.error', err);
    stats.appErrors++;
  } else {
    const { values, err } = await collect(client.send('nothing', {}));
    if (err !== null || values.length !== 0) mismatch('nothing', err ?? values);
    stats.empty++;
  }
}

/** Runs `calls` calls, `concurrency` at a time; rejects if no call settles for STALL_MS. */
async function drive(
  client: WireClient,
  calls: number,
  concurrency: number,
  rand: () => number,
  stats: Stats,
): Promise<void> {
  let started = 0;
  let lastProgress = Date.now();
  let stalled: (err: Error) => void = () => {};
  const watchdog = setInterval(() => {
    if (Date.now() - lastProgress > STALL_MS)
      stalled(new Error(`no call settled for ${STALL_MS} ms after ${started} calls: hung`));
  }, 1000);
  const worker = async () => {
    while (started < calls) {
      started++;
      await oneCall(client, rand, stats);
      lastProgress = Date.now();
    }
  };
  try {
    await Promise.race([
      Promise.all(Array.from({ length: concurrency }, worker)),
      new Promise<never>((_, reject) => (stalled = reject)),
    ]);
  } finally {
    clearInterval(watchdog);
  }
}

/** Active handles and timers by type; jest's own stdio pipes (PipeWrap, TTYWrap) are left out. */
function resourceCounts(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) {
    if (r === 'PipeWrap' || r === 'TTYWrap') continue;
    out[r] = (out[r] ?? 0) + 1;
  }
  return out;
}

function listenerCounts(sockets: Socket[]): Record<string, number>[] {
  return sockets.map((s) => Object.fromEntries(s.eventNames().map((n) => [String(n), s.listenerCount(n)])));
}

/** Server-side sockets, if the server's internals still look the way they did when this was written. */
function serverSockets(running: RunningServer): Socket[] {
  const sessions = (running.server as unknown as { sessions?: Set<{ wire?: { underlyingSocket?: Socket } }> }).sessions;
  if (!(sessions instanceof Set)) return [];
  return [...sessions].map((s) => s.wire?.underlyingSocket).filter((s): s is Socket => s !== undefined);
}

/**
 * `npm run soak` runs this file in a jest process of its own: it compares the process's active
 * resources before and after, and the other soak files (child-process peers, floods) can leave
 * timers of their own behind in a shared worker for a while.
 */

/**
 * Waits (bounded) until both tables are empty, then until the active resources are
 * stable: two samples 250 ms apart that agree. That lets the timing wheels stop their
 * tickers and lets transient timers run out (the 200 ms sleep of a `delayed` handler
 * that started after its call was already cancelled: the test app's sleep() only
 * listens for a *later* abort).
 */
async function settle(client: WireClient, running: RunningServer): Promise<Record<string, number>> {
  const empty = () => {
    const c = client.counters();
    return c.inFlight === 0 && c.pending === 0 && c.queued === 0 && running.server.counters().inFlight === 0;
  };
  await waitFor(empty, { timeoutMs: 5000, everyMs: 10 }).catch(() => {}); // the caller asserts the tables
  let previous = resourceCounts();
  for (let i = 0; i < 12; i++) {
    await pause(250); // kept: "stable" means unchanged across a real interval
    const now = resourceCounts();
    if (JSON.stringify(now) === JSON.stringify(previous)) return now;
    previous = now;
  }
  return previous;
}

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(2)} MiB`;

describe('soak', () => {
  let running: RunningServer;
  let client: WireClient;

  beforeAll(async () => {
    running = await startWireApp(TestAppModule);
    client = new WireClient({ host: '127.0.0.1', port: running.port });
    await client.connect();
  });
  afterAll(async () => {
    client.close();
    await running.app.close();
  });

  it(
    `${CALLS} mixed calls, ${CONCURRENCY} in flight: every answer right, nothing left behind`,
    async () => {
      const rand = prng(20_261_124);
      const warm = newStats();
      await drive(client, WARMUP_CALLS, CONCURRENCY, rand, warm);
      expect(warm.mismatches).toEqual([]);
      const resourcesBefore = await settle(client, running);

      const sockets = client.unwrap<Socket[]>();
      const serverSide = serverSockets(running);
      const listenersBefore = listenerCounts(sockets);
      const serverListenersBefore = listenerCounts(serverSide);
      const heapBefore = await settledHeap();
      const memBefore = process.memoryUsage();

      const stats = newStats();
      const started = performance.now();
      await drive(client, CALLS, CONCURRENCY, rand, stats);
      const seconds = (performance.now() - started) / 1000;
      const resourcesAfter = await settle(client, running);

      const heapAfter = await settledHeap();
      const memAfter = process.memoryUsage();
      const c = client.counters();
      const s = running.server.counters();
      console.info(
        [
          `soak: ${CALLS} calls in ${seconds.toFixed(1)} s (${Math.round(CALLS / seconds)} calls/s), ${CONCURRENCY} in flight, after ${WARMUP_CALLS} warm-up calls`,
          `  mix: echo ${stats.echo} (${mib(stats.echoBytes)} each way), sum ${stats.sum}, stream ${stats.stream} (${stats.streamValues} values), ` +
            `timeout ${stats.timeouts}, cancelled ${stats.cancelled}, take(3) ${stats.takeN}, app errors ${stats.appErrors}, empty ${stats.empty}`,
          `  heap after GC: before ${mib(heapBefore)}, after ${mib(heapAfter)}, growth ${mib(heapAfter - heapBefore)} (bound ${mib(HEAP_BOUND_BYTES)}); ` +
            `arrayBuffers ${mib(memBefore.arrayBuffers)} -> ${mib(memAfter.arrayBuffers)}, rss ${mib(memBefore.rss)} -> ${mib(memAfter.rss)}`,
          `  client counters ${JSON.stringify(c)}; server counters ${JSON.stringify(s)}`,
          `  active resources before ${JSON.stringify(resourcesBefore)} after ${JSON.stringify(resourcesAfter)}`,
        ].join('\n'),
      );

      expect(stats.mismatches).toEqual([]);
      expect(stats.timeouts + stats.cancelled + stats.takeN).toBeGreaterThan(0);
      // Tables empty on both sides.
      expect({ inFlight: c.inFlight, pending: c.pending, queued: c.queued }).toEqual({
        inFlight: 0,
        pending: 0,
        queued: 0,
      });
      expect({ inFlight: s.inFlight, bufferedBytes: s.bufferedBytes, connections: s.connections }).toEqual({
        inFlight: 0,
        bufferedBytes: 0,
        connections: 1,
      });
      // Same connection, same listeners, same timers and handles.
      expect(client.unwrap<Socket[]>()).toEqual(sockets);
      expect(listenerCounts(client.unwrap<Socket[]>())).toEqual(listenersBefore);
      expect(listenerCounts(serverSockets(running))).toEqual(serverListenersBefore);
      expect(resourcesAfter).toEqual(resourcesBefore);
      // Memory: back within the bound once garbage is collected.
      expect(heapAfter - heapBefore).toBeLessThan(HEAP_BOUND_BYTES);
    },
    60_000 + CALLS, // 1 ms per call on top of a minute: generous, never a speed assertion
  );
});
