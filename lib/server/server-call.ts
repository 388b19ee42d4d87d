import type { Observable, Observer, Subscription } from 'rxjs';
import { callContext, propagation, type InboundCall } from '../call-context.js';
import type { WheelEntry } from '../connection/timeout-wheel.js';
import { performance } from 'node:perf_hooks';
import { CALL_CANCELLED, type Outcome } from '../stats/call-stats.js';
import { WireOverloadedError } from '../errors.js';
import { MAX_STREAM_CREDIT } from '../connection/connection.js';
import type { SignalSource } from './wire-context.js';
import type { ServerCallTrace } from '../diagnostics/instrumentation-hooks.js';
import { ValueQueue } from './value-queue.js';

/** How a running call reaches its connection. */
export interface CallSink {
  /** Encodes a value (null for `undefined`); throws a `WireError` if it cannot travel. */
  encodeValue(value: unknown): Uint8Array | null;
  writeValue(call: ServerCall, bytes: Uint8Array | null): void;
  writeEnd(call: ServerCall): void;
  /** Sends the error that ends the call (application value or `WireError`). */
  writeFailure(call: ServerCall, err: unknown): void;
  /** Maps an error thrown outside Nest's exception filters (an async iterable) to what is sent. */
  mapUncaughtError(err: unknown): unknown;
  /** The call settled: forget it (frees its slot and its timer) and count how it ended. */
  release(call: ServerCall, outcome: Outcome): void;
  /** The call's deadline passed. */
  expire(call: ServerCall): void;
  /** False while the connection's unsent bytes (fragments included) are at `maxQueuedBytes`. */
  canWrite(): boolean;
  /** Call `call.writeHeld()` once the connection can take values again. */
  waitWritable(call: ServerCall): void;
  /** Counts `values` more held values against the connection's total; false if it would pass `maxHeldValues`. */
  reserveHeld(values: number): boolean;
  releaseHeld(values: number): void;
  /** How many values the calls of the connection may hold in total (`maxStreamBufferValues`). */
  readonly maxHeldValues: number;
}

/** Where a call is in its life. Every change goes through `ServerCall.transition()`. */
export enum CallState {
  /** The handler's stream is subscribed: its values are sent within credit, and held beyond it. */
  STREAMING = 'streaming',
  /** The handler returned an AsyncIterable: it is pulled while credit lasts; its Observable is unsubscribed. */
  PULLING = 'pulling',
  /** The handler's stream completed while values were held: END follows the last of them. */
  COMPLETING = 'completing',
  /** The handler's stream failed while values were held: its error follows the last of them. */
  FAILING = 'failing',
  /** Settled and out of the session's table: nothing more is sent, and events are ignored. Final. */
  DONE = 'done',
}

/**
 * One request being handled. It is the observer of the handler's stream (no closure
 * per call), owns the abort signal handed to `ctx.getSignal()` (created only when
 * asked for), and is what CANCEL, the deadline and connection loss act on.
 *
 * Stream flow control: the client grants `credit` values. Values beyond it wait in
 * `held`, UNENCODED, until a CREDIT frame arrives; they are encoded when they are sent.
 * Values within credit are held the same way while the connection's unsent bytes are at
 * `maxQueuedBytes` (credit never bypasses that bound). So a producer faster than its
 * consumer costs the server a reference per value it emitted, never an encoded copy:
 * the memory is what the producer itself made. The calls of one connection hold at most
 * `maxStreamBufferValues` values together; past it the call that would hold one more
 * fails with `WIRE_OVERLOADED`. A handler that returns an AsyncIterable is pulled only
 * while credit lasts and the connection can take values, so it holds nothing.
 */
export class ServerCall implements Observer<unknown>, SignalSource, InboundCall, WheelEntry {
  /** Deadline on the `performance.now()` clock (0: none); the timeout wheel reads it. */
  deadline = 0;
  /** The time budget the request carried, in ms (0: none): the limit its `WireTimeoutError` reports. */
  budgetMs = 0;
  wheelPrev: WheelEntry | null = null;
  wheelNext: WheelEntry | null = null;
  wheelSlot = -1;
  /** The instrumentation following this call (a span), if one is enabled; ended (and null) once DONE. */
  trace: ServerCallTrace | null = null;
  /** The error the call ended with, once DONE with one (for `WireContext#getError`); undefined otherwise. */
  failure: unknown = undefined;
  /** Estimated heap of this call's decoded input, charged to the connection until it settles. */
  decodedBytes = 0;

