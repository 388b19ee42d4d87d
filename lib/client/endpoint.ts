import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { ConnectionOptions } from '../connection/connection.js';
import { backoffDelay } from './backoff.js';
import type { HeartbeatMonitor } from '../connection/heartbeat.js';
import type { TimeoutWheel } from '../connection/timeout-wheel.js';
import { WireAuthError, WireConnectionError, type WireError } from '../errors.js';
import type { ResolvedClientOptions } from '../options.js';
import { formatAddress, type EndpointAddress } from './endpoint-address.js';
import { ClientConnection, type ClientConnectionEvents } from './client-connection.js';
import type { PendingCall } from './pending-call.js';

export enum EndpointState {
  /** Dialling, and no connection open yet. */
  CONNECTING = 'connecting',
  /** At least one connection is open. */
  READY = 'ready',
  /** The last attempt failed; the next one waits for its backoff delay. */
  BACKOFF = 'backoff',
  /** Removed (client closed, or DNS no longer lists it): no more dialling. */
  SHUTDOWN = 'shutdown',
}

/** What an endpoint reports to the balancer. */
export interface EndpointEvents {
  /** A connection completed its handshake: put it in rotation. */
  onConnectionReady(conn: ClientConnection): void;
  /** A connection left rotation (GOAWAY) or closed. */
  onConnectionGone(conn: ClientConnection, err: WireError | null): void;
  onStateChange(endpoint: Endpoint): void;
  /** A dial failed before a connection existed. */
  onDialFailed(endpoint: Endpoint, err: WireError): void;
}

/**
 * One address to dial (an IP and port, or a Unix socket), with `poolSize` connections to
 * it. A connection that fails or closes is redialled after an exponential backoff with
 * jitter, which resets once a handshake completes.
 */
export class Endpoint implements ClientConnectionEvents {
  state = EndpointState.CONNECTING;
  readonly key: string;
  lastError: WireError | null = null;
  /** Consecutive attempts that failed before completing a handshake. */
  private failures = 0;
  private readonly connections = new Set<ClientConnection>();
  /** Slots waiting for their reconnect timer. */
  private readonly timers = new Set<NodeJS.Timeout>();
  private openCount = 0;
  /** Dials waiting for the credentials provider. */
  private dialing = 0;

  constructor(
    readonly address: EndpointAddress,
    private readonly options: ResolvedClientOptions,
    private readonly connectionOptions: ConnectionOptions,
    private readonly wheel: TimeoutWheel<PendingCall>,
    private readonly heartbeats: HeartbeatMonitor,
    private readonly events: EndpointEvents,
  ) {
    this.key = formatAddress(address);
  }

  /** Open connections and the calls in flight on them. */
  snapshot(): {
    endpoint: string;
    state: EndpointState;
    connections: number;
    inFlight: number;
    failedAttempts: number;
  } {
    let inFlight = 0;
    for (const c of this.connections) inFlight += c.inFlight;
    return {
      endpoint: this.key,
      state: this.state,
      connections: this.openCount,
      inFlight,
      failedAttempts: this.failures,
    };
  }

  /** Dials every slot that has neither a connection nor a pending reconnect. */
  start(): void {
    while (this.connections.size + this.timers.size + this.dialing < this.options.poolSize) this.dial();
  }

