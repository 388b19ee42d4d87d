import { Logger } from '@nestjs/common';
import { Server, type CustomTransportStrategy, type MessageHandler } from '@nestjs/microservices';
import { AsyncResource } from 'node:async_hooks';
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import type { Hello, WireConnection } from '../connection/connection.js';
import { refuseSocket } from '../connection/refuse-socket.js';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { finalize, isObservable, type Observable } from 'rxjs';
import type { ConnectionOptions } from '../connection/connection.js';
import { WireConnectionError, WireError, WireNoHandlerError, WireOverloadedError } from '../errors.js';
import { RpcException } from '@nestjs/microservices';
import { callContext, propagation } from '../call-context.js';
import { HeartbeatMonitor } from '../connection/heartbeat.js';
import { OutageLog } from '../connection/outage-log.js';
import { connectionTotals, TransportCounters } from '../connection/transport-stats.js';
import { emitOr } from '../listeners.js';
import { CallStats, type CallStatsSnapshot } from '../stats/call-stats.js';
import { TimeoutWheel } from '../connection/timeout-wheel.js';
import { resolveServerOptions, type ResolvedServerOptions, type WireServerOptions } from '../options.js';
import type { ServerCall } from './server-call.js';
import { ServerSession, type SessionHost, type SessionLimits } from './server-session.js';
import type { WireContext } from './wire-context.js';
import { instrumentation, traceEvent } from '../diagnostics/instrumentation-hooks.js';

export type WireServerStatus = 'listening' | 'connected' | 'disconnected';

/**
 * The transport id of `WireServer` (Nest's `Server#transportId`), what processing hooks
 * receive as their first argument: `@MessagePattern('sum', WIRE_TRANSPORT)` binds a handler
 * to nest-wire only in a hybrid app. Registered (`Symbol.for`), so every copy of nest-wire
 * in the process has the same one.
 */
export const WIRE_TRANSPORT: unique symbol = Symbol.for('nest-wire');

/** Events `WireServer#on` accepts. */
export type WireServerEvents = {
  /** The listening socket failed. */
  error: (err: Error) => void;
  /** A client connection closed with an error (protocol violation, reset, handshake). */
  connectionError: (err: WireError) => void;
};

/** What `WireServer#stats()` returns. */
export interface WireServerStats {
  calls: CallStatsSnapshot & { inFlight: number };
  transport: { bytesIn: number; bytesOut: number; framesIn: number; framesOut: number; writes: number };
  connections: number;
}

/** Counters for tests and diagnostics. */
export interface WireServerCounters {
  /** Socket writes across open connections. */
  writes: number;
  /** Frames encoded across open connections. */
  frames: number;
  /** Calls running now. */
  inFlight: number;
  /** Bytes read but not yet dispatched (partial frames, input held while at the call limit). */
  bufferedBytes: number;
  connections: number;
}

/** Distinct patterns remembered by the handler cache; beyond it lookups still work, uncached. */
const MAX_CACHED_ROUTES = 4096;

/** Nest's answer for an exception that no exception filter turned into an RPC error. */
const UNKNOWN_EXCEPTION = { status: 'error', message: 'Internal server error' };

/** Nest's own `transformToObservable`: a subclass that replaces it gets it called for every result. */
// eslint-disable-next-line @typescript-eslint/unbound-method
const NEST_TRANSFORM = Server.prototype.transformToObservable;

/**
 * `runWithProcessingHooks` arrived in Nest 12.0.4. Before it, the processing hooks (which
 * Nest 11.1.13 has and 11.1.0 has not) are run by `withProcessingHooks` below, as Nest 12 does.
 */
const NEST_RUNS_PROCESSING_HOOKS =
  typeof (Server.prototype as unknown as { runWithProcessingHooks?: unknown }).runWithProcessingHooks === 'function';

/**
 * A Nest microservice transport speaking nest-wire:
 * `NestFactory.createMicroservice(AppModule, { strategy: new WireServer({ port }) })`.
 *
 * Each accepted socket becomes a `ServerSession`; requests are dispatched through
 * Nest's handler machinery (`runWithProcessingHooks`, so Nest's processing hooks
 * run), events through `handleEvent`.
 */
