import { WireOptionsError } from './errors.js';

/** Largest timeout Node's timers accept (2^31 - 1 ms, about 24.8 days). */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * Validates an integer option: the message names the option (`what`), the range and the
 * value given, as the house rule asks. Shared by options.ts and client/endpoint-address.ts.
 */
export function checkInteger(value: number, min: number, max: number, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new WireOptionsError(`${what} must be an integer from ${min} to ${max}, got ${String(value)}`);
  }
  return value;
}

/** Validates a timeout in ms: 0 (disabled) up to Node's timer limit. */
export function checkTimeout(value: number, what: string): number {
  return checkInteger(value, 0, MAX_TIMEOUT_MS, `${what} (ms, 0 disables)`);
}
