import 'reflect-metadata';
import type { Observable } from 'rxjs';
import { WireClient, WireError } from '../../lib/index.js';
import { startWireApp, type RunningServer } from '../helpers/apps.js';
import { FaultProxy, type FaultMode } from '../helpers/fault-proxy.js';
import { prng } from '../helpers/fuzz.js';
import { TestAppModule } from '../helpers/test-app.js';
import { eventually, waitFor } from '../helpers/wait.js';

/**
 * Fault injection: a real Nest app (TestAppModule) behind a TCP proxy that fragments,
 * delays, cuts and resets connections, with a WireClient in front of it. Under every
 * mode each call must end — with its correct result or a typed WireError with a known
 * code — none may hang, and once the proxy behaves again the client must recover.
 */

/** Every code a transport failure may carry (README, "Errors"). */
const KNOWN_CODES = new Set([
  'WIRE_TIMEOUT',
  'WIRE_CONNECTION',
  'WIRE_NO_HANDLER',
  'WIRE_FRAME_TOO_LARGE',
  'WIRE_CODEC',
  'WIRE_PROTOCOL',
  'WIRE_HANDSHAKE',
  'WIRE_OVERLOADED',
  'WIRE_CANCELLED',
]);

/** How long past its own timeout a call may take before it counts as hung. */
const HANG_SLACK_MS = 3000;

type Op = { pattern: string; data: unknown; expected: unknown[] };

/** A random call with a known answer: sums, echoes of 1 B to `maxEcho` bytes, short streams, empty results. */
function randomOp(rand: () => number, maxEcho: number): Op {
  const r = rand();
  if (r < 0.3) {
    const a = Math.floor(rand() * 1000);
    const b = Math.floor(rand() * 1000);
    return { pattern: 'sum', data: [a, b], expected: [a + b] };
  }
  if (r < 0.65) {
    const size = 1 + Math.floor(rand() ** 2 * maxEcho);
    const s = String.fromCharCode(97 + Math.floor(rand() * 26)).repeat(size);
    return { pattern: 'echo', data: s, expected: [s] };
  }
  if (r < 0.85) {
    const n = 1 + Math.floor(rand() * 8);
    return { pattern: 'stream', data: n, expected: Array.from({ length: n }, (_, i) => i + 1) };
  }
  if (r < 0.95) {
    const id = Math.floor(rand() * 1e6);
    return { pattern: 'delayed', data: { id, ms: 5 }, expected: [id] };
  }
  return { pattern: 'nothing', data: {}, expected: [] };
}

type Outcome = { kind: 'ok' } | { kind: 'wrong'; got: unknown } | { kind: 'hung' } | { kind: 'error'; err: unknown };

/** Subscribes, collects every value, and settles on complete / error, or reports a hang (and unsubscribes). */
function run(obs: Observable<unknown>, expected: unknown[], guardMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const values: unknown[] = [];
    const guard = setTimeout(() => {
      sub.unsubscribe();
      resolve({ kind: 'hung' });
    }, guardMs);
    const sub = obs.subscribe({
      next: (v) => values.push(v),
      error: (err) => {
        clearTimeout(guard);
        resolve({ kind: 'error', err });
      },
      complete: () => {
        clearTimeout(guard);
        const same = JSON.stringify(values) === JSON.stringify(expected);
        resolve(same ? { kind: 'ok' } : { kind: 'wrong', got: values });
      },
    });
  });
}

interface Tally {
  ok: number;
  wrong: number;
  hung: number;
  /** Typed failures by code. */
  codes: Record<string, number>;
  /** Failures that are not a WireError with a known code (should stay empty). */
  untyped: string[];
}

function label(o: Outcome): string {
  if (o.kind !== 'error') return o.kind;
  const err = o.err as WireError;
  return err instanceof WireError && KNOWN_CODES.has(err.code) ? err.code : 'untyped';
}

