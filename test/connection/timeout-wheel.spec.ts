import { performance } from 'node:perf_hooks';
import { TICK_MS, TimeoutWheel, type WheelClock, type WheelEntry } from '../../lib/connection/timeout-wheel.js';
import { waitFor } from '../helpers/wait.js';

class Entry implements WheelEntry {
  deadline = 0;
  wheelPrev: WheelEntry | null = null;
  wheelNext: WheelEntry | null = null;
  wheelSlot = -1;
  constructor(readonly name: string) {}
}

/** A clock the test moves: `advance()` steps time and runs the wheel's ticker as a real interval would. */
class FakeClock implements WheelClock {
  time = 1_000_000;
  readonly tickers = new Set<() => void>();

  now(): number {
    return this.time;
  }

  every(_ms: number, tick: () => void): () => void {
    this.tickers.add(tick);
    return () => this.tickers.delete(tick);
  }

  /** Moves time by `ms` in steps of one tick, ticking after each step. */
  advance(ms: number): void {
    const end = this.time + ms;
    while (this.time < end) {
      this.time = Math.min(end, this.time + TICK_MS);
      for (const tick of [...this.tickers]) tick();
    }
  }

  /** Moves time by `ms` at once (an event loop stalled that long), then ticks once. */
  stall(ms: number): void {
    this.time += ms;
    for (const tick of [...this.tickers]) tick();
  }
}

function setup() {
  const clock = new FakeClock();
  const fired: { name: string; at: number }[] = [];
  const wheel = new TimeoutWheel<Entry>((e) => fired.push({ name: e.name, at: clock.now() }), clock);
  return { clock, fired, wheel };
}

describe('TimeoutWheel (driven by a fake clock)', () => {
  it('expires entries at or after their deadline, never before, less than two ticks late', () => {
    const { clock, fired, wheel } = setup();
    const now = clock.now();
    const deadlines = { a: now + 30, b: now + 60, c: now + 5, d: now + 33 };
    for (const [name, deadline] of Object.entries(deadlines)) wheel.add(new Entry(name), deadline);
    clock.advance(4); // the ticker's phase is not aligned with the slots, as a real interval's is not
    expect(fired).toEqual([]); // nothing is due yet
    clock.advance(200);
    expect(fired.map((f) => f.name)).toEqual(['c', 'a', 'd', 'b']);
    for (const f of fired) {
      const deadline = deadlines[f.name as keyof typeof deadlines];
      expect(f.at).toBeGreaterThanOrEqual(deadline);
      // Its slot begins at most one tick after the deadline; the ticker reaches it within one more.
      expect(f.at - deadline).toBeLessThan(2 * TICK_MS);
    }
    expect(wheel.count).toBe(0);
  });

  it('does not expire removed entries; remove() is idempotent', () => {
    const { clock, fired, wheel } = setup();
    const keep = new Entry('keep');
    const drop = new Entry('drop');
    wheel.add(drop, clock.now() + 20);
    wheel.add(keep, clock.now() + 20);
    wheel.remove(drop);
    wheel.remove(drop);
    expect(wheel.count).toBe(1);
    clock.advance(100);
    expect(fired.map((f) => f.name)).toEqual(['keep']);
  });

  it('keeps a deadline more than one revolution away until its own round comes', () => {
    const { clock, fired, wheel } = setup();
    const deadline = clock.now() + 512 * TICK_MS + 30;
    wheel.add(new Entry('far'), deadline);
    clock.advance(60);
    expect(fired).toEqual([]);
    clock.advance(512 * TICK_MS - 60); // its slot came round once already: not due then
    expect(fired).toEqual([]);
    expect(wheel.count).toBe(1);
    clock.advance(100);
    expect(fired.map((f) => f.name)).toEqual(['far']);
    expect(fired[0].at).toBeGreaterThanOrEqual(deadline);
    expect(fired[0].at - deadline).toBeLessThan(2 * TICK_MS);
  });

  it('puts a deadline in an already processed tick into the next one', () => {
    const { clock, fired, wheel } = setup();
    wheel.add(new Entry('first'), clock.now() + 50); // starts the ticker
    clock.advance(30);
    wheel.add(new Entry('past'), clock.now() - 25);
    expect(fired).toEqual([]); // not fired synchronously by add()
    clock.advance(TICK_MS);
    expect(fired.map((f) => f.name)).toEqual(['past']);
  });

  it('lets a callback remove other due entries of the same slot', () => {
    const clock = new FakeClock();
    const fired: string[] = [];
    const entries = Array.from({ length: 5 }, (_, i) => new Entry(String(i)));
    const wheel = new TimeoutWheel<Entry>((e) => {
      fired.push(e.name);
      for (const other of entries) wheel.remove(other);
    }, clock);
    for (const e of entries) wheel.add(e, clock.now() + 15);
    clock.advance(50);
    expect(fired).toHaveLength(5); // all were due; every one is reported exactly once
    expect(new Set(fired).size).toBe(5);
    expect(wheel.count).toBe(0);
  });

  it('after a long stall, expires everything due once, visiting each slot at most once', () => {
    const { clock, fired, wheel } = setup();
    const now = clock.now();
    for (let i = 0; i < 2000; i++) wheel.add(new Entry(String(i)), now + 1 + i * 7); // spans 14 s, > one revolution
    clock.stall(20_000);
    expect(fired).toHaveLength(2000);
    expect(new Set(fired.map((f) => f.name)).size).toBe(2000);
    expect(wheel.count).toBe(0);
  });

  it('expires 100 000 entries with one ticker, and stops ticking when empty', () => {
    const { clock, fired, wheel } = setup();
    const now = clock.now();
    for (let i = 0; i < 100_000; i++) wheel.add(new Entry(''), now + (i % 50));
    expect(clock.tickers.size).toBe(1);
    clock.advance(60);
    expect(fired).toHaveLength(100_000);
    expect(clock.tickers.size).toBe(0);
    wheel.add(new Entry('again'), clock.now() + 10); // and starts again for the next one
    expect(clock.tickers.size).toBe(1);
  });

  it('clear() forgets everything without firing and stops the ticker', () => {
    const { clock, fired, wheel } = setup();
    const entry = new Entry('x');
    wheel.add(entry, clock.now() + 10);
    wheel.clear();
    expect(clock.tickers.size).toBe(0);
    expect(wheel.count).toBe(0);
    expect(entry.wheelSlot).toBe(-1);
    clock.advance(100);
    expect(fired).toEqual([]);
  });
});

describe('TimeoutWheel on the real clock', () => {
  it('expires an entry with its default ticker (performance.now(), setInterval)', async () => {
    const fired: number[] = [];
    const wheel = new TimeoutWheel<Entry>((e) => fired.push(performance.now() - e.deadline));
    wheel.add(new Entry('real'), performance.now() + 20);
    await waitFor(() => fired.length === 1, { what: 'the entry to expire' });
    expect(fired[0]).toBeGreaterThanOrEqual(0); // never early
    expect(wheel.count).toBe(0);
  });
});
