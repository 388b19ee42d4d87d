import { lookup } from 'node:dns/promises';
import { isIP, type Socket } from 'node:net';
import type { ConnectionOptions } from '../connection/connection.js';
import { HeartbeatMonitor } from '../connection/heartbeat.js';
import type { TransportCounters } from '../connection/transport-stats.js';
import type { TimeoutWheel } from '../connection/timeout-wheel.js';
import { socketErrorOf, WireAuthError, WireConnectionError, type WireError } from '../errors.js';
import type { ResolvedClientOptions } from '../options.js';
import { formatAddress, type EndpointAddress } from './endpoint-address.js';
import type { ClientConnection } from './client-connection.js';
import { Endpoint, EndpointState, type EndpointEvents } from './endpoint.js';
import type { PendingCall } from './pending-call.js';
import { OutlierDetector, type EjectionHost } from './outlier-detector.js';

/** How long a readmission PING may take before the endpoint counts as still failing. */
const PROBE_TIMEOUT_MS = 5000;

export type WireClientStatus = 'connected' | 'reconnecting' | 'disconnected';

/** What the balancer reports to the client that owns it. */
export interface BalancerListener {
  onStatus(status: WireClientStatus): void;
  /** A connection to `endpoint` entered rotation: queued calls can go. */
  onReady(endpoint: string): void;
  /** No connection is open and none is being attempted: calls cannot wait for one. */
  onUnreachable(err: WireError): void;
  onConnectionError(endpoint: string, err: WireError, firstInARow: boolean): void;
}

/** Up to this many connections, picking scans them all; above, it samples two. */
const EXACT_PICK_LIMIT = 8;

/**
 * Every endpoint of a client and the rotation of open connections over them.
 *
 * Picking: the open connection with the fewest calls in flight. Up to 8 connections all
 * are compared; above that, two chosen at random are (power of two choices), which keeps
 * a pick O(1) at any pool size and is known to stay within a small factor of the best.
 *
 * Endpoints come from the `servers` option; a hostname there is resolved to all its
 * addresses and re-resolved every `resolveIntervalMs`: new addresses are added,
 * vanished ones drained (no new calls, closed when their calls end).
 */
export class Balancer implements EndpointEvents, EjectionHost {
  /** Connections in rotation: open, handshake done, not draining, endpoint not ejected. */
  private readonly ready: ClientConnection[] = [];
  /** Open connections of ejected endpoints: out of rotation until a PING readmits them. */
  private readonly benched: ClientConnection[] = [];
  /** Endpoints out of rotation (outlier ejection). */
  private readonly ejected = new Set<string>();
  /** Null unless `outlierDetection` is set. */
  private readonly outliers: OutlierDetector | null;
  /** Where the next exact pick starts scanning. */
  private rotation = 0;
  private readonly endpoints = new Map<string, Endpoint>();
  private readonly heartbeats: HeartbeatMonitor;
  private readonly connectionOptions: ConnectionOptions;
  private waiters: { resolve(): void; reject(err: Error): void }[] = [];
  private started = false;
  private resolving = 0;
  private resolveTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private lastError: WireError | null = null;

  constructor(
    private readonly options: ResolvedClientOptions,
    private readonly wheel: TimeoutWheel<PendingCall>,
    private readonly listener: BalancerListener,
    counters: TransportCounters,
  ) {
    this.heartbeats = new HeartbeatMonitor(options.heartbeatIntervalMs);
    this.connectionOptions = {
      codec: options.codec,
      maxFrameSize: options.maxFrameSize,
      handshakeTimeoutMs: options.handshakeTimeoutMs,
      heartbeatMs: options.heartbeatIntervalMs,
      counters,
      compression: options.compression,
      maxQueuedBytes: options.maxQueuedBytes,
      maxDecodedBytes: options.maxDecodedBytes,
      maxDecompressedBytes: options.maxDecompressedBytes,
    };
    this.outliers = options.outlierDetection === null ? null : new OutlierDetector(options.outlierDetection, this);
  }

  /** True when calls' outcomes are to be reported with `recordOutcome`. */
  get detectsOutliers(): boolean {
    return this.outliers !== null;
  }

  /** An attempt on `endpoint` ended: `err` null if the server answered (whatever the answer). */
  recordOutcome(endpoint: string, err: unknown): void {
    this.outliers?.record(endpoint, err);
  }

  get endpointCount(): number {
    return this.endpoints.size;
  }

  /** EjectionHost: the endpoint has connections in rotation, and so does another. */
  canSpare(endpoint: string): boolean {
    let own = false;
    let other = false;
    for (const c of this.ready) {
      if (c.endpointKey === endpoint) own = true;
      else other = true;
    }
    return own && other;
  }

  eject(endpoint: string): void {
    this.ejected.add(endpoint);
    for (let i = this.ready.length - 1; i >= 0; i--) {
      const conn = this.ready[i];
      if (conn.endpointKey !== endpoint) continue;
      this.ready.splice(i, 1);
      this.benched.push(conn);
    }
  }

