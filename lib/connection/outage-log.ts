import type { Logger } from '@nestjs/common';
import { performance } from 'node:perf_hooks';
import type { WireError } from '../errors.js';

/** Peers whose failures are remembered at once; past it, the one failing longest is forgotten. */
const MAX_TRACKED_PEERS = 1024;

/**
 * Connection failures, logged once per outage rather than once per attempt: a default Nest app
 * prints every level (`verbose` and `debug` included), and a reconnect loop must not fill its log.
 * The first failure toward (client) or from (server) a peer is a `warn`; the failed attempts after
 * it are only counted (the client shows them in `stats().endpoints[].failedAttempts`); the first
 * connection that opens again is one `log` line with the count and the time it took.
 * Used only when nobody listens to the client's `error` / the server's `connectionError` event.
 */
export class OutageLog {
  /** Per peer that is failing: failed attempts since its last open connection, and since when. */
  private readonly failing = new Map<string, { failures: number; since: number }>();

  /** `direction`: the client logs connections `to` a server, the server connections `from` a client host. */
  constructor(
    private readonly logger: Logger,
    private readonly direction: 'to' | 'from',
  ) {}

  /**
   * A connection attempt failed or an open connection was lost. `first`: whether this starts
   * an outage (the client's balancer decides across endpoints); by default, when `peer` was not failing.
   */
  failed(peer: string, err: WireError, first = !this.failing.has(peer)): void {
    let outage = this.failing.get(peer);
    if (outage === undefined) {
      // Bounded: many peers failing (a scan, a flood) cannot grow it; the oldest entry goes.
      if (this.failing.size >= MAX_TRACKED_PEERS) this.failing.delete(this.failing.keys().next().value!);
      outage = { failures: 0, since: performance.now() };
      this.failing.set(peer, outage);
    }
    outage.failures++;
    // Nothing per further attempt, not even at `verbose`: Nest's default logger prints every level.
    if (first) this.logger.warn(`connection ${this.direction} ${peer} failed: ${err.message}`);
  }

  /** A connection to / from `peer` completed its handshake. */
  opened(peer: string): void {
    const outage = this.failing.get(peer);
    if (outage === undefined) return;
    this.failing.delete(peer);
    const ms = Math.round(performance.now() - outage.since);
    const what = this.direction === 'to' ? `reconnected to ${peer}` : `connection from ${peer} open again`;
    this.logger.log(`${what} after ${outage.failures} failed attempts in ${ms} ms`);
  }
}
