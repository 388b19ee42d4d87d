import 'reflect-metadata';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { firstValueFrom } from 'rxjs';
import { WireClient, WireConnectionError, WireLimitError } from '../../lib/index.js';
import { settledHeap } from '../helpers/gc.js';
import { figure } from '../hardening/target.js';

/**
 * Issue 11 item 6: a malicious server feeds fragments of values that never complete.
 * Before the fix 24 pending calls each fed 15.5 MiB grew a client by 391 MiB. The server
 * runs in a child process; bound asserted on what the client retains (Buffer memory after
 * a GC, calls still pending): less than maxFragmentedBytes (64 MiB) + 16 MiB; every call
 * fails with a typed error.
 */
const MiB = 1024 * 1024;
const CALLS = 24;
const SCRIPT = fileURLToPath(new URL('../hardening/fragment-server.mjs', import.meta.url));

/** Starts test/hardening/fragment-server.mjs; resolves with its port and a promise of its DONE. */
async function fragmentServer(
  mode: Mode,
): Promise<{ child: ChildProcessWithoutNullStreams; port: number; done: Promise<void> }> {
  const child = spawn(process.execPath, [SCRIPT, mode], { stdio: 'pipe' });
  let out = '';
  let onLine: () => void = () => {};
  child.stdout.on('data', (d) => {
    out += d;
    onLine();
  });
  const port = await new Promise<number>((resolve) => {
    onLine = () => {
      const m = /PORT (\d+)\n/.exec(out);
      if (m) resolve(Number(m[1]));
    };
  });
  const done = new Promise<void>((resolve) => {
    onLine = () => out.includes('DONE') && resolve();
    onLine();
  });
  return { child, port, done };
}

type Mode = 'within-window' | 'ignore-window' | 'big-fragment';

async function attack(mode: Mode) {
  const { child, port, done } = await fragmentServer(mode);
  const client = new WireClient({ host: '127.0.0.1', port, timeout: 60_000, maxFrameSize: 16 * MiB });
  client.on('error', () => {});
  await client.connect();
  const base = process.memoryUsage().arrayBuffers;
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().arrayBuffers - base)), 5);
  const outcomes: unknown[] = new Array(CALLS);
  const calls = Array.from({ length: CALLS }, (_, i) =>
    firstValueFrom(client.send('x', i)).then(
      () => (outcomes[i] = 'ok'),
      (e: unknown) => (outcomes[i] = e),
    ),
  );
  await done;
  peak = Math.max(peak, process.memoryUsage().arrayBuffers - base);
  clearInterval(sampler);
  // What the client still holds for the calls pending (garbage collected first).
  await settledHeap();
  const retained = process.memoryUsage().arrayBuffers - base;
  client.close();
  await Promise.all(calls);
  child.stdin.end();
  return { outcomes, peakMiB: peak / MiB, retainedMiB: retained / MiB };
}

describe('hardening: a server that sends fragments that never complete (client side)', () => {
  it('bounds the partial values held per connection by maxFragmentedBytes', async () => {
    const { outcomes, peakMiB, retainedMiB } = await attack('within-window');
    const limited = outcomes.filter((o) => o instanceof WireLimitError).length;
    figure('6-client-fragments-within-window', { retainedMiB, peakBufferGrowthMiB: peakMiB, failedWithLimit: limited });
    expect(retainedMiB).toBeLessThan(64 + 16);
    expect(limited).toBeGreaterThan(0);
    // The others failed when the client closed: every call ended with a typed error.
    for (const o of outcomes) expect(o instanceof WireLimitError || o instanceof WireConnectionError).toBe(true);
  }, 120_000);

  it('holds the same bound against a server that ignores the fragment window', async () => {
    const { outcomes, peakMiB, retainedMiB } = await attack('ignore-window');
    figure('6-client-fragments-ignoring-window', { retainedMiB, peakBufferGrowthMiB: peakMiB });
    expect(retainedMiB).toBeLessThan(64 + 16);
    for (const o of outcomes) expect(o instanceof WireLimitError || o instanceof WireConnectionError).toBe(true);
  }, 120_000);

  it('closes the connection to a server whose fragment alone passes the 256 KiB window', async () => {
    const { outcomes, retainedMiB } = await attack('big-fragment');
    figure('6-client-big-fragment', { retainedMiB });
    expect(retainedMiB).toBeLessThan(16);
    for (const o of outcomes) expect(o).toBeInstanceOf(WireConnectionError);
    expect((outcomes[0] as Error).message).toMatch(/window/);
  }, 120_000);
});
