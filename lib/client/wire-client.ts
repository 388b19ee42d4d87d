import { Logger } from '@nestjs/common';
import { ClientProxy, type ReadPacket, type WritePacket } from '@nestjs/microservices';
import { InvalidMessageException } from '@nestjs/microservices/errors/invalid-message.exception.js';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { Observable, throwError, type Observer, type Subscriber } from 'rxjs';
import { callContext, propagation } from '../call-context.js';
import { CallStats, TransportCounters, type CallStatsSnapshot, type Outcome } from '../connection/transport-stats.js';
import {
  WireCancelledError,
  WireConnectionError,
  WireError,
  WireOverloadedError,
  WireTimeoutError,
} from '../errors.js';
import {
  checkCallOptionKeys,
  checkTimeout,
  resolveClientOptions,
  type ResolvedClientOptions,
  type WireCallOptions,
  type WireClientOptions,
} from '../options.js';
import type { ClientConnection } from './client-connection.js';
import { Balancer, type BalancerListener, type WireClientStatus } from './balancer.js';
import { OutageLog } from '../connection/outage-log.js';
import { overridesResponseHooks, SerializingObserver } from './serializer-hooks.js';
import { CallQueue, PendingCall, type CallTracker } from './pending-call.js';
import { instrumentation } from '../diagnostics/instrumentation-hooks.js';
import { TimeoutWheel } from '../connection/timeout-wheel.js';

export type { WireClientStatus } from './balancer.js';

/** Events `WireClient#on` accepts. */
export type WireClientEvents = {
  /** A connection failed (refused, reset, protocol error, handshake failure). */
  error: (err: WireError) => void;
};

/** What `WireClient#stats()` returns. */
export interface WireClientStats {
  calls: CallStatsSnapshot & { inFlight: number; pending: number; queued: number; resends: number };
  transport: { bytesIn: number; bytesOut: number; framesIn: number; framesOut: number; writes: number };
  endpoints: { endpoint: string; state: string; connections: number; inFlight: number }[];
}

/** Counters for tests and diagnostics. */
export interface WireClientCounters {
  /** Socket writes across all connections. */
  writes: number;
  /** Frames encoded across all connections. */
  frames: number;
  /** Calls written and not yet answered. */
  inFlight: number;
  /** Calls counted against `maxPendingCalls` (written or queued). */
  pending: number;
  /** Calls not yet written (waiting for a connection, room, or a pending slot). */
  queued: number;
  /** Calls re-sent to another connection after a NACK or an unsent frame. */
  resends: number;
  openConnections: number;
}

/**
 * Nest 12.0.4+ builds outgoing packets in `createPacket`, which runs the hook set by
 * `setOnDispatchHook`; Nest 11 (and 12.0.0-12.0.3) has neither, so WireClient provides both.
 */
const NEST_CREATES_PACKETS = typeof (ClientProxy.prototype as unknown as { createPacket?: unknown }).createPacket === 'function';

/**
 * A Nest `ClientProxy` speaking nest-wire. Register it like any client:
 * `ClientsModule.register([{ name: 'MATH', customClass: WireClient, options }])`,
 * or create it with `new WireClient(options)`.
 *
 * `send(pattern, data, { timeout, metadata })` returns a cold Observable: each
 * subscription is one call, multiplexed with every other on the pooled connections.
 */
export class WireClient extends ClientProxy<WireClientEvents> implements CallTracker {
  protected readonly logger = new Logger(WireClient.name);
  /** A subclass overrides `serializeResponse` / `serializeError`: calls' answers go through them. */
  private readonly responseHooks = overridesResponseHooks(this);
  /** Connection failures and recoveries, logged once per outage (not per attempt). */
  private readonly outages = new OutageLog(this.logger, 'to');
  protected readonly wireOptions: ResolvedClientOptions;
  private readonly wheel: TimeoutWheel<PendingCall>;
  private balancer: Balancer;
  private readonly emitter = new EventEmitter();
  private closed = false;
  /** Calls counted against `maxPendingCalls`: written, or queued for a connection. */
  private pending = 0;
  /** Calls sent again after a NACK or because their frame never left a closed connection. */
  private resends = 0;
  private readonly callStats = new CallStats();
  private readonly transport = new TransportCounters();
  /** Accepted calls waiting for a connection (or for room on one), in order. */
  private readonly queue = new CallQueue();
  /** Calls held by `overflow: 'wait'` until `pending` drops below `maxPendingCalls`. */
  private readonly held = new CallQueue();

