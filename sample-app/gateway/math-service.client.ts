/** Injection token of the `WireClient` connected to the math service. */
export const MATH_SERVICE = 'MATH_SERVICE';

/** Default time a call to the service may take before the gateway gives up, in ms. */
export const DEFAULT_CALL_TIMEOUT_MS = 5_000;
