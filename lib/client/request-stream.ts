import { isObservable, takeWhile, type Observable, type Observer, type Subscription } from 'rxjs';
import { WireError, WireOverloadedError } from '../errors.js';

/** What `send(pattern, source)` streams: an rxjs Observable or any AsyncIterable (Node Readable, async generator). */
export type StreamSource = Observable<unknown> | AsyncIterable<unknown>;

/** True for a value `send()` streams instead of sending it as one value. */
export function isStreamSource(value: unknown): value is StreamSource {
  if (isObservable(value)) return true;
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof (value as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === 'function'
  );
}

/** The connection a streaming call was written on (`ClientConnection`). */
export interface StreamConnection {
  /** Encodes and queues one value of call `id`'s stream; throws a `WireError` if it cannot travel. */
  sendStreamValue(id: number, value: unknown): void;
  /** The source completed. */
  endStream(id: number): void;
  /** The source failed (or could not be sent): ERROR to the server, and the call fails with `err`. */
  failStreamCall(id: number, err: unknown): void;
}

/**
 * The caller's side of a request stream: pulls (AsyncIterable) or takes (Observable) the
 * source's values and sends them only within the credit the server grants as its handler
 * consumes. An Observable that pushes faster is held here, at most `maxHeldValues` values;
 * one more fails the call with `WireOverloadedError`. The source is started by the first
 * CREDIT — so a call refused or re-sent before it started its source runs it once — and
 * released (unsubscribed, `return()`ed) as soon as the call ends, however it ends.
 *
 * Invariants: values are sent only while `conn` is set and `credit > 0`; `held` is empty
 * unless the source is an Observable that outran the credit; after `release()` nothing is
 * pulled or sent again.
 */
export class RequestStream {
  /** The connection and id the call is written on; null before, and between a NACK and the re-send. */
  private conn: StreamConnection | null = null;
  private id = 0;
  private credit = 0;
  private started = false;
  private released = false;
  /** The source completed (END sent, or to be sent after the held values). */
  private sourceEnded = false;
  private subscription: Subscription | null = null;
  private iterator: AsyncIterator<unknown> | null = null;
  private pumping = false;
  private held: unknown[] = [];

  constructor(
    private readonly source: StreamSource,
    private readonly maxHeldValues: number,
  ) {}

  /** The call's REQUEST was written on `conn` as `id`: credit starts at 0 there. */
  attach(conn: StreamConnection, id: number): void {
    this.conn = conn;
    this.id = id;
    this.credit = 0;
  }

  /** The call left its connection without having run (NACK, unsent frame): it waits to be written again. */
  detach(): void {
    this.conn = null;
    this.credit = 0;
  }

  /** The server's handler consumed values: `n` more may be sent. The first grant starts the source. */
  addCredit(n: number): void {
    if (this.released || this.conn === null) return;
    this.credit += n;
    if (!this.started) return this.start();
    if (this.iterator !== null) {
      void this.pump();
      return;
    }
    this.sendHeld();
  }

  /** The call ended (answer, error, timeout, caller gone, connection lost): stop and release the source. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.conn = null;
    this.held = [];
    const subscription = this.subscription;
    this.subscription = null;
    subscription?.unsubscribe();
    const iterator = this.iterator;
    this.iterator = null;
    // What the source's own cleanup throws has nobody to go to: the call is over.
    if (iterator !== null && typeof iterator.return === 'function') iterator.return().catch(() => {});
  }

  /** The caller's observer, wrapped so that the source is released before the call's end is delivered. */
  observe<T>(observer: Observer<T>): Observer<T> {
    return {
      next: (value) => observer.next(value),
      error: (err) => {
        this.release();
        observer.error(err);
      },
      complete: () => {
        this.release();
        observer.complete();
      },
    };
  }

  private start(): void {
    this.started = true;
    const source = this.source;
    if (isObservable(source)) {
      // A synchronous source runs inside subscribe(), before its subscription is returned:
      // takeWhile ends it at its next value once the call is over.
      const subscription = source.pipe(takeWhile(() => !this.released)).subscribe({
        next: (value) => this.onSourceValue(value),
        error: (err: unknown) => this.fail(err),
        complete: () => this.onSourceComplete(),
      });
      if (this.released) subscription.unsubscribe();
      else this.subscription = subscription;
      return;
    }
    try {
      this.iterator = source[Symbol.asyncIterator]();
    } catch (err) {
      return this.fail(err);
    }
    void this.pump();
  }

  // ---- Observable source: pushed values, held beyond the credit ----

  private onSourceValue(value: unknown): void {
    if (this.released) return;
    if (this.credit > 0 && this.held.length === 0 && this.conn !== null) {
      this.send(value);
      return;
    }
    if (this.held.length >= this.maxHeldValues) {
      return this.fail(
        new WireOverloadedError(
          `the source pushed more than ${this.maxHeldValues} values beyond the server's credit (maxStreamHeldValues); ` +
            'the handler reads slower than the source produces: send an AsyncIterable to be paced by the server, or raise maxStreamHeldValues',
        ),
      );
    }
    this.held.push(value);
  }

  private onSourceComplete(): void {
    if (this.released) return;
    this.sourceEnded = true;
    this.subscription = null;
    if (this.held.length === 0) this.conn?.endStream(this.id);
  }

  private sendHeld(): void {
    const held = this.held;
    let i = 0;
    while (i < held.length && this.credit > 0 && !this.released) this.send(held[i++]);
    if (this.released) return;
    held.splice(0, i);
    if (held.length === 0 && this.sourceEnded) this.conn?.endStream(this.id);
  }

  // ---- AsyncIterable source: pulled only within credit ----

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.released && this.credit > 0 && this.iterator !== null) {
        const result = await this.iterator.next();
        if (this.released) return;
        if (result.done === true) {
          this.iterator = null;
          this.sourceEnded = true;
          this.conn?.endStream(this.id);
          return;
        }
        this.send(result.value);
      }
    } catch (err) {
      this.iterator = null; // it threw: it is finished, there is nothing to return()
      this.fail(err);
    } finally {
      this.pumping = false;
    }
  }

  private send(value: unknown): void {
    this.credit--;
    try {
      this.conn!.sendStreamValue(this.id, value);
    } catch (err) {
      this.fail(err);
    }
  }

  /** The source failed, or a value could not be sent: the call fails with `err`. */
  private fail(err: unknown): void {
    if (this.released) return;
    const conn = this.conn;
    this.held = [];
    // Started only on a connection's credit, so a failing source has one (until released).
    conn?.failStreamCall(this.id, err);
  }
}

/**
 * What the server's handler receives when the caller's source fails: a `WireError` as
 * itself (a transport error), anything else as `{ status: 'error', message }`, the shape of
 * an `RpcException` on the wire.
 */
export function sourceErrorForWire(err: unknown): unknown {
  if (err instanceof WireError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return { status: 'error', message };
}
