import { BaseRpcContext } from '@nestjs/microservices';

/** Where a context gets its abort signal from (a running call), created lazily, and how the call ended. */
export interface SignalSource {
  readonly signal: AbortSignal;
  /** The error the call ended with; undefined while it runs, and once it succeeded or was cancelled. */
  readonly failure: unknown;
}

/** [pattern, metadata, requestId, deadline, signal source, remote address] */
export type WireContextArgs = [string, Record<string, string> | undefined, number, number, SignalSource | null, string];

/** An `AbortSignal` that never aborts, for events (nothing can cancel them). */
const NEVER_ABORTED = new AbortController().signal;

/**
 * The context handed to `@Ctx()` for nest-wire messages and events.
 */
export class WireContext extends BaseRpcContext<WireContextArgs> {
  constructor(args: WireContextArgs) {
    super(args);
  }

  /** The pattern as routed (object patterns as Nest's normalised JSON). */
  getPattern(): string {
    return this.args[0];
  }

  /** Metadata the client attached (dispatch hook or per-call `metadata`), if any. */
  getMetadata(): Record<string, string> | undefined {
    return this.args[1];
  }

  /** Request id on its connection; 0 for events. */
  getRequestId(): number {
    return this.args[2];
  }

  /** Absolute deadline as a `Date.now()` timestamp in ms, or `undefined` if the caller set none. */
  getDeadline(): number | undefined {
    const deadline = this.args[3];
    return deadline > 0 ? deadline : undefined;
  }

  /** Aborted when the caller cancels, the deadline passes, or the connection closes. */
  getSignal(): AbortSignal {
    const source = this.args[4];
    return source === null ? NEVER_ABORTED : source.signal;
  }

  /** `host:port` of the client. */
  getRemoteAddress(): string {
    return this.args[5];
  }

  /**
   * The error the call failed with — what the caller receives: the value Nest's exception
   * filters made of a thrown exception (`{ status: 'error', message }` for an `RpcException`),
   * or a `WireError` such as `WireTimeoutError` — once it has ended; undefined while it
   * runs, if it succeeded or was cancelled, and for events. Nest's processing end hook gets
   * only the context: this is how it learns that the call failed.
   */
  getError(): unknown {
    const source = this.args[4];
    return source === null ? undefined : source.failure;
  }
}
