import { Logger } from '@nestjs/common';
import { ClientProxy, type ReadPacket, type WritePacket } from '@nestjs/microservices';
import { InvalidMessageException } from '@nestjs/microservices/errors/invalid-message.exception.js';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { Observable, throwError, type Observer, type Subscriber } from 'rxjs';
import { WireConnectionError, WireError, WireTimeoutError } from '../errors.js';
import {
  checkTimeout,
  resolveClientOptions,
  type ResolvedClientOptions,
  type WireCallOptions,
  type WireClientOptions,
} from '../options.js';
import type { ClientConnection } from './client-connection.js';
import { ConnectionPool, type WireClientStatus } from './connection-pool.js';
import { PendingCall } from './pending-call.js';
import { TimeoutWheel } from './timeout-wheel.js';

export type { WireClientStatus } from './connection-pool.js';

/** Events `WireClient#on` accepts. */
export type WireClientEvents = {
  /** A connection failed (refused, reset, protocol error, handshake failure). */
  error: (err: WireError) => void;
};

/** Counters for tests and diagnostics. */
export interface WireClientCounters {
  /** Socket writes across all connections. */
  writes: number;
  /** Frames encoded across all connections. */
  frames: number;
  inFlight: number;
  openConnections: number;
}

/**
 * A Nest `ClientProxy` speaking nest-wire. Register it like any client:
 * `ClientsModule.register([{ name: 'MATH', customClass: WireClient, options }])`,
 * or create it with `new WireClient(options)`.
 *
 * `send(pattern, data, { timeout, metadata })` returns a cold Observable: each
 * subscription is one call, multiplexed with every other on the pooled connections.
 */
export class WireClient extends ClientProxy<WireClientEvents, WireClientStatus> {
  protected readonly logger = new Logger(WireClient.name);
  protected readonly wireOptions: ResolvedClientOptions;
  private readonly wheel: TimeoutWheel<PendingCall>;
  private pool: ConnectionPool;
  private readonly emitter = new EventEmitter();
  private closed = false;

  constructor(options: WireClientOptions = {}) {
    super();
    this.wireOptions = resolveClientOptions(options);
    this.wheel = new TimeoutWheel<PendingCall>((call) => this.onCallTimeout(call));
    this.pool = this.createPool();
    this.initializeSerializer(options as never);
    this.initializeDeserializer(options as never);
  }

  /** Opens the pool; resolves once a connection has completed its handshake. */
  connect(): Promise<void> {
    if (this.closed) this.reopen();
    return this.pool.connect();
  }

  /** Closes every connection; calls in flight fail at once with `WireConnectionError`. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pool.close(new WireConnectionError('client closed'));
    this.wheel.clear();
    this._status$.next('disconnected');
  }

  override on<K extends keyof WireClientEvents>(event: K, callback: WireClientEvents[K]): void {
    this.emitter.on(event, callback);
  }

  /** The sockets of the pool. */
  unwrap<T>(): T {
    return this.pool.sockets as T;
  }

  counters(): WireClientCounters {
    let writes = 0;
    let frames = 0;
    let inFlight = 0;
    for (const c of this.pool.connections) {
      writes += c.wire.coalescer.writes;
      frames += c.wire.encoder.frames;
      inFlight += c.inFlight;
    }
    return { writes, frames, inFlight, openConnections: this.pool.openCount };
  }

  /**
   * Sends a request. Optional per-call `options`: `timeout` (ms, 0 disables) and
   * `metadata`, merged over what the dispatch hook set.
   */
  override send<TResult = any, TInput = any>(
    pattern: any,
    data: TInput,
    options?: WireCallOptions,
  ): Observable<TResult> {
    if (pattern === null || pattern === undefined || data === null || data === undefined) {
      return throwError(() => new InvalidMessageException());
    }
    return new Observable<TResult>((subscriber) =>
      this.startCall(this.createPacket(pattern, data), options, subscriber as Subscriber<unknown>),
    );
  }

  protected publish(packet: ReadPacket, callback: (packet: WritePacket) => void): () => void {
    const observer: Observer<unknown> = {
      next: (response) => callback({ response }),
      error: (err) => callback({ err }),
      complete: () => callback({ isDisposed: true }),
    };
    const call = this.startCall(packet, undefined, observer);
    return () => call.unsubscribe();
  }

  protected async dispatchEvent<T = any>(packet: ReadPacket): Promise<T> {
    let conn = this.pool.pick();
    if (conn === null) {
      await this.connect();
      conn = this.pool.pick();
      if (conn === null) throw new WireConnectionError('no connection is open');
    }
    await conn.writeEvent(this.routeOf(packet.pattern), packet.data, packet.metadata);
    return undefined as T;
  }

  private startCall(packet: ReadPacket, options: WireCallOptions | undefined, observer: Observer<unknown>): PendingCall {
    let timeoutMs = this.wireOptions.timeout;
    let metadata = packet.metadata;
    if (options !== undefined) {
      if (options.timeout !== undefined) timeoutMs = checkTimeout(options.timeout, 'send() option timeout');
      if (options.metadata !== undefined) metadata = { ...metadata, ...options.metadata };
    }
    const call = new PendingCall(observer, timeoutMs, this.routeOf(packet.pattern), packet.data, metadata);
    if (timeoutMs > 0) this.wheel.add(call, performance.now() + timeoutMs);
    if (this.closed) this.reopen();
    const conn = this.pool.pick();
    if (conn !== null) {
      this.write(call, conn);
    } else {
      this.pool.connect().then(
        () => this.writeWhenOpen(call),
        (err) => this.failUnwritten(call, err),
      );
    }
    return call;
  }

  private writeWhenOpen(call: PendingCall): void {
    if (call.settled) return;
    const conn = this.pool.pick();
    if (conn === null) return this.failUnwritten(call, new WireConnectionError('connection closed before the call was sent'));
    this.write(call, conn);
  }

  private write(call: PendingCall, conn: ClientConnection): void {
    // The server gets the time left, not a timestamp: clocks of two hosts need not agree.
    const budgetMs = call.timeoutMs > 0 ? Math.max(0, Math.ceil(call.deadline - performance.now())) : -1;
    try {
      conn.write(call, budgetMs);
    } catch (err) {
      this.failUnwritten(call, err);
    }
  }

  /** Fails a call that is in no connection's table. */
  private failUnwritten(call: PendingCall, err: unknown): void {
    if (call.settled) return;
    call.settled = true;
    this.wheel.remove(call);
    call.observer.error(err);
  }

  private onCallTimeout(call: PendingCall): void {
    const owner = call.owner as ClientConnection | null;
    if (owner !== null) owner.expire(call);
    else this.failUnwritten(call, new WireTimeoutError(call.timeoutMs));
  }

  private routeOf(pattern: unknown): string {
    return typeof pattern === 'string' ? pattern : String(this.normalizePattern(pattern as never));
  }

  private createPool(): ConnectionPool {
    return new ConnectionPool(this.wireOptions, this.wheel, {
      onStatus: (status) => this._status$.next(status),
      onConnectionError: (err) => {
        if (this.emitter.listenerCount('error') > 0) this.emitter.emit('error', err);
        else this.logger.warn(`connection to ${this.wireOptions.host}:${this.wireOptions.port} failed: ${err.message}`);
      },
    });
  }

  /** After `close()`, a new call or `connect()` starts a fresh pool (as Nest's clients do). */
  private reopen(): void {
    this.closed = false;
    this.pool = this.createPool();
  }
}
