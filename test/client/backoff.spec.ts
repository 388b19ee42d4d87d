import { backoffDelay } from '../../lib/client/backoff.js';

/** `random` pinned: 0 is the low end of the jitter (−20 %), 0.5 none, just below 1 the high end (+20 %). */
const at = (r: number) => () => r;

describe('backoffDelay', () => {
  it('doubles from initialMs with no jitter at random() = 0.5, up to maxMs', () => {
    const delays = Array.from({ length: 8 }, (_, attempt) => backoffDelay(attempt, 100, 5000, at(0.5)));
    expect(delays).toEqual([100, 200, 400, 800, 1600, 3200, 5000, 5000]);
  });

  it('jitters by exactly ±20 % at the ends of random()', () => {
    expect(backoffDelay(0, 100, 5000, at(0))).toBe(80);
    expect(backoffDelay(0, 100, 5000, at(0.999999))).toBe(120);
    expect(backoffDelay(3, 100, 5000, at(0))).toBe(640);
    expect(backoffDelay(3, 100, 5000, at(0.75))).toBe(880); // 800 × (0.8 + 0.4 × 0.75)
  });

  it('never exceeds maxMs, even with upward jitter at the cap', () => {
    expect(backoffDelay(10, 100, 5000, at(0.999999))).toBe(5000);
    expect(backoffDelay(10, 100, 5000, at(0))).toBe(4000); // the cap jitters downward only
  });

  it('stays within [0.8 × base, min(maxMs, 1.2 × base)] and ≥ 1 ms for any random() in [0, 1)', () => {
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let attempt = 0; attempt < 40; attempt++) {
      for (const [initial, max] of [
        [1, 1],
        [1, 10],
        [20, 160],
        [100, 5000],
      ]) {
        const base = Math.min(max, initial * 2 ** Math.min(attempt, 30));
        for (let i = 0; i < 20; i++) {
          const d = backoffDelay(attempt, initial, max, random);
          expect(Number.isInteger(d)).toBe(true);
          expect(d).toBeGreaterThanOrEqual(Math.max(1, Math.round(base * 0.8)));
          expect(d).toBeLessThanOrEqual(Math.min(max, Math.round(base * 1.2)));
        }
      }
    }
  });

  it('does not overflow for huge attempt numbers', () => {
    expect(backoffDelay(1_000_000, 100, 5000, at(0.5))).toBe(5000);
    expect(backoffDelay(Number.MAX_SAFE_INTEGER, 100, 5000, at(0.5))).toBe(5000);
  });

  it('uses Math.random by default, within the jitter bounds', () => {
    for (let i = 0; i < 100; i++) {
      const d = backoffDelay(2, 100, 5000);
      expect(d).toBeGreaterThanOrEqual(320);
      expect(d).toBeLessThanOrEqual(480);
    }
  });
});
