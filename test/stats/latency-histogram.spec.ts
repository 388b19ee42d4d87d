import { LatencyHistogram } from '../../lib/stats/latency-histogram.js';

describe('LatencyHistogram', () => {
  it('reads percentiles within 1/16 of the exact value', () => {
    const h = new LatencyHistogram();
    const samples: number[] = [];
    // Deterministic spread from 5 µs to ~2 s.
    for (let i = 0; i < 10_000; i++) {
      const ms = 0.005 * Math.pow(1.0013, i);
      samples.push(ms);
      h.record(ms);
    }
    samples.sort((a, b) => a - b);
    for (const p of [50, 90, 99, 99.9]) {
      const exact = samples[Math.ceil((p / 100) * samples.length) - 1];
      const got = h.percentile(p);
      expect(got).toBeGreaterThanOrEqual(exact * 0.99);
      expect(got).toBeLessThanOrEqual(exact * (1 + 1 / 16) + 0.001);
    }
    expect(h.count).toBe(10_000);
    expect(h.maxMs).toBeCloseTo(samples.at(-1)!, 2);
  });

  it('handles zero, tiny and huge values', () => {
    const h = new LatencyHistogram();
    h.record(0);
    h.record(0.0004);
    h.record(10 * 24 * 3600 * 1000);
    expect(h.percentile(50)).toBe(0);
    expect(h.percentile(100)).toBeGreaterThan(2_000_000);
  });

  it('is empty after reset', () => {
    const h = new LatencyHistogram();
    h.record(3);
    h.reset();
    expect(h.count).toBe(0);
    expect(h.percentile(99)).toBe(0);
  });
});