  constructor(options: WireClientOptions = {}) {
    super();
    this.wireOptions = resolveClientOptions(options);
    propagation.clients++;
    this.wheel = new TimeoutWheel<PendingCall>((call) => this.onCallTimeout(call));
    this.balancer = this.createBalancer();
    this.initializeSerializer(options as never);
    this.initializeDeserializer(options as never);
  }

  /** Opens connections; resolves once one has completed its handshake. */
  connect(): Promise<void> {
    if (this.closed) this.reopen();
    return this.balancer.connect();
  }

  /** Closes every connection; calls in flight fail at once with `WireConnectionError`. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const err = new WireConnectionError('client closed');
    this.failQueued(this.held, err);
    this.failQueued(this.queue, err);
    this.balancer.close();
    this.wheel.clear();
    this._status$.next('disconnected');
  }

  override on<K extends keyof WireClientEvents>(event: K, callback: WireClientEvents[K]): void {
    this.emitter.on(event, callback);
  }

  /** The sockets of the open connections. */
  unwrap<T>(): T {
    return this.balancer.sockets as T;
  }

  /** Each endpoint (`host:port`, `unix:path`) and its state. */
  endpoints(): Record<string, string> {
    return this.balancer.endpointStates;
  }

  /**
   * Measures a round trip to the server over a pooled connection (PING / PONG, not just
   * an open socket): resolves with the time in ms, rejects with `WireConnectionError`
   * if no server answers, or `WireTimeoutError` after `timeoutMs`.
   */
  async ping(timeoutMs = 5000): Promise<number> {
    if (this.closed) throw new WireConnectionError('client is closed');
    let timer: NodeJS.Timeout | undefined;
    // The timeout covers opening a connection too: a health check must answer in time.
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new WireTimeoutError(timeoutMs, `no PONG within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([this.roundTrip(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async roundTrip(): Promise<number> {
    return (await this.openConnection()).wire.ping();
  }

  /** An open connection, opening one first if none is. */
  private async openConnection(): Promise<ClientConnection> {
    let conn = this.balancer.pick();
    if (conn === null) {
      await this.connect();
      conn = this.balancer.pick();
      if (conn === null) throw this.balancer.unreachableError();
    }
    return conn;
  }

  /**
   * Calls (started, succeeded, cancelled, failed by code, latency percentiles from a
   * histogram), frames and socket writes (the coalescing ratio), bytes, and each endpoint's
   * state and connections. Always on: a few counters per call.
   */
  stats(): WireClientStats {
    const { inFlight, pending, queued, resends } = this.counters();
    return {
      calls: { ...this.callStats.snapshot(), inFlight, pending, queued, resends },
      transport: { ...this.transport },
      endpoints: this.balancer.endpointSnapshots(),
    };
  }

  counters(): WireClientCounters {
    let writes = 0;
    let frames = 0;
    let inFlight = 0;
    for (const c of this.balancer.connections) {
      writes += c.wire.coalescer.writes;
      frames += c.wire.encoder.frames;
      inFlight += c.inFlight;
    }
    return {
      writes,
      frames,
      inFlight,
      pending: this.pending,
      queued: this.queue.length + this.held.length,
      resends: this.resends,
      openConnections: this.balancer.readyCount,
    };
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
    return new Observable<TResult>((subscriber) => {
      const observer = subscriber as Subscriber<unknown>;
      // The PendingCall is the teardown: unsubscribing cancels the call.
      return this.startCall(this.packetOf(pattern, data), options, this.responseHooks ? new SerializingObserver(observer, this) : observer);
    });
  }

  /**
   * Sets a hook called with every outgoing packet (requests and events) before it is sent;
   * it may assign `packet.metadata`. Nest 12.0.4+ has the same; this makes it work on Nest 11.
   */
  override setOnDispatchHook(hook: (packet: ReadPacket) => void): void {
    this.onDispatchHook = hook;
  }

  /** Nest's `createPacket`, or the same on a Nest that lacks it: the packet, after the dispatch hook. */
  private packetOf(pattern: unknown, data: unknown): ReadPacket {
    if (NEST_CREATES_PACKETS) return this.createPacket(pattern, data);
    const packet: ReadPacket = { pattern, data };
    this.onDispatchHook?.(packet);
    return packet;
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
    // Nest 12.0.4+'s `emit` ran the dispatch hook in `createPacket`; an older one did not.
    if (!NEST_CREATES_PACKETS) this.onDispatchHook?.(packet);
    const pattern = this.routeOf(packet.pattern);
    const hooks = instrumentation.hooks;
    const trace = hooks === null ? null : hooks.startClientCall('event', pattern, packet.metadata);
    try {
      const conn = await this.openConnection();
      trace?.written(conn.endpointKey, conn.wire.socket);
      await conn.writeEvent(pattern, packet.data, trace === null ? packet.metadata : trace.metadata);
    } catch (err) {
      trace?.end({ error: err });
      throw err;
    }
    trace?.end(null);
    return undefined as T;
  }

  private startCall(packet: ReadPacket, options: WireCallOptions | undefined, observer: Observer<unknown>): PendingCall {
    let timeoutMs = this.wireOptions.timeout;
    let metadata = packet.metadata;
    let propagate = this.wireOptions.propagate;
    if (options !== undefined) {
      checkCallOptionKeys(options);
      if (options.timeout !== undefined) timeoutMs = checkTimeout(options.timeout, 'send() option timeout');
      if (options.metadata !== undefined) metadata = { ...metadata, ...options.metadata };
      if (options.propagate === false) propagate = false;
    }
    const call = new PendingCall(observer, this, timeoutMs, this.routeOf(packet.pattern), packet.data, metadata);
    const hooks = instrumentation.hooks;
    if (hooks !== null) {
      call.trace = hooks.startClientCall('request', call.pattern, metadata);
      call.metadata = call.trace.metadata;
    }
    const now = performance.now();
    call.startedAt = now;
    this.callStats.started++;
    const parent = propagate ? callContext.getStore() : undefined;
    if (parent !== undefined) {
      // A call made while handling a call: same deadline at the latest, cancelled with it.
      if (parent.deadline > 0) {
        const left = Math.floor(parent.deadline - now);
        if (left <= 0) return this.failAtOnce(call, new WireTimeoutError(0, 'the deadline of the call being handled has passed'));
        call.timeoutMs = timeoutMs > 0 ? Math.min(timeoutMs, left) : left;
      }
      if (parent.signal.aborted) return this.failAtOnce(call, new WireCancelledError('the call being handled was cancelled'));
      call.followParent(parent.signal);
    }
    if (call.timeoutMs > 0) this.wheel.add(call, now + call.timeoutMs);
    if (this.closed) this.reopen();
    if (this.pending >= this.wireOptions.maxPendingCalls) {
      if (this.wireOptions.overflow === 'fail') {
        this.failUnwritten(
          call,
          new WireOverloadedError(
            `${this.pending} calls are already pending (maxPendingCalls ${this.wireOptions.maxPendingCalls}); ` +
              "slow down, raise maxPendingCalls, or use overflow: 'wait'",
          ),
        );
      } else {
        this.held.push(call);
      }
      return call;
    }
    this.accept(call);
    return call;
  }

  /** Counts the call against `maxPendingCalls` and writes it, or queues it until it can be. */
  private accept(call: PendingCall): void {
    call.accepted = true;
    this.pending++;
    if (this.queue.length === 0 && this.tryWrite(call)) return;
    if (this.balancer.readyCount === 0 && !this.balancer.isConnecting) {
      // Nothing open and nothing being attempted: fail now rather than at the timeout.
      this.failUnwritten(call, this.balancer.unreachableError());
      return;
    }
    this.queue.push(call);
  }

  /** Writes the call if an open connection has room; false if it must wait. */
  private tryWrite(call: PendingCall): boolean {
    const conn = this.balancer.pick();
    if (conn === null || conn.isFull) return false;
    if (conn.wire.queuedBytes > this.wireOptions.maxQueuedBytes) {
      this.failUnwritten(
        call,
        new WireOverloadedError(
          `more than ${this.wireOptions.maxQueuedBytes} bytes are queued on a connection that does not drain (maxQueuedBytes)`,
        ),
      );
      return true;
    }
    // The server gets the time left, not a timestamp: clocks of two hosts need not agree.
    const budgetMs = call.timeoutMs > 0 ? Math.max(0, Math.ceil(call.deadline - performance.now())) : -1;
    try {
      conn.write(call, budgetMs);
    } catch (err) {
      this.failUnwritten(call, err);
    }
    return true;
  }

  /** Writes queued calls while connections have room. */
  private drain(): void {
    const queue = this.queue;
    for (let call = queue.peek(); call !== null; call = queue.peek()) {
      if (call.settled) {
        queue.shift();
        continue;
      }
      queue.shift();
      if (!this.tryWrite(call)) {
        queue.unshift(call); // no room anywhere yet: it keeps its place
        return;
      }
    }
  }

  /** Fails every call of `queue` (nothing reachable, or the client closed). */
  private failQueued(queue: CallQueue, err: Error): void {
    for (let call = queue.shift(); call !== null; call = queue.shift()) this.failUnwritten(call, err);
  }

  /** CallTracker: the call was not processed (NACK, or its frame never left): try another connection. */
  resend(call: PendingCall, reason: Error): void {
    if (call.settled) return;
    this.resends++;
    if (++call.resends > this.wireOptions.nackRetries) {
      this.failUnwritten(call, reason);
      return;
    }
    this.queue.unshift(call);
    if (this.balancer.readyCount > 0) this.drain();
    else if (!this.balancer.isConnecting) this.failQueued(this.queue, this.balancer.unreachableError());
  }

  /** CallTracker: a call ended, by whatever path. Frees its slot for the next one. */
  onSettled(call: PendingCall, outcome: Outcome): void {
    this.callStats.settled(call.startedAt, outcome);
    if (!call.accepted) return;
    call.accepted = false;
    this.pending--;
    if (this.held.length > 0 && this.pending < this.wireOptions.maxPendingCalls) {
      const next = this.held.shift();
      if (next !== null) this.accept(next);
    }
    if (this.queue.length > 0) this.drain();
  }

  /** CallTracker: the caller unsubscribed from a call that was never written. */
  withdraw(call: PendingCall): void {
    call.queue?.remove(call);
    this.wheel.remove(call);
  }

  /** Fails a call that is in no connection's table. */
  private failUnwritten(call: PendingCall, err: unknown): void {
    if (call.settled) return;
    this.withdraw(call);
    call.fail(err);
  }

  /** Fails a call before it was counted anywhere (from inside the Observable's subscribe). */
  private failAtOnce(call: PendingCall, err: unknown): PendingCall {
    call.fail(err);
    return call;
  }

  private onCallTimeout(call: PendingCall): void {
    const owner = call.owner as ClientConnection | null;
    if (owner !== null) owner.expire(call);
    else this.failUnwritten(call, new WireTimeoutError(call.timeoutMs));
  }

  private routeOf(pattern: unknown): string {
    return typeof pattern === 'string' ? pattern : String(this.normalizePattern(pattern as never));
  }

  private createBalancer(): Balancer {
    const listener: BalancerListener = {
      onStatus: (status) => this._status$.next(status),
      onReady: (endpoint) => {
        this.logger.verbose?.(`connected to ${endpoint} (${this.balancer.readyCount} connections open)`);
        this.outages.opened(endpoint);
        this.drain();
      },
      onUnreachable: (err) => this.failQueued(this.queue, err),
      onConnectionError: (endpoint, err, firstInARow) => {
        if (this.emitter.listenerCount('error') > 0) this.emitter.emit('error', err);
        // One warning per outage, not one per reconnect attempt.
        else this.outages.failed(endpoint, err, firstInARow);
      },
    };
    return new Balancer(this.wireOptions, this.wheel, listener, this.transport);
  }

  /** After `close()`, a new call or `connect()` starts a fresh pool (as Nest's clients do). */
  private reopen(): void {
    this.closed = false;
    this.balancer = this.createBalancer();
  }
}
