import type { Observer, Unsubscribable } from 'rxjs';
import type { WheelEntry } from '../connection/timeout-wheel.js';
import { CALL_CANCELLED as CANCELLED, type Outcome as CallOutcome } from '../stats/call-stats.js';
import { WireCancelledError } from '../errors.js';
import type { ClientCallTrace } from '../diagnostics/instrumentation-hooks.js';

/** The connection a call was written on. */
export interface CallOwner {
  /** The caller gave up on a written call: forget it and tell the server. */
  abandon(call: PendingCall): void;
  /** The call's deadline passed while it was written here: cancel it and fail it with `WireTimeoutError`. */
  expire(call: PendingCall): void;
}

/** Whoever accounts for calls (the client): told exactly once when a call ends. */
export interface CallTracker {
  /** `outcome`: null for success, CANCELLED when the caller unsubscribed, else the error. */
  onSettled(call: PendingCall, outcome: CallOutcome): void;
  /** The caller gave up on a call that was not written yet. */
  withdraw(call: PendingCall): void;
  /** The call was certainly not processed (NACK, or never sent): send it again elsewhere. */
  resend(call: PendingCall, reason: Error): void;
  /**
   * The call's attempt on its connection failed with `err` (the call is out of that
   * connection's table and out of the wheel): retry it, or fail it.
   */
  attemptFailed(call: PendingCall, err: unknown): void;
  /** Hedging: `winner`, one of two copies of a call, has the first answer; the other must stop. */
  raceWon(winner: PendingCall): void;
}

/**
 * One outstanding call: its observer, its deadline (timeout wheel links), its place in
 * a queue while it waits for a connection (queue links), and its id once written.
 * It is also the teardown rxjs calls on unsubscribe, so a call costs one object and
 * no closures (except the abort listener of a call made inside another call).
 *
 * Invariants: `owner` is non-null exactly while the call is in its connection's table;
 * exactly one of `complete`, `fail` or `unsubscribe` ends it, through `finish`.
 */
export class PendingCall implements WheelEntry, Unsubscribable {
  /** Request id on its connection; 0 until written. */
  id = 0;
  owner: CallOwner | null = null;
  settled = false;
  /** Counted against `maxPendingCalls` (false while held by `overflow: 'wait'`). */
  accepted = false;
  /** Stream values delivered since the last CREDIT grant. */
  delivered = 0;
  /** Encoder generation when written: tells whether the frame has left the process. */
  generation = -1;
  /** Times the call was re-sent after a NACK or an unsent frame. */
  resends = 0;
  /** Times the call was retried after it may have run (idempotent calls only). */
  retries = 0;
  /** Safe to run more than once: may be retried after it was written, and hedged. */
  idempotent = false;
  /** A stream value has been delivered: the call can no longer be retried or hedged. */
  streamed = false;
  /** Endpoint of the connection the call was last written on. */
  lastEndpoint: string | null = null;
  /** Endpoints tried, once the call is re-sent (null before: no array for a call sent once). */
  tried: string[] | null = null;
  /**
   * Hedging: the other copy of this call while both may answer (and, once the copy has won,
   * the link between the copy and the call it answers for); null for a call never hedged.
   */
  hedge: PendingCall | null = null;
  /** A hedged copy: not counted anywhere, its answers go to `hedge`, the call it copies. */
  isCopy = false;
  /** The race between the copies is decided (first value, end, or an error that is not retried). */
  answered = false;
  /** Fires when the call should be hedged (`hedge.delayMs` after it was written). */
  hedgeTimer: NodeJS.Timeout | null = null;
  /** When the call started (`performance.now()`), for latency statistics. */
  startedAt = 0;
  /** When the answer that completed it was read (`performance.now()` of the socket read); 0 if it ended otherwise. */
  answeredAt = 0;
  /** The instrumentation following this call (a span), if one is enabled; ended with the call. */
  trace: ClientCallTrace | null = null;

  deadline = 0;
  wheelPrev: WheelEntry | null = null;
  wheelNext: WheelEntry | null = null;
  wheelSlot = -1;

  queuePrev: PendingCall | null = null;
  queueNext: PendingCall | null = null;
  /** The queue holding this call, if any. */
  queue: CallQueue | null = null;

  private parentSignal: AbortSignal | null = null;
  private onParentAbort: (() => void) | null = null;

