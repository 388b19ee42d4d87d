import type { Outcome } from '../stats/call-stats.js';
import type { WireContext } from '../server/wire-context.js';

/** What a traced call is: `send()` (a request, answered by one value or a stream) or `emit()` (an event). */
export type CallKind = 'request' | 'event';

/** What a trace reads of the socket a call left on (its peer, once connected). */
export interface PeerSocket {
  readonly remoteAddress?: string;
  readonly remotePort?: number;
}

/** One outgoing call (request, stream or event) as an instrumentation follows it. */
export interface ClientCallTrace {
  /**
   * The metadata to send: the call's own, plus what the instrumentation propagates
   * (e.g. `traceparent`). A new object; the caller's is never modified.
   */
  readonly metadata: Record<string, string> | undefined;
  /** The call was written on a connection to `endpoint` (`host:port`, `unix:path`) over `socket`. */
  written(endpoint: string, socket: PeerSocket): void;
  /** The call ended (success, cancelled by the caller, or failed). Called once. */
  end(outcome: Outcome): void;
}

/** One incoming request or event as an instrumentation follows it. */
export interface ServerCallTrace {
  /** Runs `fn` inside the call's context, so that calls made from it continue the trace. */
  run<T>(fn: () => T): T;
  /** The call ended. Called once. */
  end(outcome: Outcome): void;
}

/**
 * What an instrumentation (e.g. `WireInstrumentation` of `nest-wire/opentelemetry`)
 * installs to follow calls. `WireClient` and `WireServer` consult it on every call.
 */
export interface InstrumentationHooks {
  startClientCall(kind: CallKind, pattern: string, metadata: Record<string, string> | undefined): ClientCallTrace;
  startServerCall(kind: CallKind, ctx: WireContext): ServerCallTrace;
  /** A request that no handler answers (`WIRE_NO_HANDLER`): it is recorded, nothing runs. */
  recordUnhandled(
    pattern: string,
    metadata: Record<string, string> | undefined,
    remoteAddress: string,
    code: string,
    message: string,
  ): void;
}

/** The process-wide slot holding the active hooks; `hooks` is null while nothing is enabled. */
export interface InstrumentationSlot {
  hooks: InstrumentationHooks | null;
}

/** Shared by every copy of nest-wire: an incompatible change to `InstrumentationHooks` must change the key. */
const SLOT_KEY = Symbol.for('nest-wire.instrumentation');

/**
 * The active instrumentation of the process, or none. It lives on `globalThis` under a
 * registered symbol, so every copy of nest-wire loaded in the process (its ESM and its
 * CommonJS build, or two installed versions) reads the same slot: an instrumentation
 * enabled through one instruments the clients and servers of all.
 *
 * Cost while nothing is enabled: one property read (`instrumentation.hooks`) per call.
 */
export const instrumentation: InstrumentationSlot = ((globalThis as Record<symbol, unknown>)[SLOT_KEY] ??= {
  hooks: null,
}) as InstrumentationSlot;

/** Runs an event handler's promise inside `trace`, ending the trace when it settles. */
export function traceEvent(trace: ServerCallTrace, run: () => Promise<unknown>): Promise<unknown> {
  const handled = trace.run(run);
  handled.then(
    () => trace.end(null),
    (err: unknown) => trace.end({ error: err }),
  );
  return handled;
}