  readmit(endpoint: string): void {
    if (!this.ejected.delete(endpoint) || this.closed) return;
    let back = 0;
    for (let i = this.benched.length - 1; i >= 0; i--) {
      const conn = this.benched[i];
      if (conn.endpointKey !== endpoint) continue;
      this.benched.splice(i, 1);
      this.ready.push(conn);
      back++;
    }
    if (back > 0) this.listener.onReady(endpoint);
  }

  probe(endpoint: string): Promise<boolean> | null {
    const conn = this.benched.find((c) => c.endpointKey === endpoint && c.wire.isOpen);
    if (conn === undefined) return null;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), PROBE_TIMEOUT_MS).unref();
      conn.wire
        .ping()
        .then(
          () => resolve(true),
          () => resolve(false),
        )
        .finally(() => clearTimeout(timer));
    });
  }

  get readyCount(): number {
    return this.ready.length;
  }

  /** Open connections: in rotation, and benched ones of ejected endpoints (their calls still count). */
  get connections(): readonly ClientConnection[] {
    return this.benched.length === 0 ? this.ready : [...this.ready, ...this.benched];
  }

  get sockets(): Socket[] {
    return this.connections.map((c) => c.wire.underlyingSocket);
  }

  /** Per endpoint: state, open connections, calls in flight, and (with `outlierDetection`) its ejection state. */
  endpointSnapshots(): (ReturnType<Endpoint['snapshot']> & {
    ejected?: boolean;
    ejectedUntil?: number;
    ejections?: number;
  })[] {
    const outliers = this.outliers;
    return [...this.endpoints.values()].map((ep) =>
      outliers === null ? ep.snapshot() : { ...ep.snapshot(), ...outliers.snapshot(ep.key) },
    );
  }

  /** Endpoint keys and states (diagnostics, tests). */
  get endpointStates(): Record<string, EndpointState> {
    const out: Record<string, EndpointState> = {};
    for (const [key, ep] of this.endpoints) out[key] = ep.state;
    return out;
  }

  /** True while no connection is open but one may open soon (dialling or resolving). */
  get isConnecting(): boolean {
    if (!this.started || this.resolving > 0) return true;
    for (const ep of this.endpoints.values()) {
      if (ep.state === EndpointState.CONNECTING || ep.state === EndpointState.READY) return true;
    }
    return false;
  }

  /**
   * The open connection with the fewest calls in flight, or null if none is open. With
   * `avoid` (endpoints a call was already sent to), one to another endpoint if there is one.
   */
  pick(avoid: readonly string[] | null = null): ClientConnection | null {
    const ready = this.ready;
    const n = ready.length;
    if (n === 0) {
      this.start();
      return null;
    }
    if (avoid !== null) {
      const other = this.pickAvoiding(avoid);
      if (other !== null) return other;
    }
    if (n === 1) return ready[0];
    if (n <= EXACT_PICK_LIMIT) {
      // Scan from a rotating start, so that ties (an idle pool) go round robin, not to the first.
      const start = (this.rotation = (this.rotation + 1) % n);
      let best = ready[start];
      for (let k = 1; k < n; k++) {
        const c = ready[(start + k) % n];
        if (c.inFlight < best.inFlight) best = c;
      }
      return best;
    }
    const a = ready[(Math.random() * n) | 0];
    const b = ready[(Math.random() * n) | 0];
    return b.inFlight < a.inFlight ? b : a;
  }

  /** The least-loaded open connection to an endpoint not in `avoid`; null if every one is. */
  pickAvoiding(avoid: readonly string[]): ClientConnection | null {
    let best: ClientConnection | null = null;
    for (const c of this.ready) {
      if (avoid.includes(c.endpointKey)) continue;
      if (best === null || c.inFlight < best.inFlight) best = c;
    }
    return best;
  }

  /** Resolves once a connection is open; rejects if no server can be reached. */
  connect(): Promise<void> {
    if (this.closed) return Promise.reject(new WireConnectionError('client is closed'));
    if (this.ready.length > 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.start();
      this.checkUnreachable();
    });
  }

  /** The error calls get when nothing is reachable (an authentication refusal as itself). */
  unreachableError(): WireError {
    if (this.lastError instanceof WireAuthError) return this.lastError;
    const targets =
      this.endpoints.size > 0
        ? [...this.endpoints.keys()].join(', ')
        : this.options.servers.map(formatAddress).join(', ');
    return new WireConnectionError(
      `no server reachable (${targets}): ${this.lastError?.message ?? 'no address to connect to'}`,
      // The socket error itself when there is one (its `code` is what Nest TCP callers map on).
      { cause: socketErrorOf(this.lastError) ?? this.lastError ?? undefined },
    );
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.resolveTimer !== null) clearInterval(this.resolveTimer);
    this.heartbeats.stop();
    this.outliers?.close();
    for (const ep of this.endpoints.values()) ep.shutdown(false);
    this.endpoints.clear();
    this.ready.length = 0;
    this.benched.length = 0;
    this.rejectWaiters(new WireConnectionError('client closed'));
  }

  onConnectionReady(conn: ClientConnection): void {
    if (this.closed) return conn.close(null);
    if (this.ejected.has(conn.endpointKey)) {
      this.benched.push(conn); // in rotation again once a PING readmits its endpoint
      return;
    }
    this.ready.push(conn);
    if (this.ready.length === 1) this.listener.onStatus('connected');
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.resolve();
    this.listener.onReady(conn.endpointKey);
  }

  onConnectionGone(conn: ClientConnection, err: WireError | null): void {
    const b = this.benched.indexOf(conn);
    if (b >= 0) this.benched.splice(b, 1);
    const i = this.ready.indexOf(conn);
    if (i >= 0) {
      this.ready.splice(i, 1);
      // Never leave ejected endpoints benched when nothing else is in rotation.
      if (this.ready.length === 0 && this.benched.length > 0 && !this.closed) {
        for (const endpoint of [...this.ejected]) this.outliers?.release(endpoint);
      }
      if (this.ready.length === 0 && !this.closed) this.listener.onStatus('reconnecting');
    }
    if (err !== null && !this.closed) {
      const endpoint = this.endpointOf(conn);
      this.listener.onConnectionError(endpoint, err, this.lastError === null || i >= 0);
      this.lastError = err;
    }
  }

  onDialFailed(endpoint: Endpoint, err: WireError): void {
    if (this.closed) return;
    this.listener.onConnectionError(endpoint.key, err, this.lastError === null);
    this.lastError = err;
  }

  onStateChange(endpoint: Endpoint): void {
    if (endpoint.state === EndpointState.READY) this.lastError = null;
    this.checkUnreachable();
  }

  /** Fails waiters and queued calls when nothing is open and nothing is being attempted. */
  private checkUnreachable(): void {
    if (this.closed || this.ready.length > 0 || this.isConnecting) return;
    const err = this.unreachableError();
    this.rejectWaiters(err);
    this.listener.onUnreachable(err);
  }

  private start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    void this.resolve();
    if (this.options.resolveIntervalMs > 0 && this.options.servers.some((s) => this.needsLookup(s))) {
      this.resolveTimer = setInterval(() => void this.resolve(), this.options.resolveIntervalMs).unref();
    }
  }

  /** Resolves every configured server to addresses and reconciles the endpoint set. */
  private async resolve(): Promise<void> {
    this.resolving++;
    const wanted = new Map<string, EndpointAddress>();
    const failedHosts = new Set<string>();
    try {
      await Promise.all(
        this.options.servers.map(async (server) => {
          if (!this.needsLookup(server)) {
            wanted.set(formatAddress(server), server);
            return;
          }
          const { host, port } = server as { host: string; port: number };
          try {
            for (const { address } of await lookup(host, { all: true })) {
              const resolved = { host: address, port };
              wanted.set(formatAddress(resolved), resolved);
            }
          } catch (err) {
            failedHosts.add(host);
            this.lastError = new WireConnectionError(`cannot resolve ${host}: ${(err as Error).message}`, {
              cause: err,
            });
          }
        }),
      );
    } finally {
      this.resolving--;
    }
    if (this.closed) return;
    this.reconcile(wanted, failedHosts);
    this.checkUnreachable();
  }

  private reconcile(wanted: Map<string, EndpointAddress>, failedHosts: Set<string>): void {
    for (const [key, address] of wanted) {
      if (this.endpoints.has(key)) continue;
      const ep = new Endpoint(address, this.options, this.connectionOptions, this.wheel, this.heartbeats, this);
      this.endpoints.set(key, ep);
      ep.start();
    }
    for (const [key, ep] of this.endpoints) {
      if (wanted.has(key)) continue;
      // A host that failed to resolve this time keeps its endpoints until it resolves again.
      if ('host' in ep.address && failedHosts.size > 0 && this.isFromFailedHost(ep, failedHosts)) continue;
      this.endpoints.delete(key);
      this.outliers?.forget(key);
      this.ejected.delete(key);
      ep.shutdown(true);
      for (const conn of [...this.ready]) if (this.endpointOf(conn) === key) this.onConnectionGone(conn, null);
    }
  }

  private isFromFailedHost(ep: Endpoint, failedHosts: Set<string>): boolean {
    const port = (ep.address as { port: number }).port;
    return this.options.servers.some(
      (s) =>
        this.needsLookup(s) && failedHosts.has((s as { host: string }).host) && (s as { port: number }).port === port,
    );
  }

  private endpointOf(conn: ClientConnection): string {
    return conn.endpointKey;
  }

  /**
   * A hostname listed in `servers` is resolved to all its addresses. The single
   * `host`/`port` form dials the name itself, as Nest's TCP client does.
   */
  private needsLookup(address: EndpointAddress): boolean {
    return this.options.lookupHostnames && 'host' in address && isIP(address.host) === 0;
  }

  private rejectWaiters(err: Error): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(err);
  }
}