  /** Stops dialling and closes its connections now (`graceful`: once their calls are done). */
  shutdown(graceful: boolean): void {
    if (this.state === EndpointState.SHUTDOWN) return;
    this.setState(EndpointState.SHUTDOWN);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const conn of [...this.connections]) {
      if (graceful) conn.drain();
      else conn.close(null);
    }
  }

  onOpen(conn: ClientConnection): void {
    if (this.state === EndpointState.SHUTDOWN) return conn.close(null);
    this.failures = 0;
    this.openCount++;
    this.heartbeats.add(conn.wire);
    this.events.onConnectionReady(conn);
    this.setState(EndpointState.READY);
  }

  onGoAway(conn: ClientConnection): void {
    this.events.onConnectionGone(conn, null);
  }

  onClose(conn: ClientConnection, err: WireError | null, wasOpen: boolean): void {
    this.connections.delete(conn);
    this.heartbeats.delete(conn.wire);
    if (wasOpen) this.openCount--;
    if (err !== null) this.lastError = err;
    this.events.onConnectionGone(conn, err);
    if (this.state === EndpointState.SHUTDOWN) return;
    if (!wasOpen) this.failures++;
    this.scheduleRedial();
    if (this.openCount === 0) {
      this.setState(this.connections.size + this.dialing > 0 ? EndpointState.CONNECTING : EndpointState.BACKOFF);
    }
  }

  private scheduleRedial(): void {
    const { initialDelayMs, maxDelayMs } = this.options.reconnect;
    const delay = backoffDelay(Math.max(0, this.failures - 1), initialDelayMs, maxDelayMs);
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (this.state === EndpointState.SHUTDOWN) return;
      this.dial();
      if (this.openCount === 0) this.setState(EndpointState.CONNECTING);
    }, delay).unref();
    this.timers.add(timer);
  }

  private dial(): void {
    const credentials = this.options.credentials;
    if (typeof credentials !== 'function') return this.dialWith(credentials);
    // A function is asked for every connection, so rotated tokens are picked up.
    this.dialing++;
    let value: unknown;
    try {
      value = (credentials as () => unknown)();
    } catch (err) {
      value = Promise.reject(err);
    }
    Promise.resolve(value).then(
      (resolved) => {
        this.dialing--;
        if (this.state !== EndpointState.SHUTDOWN) this.dialWith(resolved);
      },
      (err: unknown) => {
        this.dialing--;
        this.onDialFailed(new WireAuthError(`credentials provider failed: ${(err as Error)?.message ?? String(err)}`));
      },
    );
  }

  private dialWith(credentials: unknown): void {
    const socket = this.connectSocket();
    const extension = credentials === undefined ? null : this.options.codec.encode({ credentials });
    const conn = new ClientConnection(
      socket,
      extension === null ? this.connectionOptions : { ...this.connectionOptions, extension },
      this.wheel,
      this,
      this.options.streamCredit,
      this.key,
      this.options.maxFragmentedBytes,
    );
    this.connections.add(conn);
    if (socket.connecting) {
      const { connectTimeoutMs } = this.options;
      const timer = setTimeout(() => {
        if (socket.connecting) {
          conn.close(new WireConnectionError(`connect to ${this.key} timed out after ${connectTimeoutMs} ms`));
        }
      }, connectTimeoutMs).unref();
      socket.once('connect', () => clearTimeout(timer));
      socket.once('close', () => clearTimeout(timer));
    }
  }

  private connectSocket(): Socket {
    const address = this.address;
    const tls = this.options.tls;
    if (tls === null) {
      return 'path' in address
        ? netConnect({ path: address.path })
        : netConnect({ host: address.host, port: address.port });
    }
    if ('path' in address) return tlsConnect({ ...tls, path: address.path });
    // SNI only for names; an IP is checked against the certificate's IP entries.
    const servername = tls.servername ?? (isIP(address.host) === 0 ? address.host : undefined);
    return tlsConnect({ ...tls, host: address.host, port: address.port, servername });
  }

  /** A dial that failed before any socket existed (the credentials provider threw). */
  private onDialFailed(err: WireError): void {
    if (this.state === EndpointState.SHUTDOWN) return;
    this.lastError = err;
    this.failures++;
    this.events.onDialFailed(this, err);
    this.scheduleRedial();
    if (this.openCount === 0 && this.connections.size === 0 && this.dialing === 0) this.setState(EndpointState.BACKOFF);
  }

  private setState(state: EndpointState): void {
    if (this.state === state) return;
    this.state = state;
    this.events.onStateChange(this);
  }
}
