import type { Observable, Observer, Subscription } from 'rxjs';
import { callContext, propagation, type InboundCall } from '../call-context.js';
import type { WheelEntry } from '../connection/timeout-wheel.js';
import { performance } from 'node:perf_hooks';
import { CALL_CANCELLED, type Outcome } from '../connection/transport-stats.js';
import { WireOverloadedError } from '../errors.js';
import { MAX_STREAM_CREDIT } from '../protocol/frame.js';
import type { SignalSource } from './wire-context.js';
import type { ServerCallTrace } from '../diagnostics/instrumentation-hooks.js';

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
  /** Counts `bytes` of held values against the connection's total; false if it would pass it. */
  reserveHeld(bytes: number): boolean;
  /** True when the connection can neither write nor hold another value: it would only be encoded to be dropped. */
  readonly saturated: boolean;
  releaseHeld(bytes: number): void;
}

type Terminal = { err: unknown } | null;

/**
 * One request being handled. It is the observer of the handler's stream (no closure
 * per call), owns the abort signal handed to `ctx.getSignal()` (created only when
 * asked for), and is what CANCEL, the deadline and connection loss act on.
 *
 * Stream flow control: the client grants `credit` values; past it, encoded values wait
 * in `buffer` (at most `maxBufferBytes`, else the stream fails with `WIRE_OVERLOADED`)
 * until a CREDIT frame arrives. Values within credit are held the same way while the
 * connection's unsent bytes are at `maxQueuedBytes` (credit never bypasses that bound),
 * and the connection's held total is bounded by `maxQueuedBytes` too. A handler that
 * returns an AsyncIterable is pulled only while credit lasts and the connection can take
 * values, so it is paced by the consumer without any buffer.
 *
 * Invariant: `done` becomes true exactly once, when the call leaves the session's table.
 */
export class ServerCall implements Observer<unknown>, SignalSource, InboundCall, WheelEntry {
  done = false;
  /** When the request arrived (`performance.now()`), for latency statistics. */
  readonly startedAt = performance.now();
  /** Deadline on the `performance.now()` clock (0: none); the timeout wheel reads it. */
  deadline = 0;
  /** The time budget the request carried, in ms (0: none): the limit its `WireTimeoutError` reports. */
  budgetMs = 0;
  wheelPrev: WheelEntry | null = null;
  wheelNext: WheelEntry | null = null;
  wheelSlot = -1;
  /** The instrumentation following this call (a span), if one is enabled; ended with the call. */
  trace: ServerCallTrace | null = null;
  /** The error the call ended with, once it has (for `WireContext#getError`); undefined otherwise. */
  failure: unknown = undefined;
  /** Estimated heap of this call's decoded input, charged to the connection until it settles. */
  decodedBytes = 0;

  private credit: number;
  private buffer: (Uint8Array | null)[] | null = null;
  private bufferedBytes = 0;
  /** How the stream ended while values were still buffered. */
  private terminal: Terminal | undefined = undefined;
  private subscription: Subscription | null = null;
  private controller: AbortController | null = null;
  private iterator: AsyncIterator<unknown> | null = null;
  private pumping = false;

  constructor(
    readonly id: number,
    private readonly sink: CallSink,
    /** Initial credit; 0 means the client asked for no flow control. */
    credit: number,
    private readonly maxBufferBytes: number,
  ) {
    this.credit = credit === 0 ? Infinity : Math.min(credit, MAX_STREAM_CREDIT);
  }

  get signal(): AbortSignal {
    if (this.controller === null) this.controller = new AbortController();
    return this.controller.signal;
  }

  /** Subscribes to the handler's result stream; values flow to the connection. */
  run(stream$: Observable<unknown>): void {
    if (this.done) return;
    const subscription = stream$.subscribe(this);
    // A synchronous stream may have finished, or been cancelled, during subscribe().
    if (this.done || this.terminal !== undefined || this.iterator !== null) subscription.unsubscribe();
    else this.subscription = subscription;
  }

  next(value: unknown): void {
    if (this.done || this.terminal !== undefined || this.iterator !== null) return;
    if (this.buffer === null && isAsyncIterable(value)) {
      // A handler returned an AsyncIterable: pull it at the consumer's pace.
      this.iterator = value[Symbol.asyncIterator]();
      this.subscription?.unsubscribe();
      void this.pump(); // pump() catches everything it meets and fails the call with it
      return;
    }
    // Not worth encoding a value that could neither be written nor held.
    if (this.sink.saturated && value !== undefined) return this.fail(backlogFull());
    let bytes: Uint8Array | null;
    try {
      bytes = this.sink.encodeValue(value);
    } catch (err) {
      return this.fail(err);
    }
    if (this.credit > 0 && this.buffer === null && this.sink.canWrite()) {
      this.credit--;
      this.sink.writeValue(this, bytes);
      return;
    }
    this.hold(bytes);
    if (this.credit > 0 && !this.done) this.sink.waitWritable(this);
  }