  /** Changed only by transition(). */
  private state = CallState.STREAMING;
  /** Values the client still lets us send; Infinity when it asked for no flow control. */
  private credit: number;
  /**
   * Values waiting, unencoded, for credit or for the socket, in order; each one counted
   * by `sink.reserveHeld`. Not empty in COMPLETING and FAILING; empty in PULLING and DONE.
   * Created when the first value must wait: most calls never hold one.
   */
  private held: ValueQueue | null = null;
  /** The error to send once the held values are out: set in FAILING only. */
  private endError: unknown = undefined;
  /** The handler's stream, subscribed: set in STREAMING only (still null while subscribe() runs). */
  private subscription: Subscription | null = null;
  /** The handler's iterator: set in PULLING only (cleared first when it finished by itself). */
  private iterator: AsyncIterator<unknown> | null = null;
  /** A pump() loop is running: a second one would pull the iterator concurrently. */
  private pumping = false;
  /** Behind `signal`; created when first asked for, aborted when the call is cancelled or fails. */
  private controller: AbortController | null = null;

  constructor(
    readonly id: number,
    private readonly sink: CallSink,
    /** Initial credit; 0 means the client asked for no flow control. */
    credit: number,
    /** When the request arrived (`performance.now()`, the time of the socket read), for latency statistics. */
    readonly startedAt: number = performance.now(),
  ) {
    this.credit = credit === 0 ? Infinity : Math.min(credit, MAX_STREAM_CREDIT);
  }

  /** Values held now. */
  private get heldCount(): number {
    return this.held === null ? 0 : this.held.length;
  }

  /** True once the call has settled (left the session's table); it happens exactly once. */
  get done(): boolean {
    return this.state === CallState.DONE;
  }

  get signal(): AbortSignal {
    if (this.controller === null) this.controller = new AbortController();
    return this.controller.signal;
  }

  /** Subscribes to the handler's result stream; values flow to the connection. */
  run(stream$: Observable<unknown>): void {
    if (this.state !== CallState.STREAMING) return;
    const subscription = stream$.subscribe(this);
    // A synchronous stream may have ended, switched to pulling, or been cancelled during subscribe().
    if (this.state === CallState.STREAMING) this.subscription = subscription;
    else subscription.unsubscribe();
  }

  next(value: unknown): void {
    if (this.state !== CallState.STREAMING) return;
    if (this.heldCount === 0 && isAsyncIterable(value)) {
      // A handler returned an AsyncIterable: pull it at the consumer's pace.
      this.iterator = value[Symbol.asyncIterator]();
      this.transition(CallState.PULLING);
      void this.pump(); // pump() catches everything it meets and fails the call with it
      return;
    }
    if (this.heldCount > 0 || this.credit === 0 || !this.sink.canWrite()) return this.hold(value);
    let bytes: Uint8Array | null;
    try {
      bytes = this.sink.encodeValue(value);
    } catch (err) {
      return this.fail(err);
    }
    this.credit--;
    this.sink.writeValue(this, bytes);
  }

  complete(): void {
    if (this.state !== CallState.STREAMING) return;
    if (this.heldCount === 0) return this.finishWithEnd();
    this.transition(CallState.COMPLETING); // END once the held values are out
  }

  error(err: unknown): void {
    if (this.state !== CallState.STREAMING) return;
    if (this.heldCount === 0) return this.finishWithError(err);
    this.endError = err; // sent once the held values are out
    this.transition(CallState.FAILING);
  }

  /** The client granted `n` more values (clamped: at most MAX_STREAM_CREDIT outstanding). */
  addCredit(n: number): void {
    if (this.state === CallState.DONE) return;
    this.credit = Math.min(this.credit + n, MAX_STREAM_CREDIT);
    this.writeHeld();
  }

  /**
   * Encodes and writes held values while credit lasts and the connection takes them; then
   * sends the end they were holding back, or resumes the producer.
   */
  writeHeld(): void {
    if (this.state === CallState.DONE) return;
    const held = this.held;
    if (held !== null && held.length > 0) {
      let sent = 0;
      while (held.length > 0 && this.credit > 0 && this.sink.canWrite()) {
        let bytes: Uint8Array | null;
        try {
          // Taken only once encoded: a value emitted meanwhile (by encoding code) queues behind it.
          bytes = this.sink.encodeValue(held.peek());
        } catch (err) {
          this.sink.releaseHeld(sent);
          return this.fail(err);
        }
        held.shift();
        sent++;
        this.credit--;
        this.sink.writeValue(this, bytes);
      }
      this.sink.releaseHeld(sent);
      if (held.length > 0) {
        if (this.credit > 0) this.sink.waitWritable(this);
        return;
      }
      // In the same turn as the last value: END folds into that value's frame.
      if (this.state === CallState.COMPLETING) return this.finishWithEnd();
      if (this.state === CallState.FAILING) return this.finishWithError(this.endError);
    }
    if (this.state === CallState.PULLING) this.resumePump();
  }

  /** Called by the deadline wheel. */
  expire(): void {
    if (this.state !== CallState.DONE) this.sink.expire(this);
  }

  /**
   * Stops the handler: unsubscribes its stream, ends its iterator, aborts its signal.
   * Sends nothing. Counted as cancelled unless `outcome` says otherwise (a deadline).
   */
  cancel(reason: unknown, outcome: Outcome = CALL_CANCELLED): void {
    if (this.state === CallState.DONE) return;
    this.transition(CallState.DONE, outcome);
    this.controller?.abort(reason);
  }

