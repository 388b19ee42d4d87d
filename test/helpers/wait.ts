import { once as onceEvent, type EventEmitter } from 'node:events';
import { firstValueFrom, type Observable } from 'rxjs';

/**
 * The one place tests wait. Tests wait on an event, on a condition (polled, with a
 * bounded deadline and a message that says what did not happen), or on an ordering
 * barrier; never for a fixed time and then assert that nothing happened, which passes
 * on a slow machine when the code is broken.
 */

export interface WaitOptions {
  /** Give up after this long (default 2 000 ms). */
  timeoutMs?: number;
  /** What is awaited, for the failure message ("the server to see 3 connections"). */
  what?: string;
  /** Poll period in ms (default 5; 0 polls once per event-loop turn). */
  everyMs?: number;
}

/** Resolves once `predicate` holds; rejects with "timed out after N ms waiting for <what>". */
export async function waitFor(predicate: () => boolean, options: WaitOptions | number = {}): Promise<void> {
  const {
    timeoutMs = 2000,
    what = 'the condition',
    everyMs = 5,
  } = typeof options === 'number' ? { timeoutMs: options } : options;
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await (everyMs === 0 ? nextTurn() : pause(everyMs));
  }
}

/**
 * Polls an async `read` until `done` holds for its value, and returns the value; after
 * `timeoutMs` returns the last value read, so the caller's assertion shows what it was.
 */
export async function eventually<T>(
  read: () => T | Promise<T>,
  done: (value: T) => boolean,
  options: WaitOptions = {},
): Promise<T> {
  const { timeoutMs = 5000, everyMs = 10 } = options;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await pause(everyMs);
  }
}

/** The first `emitter` `event`, with its arguments; rejects after `timeoutMs` naming the event. */
export async function once<T extends unknown[] = unknown[]>(
  emitter: EventEmitter,
  event: string,
  timeoutMs = 2000,
): Promise<T> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    return (await onceEvent(emitter, event, { signal })) as T;
  } catch (err) {
    if (signal.aborted)
      throw new Error(`timed out after ${timeoutMs} ms waiting for the '${event}' event`, { cause: err });
    throw err;
  }
}

/** Settles as `promise` does, or rejects after `timeoutMs` naming `what`. */
export async function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>(
        (_, reject) =>
          (timer = setTimeout(
            () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
            timeoutMs,
          )),
      ),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The pattern the test apps answer with `true` (test-app.ts, `BarrierController`). */
export const BARRIER_PATTERN = 'test.barrier';

/**
 * An ordering barrier: sends a later request on the same connection and awaits its
 * answer. Frames are handled in order on a connection, so once it is answered, the
 * server has handled everything the client sent before it, and the client has read
 * everything the server sent before the answer. Use a client with one connection.
 */
export async function barrier(client: { send(pattern: string, data: unknown): Observable<unknown> }): Promise<void> {
  const answer = await firstValueFrom(client.send(BARRIER_PATTERN, {}));
  if (answer !== true) throw new Error(`barrier answered ${String(answer)}, expected true`);
}

/** One event-loop turn (I/O callbacks already queued run first). */
export function nextTurn(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/**
 * A real passage of time, for the few places where time passing IS the input (a peer that
 * trickles bytes, a handler that takes a while). Not for waiting on the code under test.
 */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
