import 'reflect-metadata';
import { firstValueFrom, lastValueFrom, Observable } from 'rxjs';
import { WireClient, WireOverloadedError, WireTimeoutError } from '../../lib/index.js';
import { FrameType } from '../../lib/protocol/frame.js';
import { clientFor, startWireApp, type RunningServer } from '../helpers/apps.js';
import { rawFrame, RawPeer, requestBody } from '../helpers/raw-peer.js';
import { gate, GateModule } from '../helpers/gate-app.js';
import { recorder, TestAppModule } from '../helpers/test-app.js';
import { waitFor } from '../helpers/wait.js';

const MiB = 1024 * 1024;

describe('flow control', () => {
  describe('server: maxInFlightPerConnection', () => {
    let running: RunningServer;
    beforeAll(async () => {
      running = await startWireApp(GateModule, { maxInFlightPerConnection: 8 });
    });
    afterAll(() => running.app.close());
    beforeEach(() => {
      gate.running = 0;
      gate.maxRunning = 0;
    });

    it('runs at most the limit at once for a client that ignores the announced limit', async () => {
      const peer = await RawPeer.connect(running.port);
      peer.handshake();
      const frames = Array.from({ length: 100 }, (_, i) =>
        rawFrame(FrameType.REQUEST, 0, i + 1, requestBody('gate', 5)),
      );
      peer.write(Buffer.concat(frames)); // all 100 arrive in one or a few chunks
      await waitFor(() => peer.received.filter((f) => f.type === FrameType.RESPONSE).length === 100, 5000);
      expect(gate.maxRunning).toBe(8);
      peer.destroy();
    });

    it('a WireClient keeps itself under the announced limit and queues the rest', async () => {
      const client = clientFor(running);
      const results = await Promise.all(Array.from({ length: 50 }, () => firstValueFrom(client.send('gate', 3))));
      expect(results).toHaveLength(50);
      expect(gate.maxRunning).toBeLessThanOrEqual(8);
      client.close();
    });
  });

  describe('flood (small; the 200 000-send flood is in test/soak/flow-control.soak.spec.ts)', () => {
    it('5 000 sends against maxInFlightPerConnection 64: the server runs at most 64, every call ends', async () => {
      const running = await startWireApp(GateModule, { maxInFlightPerConnection: 64 });
      const client = clientFor(running, { maxPendingCalls: 5_000, timeout: 30_000 });
      try {
        await client.connect();
        let ok = 0;
        let peakRunning = 0;
        gate.maxRunning = 0;
        gate.probe = () => (peakRunning = Math.max(peakRunning, running.server.counters().inFlight));
        const calls: Promise<void>[] = [];
        for (let i = 0; i < 5_000; i++) calls.push(firstValueFrom(client.send('gate', 0)).then(() => void ok++));
        await Promise.all(calls);
        gate.probe = null;
        expect(ok).toBe(5_000);
        expect(peakRunning).toBeLessThanOrEqual(64);
        expect(gate.maxRunning).toBeLessThanOrEqual(64);
        expect(running.server.counters()).toMatchObject({ inFlight: 0, bufferedBytes: 0 });
        expect(client.counters()).toMatchObject({ inFlight: 0, pending: 0, queued: 0 });
      } finally {
        gate.probe = null;
        client.close();
        await running.app.close();
      }
    });
  });

  describe('client: maxPendingCalls', () => {
    let running: RunningServer;
    beforeAll(async () => {
      running = await startWireApp(GateModule);
    });
    afterAll(() => running.app.close());

    it("overflow: 'fail' errors the calls past the limit at once", async () => {
      const client = clientFor(running, { maxPendingCalls: 10 });
      const outcomes = await Promise.all(
        Array.from({ length: 15 }, () =>
          firstValueFrom(client.send('gate', 30)).then(
            () => 'ok',
            (e) => e,
          ),
        ),
      );
      expect(outcomes.filter((o) => o === 'ok')).toHaveLength(10);
      const errors = outcomes.filter((o) => o !== 'ok');
      expect(errors).toHaveLength(5);
      for (const e of errors) {
        expect(e).toBeInstanceOf(WireOverloadedError);
        expect(e.code).toBe('WIRE_OVERLOADED');
      }
      expect(client.counters().pending).toBe(0);
      client.close();
    });

    it("overflow: 'wait' holds the calls past the limit until a slot frees", async () => {
      gate.maxRunning = 0;
      const client = clientFor(running, { maxPendingCalls: 4, overflow: 'wait' });
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => firstValueFrom(client.send('gate', i % 3))),
      );
      expect(results).toEqual(Array.from({ length: 20 }, (_, i) => i % 3));
      expect(gate.maxRunning).toBeLessThanOrEqual(4);
      expect(client.counters()).toMatchObject({ pending: 0, queued: 0 });
      client.close();
    });

    it('a held call still times out', async () => {
      const client = clientFor(running, { maxPendingCalls: 1, overflow: 'wait' });
      const first = firstValueFrom(client.send('gate', 200));
      const second = await firstValueFrom(client.send('gate', 1, { timeout: 50 })).catch((e) => e);
      expect(second).toBeInstanceOf(WireTimeoutError);
      await first;
      expect(client.counters()).toMatchObject({ pending: 0, queued: 0 });
      client.close();
    });
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

    it('paces an AsyncIterable handler by the consumer: 20 000 values, in order, bounded buffering', async () => {
      // The 1 000 000-value run of the same property is in test/soak/flow-control.soak.spec.ts.
      const total = 20_000;
      let received = 0;
      let inOrder = true;
      let maxAhead = 0;
      await new Promise<void>((resolve, reject) => {
        client.send<number>('generate', total).subscribe({
          next: (v) => {
            if (v !== received) inOrder = false;
            received++;
            maxAhead = Math.max(maxAhead, recorder.generated - received);
          },
          error: reject,
          complete: resolve,
        });
      });
      expect(received).toBe(total);
      expect(inOrder).toBe(true);
      expect(maxAhead).toBeLessThanOrEqual(256 + 1);
      expect(recorder.generatorFinalized).toBe(1);
    });

    it('stops pulling the iterable when the consumer unsubscribes', async () => {
      const values: number[] = [];
      await new Promise<void>((resolve) => {
        const sub = client.send<number>('generate', 1_000_000).subscribe((v) => {
          values.push(v);
          if (values.length === 10) {
            sub.unsubscribe();
            resolve();
          }
        });
      });
      await waitFor(() => recorder.generatorFinalized === 1);
      expect(recorder.generated).toBeLessThan(1000);
    });

    // Issue 15: this stream used to fail with WIRE_OVERLOADED once 4 MiB of encoded values waited
    // beyond the credit (maxStreamBufferBytes). Values now wait unencoded, so it completes; the
    // bound on how many may wait (maxStreamBufferValues) is tested in test/e2e/push-streams.spec.ts.
    it('delivers a push stream that outruns its credit whole and in order', async () => {
      const heapBefore = process.memoryUsage().heapUsed;
      const total = 100_000;
      let received = 0;
      let inOrder = true;
      await new Promise<void>((resolve, reject) =>
        client.send<string>('firehose', total).subscribe({
          next: (v) => {
            if (!v.startsWith(`value-${received}-`)) inOrder = false;
            received++;
          },
          error: reject,
          complete: resolve,
        }),
      );
      expect(received).toBe(total);
      expect(inOrder).toBe(true);
      expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(128 * MiB);
      expect(await firstValueFrom(client.send('sum', [1]))).toBe(1);
    });

    it('delivers a push stream within its credit completely', async () => {
      const values = await lastValueFrom(
        new Observable<number>((s) => {
          const sub = client.send<number>('stream', 2000).subscribe(s);
          return sub;
        }),
      );
      expect(values).toBe(2000);
    });
  });
});
