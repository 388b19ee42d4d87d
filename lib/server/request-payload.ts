import { Observable, type Subscriber } from 'rxjs';
import { WireError } from '../errors.js';

/**
 * Values of a request stream the server lets the client have in flight: it grants this
 * many when the handler starts consuming, then renews what the handler consumed each
 * time half of it has been (docs/PROTOCOL.md §3.11). At most this many values wait,
 * decoded, for the handler.
 */
export const REQUEST_STREAM_WINDOW = 16;
const RENEWAL = REQUEST_STREAM_WINDOW >>> 1;

/**
 * What a handler's `@Payload()` is for a call whose input is a request stream: an
 * Observable of the client's values that is also an AsyncIterable. A type, not a class,
 * so that Nest's `ValidationPipe` sees `Object` as the parameter's type and passes the
 * stream through untouched (see README, "Streams in both directions").
 */
export type WireStream<T = unknown> = Observable<T> & AsyncIterable<T>;

/** How a request stream reaches its connection (the session, for one call). */
export interface PayloadControl {
  /** Grant the client `n` more values (CREDIT). */
  grant(n: number): void;
  /** A value of `decodedBytes` (estimated heap) left the queue: delivered, or dropped. */
  released(decodedBytes: number): void;
}

const enum State {
  /** Values may still arrive. */
  OPEN,
  /** The client's stream completed; what is queued is still delivered. */
  ENDED,
  /** Failed (the client's source errored, the call was cancelled, timed out, lost its connection). */
  FAILED,
  /** The handler stopped consuming (unsubscribed, `return()`ed) or the call ended: values are dropped. */
  CLOSED,
}

interface Waiter {
  resolve(result: IteratorResult<unknown>): void;
  reject(err: unknown): void;
}

/**
 * The `@Payload()` of a call whose input is a request stream: an Observable of the
 * client's values that is also an AsyncIterable, consumed once, either way. Credit goes
 * to the client as the handler consumes — values delivered to the subscriber's `next`, or
 * pulled by `for await` — so a slow handler slows the client's source, and at most
 * `REQUEST_STREAM_WINDOW` values wait here.
 *
 * Invariants: `queue` holds at most the credit granted and not yet used; once FAILED or
 * CLOSED it is empty; `sizes[i]` is the decoded size of `queue[i]`.
 */
export class RequestPayload<T = unknown> extends Observable<T> implements AsyncIterable<T> {
  private state = State.OPEN;
  private failure: unknown = undefined;
  private readonly queue: T[] = [];
  private readonly sizes: number[] = [];
  /** Values the client may still send (granted, not yet received). */
  private credit = 0;
  /** Values consumed since the last grant. */
  private consumed = 0;
  /** How the handler consumes it: once, one way. */
  private consumer: 'observable' | 'iterator' | null = null;
  private subscriber: Subscriber<T> | null = null;
  /** A `next()` of the iterator waiting for a value. */
  private waiter: Waiter | null = null;

  constructor(private readonly control: PayloadControl) {
    super((subscriber) => this.subscribeConsumer(subscriber));
  }

  /** Values queued for the handler. */
  get queued(): number {
    return this.queue.length;
  }

  /**
   * A value from the client. False if it came without credit (the client broke the
   * protocol); a value arriving after the handler stopped consuming is dropped.
   */
  push(value: T, decodedBytes: number): boolean {
    if (this.credit <= 0) return false;
    this.credit--;
    if (this.state !== State.OPEN) {
      this.control.released(decodedBytes);
      return true;
    }
    if (this.subscriber !== null) {
      this.control.released(decodedBytes);
      this.countConsumed();
      this.subscriber.next(value);
      return true;
    }
    if (this.waiter !== null) {
      const waiter = this.waiter;
      this.waiter = null;
      this.control.released(decodedBytes);
      this.countConsumed();
      waiter.resolve({ value, done: false });
      return true;
    }
    this.queue.push(value);
    this.sizes.push(decodedBytes);
    return true;
  }

  /** The client's stream completed: the handler sees completion after the values queued. */
  end(): void {
    if (this.state !== State.OPEN) return;
    this.state = State.ENDED;
    if (this.queue.length === 0) this.deliverEnd();
  }

