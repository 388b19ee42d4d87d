import { AsyncLocalStorage } from 'node:async_hooks';

/** What a call being handled offers to the calls it makes in turn. */
export interface InboundCall {
  /** Deadline on the `performance.now()` clock, 0 if none. */
  readonly deadline: number;
  /** Aborted when the inbound call is cancelled, times out or loses its connection. */
  readonly signal: AbortSignal;
}

/**
 * The call a handler is running for, visible to `WireClient` calls made from inside it
 * (same async context), so that a chain of services shares one deadline and stops as one.
 */
export const callContext = new AsyncLocalStorage<InboundCall>();

/**
 * Entering an AsyncLocalStorage costs every promise of the handler a little on Node < 22,
 * so the server enters it only once a `WireClient` exists in the process: without a
 * client there is nobody to propagate to.
 */
export const propagation = { clients: 0 };
