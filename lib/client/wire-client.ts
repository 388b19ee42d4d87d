import { Logger } from '@nestjs/common';
import { ClientProxy, type ReadPacket, type WritePacket } from '@nestjs/microservices';
import { InvalidMessageException } from '@nestjs/microservices/errors/invalid-message.exception.js';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { Observable, throwError, type Observer, type Subscriber } from 'rxjs';
import { callContext, propagation } from '../call-context.js';
import { connectionTotals, TransportCounters } from '../connection/transport-stats.js';
import { emitOr } from '../listeners.js';
import { CallStats, type CallStatsSnapshot } from '../stats/call-stats.js';
import { WireCancelledError, WireConnectionError, WireError, WireOptionsError, WireTimeoutError } from '../errors.js';
import {
  checkCallOptionKeys,
  resolveClientOptions,
  type ResolvedClientOptions,
  type WireCallOptions,
  type WireClientOptions,
} from '../options.js';
import { checkTimeout } from '../option-checks.js';
import type { ClientConnection } from './client-connection.js';
import { Balancer, type BalancerListener } from './balancer.js';
import { OutageLog } from '../connection/outage-log.js';
import { overridesResponseHooks, SerializingObserver } from './serializer-hooks.js';
import { PendingCall } from './pending-call.js';
import { CallScheduler } from './call-scheduler.js';
import { isStreamSource, RequestStream, type StreamSource } from './request-stream.js';
import { instrumentation } from '../diagnostics/instrumentation-hooks.js';

export type { WireClientStatus } from './balancer.js';

/** Events `WireClient#on` accepts. */
export type WireClientEvents = {
  /** A connection failed (refused, reset, protocol error, handshake failure). */
  error: (err: WireError) => void;
};

/** What `WireClient#stats()` returns. */
export interface WireClientStats {
  calls: CallStatsSnapshot & {
    inFlight: number;
    pending: number;
    queued: number;
    resends: number;
    /** Re-sends paid from the retry budget (after a NACK, or an idempotent call's retry). */
    retries: number;
    /** Calls that failed with their own error because the retry budget was spent. */
    retryBudgetExhausted: number;
    /** Hedged copies sent, and how many of them answered first. */
    hedges: number;
    hedgeWins: number;
  };
  transport: { bytesIn: number; bytesOut: number; framesIn: number; framesOut: number; writes: number };
  endpoints: {
    endpoint: string;
    state: string;
    connections: number;
    inFlight: number;
    /** Connection attempts that failed since the last one that opened (0 while connected). */
    failedAttempts: number;
    /**
     * With `outlierDetection` only: out of rotation until `ejectedUntil` (`Date.now()` ms; 0
     * when in rotation) has passed and a PING was answered; `ejections`: times it was ejected.
     */
    ejected?: boolean;
    ejectedUntil?: number;
    ejections?: number;
  }[];
}

