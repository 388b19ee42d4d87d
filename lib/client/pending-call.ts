import type { Observer, Unsubscribable } from 'rxjs';
import type { WheelEntry } from './timeout-wheel.js';

/** What a call needs from the connection it was written on. */
export interface CallOwner {
  /** The caller unsubscribed before the call settled. */
  abandon(call: PendingCall): void;
}

/**
 * One outstanding call: its observer, its deadline and its place in the timeout wheel.
 * It is also the teardown rxjs calls on unsubscribe, so a call costs one object and
 * no closures.
 *
 * Invariant: `owner` is non-null exactly while the call is in its connection's table.
 */
export class PendingCall implements WheelEntry, Unsubscribable {
  /** Request id on its connection; 0 until written. */
  id = 0;
  owner: CallOwner | null = null;
  settled = false;
  deadline = 0;
  wheelPrev: WheelEntry | null = null;
  wheelNext: WheelEntry | null = null;
  wheelSlot = -1;

  constructor(
    readonly observer: Observer<unknown>,
    /** Effective timeout in ms; 0 means none. */
    readonly timeoutMs: number,
    /** What to send; dropped once written. */
    public pattern: string,
    public data: unknown,
    public metadata: Record<string, string> | undefined,
  ) {}

  /** rxjs teardown: called on unsubscribe, and after the call completed or failed. */
  unsubscribe(): void {
    if (this.settled) return;
    this.settled = true;
    const owner = this.owner;
    if (owner !== null) owner.abandon(this);
  }
}
