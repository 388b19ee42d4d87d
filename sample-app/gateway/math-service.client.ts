/** Injection token of the `WireClient` connected to the math service. */
export const MATH_SERVICE = 'MATH_SERVICE';

/** Injection token of the addresses (`host:port`) of the math services that client calls. */
export const MATH_SERVICE_ADDRESSES = 'MATH_SERVICE_ADDRESSES';

/** Default time a call to the service may take before the gateway gives up, in ms. */
export const DEFAULT_CALL_TIMEOUT_MS = 5_000;
