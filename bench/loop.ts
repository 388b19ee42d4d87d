/** The closed loop of the bench, its watchdogs, and small async helpers. */
import { performance } from 'node:perf_hooks';
import { Histogram } from './histogram.js';

export type CallDone = (ok: boolean, err?: unknown) => void;
/** Starts call number `k` (of `variants` payloads) and reports its outcome. */
export type IssueFn = (k: number, done: CallDone) => void;

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
export const log = (line: string) => process.stderr.write(line + '\n');

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolvePromise(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

/** Keeps `inFlight` calls outstanding: each completion starts the next call. */
export class LoadLoop {
  hist = new Histogram();
  completed = 0;
  windowErrors = 0;
  totalErrors = 0;
  firstError: string | null = null;
  outstanding = 0;
  lastProgress = performance.now();
  private seq = 0;
  private stopped = false;
  private finished = false;

  constructor(
    private readonly issueCall: IssueFn,
    private readonly inFlight: number,
    private readonly variants: number,
  ) {}

  start(): void {
    this.lastProgress = performance.now();
    for (let i = 0; i < this.inFlight; i++) this.issue();
  }

  /** Starts the measured window: counters and histogram start from zero. */
  resetWindow(): void {
    this.hist = new Histogram();
    this.completed = 0;
    this.windowErrors = 0;
  }

  /** Stops issuing new calls; the outstanding ones may still complete. */
  stop(): void {
    this.stopped = true;
  }

  /** Ignore whatever still arrives (the connection is about to be torn down). */
  finish(): void {
    this.stopped = true;
    this.finished = true;
  }

  private issue(): void {
    const k = this.seq++ % this.variants;
    const t0 = performance.now();
    this.outstanding++;
    this.issueCall(k, (ok, err) => {
      if (this.finished) return;
      this.outstanding--;
      const t1 = performance.now();
      this.lastProgress = t1;
      if (ok) {
        this.completed++;
        this.hist.record((t1 - t0) * 1000);
      } else {
        this.windowErrors++;
        this.totalErrors++;
        if (this.firstError === null) this.firstError = err instanceof Error ? err.message : String(err);
      }
      if (!this.stopped) {
        // After an error, do not re-issue synchronously: a failing client must not spin.
        if (ok) this.issue();
        else setTimeout(() => !this.stopped && this.issue(), 1);
      }
    });
  }
}

/** What the watchdogs read of a loop (or of several seen as one). */
export type Progress = Pick<LoadLoop, 'outstanding' | 'lastProgress'>;

/** Waits `ms`, returning early with 'stall' if the loop stops making progress. */
export async function watch(loop: Progress, ms: number, stallMs: number): Promise<'ok' | 'stall'> {
  const end = performance.now() + ms;
  for (;;) {
    const now = performance.now();
    if (now >= end) return 'ok';
    if (loop.outstanding > 0 && now - loop.lastProgress > stallMs) return 'stall';
    await sleep(Math.min(50, end - now));
  }
}

/** Longest wait for the calls outstanding at the end of a window, even if they progress. */
export const DRAIN_LIMIT_MS = 30_000;

/** After `stop()`: waits until no call is outstanding, or progress stops. */
export async function watchDrain(loop: Progress, stallMs: number): Promise<'ok' | 'stall' | 'slow'> {
  const start = performance.now();
  for (;;) {
    if (loop.outstanding === 0) return 'ok';
    const now = performance.now();
    if (now - loop.lastProgress > stallMs) return 'stall';
    if (now - start > DRAIN_LIMIT_MS) return 'slow';
    await sleep(10);
  }
}
