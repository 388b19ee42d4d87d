import { performance } from 'node:perf_hooks';

/** An entry links itself into the wheel: no allocation per add. */
export interface WheelEntry {
  /** Absolute deadline on the wheel's clock (`performance.now()` unless one is given), in ms. */
  deadline: number;
  wheelPrev: WheelEntry | null;
  wheelNext: WheelEntry | null;
  /** Slot index, or -1 while not in the wheel. */
  wheelSlot: number;
}

export const TICK_MS = 10;

/** Where a wheel reads the time and how it gets ticked: the real clock, or a test's. */
export interface WheelClock {
  /** Milliseconds on the clock deadlines are given on. */
  now(): number;
  /** Calls `tick` every `ms` until the returned function is called. */
  every(ms: number, tick: () => void): () => void;
}

/** `performance.now()` and an `unref()`ed interval. */
const REAL_CLOCK: WheelClock = {
  now: () => performance.now(),
  every: (ms, tick) => {
    const timer = setInterval(tick, ms).unref();
    return () => clearInterval(timer);
  },
};
const SLOTS = 512;
const SLOT_MASK = SLOTS - 1;

/**
 * A hashed timing wheel: one `setInterval` for every pending deadline instead of one
 * `setTimeout` per call. Adding and removing are O(1) list operations on the entry
 * itself; each tick visits one slot (entries more than one revolution away stay until
 * their round comes). Deadlines fire never early, and less than two ticks (20 ms) late
 * plus event-loop delay: a deadline waits for the next slot boundary, which the ticker
 * (at its own phase) reaches within one more tick.
 *
 * The ticker runs only while entries exist, and is `unref()`ed so pending calls alone
 * do not keep the process alive (their socket does).
 */
export class TimeoutWheel<T extends WheelEntry> {
  private readonly heads: (WheelEntry | null)[] = new Array<WheelEntry | null>(SLOTS).fill(null);
  private size = 0;
  /** Last tick number whose slot has been processed. */
  private lastTick: number;
  /** Stops the ticker; null while none runs. The ticker stops at the first tick that finds the wheel empty. */
  private stopTicker: (() => void) | null = null;
  /** Scratch list reused by every tick. */
  private readonly due: T[] = [];

  constructor(
    private readonly onExpire: (entry: T) => void,
    private readonly clock: WheelClock = REAL_CLOCK,
  ) {
    this.lastTick = Math.floor(clock.now() / TICK_MS);
  }

  get count(): number {
    return this.size;
  }

  add(entry: T, deadline: number): void {
    entry.deadline = deadline;
    // A deadline in an already processed tick goes into the next one to be processed.
    const tick = Math.max(Math.ceil(deadline / TICK_MS), this.lastTick + 1);
    const slot = tick & SLOT_MASK;
    const head = this.heads[slot];
    entry.wheelSlot = slot;
    entry.wheelPrev = null;
    entry.wheelNext = head;
    if (head !== null) head.wheelPrev = entry;
    this.heads[slot] = entry;
    if (++this.size === 1 && this.stopTicker === null) {
      this.lastTick = Math.floor(this.clock.now() / TICK_MS);
      this.stopTicker = this.clock.every(TICK_MS, this.tick);
    }
  }

  remove(entry: T): void {
    const slot = entry.wheelSlot;
    if (slot < 0) return;
    const prev = entry.wheelPrev;
    const next = entry.wheelNext;
    if (prev === null) this.heads[slot] = next;
    else prev.wheelNext = next;
    if (next !== null) next.wheelPrev = prev;
    entry.wheelPrev = entry.wheelNext = null;
    entry.wheelSlot = -1;
    this.size--;
  }

  /** Expires everything due at `now` (exposed for tests). */
  readonly tick = (): void => {
    const now = this.clock.now();
    const current = Math.floor(now / TICK_MS);
    // After a long stall every slot may hold due entries: visit each at most once.
    const last = Math.min(current, this.lastTick + SLOTS);
    for (let t = this.lastTick + 1; t <= last; t++) this.expireSlot(t & SLOT_MASK, now);
    this.lastTick = current;
    if (this.size === 0 && this.stopTicker !== null) {
      this.stopTicker();
      this.stopTicker = null;
    }
  };

  /** Stops the ticker and forgets every entry without expiring it. */
  clear(): void {
    for (let i = 0; i < SLOTS; i++) {
      let e = this.heads[i];
      while (e !== null) {
        const next = e.wheelNext;
        e.wheelPrev = e.wheelNext = null;
        e.wheelSlot = -1;
        e = next;
      }
      this.heads[i] = null;
    }
    this.size = 0;
    if (this.stopTicker !== null) {
      this.stopTicker();
      this.stopTicker = null;
    }
  }

  private expireSlot(slot: number, now: number): void {
    // Unlink everything due first, then call back: a callback may remove other
    // entries of this slot (an rxjs error tearing down sibling calls).
    const due = this.due;
    let e = this.heads[slot];
    while (e !== null) {
      const next = e.wheelNext;
      if (e.deadline <= now) {
        this.remove(e as T);
        due.push(e as T);
      }
      e = next;
    }
    if (due.length === 0) return;
    for (let i = 0; i < due.length; i++) this.onExpire(due[i]);
    due.length = 0;
  }
}
