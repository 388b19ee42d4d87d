import { performance } from 'node:perf_hooks';
import type { CallStats, Outcome } from '../stats/call-stats.js';
import { TimeoutWheel } from '../connection/timeout-wheel.js';
import { WireConnectionError, WireError, WireErrorCode, WireOverloadedError, WireTimeoutError } from '../errors.js';
import { LoadBudget } from './load-budget.js';
import { PatternLatency } from './pattern-latency.js';
import { CallQueue, PendingCall, type CallTracker } from './pending-call.js';

/**
 * Codes after which an idempotent call that may have run is sent again: the connection
 * was lost, or the server refused to work on it (overloaded, shutting down). Application
 * errors, WIRE_NO_HANDLER, WIRE_AUTH, WIRE_LIMIT, codec errors, timeouts and cancellation
 * are answers, not accidents of the transport: they would come back the same.
 */
const RETRYABLE_AFTER_WRITE: ReadonlySet<string> = new Set<string>([
  WireErrorCode.CONNECTION,
  WireErrorCode.OVERLOADED,
  WireErrorCode.DRAINING,
]);

export function isRetryableAfterWrite(err: unknown): boolean {
  return err instanceof WireError && RETRYABLE_AFTER_WRITE.has(err.code);
}

/**
 * The call's own error, saying that it was not retried because the budget is spent: a
 * copy of the same class and code (the original may be shared by every call of a
 * connection), with the original as `cause`.
 */
export function budgetExhaustedError(err: unknown): unknown {
  if (!(err instanceof WireError)) return err;
  const copy = Object.assign(Object.create(Object.getPrototypeOf(err) as object) as WireError, err);
  Object.defineProperty(copy, 'message', {
    value: `${err.message} (not retried: the client's retry budget is exhausted)`,
    writable: true,
    configurable: true,
  });
  Object.defineProperty(copy, 'cause', { value: err, writable: true, configurable: true });
  copy.stack = `${copy.name}: ${copy.message}`;
  return copy;
}

/** A connection the scheduler can write a call on (`ClientConnection`). */
export interface CallConnection {
  /** At the server's announced `maxInFlight`: more calls would only queue there. */
  readonly isFull: boolean;
  /** Bytes encoded and not yet taken by the socket. */
  readonly queuedBytes: number;
  /** The endpoint (`host:port`) the connection goes to. */
  readonly endpointKey: string;
  /** Encodes and queues the call's REQUEST; throws a `WireError`, with no side effect, if it cannot. */
  write(call: PendingCall, budgetMs: number): void;
}

/** Where the scheduler finds connections (the `Balancer`). */
export interface CallRouter {
  /** Connections in rotation. */
  readonly readyCount: number;
  /** True while no connection is open but one may open soon. */
  readonly isConnecting: boolean;
  /**
   * The open connection with the fewest calls in flight, or null if none is open; with
   * `avoid`, one to an endpoint not in it if there is one.
   */
  pick(avoid: readonly string[] | null): CallConnection | null;
  /** The error calls get when nothing is reachable. */
  unreachableError(): WireError;
  /** The least-loaded open connection to an endpoint not in `avoid`; null if there is none. */
  pickAvoiding(avoid: readonly string[]): CallConnection | null;
  /** True when outcomes are to be reported (outlier detection is on). */
  readonly detectsOutliers: boolean;
  /** An attempt on `endpoint` ended: `err` null if the server answered (whatever the answer). */
  recordOutcome(endpoint: string, err: unknown): void;
}

/** A hedged copy's own observer is never called: its answers go to the call it copies. */
const COPY_OBSERVER = { next(): void {}, error(): void {}, complete(): void {} };

/** The options the scheduler applies. */
export interface SchedulerOptions {
  maxPendingCalls: number;
  overflow: 'fail' | 'wait';
  maxQueuedBytes: number;
  nackRetries: number;
  retry: { maxAttempts: number; budget: { percent: number; minPerSecond: number } };
  /** Off when null; `delayMs: 'p95'` waits for the pattern's observed 95th percentile. */
  hedge: { delayMs: number | 'p95'; maxExtraPercent: number } | null;
}

/**
 * The client's call scheduler, without Nest: counts calls against `maxPendingCalls`
 * (failing or holding the overflow), writes each call on the connection the router picks
 * or queues it until one has room, re-sends calls that certainly did not run, retries
 * idempotent calls after transport failures and hedges them, all within budgets, and frees
 * a call's slot when it settles. Deadlines of every call live in its timing wheel.
 *
 * Invariants: a call is in at most one of `held` and `queue`; `pending` counts the calls
 * with `accepted` set (queued or written, not settled); a call in `queue` has no owner.
 * Hedging: a call and its copy point at each other through `hedge` while they race; a copy
 * is never queued, held, in the wheel or counted; it ends when its call ends.
 */
