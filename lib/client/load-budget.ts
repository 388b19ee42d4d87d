/** The window a budget counts calls over, in one-second slots. */
const WINDOW_SECONDS = 10;

/**
 * How much extra load a client may add (retries, hedged copies): at most `ratio` times
 * the calls started over the last 10 s, plus `minPerSecond` in every second (so a client
 * with little traffic can still retry). Tokens older than the window expire, as in
 * Finagle's `RetryBudget`; unlike its reserve, the floor cannot be saved up, so over any
 * stretch of T seconds the extra sends stay within `ratio` × calls + `minPerSecond` × ⌈T⌉.
 *
 * Time is given by the caller (`performance.now()` in ms), which is also how the unit
 * tests drive it. O(1) per call, no allocation.
 */
export class LoadBudget {
  /** Calls started, per second of the window (ring indexed by absolute second). */
  private readonly started = new Float64Array(WINDOW_SECONDS);
  /** Extra sends paid from the ratio part, per second of the window. */
  private readonly spent = new Float64Array(WINDOW_SECONDS);
  private startedInWindow = 0;
  private spentInWindow = 0;
  /** Absolute second (ms / 1000) of the newest slot; the ring holds seconds `second - 9 … second`. */
  private second = Number.NEGATIVE_INFINITY;
  /** Extra sends paid from `minPerSecond` in the current second. */
  private floorSpent = 0;

  constructor(
    /** Extra sends per call started (percent / 100). */
    private readonly ratio: number,
    private readonly minPerSecond: number,
  ) {}

  /** A call started at `now`: it earns `ratio` of an extra send. */
  deposit(now: number): void {
    this.advance(now);
    this.started[this.second % WINDOW_SECONDS]++;
    this.startedInWindow++;
  }

  /** Takes one extra send if the budget allows it at `now`. */
  trySpend(now: number): boolean {
    this.advance(now);
    if (this.floorSpent < this.minPerSecond) {
      this.floorSpent++;
      return true;
    }
    if (this.spentInWindow + 1 > this.ratio * this.startedInWindow) return false;
    this.spent[this.second % WINDOW_SECONDS]++;
    this.spentInWindow++;
    return true;
  }

  /** Extra sends the budget would allow now (diagnostics, tests). */
  available(now: number): number {
    this.advance(now);
    return (
      Math.max(0, this.minPerSecond - this.floorSpent) +
      Math.max(0, Math.floor(this.ratio * this.startedInWindow - this.spentInWindow))
    );
  }

  /** Moves the window to `now`'s second, expiring the slots that fell out of it. */
  private advance(now: number): void {
    const second = Math.floor(now / 1000);
    if (second === this.second) return;
    const gap = Math.min(second - this.second, WINDOW_SECONDS);
    for (let k = 1; k <= gap; k++) {
      // The slot of second `second - gap + k`, which last held the second ten before it.
      const i = (((second - gap + k) % WINDOW_SECONDS) + WINDOW_SECONDS) % WINDOW_SECONDS;
      this.startedInWindow -= this.started[i];
      this.spentInWindow -= this.spent[i];
      this.started[i] = 0;
      this.spent[i] = 0;
    }
    this.second = second;
    this.floorSpent = 0;
  }
}
