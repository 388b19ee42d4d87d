import 'reflect-metadata';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { firstValueFrom } from 'rxjs';
import { WireClient } from '../../lib/index.js';
import { startWireApp, type RunningServer } from '../helpers/apps.js';
import { settledHeap } from '../helpers/gc.js';
import { TestAppModule } from '../helpers/test-app.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Many connections against one server: 200 WireClients all served, and the server's
 * memory per idle connection. The latter is measured with the 200 connections opened
 * from a child process (test/helpers/idle-peers.mjs, raw frames), so that this
 * process's heap holds only the server's side of each connection.
 */

const CLIENTS = 200;
/** Generous bound on the server's JS heap per idle, handshaken connection. */
const HEAP_PER_CONNECTION_BOUND = 64 * 1024;
/**
 * Bound on Buffer memory (arrayBuffers) per idle connection. Measured 64 KiB while each
 * connection kept a full output arena after its HELLO; 4 KiB since arenas start small
 * (commit 0c8f66d). 32 KiB still leaves room, and catches a return of the 64 KiB arena.
 */
const BUFFERS_PER_CONNECTION_BOUND = 32 * 1024;

const PEERS_SCRIPT = fileURLToPath(new URL('../helpers/idle-peers.mjs', import.meta.url));
const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;

/** Starts `count` raw connections in a child process; resolves once each has been served one call. */
async function idlePeers(
  port: number,
  count: number,
): Promise<{ child: ChildProcessWithoutNullStreams; ok: number; failed: number }> {
  const child = spawn(process.execPath, [PEERS_SCRIPT, String(port), String(count)], { stdio: 'pipe' });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const ready = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`idle peers not ready: ${err}`)), 20_000);
    child.stdout.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.startsWith('READY'));
      if (line !== undefined) {
        clearTimeout(timer);
        resolve(line);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`idle peers exited with ${code}: ${err}`));
    });
  });
  const [, ok, failed] = ready.split(' ').map(Number);
  return { child, ok, failed };
}

async function stop(child: ChildProcessWithoutNullStreams): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.stdin.end();
  await exited;
}

describe('many clients against one server', () => {
  let running: RunningServer;

  beforeAll(async () => {
    running = await startWireApp(TestAppModule);
  });
  afterAll(async () => {
    await running.app.close();
  });

  it(`serves ${CLIENTS} WireClients at once`, async () => {
    const heapBefore = await settledHeap();
    const clients = Array.from(
      { length: CLIENTS },
      () => new WireClient({ host: '127.0.0.1', port: running.port, timeout: 10_000 }),
    );
    try {
      await Promise.all(clients.map((c) => c.connect()));
      expect(running.server.counters().connections).toBe(CLIENTS);
      // Every client makes calls that succeed, all at the same time.
      const results = await Promise.all(
        clients.map(async (c, i) => [
          await firstValueFrom(c.send<number>('sum', [i, 1])),
          await firstValueFrom(c.send<string>('echo', `client-${i}`)),
          await firstValueFrom(c.send<number>({ cmd: 'sum', version: 2 }, [i])),
        ]),
      );
      expect(results).toEqual(clients.map((_, i) => [i + 1, `client-${i}`, i + 1000]));
      for (const c of clients)
        expect(c.counters()).toMatchObject({ inFlight: 0, pending: 0, queued: 0, openConnections: 1 });
      const heapIdle = await settledHeap();
      console.info(
        `many clients: ${CLIENTS} WireClients served; both sides in this process: ${kib((heapIdle - heapBefore) / CLIENTS)} of heap per idle client + its server connection`,
      );
    } finally {
      for (const c of clients) c.close();
    }
    await waitFor(() => running.server.counters().connections === 0, {
      timeoutMs: 5000,
      what: 'the server to see every client go',
    });
  });

  it(`measures the server's memory per idle connection with ${CLIENTS} connections`, async () => {
    // Warm-up: a first round initialises everything lazily created on first use.
    const warm = await idlePeers(running.port, 20);
    expect(warm.ok).toBe(20);
    await stop(warm.child);
    await waitFor(() => running.server.counters().connections === 0, {
      timeoutMs: 5000,
      what: 'warm-up connections to close',
    });

    const heapBefore = await settledHeap();
    const buffersBefore = process.memoryUsage().arrayBuffers;
    const peers = await idlePeers(running.port, CLIENTS);
    try {
      expect({ ok: peers.ok, failed: peers.failed }).toEqual({ ok: CLIENTS, failed: 0 });
      await waitFor(() => running.server.counters().connections === CLIENTS, {
        timeoutMs: 5000,
        what: 'every connection to be open',
      });
      const heapAfter = await settledHeap();
      const buffersAfter = process.memoryUsage().arrayBuffers;
      const heapPer = (heapAfter - heapBefore) / CLIENTS;
      const buffersPer = (buffersAfter - buffersBefore) / CLIENTS;
      console.info(
        `server memory per idle connection (${CLIENTS} connections from a child process): ` +
          `heap ${kib(heapPer)} (heap after GC ${kib(heapBefore)} -> ${kib(heapAfter)}), ` +
          `Buffers ${kib(buffersPer)} (arrayBuffers ${kib(buffersBefore)} -> ${kib(buffersAfter)}); ` +
          `bounds: heap ${kib(HEAP_PER_CONNECTION_BOUND)}, Buffers ${kib(BUFFERS_PER_CONNECTION_BOUND)}`,
      );
      expect(running.server.counters()).toMatchObject({ inFlight: 0, bufferedBytes: 0, connections: CLIENTS });
      expect(heapPer).toBeLessThan(HEAP_PER_CONNECTION_BOUND);
      expect(buffersPer).toBeLessThan(BUFFERS_PER_CONNECTION_BOUND);
    } finally {
      await stop(peers.child);
    }
    await waitFor(() => running.server.counters().connections === 0, {
      timeoutMs: 5000,
      what: 'the idle connections to close',
    });
  });
});
