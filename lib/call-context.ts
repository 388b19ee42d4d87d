import { AsyncLocalStorage } from 'node:async_hooks';

/** What a call being handled offers to the calls it makes in turn. */
export interface InboundCall {
  /** Deadline on the `performance.now()` clock, 0 if none. */
  readonly deadline: number;
  /** Aborted when the inbound call is cancelled, times out or loses its connection. */
  readonly signal: AbortSignal;
}

/**
 * The package ships an ESM and a CommonJS build; an app can load both (its own code
 * `require`s nest-wire while an ESM dependency imports it). Module-level state lives on
 * `globalThis` under a registered symbol, so both copies share one context and one
 * counter: a call handled by one copy's server propagates to the other copy's clients.
 * The key carries a version: a future incompatible shape takes a new key.
 */
const SHARED_STATE = Symbol.for('nest-wire.call-context.v1');

interface SharedState {
  readonly callContext: AsyncLocalStorage<InboundCall>;
  readonly propagation: { clients: number };
}

const shared: SharedState = ((globalThis as { [SHARED_STATE]?: SharedState })[SHARED_STATE] ??= {
  callContext: new AsyncLocalStorage<InboundCall>(),
  propagation: { clients: 0 },
});

/**
 * The call a handler is running for, visible to `WireClient` calls made from inside it
 * (same async context), so that a chain of services shares one deadline and stops as one.
 */
export const callContext = shared.callContext;

/**
 * Entering an AsyncLocalStorage costs every promise of the handler a little on Node < 22,
 * so the server enters it only once a `WireClient` exists in the process: without a
 * client there is nobody to propagate to.
 */
export const propagation = shared.propagation;