export class CallScheduler implements CallTracker {
  /** Deadlines of every call not settled (queued, held or written). */
  readonly wheel: TimeoutWheel<PendingCall>;
  /** The balancer: set by the owner before the first call, replaced when a closed client reopens. */
  router!: CallRouter;
  /** Calls counted against `maxPendingCalls`: written, or queued for a connection. */
  pending = 0;
  /** Calls sent again after a NACK or because their frame never left a closed connection. */
  resends = 0;
  /** Re-sends that spent from the retry budget: after a NACK, or an idempotent call's retry. */
  retries = 0;
  /** Calls that failed with their own error because the retry budget was spent. */
  retryBudgetExhausted = 0;
  /** The client closed: nothing is retried. */
  closed = false;
  /** Hedged copies sent, and how many of them answered first. */
  hedges = 0;
  hedgeWins = 0;
  /** One per client: every retry, NACK re-sends included, spends from it. */
  private readonly retryBudget: LoadBudget;
  /** Hedged copies may add at most `maxExtraPercent` % of the calls started (no floor). */
  private readonly hedgeBudget: LoadBudget | null;
  /** Latency per pattern, for `hedge.delayMs: 'p95'`. */
  private readonly latency: PatternLatency | null;
  /** Accepted calls waiting for a connection (or for room on one), in order. */
  private readonly queue = new CallQueue();
  /** Calls held by `overflow: 'wait'` until `pending` drops below `maxPendingCalls`. */
  private readonly held = new CallQueue();

  constructor(
    private readonly options: SchedulerOptions,
    private readonly callStats: CallStats,
  ) {
    this.wheel = new TimeoutWheel<PendingCall>((call) => this.onCallTimeout(call));
    const { percent, minPerSecond } = options.retry.budget;
    this.retryBudget = new LoadBudget(percent / 100, minPerSecond);
    const hedge = options.hedge;
    this.hedgeBudget = hedge === null ? null : new LoadBudget(hedge.maxExtraPercent / 100, 0);
    this.latency = hedge?.delayMs === 'p95' ? new PatternLatency() : null;
  }

  /** Calls not yet written (waiting for a connection, room, or a pending slot). */
  get queued(): number {
    return this.queue.length + this.held.length;
  }

  /**
   * Takes a new call (its deadline already set in `timeoutMs`, counted as started):
   * writes it, queues it, holds it (`overflow: 'wait'`) or fails it (`overflow: 'fail'`).
   */
  submit(call: PendingCall, now: number): void {
    this.retryBudget.deposit(now);
    this.hedgeBudget?.deposit(now);
    if (call.timeoutMs > 0) this.wheel.add(call, now + call.timeoutMs);
    if (this.pending >= this.options.maxPendingCalls) {
      if (this.options.overflow === 'fail') {
        this.failUnwritten(
          call,
          new WireOverloadedError(
            `${this.pending} calls are already pending (maxPendingCalls ${this.options.maxPendingCalls}); ` +
              "slow down, raise maxPendingCalls, or use overflow: 'wait'",
          ),
        );
      } else {
        this.held.push(call);
      }
      return;
    }
    this.accept(call, now);
  }

  /** Fails every queued and held call (the client closed) and clears the wheel. */
  close(err: Error): void {
    this.closed = true;
    this.failQueued(this.held, err);
    this.failQueued(this.queue, err);
    this.wheel.clear();
  }

  /** Writes queued calls while connections have room (a connection opened, a slot freed). */
  drain(): void {
    const queue = this.queue;
    for (let call = queue.peek(); call !== null; call = queue.peek()) {
      if (call.settled) {
        queue.shift();
        continue;
      }
      queue.shift();
      if (!this.tryWrite(call)) {
        queue.unshift(call); // no room anywhere yet: it keeps its place
        return;
      }
    }
  }

  /** Nothing is reachable: the queued calls cannot wait for a connection. */
  failQueuedCalls(err: Error): void {
    this.failQueued(this.queue, err);
  }

  /** CallTracker: the call was not processed (NACK, or its frame never left): try another connection. */
  resend(call: PendingCall, reason: Error): void {
    if (call.settled) return;
    if (this.router.detectsOutliers && call.lastEndpoint !== null && !(reason instanceof WireConnectionError)) {
      this.router.recordOutcome(call.lastEndpoint, reason);
    }
    if (call.hedge !== null && !call.answered) return this.hedgeAttemptFailed(call, reason);
    this.resends++;
    if (++call.resends > this.options.nackRetries) {
      this.failUnwritten(call, reason);
      return;
    }
    // A NACK means a server read the request and refused it: sending it again is extra load,
    // paid from the budget. A frame that never left this process added load nowhere.
    if (!(reason instanceof WireConnectionError)) {
      if (!this.spendRetry()) {
        this.failUnwritten(call, budgetExhaustedError(reason));
        return;
      }
    }
    this.requeue(call);
  }

