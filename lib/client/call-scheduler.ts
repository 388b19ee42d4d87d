import { performance } from 'node:perf_hooks';
import type { CallStats, Outcome } from '../connection/transport-stats.js';
import { TimeoutWheel } from '../connection/timeout-wheel.js';
import { WireConnectionError, WireError, WireOverloadedError, WireTimeoutError } from '../errors.js';
import { LoadBudget } from './load-budget.js';
import { CallQueue, type CallTracker, type PendingCall } from './pending-call.js';

/**
 * Codes after which an idempotent call that may have run is sent again: the connection
 * was lost, or the server refused to work on it (overloaded, shutting down). Application
 * errors, WIRE_NO_HANDLER, WIRE_AUTH, WIRE_LIMIT, codec errors, timeouts and cancellation
 * are answers, not accidents of the transport: they would come back the same.
 */
const RETRYABLE_AFTER_WRITE: ReadonlySet<string> = new Set(['WIRE_CONNECTION', 'WIRE_OVERLOADED', 'WIRE_DRAINING']);

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
}

/** The options the scheduler applies. */
export interface SchedulerOptions {
  maxPendingCalls: number;
  overflow: 'fail' | 'wait';
  maxQueuedBytes: number;
  nackRetries: number;
  retry: { maxAttempts: number; budget: { percent: number; minPerSecond: number } };
}

/**
 * The client's call scheduler, without Nest: counts calls against `maxPendingCalls`
 * (failing or holding the overflow), writes each call on the connection the router picks
 * or queues it until one has room, re-sends calls that certainly did not run, and frees
 * a call's slot when it settles. Deadlines of every call live in its timing wheel.
 *
 * Invariants: a call is in at most one of `held` and `queue`; `pending` counts the calls
 * with `accepted` set (queued or written, not settled); a call in `queue` has no owner.
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
  /** One per client: every retry, NACK re-sends included, spends from it. */
  private readonly retryBudget: LoadBudget;
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
    this.accept(call);
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
    this.resends++;
    if (++call.resends > this.options.nackRetries) {
      this.failUnwritten(call, reason);
      return;
    }
    // A NACK means a server read the request and refused it: sending it again is extra load,
    // paid from the budget. A frame that never left this process added load nowhere.
    if (!(reason instanceof WireConnectionError)) {
      if (!this.spendRetry(call)) {
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
    if (
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
    if (!this.spendRetry(call)) {
      call.fail(budgetExhaustedError(err));
      return;
    }
    call.retries++;
    // The connection took it out of the wheel with its table entry: its one deadline goes on.
    if (call.timeoutMs > 0) this.wheel.add(call, call.deadline);
    this.requeue(call);
  }

  /** Takes one retry from the budget; counts it, or counts the refusal. */
  private spendRetry(_call: PendingCall): boolean {
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
    this.callStats.settled(call.startedAt, outcome);
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
  private accept(call: PendingCall): void {
    call.accepted = true;
    this.pending++;
    if (this.queue.length === 0 && this.tryWrite(call)) return;
    if (this.router.readyCount === 0 && !this.router.isConnecting) {
      // Nothing open and nothing being attempted: fail now rather than at the timeout.
      this.failUnwritten(call, this.router.unreachableError());
      return;
    }
    this.queue.push(call);
  }

  /** Writes the call if an open connection has room; false if it must wait. */
  private tryWrite(call: PendingCall): boolean {
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
    const budgetMs = call.timeoutMs > 0 ? Math.max(0, Math.ceil(call.deadline - performance.now())) : -1;
    try {
      conn.write(call, budgetMs);
      call.lastEndpoint = conn.endpointKey;
    } catch (err) {
      this.failUnwritten(call, err);
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
    if (owner !== null) owner.expire(call);
    else this.failUnwritten(call, new WireTimeoutError(call.timeoutMs));
  }
}
