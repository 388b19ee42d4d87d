import 'reflect-metadata';
import { firstValueFrom } from 'rxjs';
import { Target } from '../hardening/target.js';
import { clientFor } from '../helpers/apps.js';
import { peakRetainedBuffers } from '../helpers/gc.js';

/**
 * The long request-stream cases (`npm run soak`): a 1 GiB upload (`SOAK_UPLOAD_MIB`) to a
 * slow handler in a child process, which counts the values it read, with the client's
 * retained Buffer memory sampled after a GC; and many concurrent streaming calls.
 */
const MiB = 1024 * 1024;
const CHUNK = 64 * 1024;
const UPLOAD_MIB = Number(process.env.SOAK_UPLOAD_MIB ?? 1024);

describe('request streams (soak)', () => {
  let target: Target;
  beforeAll(async () => {
    target = await Target.start();
  });
  afterAll(async () => {
    await target.stop();
  });

  it(`a ${UPLOAD_MIB} MiB upload to a handler that reads slowly: every chunk arrives, the client retains a bounded amount`, async () => {
    const client = clientFor(target, { timeout: 0 });
    try {
      await client.connect();
      const chunks = (UPLOAD_MIB * MiB) / CHUNK;
      async function* upload(): AsyncGenerator<Buffer> {
        for (let i = 0; i < chunks; i++) {
          const chunk = Buffer.alloc(CHUNK, i & 0xff);
          yield chunk;
        }
      }
      const { result, peak } = await peakRetainedBuffers(
        () => firstValueFrom(client.send<number>('slow-count', upload())),
        250,
      );
      expect(result).toBe(chunks);
      // Independent of the upload's size (1 GiB): the window's 16 values (and their encoded
      // copies) plus what the process itself allocates meanwhile (jest, the child's output).
      expect(peak).toBeLessThan(8 * MiB);
      process.stdout.write(
        `FIGURE request-stream-soak {"uploadMiB":${UPLOAD_MIB},"clientRetainedPeakMiB":${(peak / MiB).toFixed(1)}}\n`,
      );
    } finally {
      client.close();
    }
  });

  it('256 concurrent streaming calls on one connection, 200 values each: every call gets all its values', async () => {
    const client = clientFor(target, { timeout: 0 });
    try {
      await client.connect();
      const streams = Array.from({ length: 256 }, (_, c) => {
        async function* values(): AsyncGenerator<number> {
          for (let i = 0; i < 200; i++) yield c * 1000 + i;
        }
        return firstValueFrom(client.send<number>('slow-count', values()));
      });
      await expect(Promise.all(streams)).resolves.toEqual(new Array(256).fill(200));
    } finally {
      client.close();
    }
  });
});