  /**
   * The one place the state changes. Leaving a state releases what it owned (STREAMING:
   * the subscription; PULLING: the iterator). Entering DONE, which is final, also drops
   * the held values and the trace, then tells the sink how the call ended: exactly once.
   */
  private transition(next: CallState, outcome: Outcome = null): void {
    const prev = this.state;
    if (prev === CallState.DONE || prev === next) return;
    this.state = next;
    if (prev === CallState.STREAMING && this.subscription !== null) {
      const subscription = this.subscription;
      this.subscription = null;
      this.unsubscribe(subscription);
    }
    if (prev === CallState.PULLING && next === CallState.DONE && this.iterator !== null) {
      const iterator = this.iterator;
      this.iterator = null;
      this.stopIterator(iterator);
    }
    if (next !== CallState.DONE) return;
    this.endError = undefined;
    if (this.held !== null) {
      this.sink.releaseHeld(this.held.length);
      this.held = null;
    }
    if (outcome !== null && outcome !== CALL_CANCELLED) this.failure = outcome.error;
    if (this.trace !== null) {
      this.trace.end(outcome);
      this.trace = null;
    }
    this.sink.release(this, outcome);
  }

  /** The handler's stream ended: DONE, and END goes out (folded into the last value if it can). */
  private finishWithEnd(): void {
    this.transition(CallState.DONE, null);
    this.sink.writeEnd(this);
  }

  /** The handler's stream failed with `err`: DONE, and its error goes out. */
  private finishWithError(err: unknown): void {
    this.transition(CallState.DONE, { error: err });
    this.sink.writeFailure(this, err);
  }

  /** Fails the call at once (held values are dropped), stops the handler and aborts its signal. */
  private fail(err: unknown): void {
    if (this.state === CallState.DONE) return;
    this.transition(CallState.DONE, { error: err });
    this.controller?.abort(err);
    this.sink.writeFailure(this, err);
  }

  /** Holds `value` until credit or the socket lets it out; fails the call past the connection's bound. */
  private hold(value: unknown): void {
    if (!this.sink.reserveHeld(1)) return this.fail(heldLimitReached(this.sink.maxHeldValues));
    (this.held ??= new ValueQueue()).push(value);
    // Within credit, it waits for the socket only: ask to be told when that takes bytes again.
    if (this.credit > 0) this.sink.waitWritable(this);
  }

  /**
   * Runs the handler's teardown. The call has already ended, so what that throws cannot
   * reach the caller: it is logged (`mapUncaughtError`), and the other calls go on ending.
   */
  private unsubscribe(subscription: Subscription): void {
    try {
      subscription.unsubscribe();
    } catch (err) {
      this.sink.mapUncaughtError(err);
    }
  }

  /**
   * Ends the handler's async iterator (its `finally` blocks run). The call has already ended, so
   * what that cleanup throws cannot reach the caller: it is logged (`mapUncaughtError`), not lost.
   */
  private stopIterator(iterator: AsyncIterator<unknown>): void {
    iterator.return?.().catch((err: unknown) => this.sink.mapUncaughtError(err));
  }

  /**
   * Resumes the handler's generator after a CREDIT frame, which arrives outside the call's
   * first turn: back inside the call's context (so nested calls inherit its deadline and
   * cancellation, as they do in the first turn) and inside its trace (so they continue it).
   */
  private resumePump(): void {
    const pump = this.trace === null ? () => this.pump() : () => this.trace!.run(() => this.pump());
    void (propagation.clients > 0 ? callContext.run(this, pump) : pump());
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    const iterator = this.iterator!;
    try {
      while (this.state === CallState.PULLING && this.credit > 0) {
        if (!this.sink.canWrite()) {
          // Paced by the socket as well as by credit: resumed by writeHeld().
          this.sink.waitWritable(this);
          return;
        }
        const result = await iterator.next();
        if (this.state !== CallState.PULLING) return;
        if (result.done) {
          this.iterator = null; // it finished by itself: nothing to end
          return this.finishWithEnd();
        }
        let bytes: Uint8Array | null;
        try {
          bytes = this.sink.encodeValue(result.value);
        } catch (err) {
          return this.fail(err);
        }
        this.credit--;
        this.sink.writeValue(this, bytes);
      }
    } catch (err) {
      if (this.state === CallState.PULLING) this.fail(this.sink.mapUncaughtError(err));
    } finally {
      this.pumping = false;
    }
  }
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof (value as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function'
  );
}

function heldLimitReached(limit: number): WireOverloadedError {
  return new WireOverloadedError(
    `the streams of this connection hold maxStreamBufferValues (${limit}) values their client has not taken ` +
      '(beyond its credit, or waiting for the socket); the consumer is far slower than this producer ' +
      '(return an AsyncIterable to be paced by the consumer, or raise maxStreamBufferValues)',
  );
}
