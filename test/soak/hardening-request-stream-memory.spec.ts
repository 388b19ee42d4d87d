import 'reflect-metadata';
import { firstValueFrom, Observable } from 'rxjs';
import { WireClient, WireOverloadedError } from '../../lib/index.js';
import { REQUEST_STREAM_WINDOW } from '../../lib/server/request-payload.js';
import { peakRetainedBuffers } from '../helpers/gc.js';
import { Target } from '../hardening/target.js';

/**
 * A slow handler must keep the caller's memory bounded (issue 15): the server runs in a
 * child process (test/hardening/target-server.ts, `slow-count`: 1 ms per value), the client
 * here, and what is measured is the client's retained Buffer memory (`arrayBuffers` after
 * full GCs, sampled every 50 ms) while it uploads
 * 16 MiB in 64 KiB chunks. Pulled from an async generator, at most the window (16 values) is
 * in flight, whatever the upload's size; pushed by an Observable, what is held beyond the
 * credit is bounded by `maxStreamHeldValues`, and one more fails the call.
 */
const MiB = 1024 * 1024;
const CHUNK = 64 * 1024;
const CHUNKS = (16 * MiB) / CHUNK;

async function* upload(): AsyncGenerator<Buffer> {
  for (let i = 0; i < CHUNKS; i++) yield Buffer.alloc(CHUNK, i & 0xff);
}

describe('request streams: a slow handler keeps the client memory bounded', () => {
  let target: Target;
  beforeAll(async () => {
    target = await Target.start();
  });
  afterAll(async () => {
    await target.stop();
  });

  it('an AsyncIterable source: 16 MiB uploaded with at most the window in flight', async () => {
    const client = new WireClient({ host: '127.0.0.1', port: target.port, timeout: 60_000 });
    try {
      await client.connect();
      const { result, peak } = await peakRetainedBuffers(() =>
        firstValueFrom(client.send<number>('slow-count', upload())),
      );
      expect(result).toBe(CHUNKS);
      // 16 values of 64 KiB in flight (each encoded once more for the socket), plus the
      // encoder's arenas and the chunk being produced: far below the 16 MiB uploaded.
      const bound = 2 * REQUEST_STREAM_WINDOW * CHUNK + 2 * MiB;
      expect(peak).toBeLessThan(bound);
      process.stdout.write(
        `FIGURE request-stream-client-memory {"asyncIterable16MiB":"peak +${(peak / MiB).toFixed(1)} MiB (bound ${(bound / MiB).toFixed(0)} MiB)"}\n`,
      );
    } finally {
      client.close();
    }
  });

  it('an Observable source pushing everything at once: held up to maxStreamHeldValues, then WireOverloadedError', async () => {
    const held = 64;
    const client = new WireClient({ host: '127.0.0.1', port: target.port, timeout: 60_000, maxStreamHeldValues: held });
    try {
      await client.connect();
      let pushed = 0;
      const source = new Observable<Buffer>((subscriber) => {
        for (let i = 0; i < CHUNKS && !subscriber.closed; i++) {
          pushed++;
          subscriber.next(Buffer.alloc(CHUNK, 1));
        }
        subscriber.complete();
      });
      const { result, peak } = await peakRetainedBuffers(() =>
        firstValueFrom(client.send<number>('slow-count', source)).catch((e: unknown) => e),
      );
      expect(result).toBeInstanceOf(WireOverloadedError);
      // The source was stopped right past the bound: the window's 16 sent, 64 held, the one
      // that failed the call, and one more that finds the call over and ends the subscription.
      expect(pushed).toBe(REQUEST_STREAM_WINDOW + held + 2);
      expect(peak).toBeLessThan(2 * (REQUEST_STREAM_WINDOW + held + 1) * CHUNK + 2 * MiB);
    } finally {
      client.close();
    }
  });
});
