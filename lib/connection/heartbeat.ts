import { performance } from 'node:perf_hooks';

/** What a connection reports for a liveness check (all times on the `performance.now()` clock). */
export interface LivenessSample {
  /** When bytes were last read. */
  lastReadAt: number;
  /** When this side last sent a heartbeat PING (0: never). */
  pingSentAt: number;
  /** Reading is stopped on purpose (call limit, backlog, authentication): a PONG could not be seen. */
  readingStopped: boolean;
  /** Since when nothing queued has moved while reading is stopped for the backlog; -1 if it is not. */
  backlogSince: number;
}

/** What a liveness check decides. */
export enum Liveness {
  /** Nothing to do. */
  ALIVE,
  /** Quiet for an interval: send a PING. */
  PING,
  /** The peer has read nothing we queued for two intervals: close. */
  NOT_READING,
  /** The peer has sent nothing for two intervals, a PING included: close. */
  SILENT,
}

/**
 * Pure: the heartbeat's verdict on one connection. Quiet for `intervalMs` → PING (once per
 * silence); silent for twice that → SILENT; stopped for a backlog that has not moved for
 * twice that → NOT_READING. While reading is stopped on purpose the peer's silence proves
 * nothing, so it is not judged (the connection resets `lastReadAt` instead).
 */
export function judgeLiveness(sample: LivenessSample, now: number, intervalMs: number): Liveness {
  if (sample.backlogSince >= 0 && now - sample.backlogSince >= 2 * intervalMs) return Liveness.NOT_READING;
  if (sample.readingStopped) return Liveness.ALIVE;
  const silentMs = now - sample.lastReadAt;
  if (silentMs >= 2 * intervalMs) return Liveness.SILENT;
  if (silentMs >= intervalMs && sample.pingSentAt <= sample.lastReadAt) return Liveness.PING;
  return Liveness.ALIVE;
}

/** What the monitor needs of a connection. */
export interface Monitored {
  checkLiveness(now: number, intervalMs: number): void;
}

/**
 * One timer for every connection of a client or a server. A connection that has read
 * nothing for `intervalMs` is sent a PING; one that has read nothing for twice that
 * (a half-open TCP connection, a frozen process) is closed, which fails its calls.
 * Busy connections are never pinged: any frame read counts as a sign of life.
 */
export class HeartbeatMonitor {
  private readonly connections = new Set<Monitored>();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly intervalMs: number) {}

  add(conn: Monitored): void {
    if (this.intervalMs === 0) return;
    this.connections.add(conn);
    if (this.timer === null) {
      // Checking twice per interval bounds detection at 2.5 intervals of silence.
      this.timer = setInterval(this.check, Math.max(1, this.intervalMs >> 1)).unref();
    }
  }

  delete(conn: Monitored): void {
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