describe('fault injection through a TCP proxy', () => {
  let running: RunningServer;
  let proxy: FaultProxy;
  let client: WireClient;
  const clientErrors: unknown[] = [];
  const serverErrors: unknown[] = [];
  const report: string[] = [];
  const rand = prng(0x5eed);

  beforeAll(async () => {
    running = await startWireApp(TestAppModule, { handshakeTimeoutMs: 1000 });
    running.server.on('connectionError', (err) => serverErrors.push(err));
    proxy = await FaultProxy.start(running.port);
    client = new WireClient({
      host: '127.0.0.1',
      port: proxy.port,
      timeout: 400,
      connectTimeoutMs: 500,
      handshakeTimeoutMs: 500,
      reconnect: { initialDelayMs: 10, maxDelayMs: 100 },
    });
    client.on('error', (err) => clientErrors.push(err));
    await client.connect();
  });

  afterAll(async () => {
    console.info(
      `fault injection outcomes (calls per mode):\n${report.join('\n')}\nproxy: ${JSON.stringify(proxy.stats)}`,
    );
    client.close();
    await proxy.close();
    await running.app.close();
  });

  /** Runs `n` random calls, `concurrency` at a time, and tallies how each one ended. */
  async function phase(
    name: string,
    n: number,
    opts: { concurrency?: number; timeout?: number; maxEcho?: number; pauseMs?: number } = {},
  ): Promise<Tally> {
    // pauseMs: each worker waits up to that long between calls, so a phase spans several
    // reconnections instead of failing fast inside one backoff window.
    const { concurrency = 16, timeout = 400, maxEcho = 4096, pauseMs = 0 } = opts;
    const tally: Tally = { ok: 0, wrong: 0, hung: 0, codes: {}, untyped: [] };
    let next = 0;
    const worker = async () => {
      while (next < n) {
        next++;
        const op = randomOp(rand, maxEcho);
        const o = await run(client.send(op.pattern, op.data, { timeout }), op.expected, timeout + HANG_SLACK_MS);
        const l = label(o);
        if (l === 'ok') tally.ok++;
        else if (l === 'wrong') tally.wrong++;
        else if (l === 'hung') tally.hung++;
        else if (l === 'untyped') tally.untyped.push(String((o as { err: unknown }).err));
        else tally.codes[l] = (tally.codes[l] ?? 0) + 1;
        if (pauseMs > 0) await new Promise((r) => setTimeout(r, Math.floor(rand() * pauseMs)));
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    const codes = Object.entries(tally.codes)
      .map(([c, k]) => `${c} ${k}`)
      .join(', ');
    report.push(
      `  ${name.padEnd(46)} ${n} calls: ok ${tally.ok}${codes ? `, ${codes}` : ''}, wrong ${tally.wrong}, hung ${tally.hung}, untyped ${tally.untyped.length}`,
    );
    return tally;
  }

  /** Waits (bounded) until the client has an open connection again. */
  async function connected(): Promise<void> {
    await waitFor(() => client.counters().openConnections > 0, { timeoutMs: 5000, what: 'the client to reconnect' });
  }

  /** Resets every connection and waits (bounded) until the client has noticed and opened a new one. */
  async function reconnect(): Promise<void> {
    proxy.resetAll();
    // Not asserted: the client may have noticed and redialled between two polls.
    await waitFor(() => client.counters().openConnections === 0, { timeoutMs: 2000, everyMs: 2 }).catch(() => {});
    await connected();
  }

  /** Nothing wrong, nothing hung, nothing untyped. */
  function expectTyped(t: Tally): void {
    expect(t.untyped).toEqual([]);
    expect(t.wrong).toBe(0);
    expect(t.hung).toBe(0);
  }

  /** The proxy behaves again: the client reconnects and serves calls, and every table is empty afterwards. */
  async function expectRecovery(name: string): Promise<void> {
    proxy.setMode({ kind: 'behave' });
    const o = await eventually(
      () => run(client.send('sum', [20, 22], { timeout: 300 }), [42], 2000),
      (outcome) => outcome.kind === 'ok',
      { timeoutMs: 5000, everyMs: 20 },
    );
    if (o.kind !== 'ok') throw new Error(`no recovery after ${name}: last outcome ${label(o)}`);
    const t = await phase(`  recovery after ${name}`, 60, { timeout: 2000 });
    expect(t.ok).toBe(60);
    const c = client.counters();
    expect([c.inFlight, c.pending, c.queued]).toEqual([0, 0, 0]);
    await waitFor(() => running.server.counters().inFlight === 0, {
      timeoutMs: 3000,
      what: `the server's calls to end after ${name}`,
    });
    expect(running.server.counters().inFlight).toBe(0);
  }

  it('behaving proxy: every call succeeds', async () => {
    const t = await phase('behave', 200);
    expect(t.ok).toBe(200);
  });

  it('1-byte fragments in both directions: every call still succeeds', async () => {
    proxy.setMode({ kind: 'fragment', size: 1 });
    await reconnect(); // so the handshake of the next connection is fragmented too
    const t = await phase('fragment 1 B, both directions', 80, { concurrency: 8, timeout: 5000, maxEcho: 600 });
    expect(t.ok).toBe(80);
    await expectRecovery('fragment');
  });

  it('small fragments with a delay between them, and delayed chunks: every call still succeeds', async () => {
    proxy.setMode({ kind: 'fragment', size: 7, delayMs: 1, direction: 'down' });
    await reconnect();
    const a = await phase('fragment 7 B + 1 ms, server to client', 40, { concurrency: 8, timeout: 5000, maxEcho: 300 });
    expect(a.ok).toBe(40);
    proxy.setMode({ kind: 'delay', delayMs: 15 });
    const b = await phase('delay 15 ms per chunk, both directions', 80, { concurrency: 16, timeout: 5000 });
    expect(b.ok).toBe(80);
    await expectRecovery('delay');
  });

  it('connections cut mid-frame after N bytes: typed errors only, then recovery', async () => {
    const cutRand = prng(7);
    proxy.setMode({ kind: 'cut', afterBytes: () => 1 + Math.floor(cutRand() * 600) });
    proxy.resetAll();
    const cutsBefore = proxy.stats.cuts;
    // Payloads up to 256 B, so that a connection cut past its handshake (~60 B) carries whole calls
    // before the cut as well as the frame it cuts short; with echoes up to 4 KiB nearly every frame
    // was longer than the cut, and a run could end with no call through at all.
    const t = await phase('cut after 1..600 B (each direction)', 200, {
      concurrency: 8,
      timeout: 300,
      pauseMs: 10,
      maxEcho: 256,
    });
    expectTyped(t);
    expect(proxy.stats.cuts).toBeGreaterThan(cutsBefore);
    expect(t.ok).toBeGreaterThan(0); // cut points past the handshake let some calls through
    await expectRecovery('cut');
  });

  it('connections cut mid-handshake: typed errors only, then recovery', async () => {
    proxy.setMode({ kind: 'cut', afterBytes: () => 1 + Math.floor(rand() * 29), direction: 'up' });
    proxy.resetAll();
    const cutsBefore = proxy.stats.cuts;
    const t = await phase('cut inside the 30-byte client handshake', 40, { concurrency: 4, timeout: 200, pauseMs: 20 });
    expect(proxy.stats.cuts).toBeGreaterThan(cutsBefore + 2);
    expectTyped(t);
    expect(t.ok).toBe(0);
    await expectRecovery('handshake cut');
  });

  it('connections reset (RST) at random moments: typed errors only, then recovery', async () => {
    proxy.setMode({ kind: 'reset', afterMs: () => Math.floor(rand() * 40) });
    const resetsBefore = proxy.stats.resets;
    const t = await phase('reset 0..40 ms after accept', 200, { concurrency: 8, timeout: 300, pauseMs: 10 });
    expect(proxy.stats.resets).toBeGreaterThan(resetsBefore + 2);
    expectTyped(t);
    await expectRecovery('reset');
  });

  it('a reset while calls are in flight fails them at once with WIRE_CONNECTION and stops their handlers', async () => {
    const calls = Array.from({ length: 40 }, (_, i) =>
      run(client.send('delayed', { id: i, ms: 2000 }, { timeout: 3000 }), [i], 3000 + HANG_SLACK_MS),
    );
    await waitFor(() => running.server.counters().inFlight >= 40, {
      timeoutMs: 5000,
      what: 'the 40 calls to run on the server',
    });
    const started = performance.now();
    proxy.resetAll();
    const outcomes = await Promise.all(calls);
    const elapsed = performance.now() - started;
    expect(outcomes.map(label)).toEqual(new Array(40).fill('WIRE_CONNECTION'));
    expect(elapsed).toBeLessThan(1500); // failed by the reset, not by their 3 s timeout
    report.push(
      `  ${'reset with 40 calls in flight'.padEnd(46)} 40 calls: WIRE_CONNECTION 40 (in ${elapsed.toFixed(0)} ms)`,
    );
    await expectRecovery('reset in flight');
  });

  it('a silent peer (blackhole): calls time out, typed, none hangs', async () => {
    proxy.setMode({ kind: 'blackhole' });
    const t = await phase('blackhole', 40, { concurrency: 16, timeout: 200 });
    expectTyped(t);
    expect(t.ok).toBe(0);
    for (const code of Object.keys(t.codes)) expect(['WIRE_TIMEOUT', 'WIRE_CONNECTION']).toContain(code);
    await expectRecovery('blackhole');
  });

  it('modes switched at random every few ms under load: typed errors only, then recovery', async () => {
    const cutRand = prng(11);
    const modes: FaultMode[] = [
      { kind: 'behave' },
      { kind: 'fragment', size: 1 },
      { kind: 'fragment', size: 5, delayMs: 1 },
      { kind: 'delay', delayMs: 10 },
      { kind: 'cut', afterBytes: () => 1 + Math.floor(cutRand() * 2000) },
      { kind: 'reset', afterMs: () => Math.floor(cutRand() * 30) },
      { kind: 'blackhole' },
    ];
    let switching = true;
    const switcher = (async () => {
      while (switching) {
        proxy.setMode(modes[Math.floor(rand() * modes.length)]);
        await new Promise((r) => setTimeout(r, 5 + Math.floor(rand() * 25)));
      }
    })();
    const t = await phase('random mode every 5..30 ms', 300, {
      concurrency: 16,
      timeout: 300,
      maxEcho: 2000,
      pauseMs: 10,
    });
    switching = false;
    await switcher;
    expectTyped(t);
    await expectRecovery('random modes');
  });

  it('reported every failure as a typed error, and the server is left with only the live client', async () => {
    for (const err of clientErrors) expect(err).toBeInstanceOf(WireError);
    for (const err of serverErrors) expect(err).toBeInstanceOf(WireError);
    await waitFor(() => running.server.counters().connections === client.counters().openConnections, {
      timeoutMs: 3000,
      what: 'the server to have only the live client',
    });
    expect(running.server.counters().connections).toBe(client.counters().openConnections);
    report.push(`  client error events ${clientErrors.length}, server connectionError events ${serverErrors.length}`);
  });
});
