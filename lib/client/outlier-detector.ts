import { isRetryableAfterWrite } from './call-scheduler.js';
import { WireDrainingError, WireError, WireErrorCode } from '../errors.js';

/** What the detector needs from the balancer. */
export interface EjectionHost {
  /** Endpoints known now (ejected ones included). */
  readonly endpointCount: number;
  /** True if `endpoint` has open connections and another endpoint has some too. */
  canSpare(endpoint: string): boolean;
  /** Takes the endpoint's connections out of rotation (calls in flight on them go on). */
  eject(endpoint: string): void;
  /** Puts them back. */
  readmit(endpoint: string): void;
  /** PINGs an open connection of the endpoint: resolves true on PONG, false on failure or timeout; null if none is open. */
  probe(endpoint: string): Promise<boolean> | null;
}

export interface OutlierOptions {
  consecutiveFailures: number;
  baseEjectionMs: number;
  maxEjectionMs: number;
  maxEjectedPercent: number;
}

/** Per-endpoint state. Invariant: `ejectedUntil > 0` exactly while the endpoint is out of rotation. */
interface OutlierState {
  /** Calls in a row that failed for a transport reason. */
  failures: number;
  /** Wall-clock time (Date.now()) the ejection ends and the probe starts; 0 when in rotation. */
  ejectedUntil: number;
  /** Times ejected in all (stats). */
  ejections: number;
  /** Ejections in a row, each twice as long as the one before (up to `maxEjectionMs`). */
  streak: number;
  /** When it was last readmitted (`performance.now()`): a streak ends after `maxEjectionMs` in rotation. */
  readmittedAt: number;
  timer: NodeJS.Timeout | null;
}

/** An endpoint with no open connection is probed again after this long. */
const REPROBE_MS = 1000;

/**
 * Outlier ejection (as gRFC A50's failure-percentage / Envoy's consecutive-5xx): an endpoint
 * whose calls fail `consecutiveFailures` times in a row for transport reasons (connection
 * lost, timeout, WIRE_OVERLOADED; never an application error) leaves rotation for
 * `baseEjectionMs`, doubling on each repeat up to `maxEjectionMs`; when that has passed it
 * gets calls again only after it answered a PING. At most `maxEjectedPercent` % of the
 * endpoints are out at once, and never the last one with open connections.
 */
export class OutlierDetector {
  private readonly states = new Map<string, OutlierState>();
  private ejectedCount = 0;
  private closed = false;

  constructor(
    private readonly options: OutlierOptions,
    private readonly host: EjectionHost,
  ) {}

  /** An attempt on `endpoint` ended with `err` (null: answered, whatever the answer). */
  record(endpoint: string, err: unknown): void {
    if (err === null || !isTransportFailure(err)) {
      const state = this.states.get(endpoint);
      if (state !== undefined) state.failures = 0;
      return;
    }
    const state = this.stateOf(endpoint);
    if (state.ejectedUntil > 0) return;
    if (++state.failures >= this.options.consecutiveFailures) this.tryEject(endpoint, state);
  }

  /** For `stats().endpoints`. */
  snapshot(endpoint: string): { ejected: boolean; ejectedUntil: number; ejections: number } {
    const state = this.states.get(endpoint);
    if (state === undefined) return { ejected: false, ejectedUntil: 0, ejections: 0 };
    return { ejected: state.ejectedUntil > 0, ejectedUntil: state.ejectedUntil, ejections: state.ejections };
  }

  /** Ends an ejection early (no other endpoint is left in rotation): the endpoint takes calls again. */
  release(endpoint: string): void {
    const state = this.states.get(endpoint);
    if (state === undefined || state.ejectedUntil === 0) return;
    if (state.timer !== null) clearTimeout(state.timer);
    state.timer = null;
    this.readmit(endpoint, state);
  }

  /** The endpoint is gone (DNS no longer lists it): forget it. */
  forget(endpoint: string): void {
    const state = this.states.get(endpoint);
    if (state === undefined) return;
    if (state.timer !== null) clearTimeout(state.timer);
    if (state.ejectedUntil > 0) this.ejectedCount--;
    this.states.delete(endpoint);
  }

  close(): void {
    this.closed = true;
    for (const state of this.states.values()) if (state.timer !== null) clearTimeout(state.timer);
    this.states.clear();
  }

  private stateOf(endpoint: string): OutlierState {
    let state = this.states.get(endpoint);
    if (state === undefined) {
      state = { failures: 0, ejectedUntil: 0, ejections: 0, streak: 0, readmittedAt: 0, timer: null };
      this.states.set(endpoint, state);
    }
    return state;
  }

  private tryEject(endpoint: string, state: OutlierState): void {
    // `maxEjectedPercent` of the endpoints at most: with one server (or two at 50 %) that is none.
    if ((this.ejectedCount + 1) * 100 > this.options.maxEjectedPercent * this.host.endpointCount) return;
    if (!this.host.canSpare(endpoint)) return;
    this.eject(endpoint, state);
  }

  private eject(endpoint: string, state: OutlierState): void {
    const { baseEjectionMs, maxEjectionMs } = this.options;
    if (state.streak > 0 && performance.now() - state.readmittedAt > maxEjectionMs) state.streak = 0;
    const ms = Math.min(baseEjectionMs * 2 ** state.streak, maxEjectionMs);
    state.streak++;
    state.ejections++;
    state.failures = 0;
    if (state.ejectedUntil === 0) this.ejectedCount++;
    state.ejectedUntil = Date.now() + ms;
    this.host.eject(endpoint);
    this.schedule(endpoint, state, ms);
  }

  private schedule(endpoint: string, state: OutlierState, ms: number): void {
    state.timer = setTimeout(() => this.probe(endpoint, state), ms);
    state.timer.unref();
  }

  /** The ejection time has passed: a PONG readmits the endpoint; no answer ejects it again, for longer. */
  private probe(endpoint: string, state: OutlierState): void {
    state.timer = null;
    const probing = this.host.probe(endpoint);
    if (probing === null) {
      this.schedule(endpoint, state, Math.min(REPROBE_MS, this.options.baseEjectionMs));
      return;
    }
    void probing.then((answered) => {
      if (this.closed || this.states.get(endpoint) !== state || state.ejectedUntil === 0) return;
      if (!answered) return this.eject(endpoint, state);
      this.readmit(endpoint, state);
    });
  }

  private readmit(endpoint: string, state: OutlierState): void {
    state.ejectedUntil = 0;
    state.failures = 0;
    state.readmittedAt = performance.now();
    this.ejectedCount--;
    this.host.readmit(endpoint);
  }
}

/** Failures that say something about the endpoint, not about the call. */
function isTransportFailure(err: unknown): boolean {
  return isRetryableAfterWrite(err)
    ? !(err instanceof WireDrainingError)
    : err instanceof WireError && err.code === WireErrorCode.TIMEOUT;
}
