import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/**
 * Buffer memory (`arrayBuffers`) still referenced, in bytes: after full collections a turn
 * apart, since V8 releases the backing stores of dead ArrayBuffers after the collection
 * (one `gc()` alone can leave megabytes of garbage counted).
 */
export async function settledArrayBuffers(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage().arrayBuffers;
}

/**
 * Runs `run` while sampling `settledArrayBuffers()` every `everyMs`; returns its result and
 * the peak growth of retained Buffer memory over the value before it started.
 */
export async function peakRetainedBuffers<T>(
  run: () => Promise<T>,
  everyMs = 50,
): Promise<{ result: T; peak: number }> {
  const base = await settledArrayBuffers();
  let peak = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      peak = Math.max(peak, (await settledArrayBuffers()) - base);
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  try {
    return { result: await run(), peak };
  } finally {
    sampling = false;
    await sampler;
  }
}

/** Heap in use after a full garbage collection, in bytes. */
export async function settledHeap(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setImmediate(r));
    gc();
  }
  return process.memoryUsage().heapUsed;
}