  /**
   * CallTracker: an attempt failed after its frame was written. An idempotent call is sent
   * again (to a server not yet tried, if any) when the cause was the transport, within
   * `maxAttempts`, its deadline and the budget; any other call fails: it may have run.
   */
  attemptFailed(call: PendingCall, err: unknown): void {
    if (this.router.detectsOutliers && call.lastEndpoint !== null && !this.closed)
      this.router.recordOutcome(call.lastEndpoint, err);
    if (call.hedge !== null && !call.answered && isRetryableAfterWrite(err)) return this.hedgeAttemptFailed(call, err);
    if (
      call.isCopy ||
      this.closed ||
      !call.idempotent ||
      call.streamed ||
      !isRetryableAfterWrite(err) ||
      1 + call.resends + call.retries >= this.options.retry.maxAttempts ||
      (call.timeoutMs > 0 && call.deadline <= performance.now())
    ) {
      call.fail(err);
      return;
    }
    if (!this.spendRetry()) {
      call.fail(budgetExhaustedError(err));
      return;
    }
    call.retries++;
    this.keepDeadline(call);
    this.requeue(call);
  }

  /** Hedging: the first answer of two copies wins; the other copy is cancelled (CANCEL). */
  raceWon(winner: PendingCall): void {
    const other = winner.hedge!;
    winner.answered = other.answered = true;
    if (!winner.isCopy) {
      this.cancelCopy(other);
      return;
    }
    this.hedgeWins++;
    // The answer comes from the copy's server (for outlier detection, not the slow one's).
    other.lastEndpoint = winner.lastEndpoint;
    // The call stays (slot, deadline, observer); only its attempt stops. The links stay too:
    // the copy's answers go to it, and its end (a timeout, the caller leaving) cancels the copy.
    const primary = other;
    if (primary.owner !== null) {
      primary.owner.abandon(primary);
      this.keepDeadline(primary);
    }
  }

  /**
   * While both copies race, one whose attempt failed for a reason that would be retried
   * steps aside and the other carries the call: a copy is dropped; the call itself waits
   * for its copy (keeping its deadline). With neither left, the call is retried as usual.
   */
  private hedgeAttemptFailed(call: PendingCall, err: unknown): void {
    if (!call.isCopy) {
      this.keepDeadline(call);
      return;
    }
    const primary = call.hedge!;
    this.cancelCopy(call);
    if (!primary.settled && primary.owner === null && primary.queue === null) {
      // The call's own attempt had already stepped aside: it is retried (or fails) now.
      this.wheel.remove(primary);
      this.attemptFailed(primary, err);
    }
  }

  /** Ends a hedged copy quietly (CANCEL if it is written) and unlinks it from its call. */
  private cancelCopy(copy: PendingCall): void {
    if (copy.hedge !== null) copy.hedge.hedge = null;
    copy.hedge = null;
    copy.unsubscribe();
  }

  /** Puts a call whose connection took it out of the wheel back in, with its one deadline. */
  private keepDeadline(call: PendingCall): void {
    if (call.timeoutMs <= 0) return;
    this.wheel.remove(call);
    this.wheel.add(call, call.deadline);
  }

  /** Arms the hedge timer of a call just written for the first time, if it is to be hedged. */
  private armHedge(call: PendingCall): void {
    const delay = this.options.hedge!.delayMs;
    const delayMs = delay === 'p95' ? this.latency!.p95(call.pattern) : delay;
    if (delayMs < 0) return; // 'p95' with too few samples for that pattern yet
    call.hedgeTimer = setTimeout(this.onHedgeTimer, delayMs, call);
    call.hedgeTimer.unref();
  }

  /** No answer within the hedge delay: a copy goes to another server, if the budget allows. */
  private readonly onHedgeTimer = (call: PendingCall): void => {
    call.hedgeTimer = null;
    if (call.settled || call.answered || call.streamed || call.owner === null || call.lastEndpoint === null) return;
    const conn = this.router.pickAvoiding([call.lastEndpoint]);
    if (conn === null || conn.isFull || conn.queuedBytes > this.options.maxQueuedBytes) return;
    if (!this.hedgeBudget!.trySpend(performance.now())) return;
    const copy = new PendingCall(COPY_OBSERVER, this, call.timeoutMs, call.pattern, call.data, call.metadata);
    copy.isCopy = true;
    copy.idempotent = true;
    copy.deadline = call.deadline;
    const budgetMs = call.timeoutMs > 0 ? Math.max(0, Math.ceil(call.deadline - performance.now())) : -1;
    try {
      conn.write(copy, budgetMs);
    } catch {
      return; // the call itself goes on; a copy that cannot be written is simply not sent
    }
    copy.lastEndpoint = conn.endpointKey;
    copy.hedge = call;
    call.hedge = copy;
    this.hedges++;
  };

