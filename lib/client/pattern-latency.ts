import { LatencyHistogram } from '../stats/latency-histogram.js';

/** Patterns whose latency is tracked; calls to others are not hedged with `'p95'`. */
const MAX_PATTERNS = 1024;
/** Latencies a pattern needs before its p95 is trusted. */
const MIN_SAMPLES = 20;
/** The p95 is read again from the histogram after this many new latencies. */
const REFRESH_EVERY = 64;

interface Entry {
  histogram: LatencyHistogram;
  p95: number;
  /** Histogram count when `p95` was read. */
  readAt: number;
}

/**
 * Observed latency per pattern, for hedging after the pattern's 95th percentile: one
 * fixed-size histogram per pattern (at most 1 024 patterns: patterns come from code, but a
 * bound keeps a caller that builds them from data from growing the map).
 */
export class PatternLatency {
  private readonly patterns = new Map<string, Entry>();

  record(pattern: string, ms: number): void {
    let entry = this.patterns.get(pattern);
    if (entry === undefined) {
      if (this.patterns.size >= MAX_PATTERNS) return;
      entry = { histogram: new LatencyHistogram(), p95: -1, readAt: 0 };
      this.patterns.set(pattern, entry);
    }
    entry.histogram.record(ms);
  }

  /** The pattern's p95 in ms, or -1 while fewer than 20 of its calls have completed. */
  p95(pattern: string): number {
    const entry = this.patterns.get(pattern);
    if (entry === undefined) return -1;
    const count = entry.histogram.count;
    if (count < MIN_SAMPLES) return -1;
    if (entry.p95 < 0 || count - entry.readAt >= REFRESH_EVERY) {
      entry.p95 = entry.histogram.percentile(95);
      entry.readAt = count;
    }
    return entry.p95;
  }
}