  complete(): void {
    if (this.done || this.terminal !== undefined || this.iterator !== null) return;
    this.end(null);
  }

  error(err: unknown): void {
    if (this.done || this.terminal !== undefined || this.iterator !== null) return;
    this.end({ err });
  }

  /** The client granted `n` more values (clamped: at most MAX_STREAM_CREDIT outstanding). */
  addCredit(n: number): void {
    if (this.done) return;
    this.credit = Math.min(this.credit + n, MAX_STREAM_CREDIT);
    this.writeHeld();
  }

  /** Writes held values while credit lasts and the connection takes them; then resumes the producer. */
  writeHeld(): void {
    if (this.done) return;
    const buffer = this.buffer;
    if (buffer !== null) {
      let i = 0;
      let freed = 0;
      while (i < buffer.length && this.credit > 0 && this.sink.canWrite()) {
        const bytes = buffer[i++];
        freed += bytes === null ? 0 : bytes.length;
        this.credit--;
        this.sink.writeValue(this, bytes);
      }
      buffer.splice(0, i);
      this.bufferedBytes -= freed;
      this.sink.releaseHeld(freed);
      if (buffer.length > 0) {
        if (this.credit > 0) this.sink.waitWritable(this);
        return;
      }
      this.buffer = null;
      if (this.terminal !== undefined) return this.finish(this.terminal);
    }
    if (this.iterator !== null) this.resumePump();
  }

  /** Called by the deadline wheel. */
  expire(): void {
    if (!this.done) this.sink.expire(this);
  }

  /**
   * Stops the handler: unsubscribes its stream, ends its iterator, aborts its signal.
   * Sends nothing. Counted as cancelled unless `outcome` says otherwise (a deadline).
   */
  cancel(reason: unknown, outcome: Outcome = CALL_CANCELLED): void {
    if (this.done) return;
    this.settle(outcome);
    this.subscription?.unsubscribe();
    this.stopIterator();
    this.controller?.abort(reason);
  }

  private end(terminal: Terminal): void {
    if (this.buffer !== null) {
      this.terminal = terminal; // sent once the buffered values have gone out
      return;
    }
    this.finish(terminal);
  }

  private finish(terminal: Terminal): void {
    this.settle(terminal === null ? null : { error: terminal.err });
    if (terminal === null) this.sink.writeEnd(this);
    else this.sink.writeFailure(this, terminal.err);
  }

  private hold(bytes: Uint8Array | null): void {
    const n = bytes === null ? 0 : bytes.length;
    if (this.bufferedBytes + n > this.maxBufferBytes) {
      return this.fail(
        new WireOverloadedError(
          `stream produced more than ${this.maxBufferBytes} bytes beyond the consumer's credit or the connection's maxQueuedBytes; ` +
            'the consumer is too slow for this producer (return an AsyncIterable to be paced by the consumer, or raise maxStreamBufferBytes)',
        ),
      );
    }
    if (!this.sink.reserveHeld(n)) return this.fail(backlogFull());
    this.bufferedBytes += n;
    (this.buffer ??= []).push(bytes);
  }

  /** Fails the call at once (buffered values are dropped) and stops the handler. */
  private fail(err: unknown): void {
    if (this.done) return;
    this.dropBuffer();
    this.subscription?.unsubscribe();
    this.stopIterator();
    this.controller?.abort(err);
    this.finish({ err });
  }

  /**
   * Ends the handler's async iterator (its `finally` blocks run). The call has already ended, so
   * what that cleanup throws cannot reach the caller: it is logged (`mapUncaughtError`), not lost.
   */
  private stopIterator(): void {
    this.iterator?.return?.().catch((err: unknown) => this.sink.mapUncaughtError(err));
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
      while (!this.done && this.credit > 0) {
        if (!this.sink.canWrite()) {
          // Paced by the socket as well as by credit: resumed by writeHeld().
          this.sink.waitWritable(this);
          return;
        }
        const result = await iterator.next();
        if (this.done) return;
        if (result.done) return this.finish(null);
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
      if (!this.done) this.fail(this.sink.mapUncaughtError(err));
    } finally {
      this.pumping = false;
    }
  }

  private settle(outcome: Outcome): void {
    this.done = true;
    if (outcome !== null && outcome !== CALL_CANCELLED) this.failure = outcome.error;
    if (this.trace !== null) {
      this.trace.end(outcome);
      this.trace = null;
    }
    this.dropBuffer();
    this.sink.release(this, outcome);
  }

  private dropBuffer(): void {
    if (this.buffer === null) return;
    this.buffer = null;
    this.sink.releaseHeld(this.bufferedBytes);
    this.bufferedBytes = 0;
  }
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof (value as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function'
  );
}

function backlogFull(): WireOverloadedError {
  return new WireOverloadedError(
    'the connection holds maxQueuedBytes of values its client has not read; the consumer is too slow for this producer',
  );
}