  /** Takes one retry from the budget; counts it, or counts the refusal. */
  private spendRetry(): boolean {
    if (this.retryBudget.trySpend(performance.now())) {
      this.retries++;
      return true;
    }
    this.retryBudgetExhausted++;
    return false;
  }

  /** Puts a call that will be sent again at the head of the queue, remembering where it went. */
  private requeue(call: PendingCall): void {
    const tried = (call.tried ??= []);
    if (call.lastEndpoint !== null && !tried.includes(call.lastEndpoint)) tried.push(call.lastEndpoint);
    this.queue.unshift(call);
    if (this.router.readyCount > 0) this.drain();
    else if (!this.router.isConnecting) this.failQueued(this.queue, this.router.unreachableError());
  }

  /** CallTracker: a call ended, by whatever path. Frees its slot for the next one. */
  onSettled(call: PendingCall, outcome: Outcome): void {
    if (outcome === null && call.lastEndpoint !== null && this.router.detectsOutliers)
      this.router.recordOutcome(call.lastEndpoint, null);
    if (call.isCopy) {
      // A copy counts nowhere; it only leaves its call.
      if (call.hedge !== null) call.hedge.hedge = null;
      call.hedge = null;
      return;
    }
    if (call.hedgeTimer !== null) {
      clearTimeout(call.hedgeTimer);
      call.hedgeTimer = null;
    }
    if (call.hedge !== null) this.cancelCopy(call.hedge);
    const endedAt = call.answeredAt > 0 ? call.answeredAt : performance.now();
    if (outcome === null && this.latency !== null && call.idempotent)
      this.latency.record(call.pattern, endedAt - call.startedAt);
    this.callStats.settled(call.startedAt, outcome, endedAt);
    if (!call.accepted) return;
    call.accepted = false;
    this.pending--;
    if (this.held.length > 0 && this.pending < this.options.maxPendingCalls) {
      const next = this.held.shift();
      if (next !== null) this.accept(next);
    }
    if (this.queue.length > 0) this.drain();
  }

  /** CallTracker: the caller unsubscribed from a call that was never written. */
  withdraw(call: PendingCall): void {
    call.queue?.remove(call);
    this.wheel.remove(call);
  }

  /** Counts the call against `maxPendingCalls` and writes it, or queues it until it can be. */
  private accept(call: PendingCall, now = performance.now()): void {
    call.accepted = true;
    this.pending++;
    if (this.queue.length === 0 && this.tryWrite(call, now)) return;
    if (this.router.readyCount === 0 && !this.router.isConnecting) {
      // Nothing open and nothing being attempted: fail now rather than at the timeout.
      this.failUnwritten(call, this.router.unreachableError());
      return;
    }
    this.queue.push(call);
  }

  /** Writes the call if an open connection has room; false if it must wait. `now`: `performance.now()`. */
  private tryWrite(call: PendingCall, now = performance.now()): boolean {
    const conn = this.router.pick(call.tried);
    if (conn === null || conn.isFull) return false;
    if (conn.queuedBytes > this.options.maxQueuedBytes) {
      this.failUnwritten(
        call,
        new WireOverloadedError(
          `more than ${this.options.maxQueuedBytes} bytes are queued on a connection that does not drain (maxQueuedBytes)`,
        ),
      );
      return true;
    }
    // The server gets the time left, not a timestamp: clocks of two hosts need not agree.
    const budgetMs = call.timeoutMs > 0 ? Math.max(0, Math.ceil(call.deadline - now)) : -1;
    try {
      conn.write(call, budgetMs);
      call.lastEndpoint = conn.endpointKey;
    } catch (err) {
      this.failUnwritten(call, err);
      return true;
    }
    if (
      this.hedgeBudget !== null &&
      call.idempotent &&
      call.hedgeTimer === null &&
      call.hedge === null &&
      !call.answered
    ) {
      this.armHedge(call);
    }
    return true;
  }

  /** Fails every call of `queue` (nothing reachable, or the client closed). */
  private failQueued(queue: CallQueue, err: Error): void {
    for (let call = queue.shift(); call !== null; call = queue.shift()) this.failUnwritten(call, err);
  }

  /** Fails a call that is in no connection's table. */
  private failUnwritten(call: PendingCall, err: unknown): void {
    if (call.settled) return;
    this.withdraw(call);
    call.fail(err);
  }

  private onCallTimeout(call: PendingCall): void {
    const owner = call.owner;
    if (owner !== null && this.router.detectsOutliers && call.lastEndpoint !== null) {
      this.router.recordOutcome(call.lastEndpoint, new WireTimeoutError(call.timeoutMs));
    }
    if (owner !== null) owner.expire(call);
    else this.failUnwritten(call, new WireTimeoutError(call.timeoutMs));
  }
}
