import { performance } from 'node:perf_hooks';
import { TICK_MS, TimeoutWheel, type WheelEntry } from '../../lib/connection/timeout-wheel.js';

class Entry implements WheelEntry {
  deadline = 0;
  wheelPrev: WheelEntry | null = null;
  wheelNext: WheelEntry | null = null;
  wheelSlot = -1;
  constructor(readonly name: string) {}
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('TimeoutWheel', () => {
  it('expires entries at or after their deadline, never before', async () => {
    const fired: { name: string; late: number }[] = [];
    const wheel = new TimeoutWheel<Entry>((e) => fired.push({ name: e.name, late: performance.now() - e.deadline }));
    const now = performance.now();
    wheel.add(new Entry('a'), now + 30);
    wheel.add(new Entry('b'), now + 60);
    wheel.add(new Entry('c'), now + 5);
    await sleep(120);
    expect(fired.map((f) => f.name)).toEqual(['c', 'a', 'b']);
    for (const f of fired) expect(f.late).toBeGreaterThanOrEqual(0);
    expect(wheel.count).toBe(0);
  });

  it('does not expire removed entries', async () => {
    const fired: string[] = [];
    const wheel = new TimeoutWheel<Entry>((e) => fired.push(e.name));
    const keep = new Entry('keep');
    const drop = new Entry('drop');
    wheel.add(drop, performance.now() + 20);
    wheel.add(keep, performance.now() + 20);
    wheel.remove(drop);
    wheel.remove(drop); // idempotent
    await sleep(60);
    expect(fired).toEqual(['keep']);
  });

  it('handles deadlines more than one revolution away', async () => {
    const fired: string[] = [];
    const wheel = new TimeoutWheel<Entry>((e) => fired.push(e.name));
    const far = new Entry('far');
    wheel.add(far, performance.now() + 512 * TICK_MS + 30);
    await sleep(60);
    wheel.tick();
    expect(fired).toEqual([]);
    wheel.remove(far);
    expect(wheel.count).toBe(0);
  });

  it('lets a callback remove other due entries of the same slot', async () => {
    const fired: string[] = [];
    const entries = Array.from({ length: 5 }, (_, i) => new Entry(String(i)));
    const wheel = new TimeoutWheel<Entry>((e) => {
      fired.push(e.name);
      for (const other of entries) wheel.remove(other);
    });
    const deadline = performance.now() + 15;
    for (const e of entries) wheel.add(e, deadline);
    await sleep(50);
    expect(fired).toHaveLength(5); // all were due; every one is reported exactly once
    expect(new Set(fired).size).toBe(5);
  });

  it('expires 100 000 entries with one ticker and stops ticking when empty', async () => {
    let fired = 0;
    const wheel = new TimeoutWheel<Entry>(() => fired++);
    const now = performance.now();
    for (let i = 0; i < 100_000; i++) wheel.add(new Entry(''), now + (i % 50));
    await sleep(120);
    expect(fired).toBe(100_000);
    expect((wheel as unknown as { timer: unknown }).timer).toBeNull();
  });

  it('clear() forgets everything without firing', async () => {
    let fired = 0;
    const wheel = new TimeoutWheel<Entry>(() => fired++);
    wheel.add(new Entry('x'), performance.now() + 10);
    wheel.clear();
    await sleep(40);
    expect(fired).toBe(0);
    expect(wheel.count).toBe(0);
  });
});