export class WireServer
  extends Server<WireServerEvents, WireServerStatus>
  implements CustomTransportStrategy, SessionHost
{
  protected override readonly logger = new Logger(WireServer.name);
  override transportId: symbol = WIRE_TRANSPORT;
  /** Failed connections per client host, logged once per outage (not per attempt). */
  private readonly connectionFailures = new OutageLog(this.logger, 'from');
  protected readonly wireOptions: ResolvedServerOptions;
  readonly limits: SessionLimits;
  /** Calls running now across every session, for `maxConcurrentCalls`. */
  runningCalls = 0;
  readonly deadlines = new TimeoutWheel<ServerCall>((call) => call.expire());
  readonly callStats = new CallStats();
  /** Estimated heap of the decoded inputs of calls running on all connections (maxDecodedBytesPerServer). */
  readonly decoded = { inUse: 0 };
  private readonly transport = new TransportCounters();
  private server: NetServer | null = null;
  private readonly sessions = new Set<ServerSession>();
  private readonly routeCache = new Map<string, MessageHandler>();
  private readonly emitter = new EventEmitter();
  private readonly connectionOptions: ConnectionOptions;
  private readonly heartbeats: HeartbeatMonitor;
  private closing: Promise<void> | null = null;
  private onDrained: (() => void) | null = null;
  private drainTimer: NodeJS.Timeout | null = null;
  private idleTimer: NodeJS.Timeout | null = null;

  /** Nest's own no-op start hook: while it is in place, dispatch takes the short path. */
  private readonly defaultStartHook = this.onProcessingStartHook;

  constructor(options: WireServerOptions = {}) {
    super();
    this.wireOptions = resolveServerOptions(options);
    this.connectionOptions = {
      codec: this.wireOptions.codec,
      maxFrameSize: this.wireOptions.maxFrameSize,
      handshakeTimeoutMs: this.wireOptions.handshakeTimeoutMs,
      maxInFlight: this.wireOptions.maxInFlightPerConnection,
      heartbeatMs: this.wireOptions.heartbeatIntervalMs,
      counters: this.transport,
      compression: this.wireOptions.compression,
      maxQueuedBytes: this.wireOptions.maxQueuedBytes,
      maxDecodedBytes: this.wireOptions.maxDecodedBytes,
      maxDecompressedBytes: this.wireOptions.maxDecompressedBytes,
      authenticate:
        this.wireOptions.authenticate === null ? undefined : (hello, conn) => this.authenticateHello(hello, conn),
    };
    this.heartbeats = new HeartbeatMonitor(this.wireOptions.heartbeatIntervalMs);
    this.limits = {
      maxPatternBytes: this.wireOptions.maxPatternBytes,
      maxMetadataEntries: this.wireOptions.maxMetadataEntries,
      maxMetadataBytes: this.wireOptions.maxMetadataBytes,
      maxInFlight: this.wireOptions.maxInFlightPerConnection,
      maxStreamBufferValues: this.wireOptions.maxStreamBufferValues,
      maxQueuedBytes: this.wireOptions.maxQueuedBytes,
      maxConcurrentCalls: this.wireOptions.maxConcurrentCalls,
      maxDecodedBytes: this.wireOptions.maxDecodedBytes,
      maxDecodedBytesPerConnection: this.wireOptions.maxDecodedBytesPerConnection,
      maxDecodedBytesPerServer: this.wireOptions.maxDecodedBytesPerServer,
    };
    this.initializeSerializer(options);
    this.initializeDeserializer(options);
  }

  listen(callback: (err?: unknown, ...info: unknown[]) => void): void {
    const tlsOptions = this.wireOptions.tls;
    const server =
      tlsOptions === null ? createServer(this.onConnection) : createTlsServer(tlsOptions, this.onConnection);
    this.server = server;
    this.closing = null;
    const onListenError = (err: Error) => {
      this._status$.next('disconnected');
      callback(err);
    };
    server.once('error', onListenError);
    const onListening = () => {
      server.off('error', onListenError);
      server.on('error', (err: Error) => this.emitOrLogServerError(err));
      this._status$.next('listening');
      callback();
    };
    const { path, port, host, idleTimeoutMs } = this.wireOptions;
    if (idleTimeoutMs > 0) this.idleTimer = setInterval(this.closeIdle, Math.max(1, idleTimeoutMs >> 1)).unref();
    if (path !== null) server.listen(path, onListening);
    else server.listen(port, host, onListening);
  }

  /**
   * Graceful shutdown (what `app.close()` calls): stops accepting connections, sends
   * GOAWAY on every connection, refuses new requests with NACK (clients re-send them
   * elsewhere), lets running calls finish, and closes each connection once its client
   * has acknowledged and it is idle — or everything after `drainTimeoutMs`.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const server = this.server;
    if (server === null) return;
    const listenerClosed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const session of this.sessions) session.beginDrain();
    if (this.sessions.size > 0) {
      await new Promise<void>((resolve) => {
        this.onDrained = resolve;
        this.drainTimer = setTimeout(resolve, this.wireOptions.drainTimeoutMs).unref();
      });
      clearTimeout(this.drainTimer!);
      this.onDrained = null;
    }
    for (const session of [...this.sessions]) session.close(null);
    this.sessions.clear();
    this.deadlines.clear();
    this.heartbeats.stop();
    if (this.idleTimer !== null) clearInterval(this.idleTimer);
    this.idleTimer = null;
    await listenerClosed;
    this.server = null;
    this._status$.next('disconnected');
  }

  on<K extends keyof WireServerEvents>(event: K, callback: WireServerEvents[K]): void {
    this.emitter.on(event, callback);
  }

  /** The `net.Server` listening for nest-wire connections. */
  unwrap<T>(): T {
    if (this.server === null) {
      throw new WireError('Not initialized. Call app.listen() before accessing the server.');
    }
    return this.server as T;
  }

  /** The port actually bound (useful with `port: 0`). */
  get port(): number {
    const address = this.server?.address();
    return address !== null && typeof address === 'object' ? address.port : this.wireOptions.port;
  }

  get connectionCount(): number {
    return this.sessions.size;
  }

  /**
   * Calls (started, succeeded, cancelled, failed by code — NACKed ones as `NACK_<code>` —,
   * latency percentiles from a histogram), calls running, frames, socket writes, bytes,
   * and connections. Always on: a few counters per call.
   */
  stats(): WireServerStats {
    const c = this.counters();
    return {
      calls: { ...this.callStats.snapshot(), inFlight: c.inFlight },
      transport: { ...this.transport },
      connections: c.connections,
    };
  }

  /** Socket writes and frames across open connections, and calls running now. */
  counters(): WireServerCounters {
    return { ...connectionTotals(this.sessions), connections: this.sessions.size };
  }

  override addHandler(
    pattern: any,
    callback: MessageHandler,
    isEventHandler = false,
    extras: Record<string, any> = {},
  ): void {
    this.routeCache.clear();
    super.addHandler(pattern, callback, isEventHandler, extras);
  }

  /**
   * Nest's lookup JSON-parses every incoming pattern (and throws and catches for a
   * plain string); resolve each distinct pattern once and reuse the handler.
   */
  override getHandlerByPattern(pattern: string): MessageHandler | null {
    const cached = this.routeCache.get(pattern);
    if (cached !== undefined) return cached;
    const handler = super.getHandlerByPattern(pattern);
    // Only hits are cached, and only so many: unknown patterns from the network must not grow it.
    if (handler !== null && this.routeCache.size < MAX_CACHED_ROUTES) this.routeCache.set(pattern, handler);
    return handler;
  }

  findHandler(pattern: string): MessageHandler | null {
    const handler = this.getHandlerByPattern(pattern);
    // An event handler does not answer requests (as with Nest's built-in transports).
    return handler !== null && handler.isEventHandler ? null : handler;
  }

  runRequest(handler: MessageHandler, data: unknown, ctx: WireContext, call: ServerCall): void {
    try {
      if (propagation.clients > 0) callContext.run(call, () => this.dispatch(handler, data, ctx, call));
      else this.dispatch(handler, data, ctx, call);
    } catch (err) {
      // A processing start hook that throws synchronously must fail the call, not the connection.
      this.failUnhandled(call, err);
    }
  }

  /**
   * Maps an error that escaped Nest's exception filters (thrown by an AsyncIterable the
   * handler returned) the way Nest's `BaseRpcExceptionFilter` would.
   */
  mapUncaughtError(err: unknown): unknown {
    if (err instanceof RpcException) {
      const error = err.getError();
      return error !== null && typeof error === 'object' ? error : { status: 'error', message: error };
    }
    this.logger.error(err);
    return UNKNOWN_EXCEPTION;
  }

  private dispatch(handler: MessageHandler, data: unknown, ctx: WireContext, call: ServerCall): void {
    if (this.onProcessingStartHook === this.defaultStartHook && this.onProcessingEndHook === undefined) {
      // No processing hooks installed: skip their machinery (two closures and an async frame per call).
      let result: unknown;
      try {
        result = handler(data, ctx);
      } catch (err) {
        return this.failUnhandled(call, err);
      }
      if (result instanceof Promise) {
        result.then(
          (value: unknown) => this.runResult(call, value),
          (err: unknown) => this.failUnhandled(call, err),
        );
      } else {
        this.runResult(call, result);
      }
      return;
    }
    const started: unknown = this.withProcessingHooks(ctx, async (runEndHook) => {
      let stream$: Observable<unknown>;
      try {
        stream$ = this.transformToObservable(await handler(data, ctx));
      } catch (err) {
        // Nest's exception filters turn handler errors into an error stream; this is what slips past them.
        // Failed first, so that the end hook finds the error in `ctx.getError()`.
        this.failUnhandled(call, err);
        runEndHook();
        return;
      }
      if (call.done) {
        runEndHook();
        return;
      }
      // The end hook runs in the async context of its start hook (where an APM agent keeps the
      // call's state), not in whatever context completes the stream (another call's answer).
      call.run(
        this.onProcessingEndHook === undefined ? stream$ : stream$.pipe(finalize(AsyncResource.bind(runEndHook))),
      );
    });
    // A processing start hook that throws must fail the call, not the process.
    if (started instanceof Promise) started.catch((err: unknown) => this.failUnhandled(call, err));
  }

  /** Nest's `runWithProcessingHooks`, or the same sequence on a Nest that lacks it. */
  private withProcessingHooks(ctx: WireContext, fn: (runEndHook: () => void) => Promise<void>): unknown {
    if (NEST_RUNS_PROCESSING_HOOKS) return this.runWithProcessingHooks(ctx, fn);
    const transportId = this.transportId;
    return this.onProcessingStartHook(transportId, ctx, async () => {
      let ended = false;
      const runEndHook = () => {
        if (ended) return;
        ended = true;
        this.onProcessingEndHook?.(transportId, ctx);
      };
      try {
        await fn(runEndHook);
      } catch (err) {
        runEndHook();
        throw err;
      }
    });
  }

  private runResult(call: ServerCall, result: unknown): void {
    if (call.done) return;
    if (result instanceof Promise || isObservable(result) || this.transformToObservable !== NEST_TRANSFORM) {
      call.run(this.transformToObservable(result));
      return;
    }
    // A plain value (what most handlers return, once Nest's pipeline has resolved it): what
    // `of(value)` would deliver — the value, then the end — without an Observable and a
    // subscription per call.
    try {
      call.next(result);
      call.complete();
    } catch (err) {
      this.failUnhandled(call, err);
    }
  }

  private failUnhandled(call: ServerCall, err: unknown): void {
    this.logger.error(err);
    call.error(UNKNOWN_EXCEPTION);
  }

  runEvent(pattern: string, data: unknown, ctx: WireContext): Promise<unknown> | void {
    const handler = this.getHandlerByPattern(pattern);
    if (handler !== null && !handler.isEventHandler) {
      // Nothing could ever cancel a request handler started by an event (no id, no CANCEL):
      // an endless stream would run forever. Events go to @EventPattern handlers only.
      this.onEventDropped(
        pattern,
        new WireNoHandlerError('the pattern has a @MessagePattern handler, not an @EventPattern one'),
      );
      return;
    }
    const packet = { pattern, data, metadata: ctx.getMetadata() };
    const hooks = instrumentation.hooks;
    const handled =
      hooks === null || handler === null
        ? this.handleEvent(pattern, packet, ctx)
        : traceEvent(hooks.startServerCall('event', ctx), () => this.handleEvent(pattern, packet, ctx));
    return handled.catch((err: unknown) => this.logger.error(err));
  }

  onEventDropped(pattern: string, err: unknown): void {
    this.logger.warn(`event "${pattern}" dropped: ${(err as Error).message}`);
  }

  onSessionOpen(session: ServerSession): void {
    this.heartbeats.add(session.wire);
    this.connectionFailures.opened(hostOf(session.wire.remoteAddress));
    this.logger.verbose?.(`client ${session.wire.remoteAddress} connected (${this.sessions.size} open)`);
  }

  onSessionClose(session: ServerSession, err: WireError | null): void {
    this.sessions.delete(session);
    this.heartbeats.delete(session.wire);
    this.logger.verbose?.(`client ${session.wire.remoteAddress} disconnected${err === null ? '' : `: ${err.message}`}`);
    if (this.sessions.size === 0) this.onDrained?.();
    if (err === null || err instanceof WireConnectionError) return;
    // Without listeners: a client failing its handshake in a reconnect loop gets one warn, then verbose.
    emitOr(this.emitter, 'connectionError', err, () =>
      this.connectionFailures.failed(hostOf(session.wire.remoteAddress), err),
    );
  }

  private readonly onConnection = (socket: Socket): void => {
    if (this.server === null || this.closing !== null) {
      socket.destroy();
      return;
    }
    if (this.sessions.size >= this.wireOptions.maxConnections) {
      refuseSocket(socket, new WireOverloadedError(`server is at maxConnections (${this.wireOptions.maxConnections})`));
      return;
    }
    this.sessions.add(new ServerSession(socket, this.connectionOptions, this));
  };

  /** Drains connections that carried no call for `idleTimeoutMs` (GOAWAY: nothing in transit is lost). */
  private readonly closeIdle = (): void => {
    const cutoff = performance.now() - this.wireOptions.idleTimeoutMs;
    for (const session of this.sessions) {
      if (session.inFlight === 0 && session.lastCallAt < cutoff) session.beginDrain();
    }
  };

  /** Decodes the client's credentials from its HELLO and asks the user's `authenticate`. */
  private authenticateHello(hello: Hello, conn: WireConnection): boolean | Promise<boolean> {
    const authenticate = this.wireOptions.authenticate!;
    let credentials: unknown;
    if (hello.extension !== null) {
      const extension = this.wireOptions.codec.decode(hello.extension) as { credentials?: unknown } | null;
      credentials = extension !== null && typeof extension === 'object' ? extension.credentials : undefined;
    }
    return authenticate(credentials, { remoteAddress: conn.remoteAddress, tlsPeerCertificate: conn.peerCertificate });
  }

  /** A listening-socket error: to the `error` listeners if there are any, else one warning. */
  private emitOrLogServerError(err: Error): void {
    emitOr(this.emitter, 'error', err, () => this.logger.warn(`server error: ${err.message}`));
  }
}

/** The host of an `ip:port` remote address: a client reconnects from a new port each time. */
function hostOf(remoteAddress: string): string {
  const colon = remoteAddress.lastIndexOf(':');
  return colon > 0 ? remoteAddress.slice(0, colon) : remoteAddress;
}
