import { performance } from 'node:perf_hooks';
import type { WireConnection } from './connection.js';

/**
 * One timer for every connection of a client or a server. A connection that has read
 * nothing for `intervalMs` is sent a PING; one that has read nothing for twice that
 * (a half-open TCP connection, a frozen process) is closed, which fails its calls.
 * Busy connections are never pinged: any frame read counts as a sign of life.
 */
export class HeartbeatMonitor {
  private readonly connections = new Set<WireConnection>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly intervalMs: number) {}

  add(conn: WireConnection): void {
    if (this.intervalMs === 0) return;
    this.connections.add(conn);
    if (this.timer === null) {
      // Checking twice per interval bounds detection at 2.5 intervals of silence.
      this.timer = setInterval(this.check, Math.max(1, this.intervalMs >> 1)).unref();
    }
  }

  delete(conn: WireConnection): void {
    this.connections.delete(conn);
    if (this.connections.size === 0 && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  stop(): void {
    this.connections.clear();
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private readonly check = (): void => {
    const now = performance.now();
    for (const conn of this.connections) conn.checkLiveness(now, this.intervalMs);
  };
}