/** Counters for tests and diagnostics. */
export interface WireClientCounters {
  /** Socket writes across all connections. */
  writes: number;
  /** Frames encoded across all connections. */
  frames: number;
  /** Calls written and not yet answered. */
  inFlight: number;
  /** Bytes read from the servers but not yet decoded (partial frames). */
  bufferedBytes: number;
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
const NEST_CREATES_PACKETS =
  typeof (ClientProxy.prototype as unknown as { createPacket?: unknown }).createPacket === 'function';

/** Nest's own `normalizePattern`: a subclass that replaces it gets it called for every pattern. */
const NEST_NORMALIZE = (ClientProxy.prototype as unknown as { normalizePattern: unknown }).normalizePattern;

/**
 * The route Nest's `transformPatternToRoute` makes of the usual object pattern, `{ cmd: 'sum' }`
 * — a plain object with one own key and a string or number value, neither with a `"` or `\` (which
 * Nest escapes) — without its sort, regex replaces and joins (≈ 0.3 µs a call); null for any other
 * pattern, which Nest's function then turns into its route.
 */
function singleKeyRoute(pattern: unknown): string | null {
  if (pattern === null || typeof pattern !== 'object' || Object.getPrototypeOf(pattern) !== Object.prototype)
    return null;
  const keys = Object.keys(pattern);
  if (keys.length !== 1) return null;
  const key = keys[0];
  if (needsEscape(key)) return null;
  const value = (pattern as Record<string, unknown>)[key];
  if (typeof value === 'number') return `{"${key}":${value}}`;
  if (typeof value !== 'string' || needsEscape(value)) return null;
  return `{"${key}":"${value}"}`;
}

function needsEscape(s: string): boolean {
  return s.includes('"') || s.includes('\\');
}

/**
 * A Nest `ClientProxy` speaking nest-wire. Register it like any client:
 * `ClientsModule.register([{ name: 'MATH', customClass: WireClient, options }])`,
 * or create it with `new WireClient(options)`.
 *
 * `send(pattern, data, { timeout, metadata })` returns a cold Observable: each
 * subscription is one call, multiplexed with every other on the pooled connections.
 */
export class WireClient extends ClientProxy<WireClientEvents> {
  protected readonly logger = new Logger(WireClient.name);
  /** A subclass overrides `serializeResponse` / `serializeError`: calls' answers go through them. */
  private readonly responseHooks = overridesResponseHooks(this);
  /** Connection failures and recoveries, logged once per outage (not per attempt). */
  private readonly outages = new OutageLog(this.logger, 'to');
  protected readonly wireOptions: ResolvedClientOptions;
  private balancer: Balancer;
  private readonly emitter = new EventEmitter();
  private closed = false;
  private readonly callStats = new CallStats();
  private readonly transport = new TransportCounters();
  /** Pending slots, the queue of unwritten calls, re-sends and deadlines: everything but Nest. */
  private readonly scheduler: CallScheduler;

  constructor(options: WireClientOptions = {}) {
    super();
    this.wireOptions = resolveClientOptions(options);
    propagation.clients++;
    this.scheduler = new CallScheduler(this.wireOptions, this.callStats);
    this.balancer = this.createBalancer();
    this.initializeSerializer(options);
    this.initializeDeserializer(options);
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
    this.scheduler.close(new WireConnectionError('client closed'));
    this.balancer.close();
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
      calls: {
        ...this.callStats.snapshot(),
        inFlight,
        pending,
        queued,
        resends,
        retries: this.scheduler.retries,
        retryBudgetExhausted: this.scheduler.retryBudgetExhausted,
        hedges: this.scheduler.hedges,
        hedgeWins: this.scheduler.hedgeWins,
      },
      transport: { ...this.transport },
      endpoints: this.balancer.endpointSnapshots(),
    };
  }

