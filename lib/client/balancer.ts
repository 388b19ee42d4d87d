import { lookup } from 'node:dns/promises';
import { isIP, type Socket } from 'node:net';
import type { ConnectionOptions } from '../connection/connection.js';
import { HeartbeatMonitor } from '../connection/heartbeat.js';
import type { TransportCounters } from '../connection/transport-stats.js';
import type { TimeoutWheel } from '../connection/timeout-wheel.js';
import { WireAuthError, WireConnectionError, type WireError } from '../errors.js';
import { formatAddress, type EndpointAddress, type ResolvedClientOptions } from '../options.js';
import type { ClientConnection } from './client-connection.js';
import { Endpoint, EndpointState, type EndpointEvents } from './endpoint.js';
import type { PendingCall } from './pending-call.js';

export type WireClientStatus = 'connected' | 'reconnecting' | 'disconnected';

/** What the balancer reports to the client that owns it. */
export interface BalancerListener {
  onStatus(status: WireClientStatus): void;
  /** A connection entered rotation: queued calls can go. */
  onReady(): void;
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
export class Balancer implements EndpointEvents {
  /** Connections in rotation: open, handshake done, not draining. */
  private readonly ready: ClientConnection[] = [];
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
      role: 'client',
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
  }

  get readyCount(): number {
    return this.ready.length;
  }

  get connections(): readonly ClientConnection[] {
    return this.ready;
  }

  get sockets(): Socket[] {
    return this.ready.map((c) => c.wire.socket);
  }

  /** Per endpoint: state, open connections, calls in flight. */
  endpointSnapshots(): ReturnType<Endpoint['snapshot']>[] {
    return [...this.endpoints.values()].map((ep) => ep.snapshot());
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

  /** The open connection with the fewest calls in flight, or null if none is open. */
  pick(): ClientConnection | null {
    const ready = this.ready;
    const n = ready.length;
    if (n === 0) {
      this.start();
      return null;
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
    const targets = this.endpoints.size > 0 ? [...this.endpoints.keys()].join(', ') : this.options.servers.map(formatAddress).join(', ');
    return new WireConnectionError(
      `no server reachable (${targets}): ${this.lastError?.message ?? 'no address to connect to'}`,
      { cause: this.lastError ?? undefined },
    );
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.resolveTimer !== null) clearInterval(this.resolveTimer);
    this.heartbeats.stop();
    for (const ep of this.endpoints.values()) ep.shutdown(false);
    this.endpoints.clear();
    this.ready.length = 0;
    this.rejectWaiters(new WireConnectionError('client closed'));
  }

  onConnectionReady(conn: ClientConnection): void {
    if (this.closed) return conn.close(null);
    this.ready.push(conn);
    if (this.ready.length === 1) this.listener.onStatus('connected');
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.resolve();
    this.listener.onReady();
  }

  onConnectionGone(conn: ClientConnection, err: WireError | null): void {
    const i = this.ready.indexOf(conn);
    if (i >= 0) {
      this.ready.splice(i, 1);
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
            this.lastError = new WireConnectionError(`cannot resolve ${host}: ${(err as Error).message}`, { cause: err });
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
      ep.shutdown(true);
      for (const conn of [...this.ready]) if (this.endpointOf(conn) === key) this.onConnectionGone(conn, null);
    }
  }

  private isFromFailedHost(ep: Endpoint, failedHosts: Set<string>): boolean {
    const port = (ep.address as { port: number }).port;
    return this.options.servers.some((s) => this.needsLookup(s) && failedHosts.has((s as { host: string }).host) && (s as { port: number }).port === port);
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
