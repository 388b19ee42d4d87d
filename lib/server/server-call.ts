import type { Observable, Observer, Subscription } from 'rxjs';
import type { SignalSource } from './wire-context.js';

/** How a running call reaches its connection. */
export interface CallSink {
  sendValue(call: ServerCall, value: unknown): void;
  sendEnd(call: ServerCall): void;
  sendFailure(call: ServerCall, err: unknown): void;
  /** The call settled (completed, failed or was cancelled): forget it. */
  release(call: ServerCall): void;
}

/**
 * One request being handled. It is the observer of the handler's stream (so no
 * closure per call), owns the abort signal handed to `ctx.getSignal()` (created only
 * if a handler asks for it), and is what CANCEL and connection loss act on.
 */
export class ServerCall implements Observer<unknown>, SignalSource {
  done = false;
  private subscription: Subscription | null = null;
  private controller: AbortController | null = null;

  constructor(
    readonly id: number,
    private readonly sink: CallSink,
    /** Absolute deadline (`Date.now()` ms), 0 if none. */
    readonly deadline: number,
  ) {}

  get signal(): AbortSignal {
    if (this.controller === null) this.controller = new AbortController();
    return this.controller.signal;
  }

  /** Subscribes to the handler's result stream; values flow to the connection. */
  run(stream$: Observable<unknown>): void {
    if (this.done) return;
    const subscription = stream$.subscribe(this);
    // A synchronous stream may have finished, or been cancelled, during subscribe().
    if (this.done) subscription.unsubscribe();
    else this.subscription = subscription;
  }

  next(value: unknown): void {
    if (!this.done) this.sink.sendValue(this, value);
  }

  complete(): void {
    if (this.done) return;
    this.settle();
    this.sink.sendEnd(this);
  }

  error(err: unknown): void {
    if (this.done) return;
    this.settle();
    this.sink.sendFailure(this, err);
  }

  /** Stops the handler: unsubscribes its stream and aborts its signal. Sends nothing. */
  cancel(reason: unknown): void {
    if (this.done) return;
    this.settle();
    if (this.subscription !== null) this.subscription.unsubscribe();
    if (this.controller !== null) this.controller.abort(reason);
  }

  private settle(): void {
    this.done = true;
    this.sink.release(this);
  }
}
