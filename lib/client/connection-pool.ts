import { connect as netConnect, type Socket } from 'node:net';
import type { ConnectionOptions } from '../connection/connection.js';
import { WireConnectionError, type WireError } from '../errors.js';
import type { ResolvedClientOptions } from '../options.js';
import { ClientConnection, type ClientConnectionEvents } from './client-connection.js';
import type { PendingCall } from './pending-call.js';
import type { TimeoutWheel } from '../connection/timeout-wheel.js';

export type WireClientStatus = 'connected' | 'disconnected';

/** What the pool reports to the client that owns it. */
export interface PoolListener {
  onStatus(status: WireClientStatus): void;
  /** A connection completed its handshake: queued calls can go. */
  onConnectionOpen(): void;
  onConnectionError(err: WireError): void;
}

interface ConnectWaiter {
  resolve(): void;
  reject(err: Error): void;
}

/**
 * `poolSize` connections to one server. Calls go to the open connection with the
 * fewest calls in flight. Connections are opened lazily (first call or `connect()`),
 * and a slot whose connection closed is refilled on the next `connect()`.
 */
export class ConnectionPool implements ClientConnectionEvents {
  /** Connections in any state, one per slot in use. */
  private readonly all = new Set<ClientConnection>();
  /** Open connections, in the order they opened. */
  private readonly open: ClientConnection[] = [];
  private waiters: ConnectWaiter[] = [];
  private lastError: WireError | null = null;
  private closed = false;
  private readonly connectionOptions: ConnectionOptions;

  constructor(
    private readonly options: ResolvedClientOptions,
    private readonly wheel: TimeoutWheel<PendingCall>,
    private readonly listener: PoolListener,
  ) {
    this.connectionOptions = {
      role: 'client',
      codec: options.codec,
      maxFrameSize: options.maxFrameSize,
      handshakeTimeoutMs: options.handshakeTimeoutMs,
    };
  }

  get openCount(): number {
    return this.open.length;
  }

  /** Underlying sockets (for `unwrap()`). */
  get sockets(): Socket[] {
    return [...this.all].map((c) => c.wire.socket);
  }

  get connections(): readonly ClientConnection[] {
    return this.open;
  }

  /** The open connection with the fewest calls in flight, or null if none is open. */
  pick(): ClientConnection | null {
    const open = this.open;
    const n = open.length;
    if (n === 0) return null;
    if (n < this.options.poolSize && this.waiters.length === 0) this.fill();
    let best = open[0];
    for (let i = 1; i < n; i++) if (open[i].inFlight < best.inFlight) best = open[i];
    return best;
  }

  /** Resolves once at least one connection is open; rejects if every attempt failed. */
  connect(): Promise<void> {
    if (this.closed) return Promise.reject(new WireConnectionError('client is closed'));
    if (this.open.length === this.options.poolSize) return Promise.resolve();
    return new Promise((resolve, reject) => {
      if (this.open.length > 0) resolve();
      else this.waiters.push({ resolve, reject });
      this.fill();
    });
  }

  close(err: WireError): void {
    this.closed = true;
    for (const conn of [...this.all]) {
      conn.failAll(err);
      conn.close(null);
    }
    this.rejectWaiters(err);
  }

  onOpen(conn: ClientConnection): void {
    if (this.closed) return conn.close(null);
    this.open.push(conn);
    if (this.open.length === 1) this.listener.onStatus('connected');
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.resolve();
    this.listener.onConnectionOpen();
  }

  onClose(conn: ClientConnection, err: WireError | null): void {
    this.all.delete(conn);
    const index = this.open.indexOf(conn);
    if (index >= 0) {
      this.open.splice(index, 1);
      if (this.open.length === 0) this.listener.onStatus('disconnected');
    }
    if (err !== null && !this.closed) {
      this.lastError = err;
      this.listener.onConnectionError(err);
    }
    if (this.open.length === 0 && this.all.size === 0 && this.waiters.length > 0) {
      this.rejectWaiters(
        new WireConnectionError(
          `cannot connect to ${this.options.host}:${this.options.port}: ${this.lastError?.message ?? 'connection closed'}`,
          { cause: this.lastError ?? undefined },
        ),
      );
    }
  }

  /** Starts connections for every empty slot. */
  private fill(): void {
    if (this.closed) return;
    while (this.all.size < this.options.poolSize) this.all.add(this.dial());
  }

  private dial(): ClientConnection {
    const { host, port, connectTimeoutMs } = this.options;
    const socket = netConnect({ host, port });
    const conn = new ClientConnection(
      socket,
      this.connectionOptions,
      this.options.codec,
      this.wheel,
      this,
      this.options.streamCredit,
    );
    if (socket.connecting) {
      const timer = setTimeout(() => {
        if (socket.connecting) {
          conn.close(new WireConnectionError(`connect to ${host}:${port} timed out after ${connectTimeoutMs} ms`));
        }
      }, connectTimeoutMs).unref();
      socket.once('connect', () => clearTimeout(timer));
      socket.once('close', () => clearTimeout(timer));
    }
    return conn;
  }

  private rejectWaiters(err: Error): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(err);
  }
}
