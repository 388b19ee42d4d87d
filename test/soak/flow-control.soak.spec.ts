import 'reflect-metadata';
import { WireClient } from '../../lib/index.js';
import { firstValueFrom } from 'rxjs';
import { clientFor, startWireApp, type RunningServer } from '../helpers/apps.js';
import { gate, GateModule } from '../helpers/gate-app.js';
import { settledHeap } from '../helpers/gc.js';
import { recorder, TestAppModule } from '../helpers/test-app.js';

/**
 * The long flow-control cases, moved out of `npm test` (test/e2e/flow-control.spec.ts keeps
 * a small case of each property): `npm run soak` runs them.
 */

const MiB = 1024 * 1024;

describe('flow control (soak)', () => {
  describe('flood', () => {
    it('200 000 sends against maxInFlightPerConnection 64: the server holds a bounded amount, every call ends', async () => {
      const running = await startWireApp(GateModule, { maxInFlightPerConnection: 64 });
      const client = clientFor(running, { maxPendingCalls: 200_000, timeout: 30_000 });
      try {
        await client.connect();
        const heapBefore = await settledHeap();
        let ok = 0;
        let failed = 0;
        let peakRunning = 0;
        let peakBuffered = 0;
        gate.maxRunning = 0;
        // Sampled from inside the handler: that is when the server holds the most.
        gate.probe = () => {
          const c = running.server.counters();
          peakRunning = Math.max(peakRunning, c.inFlight);
          peakBuffered = Math.max(peakBuffered, c.bufferedBytes);
        };
        const calls: Promise<void>[] = [];
        for (let i = 0; i < 200_000; i++) {
          calls.push(
            firstValueFrom(client.send('gate', 0)).then(
              () => void ok++,
              () => void failed++,
            ),
          );
        }
        await Promise.all(calls);
        gate.probe = null;
        expect(ok + failed).toBe(200_000);
        expect(ok).toBe(200_000);
        // What the server holds is bounded by its limits, whatever the client queued:
        // at most 64 calls, and at most a few socket reads of undecoded input.
        expect(peakRunning).toBeLessThanOrEqual(64);
        expect(gate.maxRunning).toBeLessThanOrEqual(64);
        expect(peakBuffered).toBeLessThan(MiB);
        // And nothing is left behind once it is over.
        expect(running.server.counters()).toMatchObject({ inFlight: 0, bufferedBytes: 0 });
        expect(client.counters()).toMatchObject({ inFlight: 0, pending: 0, queued: 0 });
        calls.length = 0;
        const heapDelta = (await settledHeap()) - heapBefore;
        console.info(
          `flood: 200000 calls, server peak ${peakRunning} running, peak ${peakBuffered} bytes of undecoded input held, ` +
            `heap after GC ${(heapDelta / MiB).toFixed(1)} MiB from start`,
        );
        expect(heapDelta).toBeLessThan(16 * MiB);
      } finally {
        client.close();
        await running.app.close();
      }
    }, 60_000);
  });

  describe('streams', () => {
    let running: RunningServer;
    let client: WireClient;
    beforeAll(async () => {
      running = await startWireApp(TestAppModule);
      client = clientFor(running, { timeout: 60_000 });
    });
    afterAll(async () => {
      client.close();
      await running.app.close();
    });
    beforeEach(() => recorder.reset());

    it('paces an AsyncIterable handler by the consumer: 1 000 000 values, in order, bounded buffering', async () => {
      const total = 1_000_000;
      let received = 0;
      let inOrder = true;
      let maxAhead = 0;
      await new Promise<void>((resolve, reject) => {
        client.send<number>('generate', total).subscribe({
          next: (v) => {
            if (v !== received) inOrder = false;
            received++;
            // How far the producer ran ahead of this consumer: bounded by the stream credit.
            maxAhead = Math.max(maxAhead, recorder.generated - received);
            if (received % 50_000 === 0) {
              // A slow consumer: block the client's event loop for a moment now and then.
              const until = performance.now() + 2;
              while (performance.now() < until);
            }
          },
          error: reject,
          complete: resolve,
        });
      });
      expect(received).toBe(total);
      expect(inOrder).toBe(true);
      console.info(
        `stream: ${total} values in order; the producer was at most ${maxAhead} values ahead of the consumer`,
      );
      expect(maxAhead).toBeLessThanOrEqual(256 + 1);
      expect(recorder.generatorFinalized).toBe(1);
    }, 60_000);
  });
});
