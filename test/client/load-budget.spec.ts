import { LoadBudget } from '../../lib/client/load-budget.js';

/** Spends until refused; returns how many were granted. */
function drain(budget: LoadBudget, now: number): number {
  let n = 0;
  while (budget.trySpend(now)) n++;
  return n;
}

describe('LoadBudget (retry budget and hedge bucket), driven by an injected clock', () => {
  it('grants ratio × calls started over the window plus minPerSecond each second', () => {
    const budget = new LoadBudget(0.2, 10);
    for (let i = 0; i < 100; i++) budget.deposit(500);
    expect(budget.available(500)).toBe(30);
    expect(drain(budget, 500)).toBe(30); // 10 from the floor + 20 % of 100
    expect(budget.trySpend(999)).toBe(false);
  });

  it('the per-second floor renews every second and cannot be saved up', () => {
    const budget = new LoadBudget(0.2, 10);
    expect(drain(budget, 0)).toBe(10);
    expect(drain(budget, 1000)).toBe(10);
    // Five quiet seconds do not add up to 50.
    expect(drain(budget, 6000)).toBe(10);
  });

  it('deposits expire after 10 s, and so do the sends they paid for', () => {
    const budget = new LoadBudget(0.5, 0);
    for (let i = 0; i < 10; i++) budget.deposit(0);
    expect(drain(budget, 100)).toBe(5);
    expect(drain(budget, 9999)).toBe(0);
    // Second 10: the calls of second 0 left the window, and the sends they paid for with them.
    expect(drain(budget, 10_000)).toBe(0);
    for (let i = 0; i < 4; i++) budget.deposit(10_500);
    expect(drain(budget, 10_500)).toBe(2);
  });

  it('a window that slides by a few seconds keeps the newer deposits', () => {
    const budget = new LoadBudget(0.1, 0);
    for (let s = 0; s < 10; s++) for (let i = 0; i < 10; i++) budget.deposit(s * 1000);
    expect(budget.available(9000)).toBe(10);
    // Three seconds later seconds 0-2 expired: 70 calls left in the window.
    expect(budget.available(12_000)).toBe(7);
    expect(budget.available(30_000)).toBe(0);
  });

  it('with ratio 0.05 and no floor it bounds hedges to 5 % of calls (a token bucket with no burst)', () => {
    const budget = new LoadBudget(0.05, 0);
    let granted = 0;
    for (let i = 0; i < 1000; i++) {
      const now = i * 5; // 200 calls/s for 5 s
      budget.deposit(now);
      if (budget.trySpend(now)) granted++;
    }
    expect(granted).toBe(50);
  });
});
