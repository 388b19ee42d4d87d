/**
 * Delay before reconnect attempt number `attempt` (0 for the first retry): exponential
 * from `initialMs`, capped at `maxMs`, with ±20 % jitter so that clients that lost the
 * same server do not all come back in the same millisecond. Pure: `random` is injectable.
 */
export function backoffDelay(
  attempt: number,
  initialMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const base = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  const jittered = base * (0.8 + 0.4 * random());
  return Math.max(1, Math.min(maxMs, Math.round(jittered)));
}
