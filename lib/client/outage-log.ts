import type { Logger } from '@nestjs/common';
import { performance } from 'node:perf_hooks';
import type { WireError } from '../errors.js';

/**
 * What a client logs about its connections when nobody listens to its `error` event: one
 * `warn` when an outage starts, one `log` when a connection is open again ("reconnected to X
 * after N failed attempts in T ms"), and each failed attempt in between at `verbose` only,
 * since a default Nest app prints `debug` and a reconnect loop must not fill its log.
 */
export class OutageLog {
  /** Failed attempts since the last open connection; 0 while there is no outage. */
  private failures = 0;
  /** When the outage's first failure happened (`performance.now()`). */
  private since = 0;

  constructor(private readonly logger: Logger) {}

  /** A connection attempt failed or an open connection was lost. `first`: a new outage for the balancer. */
  failed(endpoint: string, err: WireError, first: boolean): void {
    if (this.failures === 0) this.since = performance.now();
    this.failures++;
    if (first) this.logger.warn(`connection to ${endpoint} failed: ${err.message}`);
    else this.logger.verbose?.(`connection to ${endpoint} failed again (attempt ${this.failures}): ${err.message}`);
  }

  /** A connection to `endpoint` completed its handshake. */
  opened(endpoint: string): void {
    if (this.failures === 0) return;
    const ms = Math.round(performance.now() - this.since);
    this.logger.log(`reconnected to ${endpoint} after ${this.failures} failed attempts in ${ms} ms`);
    this.failures = 0;
  }
}