  constructor(
    readonly observer: Observer<unknown>,
    readonly tracker: CallTracker,
    /** Effective timeout in ms; 0 means none. */
    public timeoutMs: number,
    /** What to send; dropped once written. */
    public pattern: string,
    public data: unknown,
    public metadata: Record<string, string> | undefined,
  ) {}

  /** rxjs teardown: called on unsubscribe, and after the call completed or failed. */
  unsubscribe(): void {
    if (this.settled) return;
    if (this.owner !== null) this.owner.abandon(this);
    else this.tracker.withdraw(this);
    this.finish(CANCELLED);
  }

  /** Delivers a stream value (the call goes on). */
  next(value: unknown): void {
    if (this.hedge !== null) {
      if (!this.answered) this.tracker.raceWon(this);
      if (this.isCopy) return this.hedge?.next(value);
    }
    this.streamed = true;
    this.observer.next(value);
  }

  /** The attempt on its connection failed: the tracker retries the call or fails it. */
  attemptFailed(err: unknown): void {
    if (this.settled) return;
    this.tracker.attemptFailed(this, err);
  }

  /** Ends the call successfully; `value` (if any) is delivered first. */
  complete(hasValue: boolean, value?: unknown): void {
    if (this.settled) return;
    if (this.hedge !== null) {
      if (!this.answered) this.tracker.raceWon(this);
      const primary = this.hedge;
      if (this.isCopy) {
        this.finish(null);
        primary?.complete(hasValue, value);
        return;
      }
    }
    this.finish(null);
    if (hasValue) this.observer.next(value);
    this.observer.complete();
  }

  /** Ends the call with `err`. */
  fail(err: unknown): void {
    if (this.settled) return;
    if (this.hedge !== null) {
      if (!this.answered) this.tracker.raceWon(this);
      const primary = this.hedge;
      if (this.isCopy) {
        this.finish({ error: err });
        primary?.fail(err);
        return;
      }
    }
    this.finish({ error: err });
    this.observer.error(err);
  }

  /** Cancels this call when `signal` (the call it was made for) aborts. */
  followParent(signal: AbortSignal): void {
    this.parentSignal = signal;
    this.onParentAbort = () => {
      if (this.settled) return;
      if (this.owner !== null) this.owner.abandon(this);
      else this.tracker.withdraw(this);
      this.fail(new WireCancelledError('cancelled because the call it was made for ended'));
    };
    signal.addEventListener('abort', this.onParentAbort, { once: true });
  }

  /** Marks the call ended and tells the tracker. Every path that ends a call goes through it once. */
  private finish(outcome: CallOutcome): void {
    this.settled = true;
    this.data = undefined;
    this.metadata = undefined;
    if (this.onParentAbort !== null) {
      this.parentSignal!.removeEventListener('abort', this.onParentAbort);
      this.onParentAbort = null;
      this.parentSignal = null;
    }
    if (this.trace !== null) {
      this.trace.end(outcome);
      this.trace = null;
    }
    this.tracker.onSettled(this, outcome);
  }
}

/** FIFO of calls waiting to be written, linked through the calls themselves: O(1) removal. */
export class CallQueue {
  private head: PendingCall | null = null;
  private tail: PendingCall | null = null;
  length = 0;

  push(call: PendingCall): void {
    call.queue = this;
    call.queuePrev = this.tail;
    call.queueNext = null;
    if (this.tail === null) this.head = call;
    else this.tail.queueNext = call;
    this.tail = call;
    this.length++;
  }

  /** Puts a call back at the head (a re-sent call keeps its place in line). */
  unshift(call: PendingCall): void {
    call.queue = this;
    call.queuePrev = null;
    call.queueNext = this.head;
    if (this.head === null) this.tail = call;
    else this.head.queuePrev = call;
    this.head = call;
    this.length++;
  }

  peek(): PendingCall | null {
    return this.head;
  }

  shift(): PendingCall | null {
    const call = this.head;
    if (call !== null) this.remove(call);
    return call;
  }

  /** Unlinks `call` if it is in this queue; a no-op otherwise. */
  remove(call: PendingCall): void {
    if (call.queue !== this) return;
    const { queuePrev: prev, queueNext: next } = call;
    if (prev === null) this.head = next;
    else prev.queueNext = next;
    if (next === null) this.tail = prev;
    else next.queuePrev = prev;
    call.queuePrev = call.queueNext = null;
    call.queue = null;
    this.length--;
  }
}