  counters(): WireClientCounters {
    return {
      ...connectionTotals(this.balancer.connections),
      pending: this.scheduler.pending,
      queued: this.scheduler.queued,
      resends: this.scheduler.resends,
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
    if (isStreamSource(data)) return this.sendStream<TResult>(pattern, data, options);
    return new Observable<TResult>((subscriber) => {
      const observer = subscriber as Subscriber<unknown>;
      // The PendingCall is the teardown: unsubscribing cancels the call.
      return this.startCall(
        this.packetOf(pattern, data),
        options,
        this.responseHooks ? new SerializingObserver(observer, this) : observer,
      );
    });
  }

  /**
   * `send(pattern, source)` with an Observable or AsyncIterable source: one call whose input
   * is the source's values, sent within the server's credit (lib/client/request-stream.ts).
   */
  private sendStream<TResult>(pattern: unknown, source: StreamSource, options?: WireCallOptions): Observable<TResult> {
    return new Observable<TResult>((subscriber) => {
      const stream = new RequestStream(source, this.wireOptions.maxStreamHeldValues);
      const observer = subscriber as Subscriber<unknown>;
      const call = this.startCall(
        this.packetOf(pattern, stream),
        options,
        stream.observe(this.responseHooks ? new SerializingObserver(observer, this) : observer),
      );
      return () => {
        call.unsubscribe();
        stream.release();
      };
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
      error: (err: unknown) => callback({ err }),
      complete: () => callback({ isDisposed: true }),
    };
    const call = this.startCall(packet, undefined, observer);
    return () => call.unsubscribe();
  }

  protected async dispatchEvent<T = any>(packet: ReadPacket): Promise<T> {
    // Nest 12.0.4+'s `emit` ran the dispatch hook in `createPacket`; an older one did not.
    if (!NEST_CREATES_PACKETS) this.onDispatchHook?.(packet);
    if (isStreamSource(packet.data)) {
      throw new WireOptionsError(
        'emit() cannot send a stream source: an event has no answer and no flow control; use send(pattern, source)',
      );
    }
    const pattern = this.routeOf(packet.pattern);
    const hooks = instrumentation.hooks;
    const trace = hooks === null ? null : hooks.startClientCall('event', pattern, packet.metadata);
    try {
      const conn = await this.openConnection();
      trace?.written(conn.endpointKey, conn.wire.peerSocket);
      await conn.writeEvent(pattern, packet.data, trace === null ? packet.metadata : trace.metadata);
    } catch (err) {
      trace?.end({ error: err });
      throw err;
    }
    trace?.end(null);
    return undefined as T;
  }

  private startCall(
    packet: ReadPacket,
    options: WireCallOptions | undefined,
    observer: Observer<unknown>,
  ): PendingCall {
    let timeoutMs = this.wireOptions.timeout;
    let metadata = packet.metadata;
    let propagate = this.wireOptions.propagate;
    if (options !== undefined) {
      checkCallOptionKeys(options);
      if (options.timeout !== undefined) timeoutMs = checkTimeout(options.timeout, 'send() option timeout');
      if (options.metadata !== undefined) metadata = { ...metadata, ...options.metadata };
      if (options.propagate === false) propagate = false;
    }
    const route = this.routeOf(packet.pattern);
    const call = new PendingCall(observer, this.scheduler, timeoutMs, route, packet.data, metadata);
    const idempotent = options?.idempotent;
    if (idempotent !== undefined) {
      if (typeof idempotent !== 'boolean') {
        return this.failAtOnce(
          call,
          new WireOptionsError(`send() option idempotent must be true or false, got ${String(idempotent)}`),
        );
      }
      call.idempotent = idempotent;
    } else if (this.wireOptions.idempotent !== null) {
      call.idempotent = this.wireOptions.idempotent(route);
    }
    if (packet.data instanceof RequestStream) {
      // At most once: a source that started cannot be replayed, so a stream call is never retried or hedged.
      if (idempotent === true) {
        return this.failAtOnce(
          call,
          new WireOptionsError(
            'send() option idempotent cannot be true for a stream source: a started source cannot be sent again',
          ),
        );
      }
      call.idempotent = false;
    }
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
        // No time left at all: the limit this call had is 0 ms.
        if (left <= 0)
          return this.failAtOnce(call, new WireTimeoutError(0, 'the deadline of the call being handled has passed'));
        call.timeoutMs = timeoutMs > 0 ? Math.min(timeoutMs, left) : left;
      }
      if (parent.signal.aborted)
        return this.failAtOnce(call, new WireCancelledError('the call being handled was cancelled'));
      call.followParent(parent.signal);
    }
    if (this.closed) this.reopen();
    this.scheduler.submit(call, now);
    return call;
  }

  /** Fails a call before it was counted anywhere (from inside the Observable's subscribe). */
  private failAtOnce(call: PendingCall, err: unknown): PendingCall {
    call.fail(err);
    return call;
  }

  private routeOf(pattern: unknown): string {
    if (typeof pattern === 'string') return pattern;
    if (this.normalizePattern === NEST_NORMALIZE) {
      const route = singleKeyRoute(pattern);
      if (route !== null) return route;
    }
    return String(this.normalizePattern(pattern as never));
  }

  private createBalancer(): Balancer {
    const listener: BalancerListener = {
      onStatus: (status) => this._status$.next(status),
      onReady: (endpoint) => {
        this.logger.verbose?.(`connected to ${endpoint} (${this.balancer.readyCount} connections open)`);
        this.outages.opened(endpoint);
        this.scheduler.drain();
      },
      onUnreachable: (err) => this.scheduler.failQueuedCalls(err),
      onConnectionError: (endpoint, err, firstInARow) => {
        // Without listeners: one warning per outage, not one per reconnect attempt.
        emitOr(this.emitter, 'error', err, () => this.outages.failed(endpoint, err, firstInARow));
      },
    };
    const balancer = new Balancer(this.wireOptions, this.scheduler.wheel, listener, this.transport);
    this.scheduler.router = balancer;
    return balancer;
  }

  /** After `close()`, a new call or `connect()` starts a fresh pool (as Nest's clients do). */
  private reopen(): void {
    this.closed = false;
    this.scheduler.closed = false;
    this.balancer = this.createBalancer();
  }
}