  /** The stream failed (client's source, cancel, deadline, connection): queued values are dropped. */
  fail(err: unknown): void {
    if (this.state === State.FAILED || this.state === State.CLOSED) return;
    this.state = State.FAILED;
    this.failure = err;
    this.dropQueue();
    const subscriber = this.subscriber;
    this.subscriber = null;
    if (subscriber !== null) subscriber.error(err);
    const waiter = this.waiter;
    this.waiter = null;
    if (waiter !== null) waiter.reject(err);
  }

  /** The call ended: nothing more is read; a consumer still waiting sees completion. */
  close(): void {
    if (this.state === State.FAILED || this.state === State.CLOSED) return;
    this.state = State.CLOSED;
    this.dropQueue();
    this.deliverEnd();
  }

  /** Whether the call still reads this stream (its STREAM frames are decoded). */
  get isReading(): boolean {
    return this.state === State.OPEN;
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.consumer !== null) return failingIterator(consumedTwice());
    this.consumer = 'iterator';
    return {
      next: () => this.pull(),
      return: (value?: unknown) => {
        this.stopConsuming();
        return Promise.resolve({ value: value as T, done: true });
      },
    };
  }

  private subscribeConsumer(subscriber: Subscriber<T>): () => void {
    if (this.consumer !== null) {
      subscriber.error(consumedTwice());
      return () => {};
    }
    this.consumer = 'observable';
    if (this.state === State.FAILED) {
      subscriber.error(this.failure);
      return () => {};
    }
    this.subscriber = subscriber;
    while (this.queue.length > 0 && this.subscriber !== null) {
      const value = this.take();
      subscriber.next(value);
    }
    if (this.subscriber !== null) {
      if (this.state === State.OPEN) this.start();
      else this.deliverEnd();
    }
    return () => {
      if (this.subscriber === subscriber) this.stopConsuming();
    };
  }

  private pull(): Promise<IteratorResult<T>> {
    if (this.queue.length > 0) return Promise.resolve({ value: this.take(), done: false });
    switch (this.state) {
      case State.FAILED:
        return Promise.reject(this.failure);
      case State.ENDED:
      case State.CLOSED:
        return Promise.resolve({ value: undefined as T, done: true });
    }
    if (this.waiter !== null)
      return Promise.reject(new WireError('next() called again before the previous one settled'));
    this.start();
    return new Promise<IteratorResult<T>>((resolve, reject) => {
      this.waiter = { resolve: resolve as Waiter['resolve'], reject };
    });
  }

  /** The first grant: the client's source starts only once the handler consumes. */
  private start(): void {
    if (this.consumed !== 0 || this.credit !== 0 || this.state !== State.OPEN) return;
    this.credit = REQUEST_STREAM_WINDOW;
    this.control.grant(REQUEST_STREAM_WINDOW);
  }

  private take(): T {
    const value = this.queue.shift()!;
    this.control.released(this.sizes.shift()!);
    this.countConsumed();
    return value;
  }

  /** Renews the client's credit once half the window has been consumed. */
  private countConsumed(): void {
    if (++this.consumed < RENEWAL || this.state !== State.OPEN) return;
    this.credit += this.consumed;
    this.control.grant(this.consumed);
    this.consumed = 0;
  }

  private deliverEnd(): void {
    const subscriber = this.subscriber;
    this.subscriber = null;
    if (subscriber !== null) subscriber.complete();
    const waiter = this.waiter;
    this.waiter = null;
    if (waiter !== null) waiter.resolve({ value: undefined, done: true });
  }

  /** The handler stopped consuming (unsubscribed, or `return()` on the iterator). */
  private stopConsuming(): void {
    this.subscriber = null;
    if (this.state === State.OPEN || this.state === State.ENDED) this.state = State.CLOSED;
    this.dropQueue();
    const waiter = this.waiter;
    this.waiter = null;
    if (waiter !== null) waiter.resolve({ value: undefined, done: true });
  }

  private dropQueue(): void {
    let bytes = 0;
    for (const n of this.sizes) bytes += n;
    this.queue.length = 0;
    this.sizes.length = 0;
    if (bytes > 0) this.control.released(bytes);
  }
}

function consumedTwice(): WireError {
  return new WireError('a request stream can be consumed once: subscribe to it or iterate it, not both, not twice');
}

function failingIterator<T>(err: unknown): AsyncIterator<T> {
  return { next: () => Promise.reject(err) };
}
