import { Injectable } from '@nestjs/common';
import { defer, finalize, tap, type Observable } from 'rxjs';
import type { CountdownCounts } from '../patterns.js';

/**
 * Counts the countdown streams the service runs and how each one ended. A stream
 * the caller abandons (an SSE client that disconnects, a `take(1)`, a timeout) is
 * unsubscribed by the `WireServer` when the CANCEL frame arrives, and its
 * `ctx.getSignal()` aborts: `stopped` and `aborted` show that it happened.
 */
@Injectable()
export class CountdownTracker {
  private readonly counts: CountdownCounts = { started: 0, active: 0, completed: 0, stopped: 0, aborted: 0, values: 0 };

  /** Wraps a countdown: counted when subscribed, when it ends, and how. */
  track<T>(source: Observable<T>, signal: AbortSignal): Observable<T> {
    return defer(() => {
      let completed = false;
      this.counts.started++;
      this.counts.active++;
      return source.pipe(
        tap({
          next: () => void this.counts.values++,
          complete: () => void (completed = true),
          error: () => void (completed = true),
        }),
        finalize(() => {
          this.counts.active--;
          if (completed) {
            this.counts.completed++;
            return;
          }
          this.counts.stopped++;
          // The server aborts the signal right after unsubscribing: look once that is done.
          queueMicrotask(() => {
            if (signal.aborted) this.counts.aborted++;
          });
        }),
      );
    });
  }

  snapshot(): CountdownCounts {
    return { ...this.counts };
  }
}
