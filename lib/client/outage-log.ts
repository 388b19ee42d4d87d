import type { Logger } from '@nestjs/common';
import { performance } from 'node:perf_hooks';
import type { WireError } from '../errors.js';

/** Endpoints whose failures are remembered at once (addresses DNS dropped while down stay until then). */
const MAX_TRACKED_ENDPOINTS = 1024;

/**
 * What a client logs about its connections when nobody listens to its `error` event: one
 * `warn` when an outage starts, one `log` when a connection to an endpoint that was failing is
 * open again ("reconnected to X after N failed attempts in T ms"), and each failed attempt in
 * between at `verbose` only, since a default Nest app prints `debug` and a reconnect loop must
 * not fill its log.
 */
export class OutageLog {
  /** Per endpoint that is failing: failed attempts since its last open connection, and since when. */
  private readonly failing = new Map<string, { failures: number; since: number }>();

  constructor(private readonly logger: Logger) {}

  /** A connection attempt failed or an open connection was lost. `first`: a new outage for the balancer. */
  failed(endpoint: string, err: WireError, first: boolean): void {
    let outage = this.failing.get(endpoint);
    if (outage === undefined && this.failing.size < MAX_TRACKED_ENDPOINTS) {
      outage = { failures: 0, since: performance.now() };
      this.failing.set(endpoint, outage);
    }
    const attempt = outage === undefined ? 0 : ++outage.failures;
    if (first) this.logger.warn(`connection to ${endpoint} failed: ${err.message}`);
    else this.logger.verbose?.(`connection to ${endpoint} failed again (attempt ${attempt}): ${err.message}`);
  }

  /** A connection to `endpoint` completed its handshake. */
  opened(endpoint: string): void {
    const outage = this.failing.get(endpoint);
    if (outage === undefined) return;
    this.failing.delete(endpoint);
    const ms = Math.round(performance.now() - outage.since);
    this.logger.log(`reconnected to ${endpoint} after ${outage.failures} failed attempts in ${ms} ms`);
  }
}
