import { performance } from 'node:perf_hooks';
import { WireError } from '../errors.js';
import { LatencyHistogram } from './latency-histogram.js';

/** Outcome of a call as counted: success, cancelled by the caller, or failed. */
export const CALL_CANCELLED: unique symbol = Symbol('cancelled');
export type Outcome = null | typeof CALL_CANCELLED | { error: unknown };

/** Code under which a failure is counted: the `WireError` code, or APPLICATION for a handler's error. */
export function failureCode(err: unknown): string {
  return err instanceof WireError ? err.code : 'APPLICATION';
}

export interface CallStatsSnapshot {
  started: number;
  succeeded: number;
  cancelled: number;
  /** Failures by code (`WIRE_TIMEOUT`, `WIRE_CONNECTION`, ..., `APPLICATION`). */
  failed: Record<string, number>;
  /** Latency of completed calls (succeeded or failed), in ms. */
  latencyMs: { p50: number; p90: number; p99: number; max: number; count: number };
}

/**
 * Call counters and a latency histogram: a few increments and one array write per call,
 * cheap enough to be always on.
 */
export class CallStats {
  started = 0;
  succeeded = 0;
  cancelled = 0;
  private readonly failed = new Map<string, number>();
  private readonly latency = new LatencyHistogram();

  /** A call ended; `endedAt` if the caller has the time already (same clock as `startedAt`). */
  settled(startedAt: number, outcome: Outcome, endedAt = performance.now()): void {
    if (outcome === CALL_CANCELLED) {
      this.cancelled++;
      return;
    }
    this.latency.record(endedAt - startedAt);
    if (outcome === null) this.succeeded++;
    else this.fail(failureCode(outcome.error));
  }

  /** A call refused before it ran. */
  fail(code: string): void {
    this.failed.set(code, (this.failed.get(code) ?? 0) + 1);
  }

  snapshot(): CallStatsSnapshot {
    const h = this.latency;
    return {
      started: this.started,
      succeeded: this.succeeded,
      cancelled: this.cancelled,
      failed: Object.fromEntries(this.failed),
      latencyMs: { p50: h.percentile(50), p90: h.percentile(90), p99: h.percentile(99), max: h.maxMs, count: h.count },
    };
  }
}
