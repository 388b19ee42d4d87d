import type { MessageHandler } from '@nestjs/microservices';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { MAX_STREAM_CREDIT, type ConnectionOptions } from '../connection/connection.js';
import {
  CallBody,
  ServerWireConnection,
  StreamRoute,
  type ServerWireHandler,
} from '../connection/server-wire-connection.js';
import type { TimeoutWheel } from '../connection/timeout-wheel.js';
import { CALL_CANCELLED, type CallStats, type Outcome } from '../stats/call-stats.js';
import {
  WireCancelledError,
  WireCodecError,
  WireConnectionError,
  WireDrainingError,
  WireError,
  WireLimitError,
  WireNoHandlerError,
  WireOverloadedError,
  WireProtocolError,
  WireTimeoutError,
} from '../errors.js';
import { ServerCall, type CallSink } from './server-call.js';
import { RequestPayload, type PayloadControl } from './request-payload.js';
import { WireContext } from './wire-context.js';
import { instrumentation } from '../diagnostics/instrumentation-hooks.js';

/** What a session needs from the server that accepted it. */
export interface SessionHost {
  readonly limits: SessionLimits;
  /** Calls running across every session of the server (admission control, `maxConcurrentCalls`). */
  runningCalls: number;
  /** Tracks call deadlines; calls it expires are failed with `WIRE_TIMEOUT`. */
  readonly deadlines: TimeoutWheel<ServerCall>;
  readonly callStats: CallStats;
  findHandler(pattern: string): MessageHandler | null;
  mapUncaughtError(err: unknown): unknown;
  runRequest(handler: MessageHandler, data: unknown, ctx: WireContext, call: ServerCall): void;
  /** Returns the handler's promise, if any: the event's decoded input is charged until it settles. */
  runEvent(pattern: string, data: unknown, ctx: WireContext): Promise<unknown> | void;
  /** Estimated heap of the decoded inputs of calls running on every connection of the server. */
  readonly decoded: { inUse: number };
  onEventDropped(pattern: string, err: unknown): void;
  onSessionOpen(session: ServerSession): void;
  onSessionClose(session: ServerSession, err: WireError | null): void;
}

/**
 * The server's side of one connection: decodes REQUEST / EVENT / CANCEL frames,
 * hands them to Nest through the host, and writes each call's values back.
 * Calls running for this connection are kept by id so CANCEL and connection loss
 * can stop them.
 */
export interface SessionLimits {
  maxPatternBytes: number;
  maxMetadataEntries: number;
  maxMetadataBytes: number;
  maxInFlight: number;
  /** Stream values the calls of one connection may hold, unencoded, in total (`maxStreamBufferValues`). */
  maxStreamBufferValues: number;
  maxQueuedBytes: number;
  /** Calls running at once across the server; past it requests get NACK `WIRE_OVERLOADED`. 0: no limit. */
  maxConcurrentCalls: number;
  maxDecodedBytes: number;
  maxDecodedBytesPerConnection: number;
  maxDecodedBytesPerServer: number;
}

export class ServerSession implements ServerWireHandler, CallSink {
  readonly wire: ServerWireConnection;
  /**
   * Calls running for this connection, by id. Invariant: each one is counted in
   * `host.runningCalls`, and reading is stopped while there are `maxInFlight` of them.
   */
  private readonly calls = new Map<number, ServerCall>();
  /** Reused for every call frame read on this connection. */
  private readonly body = new CallBody();
  /** Estimated heap of the metadata and payload `decodeCall` decoded last. */
  private decodedBytes = 0;
  /** Estimated heap of the decoded inputs of calls (and events) running on this connection. */
  private decodedInUse = 0;
  /** Stream values held, unencoded, by this connection's calls: at most `maxStreamBufferValues`. */
  private heldValues = 0;
  /** Calls holding values until the socket takes what is queued. */
  private readonly waitingToWrite = new Set<ServerCall>();
  /** The request streams of running calls that have one, by call id (a subset of `calls`). */
  private readonly streams = new Map<number, RequestPayload>();

  /** When the last request or event arrived (`performance.now()`), for the idle timeout. */
  lastCallAt = performance.now();
  /** `Date.now()` as read for the socket read whose `lastRead` is `wallClockRead` (-1: none yet). */
  private wallClock = 0;
  private wallClockRead = -1;

  constructor(
    socket: Socket,
    options: ConnectionOptions,
    private readonly host: SessionHost,
  ) {
    // Partly received request-stream values count like decoded inputs: at most the connection's budget.
    this.wire = new ServerWireConnection(
      socket,
      { ...options, maxFragmentedBytes: host.limits.maxDecodedBytesPerConnection },
      this,
    );
  }

  get inFlight(): number {
    return this.calls.size;
  }

  /** ConnectionHandler: a draining connection closes once this is 0. */
  get activeCalls(): number {
    return this.calls.size;
  }

  close(err: WireError | null = null): void {
    this.wire.close(err);
  }

  /**
   * Graceful shutdown of this connection: GOAWAY tells the client to send new calls
   * elsewhere; the calls running finish; the connection closes once the client has
   * acknowledged (its GOAWAY, after which TCP order guarantees no request follows) and
   * nothing is running. The mechanism is the connection's (`WireConnection.drain`), the
   * same on both sides; a GOAWAY the client sends unasked starts it too.
   */
  beginDrain(): void {
    this.wire.drain();
  }

  onOpen(): void {
    this.host.onSessionOpen(this);
  }

  onCancel(id: number): void {
    const call = this.calls.get(id);
    if (call === undefined) return;
    const reason = new WireCancelledError('call cancelled by the client');
    this.streams.get(id)?.fail(reason);
    call.cancel(reason);
  }

  onCredit(id: number, n: number): void {
    this.calls.get(id)?.addCredit(n);
  }

  onClose(err: WireError | null): void {
    if (this.calls.size > 0) {
      const reason = new WireConnectionError('client connection closed');
      for (const payload of this.streams.values()) payload.fail(reason);
      for (const call of [...this.calls.values()]) call.cancel(reason);
    }
    this.host.onSessionClose(this, err);
  }

  /** ConnectionHandler: the socket took what was queued; calls holding values may write again. */
  onWritable(): void {
    if (this.waitingToWrite.size === 0) return;
    const calls = [...this.waitingToWrite];
    this.waitingToWrite.clear();
    for (const call of calls) {
      if (!this.wire.canQueue) {
        this.waitingToWrite.add(call);
        continue;
      }
      call.writeHeld();
    }
    if (this.waitingToWrite.size > 0) this.wire.notifyWhenWritable();
  }

  canWrite(): boolean {
    return this.wire.canQueue;
  }

  waitWritable(call: ServerCall): void {
    this.waitingToWrite.add(call);
    this.wire.notifyWhenWritable();
  }

  get maxHeldValues(): number {
    return this.host.limits.maxStreamBufferValues;
  }

  reserveHeld(values: number): boolean {
    if (this.heldValues + values > this.host.limits.maxStreamBufferValues) return false;
    this.heldValues += values;
    return true;
  }

  releaseHeld(values: number): void {
    this.heldValues -= values;
  }

  encodeValue(value: unknown): Uint8Array | null {
    return this.wire.encodeValue(value);
  }

  writeValue(call: ServerCall, bytes: Uint8Array | null): void {
    this.wire.sendValue(call.id, bytes);
  }

  writeEnd(call: ServerCall): void {
    this.wire.sendEnd(call.id);
  }

  writeFailure(call: ServerCall, err: unknown): void {
    this.wire.sendFailure(call.id, err);
  }

  mapUncaughtError(err: unknown): unknown {
    return this.host.mapUncaughtError(err);
  }

  release(call: ServerCall, outcome: Outcome): void {
    this.host.callStats.settled(call.startedAt, outcome);
    this.releaseDecoded(call.decodedBytes);
    if (this.waitingToWrite.size > 0) this.waitingToWrite.delete(call);
    if (outcome === CALL_CANCELLED) this.wire.forgetCall(call.id);
    const payload = this.streams.size === 0 ? undefined : this.streams.get(call.id);
    if (payload !== undefined) {
      // The call ended: the rest of its request stream is not read (the client stops sending).
      this.streams.delete(call.id);
      payload.close();
      this.wire.forgetStream(call.id);
    }
    if (this.calls.delete(call.id)) this.host.runningCalls--;
    this.host.deadlines.remove(call);
    this.wire.callEnded();
    // A slot freed: read again if we had stopped at the limit (a no-op if we had not).
    if (!this.atCallLimit()) this.wire.resumeReadingForCalls();
  }

  /** Called by the deadline wheel: the caller's budget is spent. */
  expire(call: ServerCall): void {
    const err = new WireTimeoutError(call.budgetMs, 'deadline exceeded before the handler finished');
    this.streams.get(call.id)?.fail(err);
    call.cancel(err, { error: err });
    this.writeFailure(call, err);
  }

  // ---- request streams ----

  routeStream(id: number): StreamRoute {
    const payload = this.streams.get(id);
    if (payload !== undefined) return payload.isReading ? StreamRoute.READ : StreamRoute.DROP;
    // A call that ended may still get the frames that were on their way; a running one without a stream may not.
    return this.calls.has(id) ? StreamRoute.REFUSE : StreamRoute.DROP;
  }

  onStreamValue(id: number, hasValue: boolean, value: unknown, end: boolean, decodedBytes: number): void {
    const payload = this.streams.get(id)!;
    if (hasValue || !end) {
      if (decodedBytes > 0) {
        const limits = this.host.limits;
        if (
          this.decodedInUse + decodedBytes > limits.maxDecodedBytesPerConnection ||
          this.host.decoded.inUse + decodedBytes > limits.maxDecodedBytesPerServer
        ) {
          return this.failStreamCall(id, overloaded(limits));
        }
        this.chargeDecoded(decodedBytes);
      }
      if (!payload.push(value, decodedBytes)) {
        this.releaseDecoded(decodedBytes);
        return this.failStreamCall(
          id,
          new WireProtocolError('the client sent a request-stream value beyond the credit it was granted'),
        );
      }
    }
    if (!end) return;
    payload.end();
    // This call no longer needs its STREAM frames read: it counts against maxInFlight as any call.
    if (this.atCallLimit()) this.wire.stopReadingForCalls();
  }

  onStreamError(id: number, err: unknown): void {
    const call = this.calls.get(id);
    if (call === undefined) return;
    this.streams.get(id)?.fail(err);
    // The client failed the call and forgot its id: nothing more is sent for it, as after CANCEL.
    call.cancel(new WireCancelledError("the client's request stream failed"), { error: err });
  }

  onStreamBroken(id: number, err: WireError): void {
    this.failStreamCall(id, err);
  }

  /** Fails a call because of its request stream: the payload errors, the handler stops, the client gets ERROR. */
  private failStreamCall(id: number, err: WireError): void {
    const call = this.calls.get(id);
    if (call === undefined) return;
    this.streams.get(id)?.fail(err);
    call.cancel(err, { error: err });
    this.writeFailure(call, err);
  }

  /**
   * At `maxInFlight` calls, reading stops — but not for calls that wait for their request
   * stream: their STREAM frames must still be read, or they would never finish.
   */
  private atCallLimit(): boolean {
    const maxInFlight = this.host.limits.maxInFlight;
    const size = this.calls.size;
    if (size < maxInFlight) return false;
    let reading = 0;
    for (const payload of this.streams.values()) if (payload.isReading) reading++;
    return size - reading >= maxInFlight;
  }

  /** PayloadControl of one call: credit to the client, decoded bytes released. */
  streamControl(id: number): PayloadControl {
    return {
      grant: (n) => this.wire.grantStreamCredit(id, n),
      released: (bytes) => {
        if (bytes > 0) this.releaseDecoded(bytes);
      },
    };
  }

  /**
   * `Date.now()` once per socket read, for the absolute deadlines (`ctx.getDeadline()`) of the
   * calls it brought: like their time budgets on the monotonic clock, counted from the read.
   */
  private wallClockOfRead(): number {
    const read = this.wire.lastRead;
    if (read !== this.wallClockRead) {
      this.wallClockRead = read;
      this.wallClock = Date.now();
    }
    return this.wallClock;
  }

  /**
   * Decodes a REQUEST or EVENT after its limits are checked: the metadata goes into
   * `body.decodedMetadata`, the payload is returned. Throws a `WireError`.
   */
  private decodeCall(flags: number, body: CallBody): unknown {
    const budget = this.wire.decodeBudget;
    const limits = this.host.limits;
    // What this decode may take: the per-payload limit, or less if the connection's or the
    // server's total of inputs held by running calls is nearly spent.
    const available = Math.min(
      limits.maxDecodedBytes,
      limits.maxDecodedBytesPerConnection - this.decodedInUse,
      limits.maxDecodedBytesPerServer - this.host.decoded.inUse,
    );
    if (available <= 0) throw overloaded(limits);
    budget.maxBytes = available;
    this.decodedBytes = 0;
    try {
      body.decodedMetadata = this.readMetadata(body);
      this.decodedBytes = body.metadata === null ? 0 : budget.lastBytes;
      budget.maxBytes = available - this.decodedBytes;
      const data = this.wire.decodePayload(flags, body.payload);
      this.decodedBytes += budget.lastBytes;
      return data;
    } catch (err) {
      // Refused only because other calls hold the budget: the client may try elsewhere.
      if (err instanceof WireLimitError && available < limits.maxDecodedBytes) throw overloaded(limits);
      throw err;
    } finally {
      budget.maxBytes = limits.maxDecodedBytes;
    }
  }

  private chargeDecoded(bytes: number): void {
    this.decodedInUse += bytes;
    this.host.decoded.inUse += bytes;
  }

  private releaseDecoded(bytes: number): void {
    this.decodedInUse -= bytes;
    this.host.decoded.inUse -= bytes;
  }

  /**
   * Checks the pattern and metadata limits (sizes before decoding anything) and decodes
   * the metadata: a map of at most `maxMetadataEntries` strings.
   */
  /** The metadata of a call that will not run, for its trace span; undefined if unreadable. */
  private metadataForTrace(body: CallBody): Record<string, string> | undefined {
    try {
      return this.readMetadata(body);
    } catch {
      return undefined;
    }
  }

  private readMetadata(body: CallBody): Record<string, string> | undefined {
    const limits = this.host.limits;
    checkPattern(body, limits);
    const bytes = body.metadata;
    if (bytes === null) return undefined;
    if (bytes.length > limits.maxMetadataBytes) {
      throw new WireLimitError(`metadata of ${bytes.length} bytes exceeds maxMetadataBytes ${limits.maxMetadataBytes}`);
    }
    const value = this.wire.decode(bytes);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new WireProtocolError('metadata must be a map of strings');
    }
    let entries = 0;
    for (const key in value) {
      if (typeof (value as Record<string, unknown>)[key] !== 'string') {
        throw new WireProtocolError(`metadata value "${key}" is not a string`);
      }
      if (++entries > limits.maxMetadataEntries) {
        throw new WireLimitError(`metadata has more than maxMetadataEntries ${limits.maxMetadataEntries} entries`);
      }
    }
    return value as Record<string, string>;
  }

  /** Refuses a request without running it: the client may safely send it elsewhere. */
  private nack(id: number, err: WireOverloadedError): void {
    this.host.callStats.fail(`NACK_${err.code}`);
    this.wire.sendNack(id, err);
  }

  /** Answers a request that will not run with a transport error, and counts it. */
  private reject(id: number, err: WireError): void {
    this.host.callStats.fail(err.code);
    this.wire.sendRefusal(id, err);
  }

  onRequest(id: number, flags: number, frameBody: Buffer): void {
    // Id 0 names the connection, not a call: an answer could not be told apart from a connection error.
    if (id === 0) throw new WireProtocolError('REQUEST with id 0 (reserved for connection-level frames)');
    // A live id reused: the peer lost track of its calls, and two calls would end on one id.
    if (this.calls.has(id)) throw new WireProtocolError(`REQUEST id ${id} is already in use by a running call`);
    this.lastCallAt = this.wire.lastRead;
    this.host.callStats.started++;
    const body = this.body;
    try {
      this.wire.readCallBody(frameBody, flags, body);
    } catch (err) {
      // The frame's length was right, so the stream is still in step: only this call fails.
      this.reject(id, err as WireProtocolError); // readCallBody throws only WireProtocolError
      return;
    }
    if (this.wire.isDraining) {
      this.nack(id, new WireDrainingError());
      return;
    }
    if (this.calls.size >= this.host.limits.maxInFlight) {
      // Reachable only while request streams keep reading on at the limit (`atCallLimit`).
      this.nack(
        id,
        new WireOverloadedError(
          `connection is at maxInFlightPerConnection (${this.host.limits.maxInFlight}); the request was not processed`,
        ),
      );
      return;
    }
    const maxConcurrentCalls = this.host.limits.maxConcurrentCalls;
    if (maxConcurrentCalls > 0 && this.host.runningCalls >= maxConcurrentCalls) {
      // Admission control: refused before any work, so the client may send it elsewhere.
      this.nack(
        id,
        new WireOverloadedError(
          `server is at maxConcurrentCalls (${maxConcurrentCalls}); the request was not processed`,
        ),
      );
      return;
    }
    const pattern = body.pattern;
    try {
      checkPattern(body, this.host.limits);
    } catch (err) {
      this.reject(id, err as WireLimitError);
      return;
    }
    // Looked up before anything is decoded: an unknown pattern costs no decoding.
    const handler = this.host.findHandler(pattern);
    if (handler === null) {
      const err = new WireNoHandlerError();
      const hooks = instrumentation.hooks;
      // Only the metadata (bounded by maxMetadataBytes) is decoded for the span, never the payload.
      if (hooks !== null)
        hooks.recordUnhandled(pattern, this.metadataForTrace(body), this.wire.remoteAddress, err.code, err.message);
      this.reject(id, err);
      return;
    }
    if (body.budgetMs === 0) {
      // The caller has already given up: do not start work nobody waits for.
      this.reject(id, new WireTimeoutError(0, 'deadline already passed when the request arrived'));
      return;
    }
    const limits = this.host.limits;
    if (body.credit > MAX_STREAM_CREDIT) {
      this.reject(
        id,
        new WireLimitError(`initial stream credit ${body.credit} exceeds the maximum of ${MAX_STREAM_CREDIT}`),
      );
      return;
    }
    if (this.wire.queuedBytes > limits.maxQueuedBytes) {
      this.nack(
        id,
        new WireOverloadedError(
          `more than ${limits.maxQueuedBytes} bytes of responses are waiting for this client to read`,
        ),
      );
      return;
    }
    let data: unknown;
    try {
      data = this.decodeCall(flags, body);
    } catch (err) {
      if (err instanceof WireOverloadedError) this.nack(id, err);
      else this.reject(id, err instanceof WireError ? err : new WireCodecError((err as Error).message, { cause: err }));
      return;
    }
    if (body.stream) {
      // The handler's payload is the request stream; the REQUEST's own payload is ignored.
      const payload = new RequestPayload(this.streamControl(id));
      this.streams.set(id, payload);
      data = payload;
    }
    const metadata = body.decodedMetadata;
    // The read's clock reading serves as the call's start: no clock read per call.
    const call = new ServerCall(id, this, body.credit, this.lastCallAt);
    call.decodedBytes = this.decodedBytes;
    this.chargeDecoded(this.decodedBytes);
    let deadlineAt = 0;
    if (body.budgetMs > 0) {
      deadlineAt = this.wallClockOfRead() + body.budgetMs;
      call.budgetMs = body.budgetMs;
      // Counted from the read that brought the request, like its latency.
      this.host.deadlines.add(call, call.startedAt + body.budgetMs);
    }
    this.calls.set(id, call);
    this.host.runningCalls++;
    // Stop at this frame boundary; TCP backpressure does the rest.
    if (this.atCallLimit()) this.wire.stopReadingForCalls();
    const ctx = new WireContext([pattern, metadata, id, deadlineAt, call, this.wire.remoteAddress]);
    const hooks = instrumentation.hooks;
    if (hooks === null) {
      this.host.runRequest(handler, data, ctx, call);
      return;
    }
    // Traced: the handler, and the subscription to what it returns, run inside the call's span.
    const trace = (call.trace = hooks.startServerCall('request', ctx));
    trace.run(() => this.host.runRequest(handler, data, ctx, call));
  }

  onEvent(id: number, flags: number, frameBody: Buffer): void {
    this.lastCallAt = this.wire.lastRead;
    const body = this.body;
    try {
      if (id !== 0) throw new WireProtocolError(`EVENT with id ${id}: an EVENT's id must be 0`);
      this.wire.readCallBody(frameBody, flags, body, true);
    } catch (err) {
      this.host.onEventDropped('(unreadable)', err);
      return;
    }
    let data: unknown;
    try {
      data = this.decodeCall(flags, body);
    } catch (err) {
      // An event has nobody to answer: report it on this side and drop it.
      this.host.onEventDropped(body.pattern, err);
      return;
    }
    const ctx = new WireContext([body.pattern, body.decodedMetadata, 0, 0, null, this.wire.remoteAddress]);
    const decodedBytes = this.decodedBytes;
    const running = this.host.runEvent(body.pattern, data, ctx);
    if (running instanceof Promise && decodedBytes > 0) {
      // An event's input is held as long as its handler runs: it counts like a call's.
      this.chargeDecoded(decodedBytes);
      const release = () => this.releaseDecoded(decodedBytes);
      running.then(release, release);
    }
  }
}

function overloaded(limits: SessionLimits): WireOverloadedError {
  return new WireOverloadedError(
    `decoded inputs of running calls would pass maxDecodedBytesPerConnection ${limits.maxDecodedBytesPerConnection} ` +
      `or maxDecodedBytesPerServer ${limits.maxDecodedBytesPerServer}; the request was not processed`,
  );
}

function checkPattern(body: CallBody, limits: SessionLimits): void {
  if (body.patternBytes > limits.maxPatternBytes) {
    throw new WireLimitError(`pattern of ${body.patternBytes} bytes exceeds maxPatternBytes ${limits.maxPatternBytes}`);
  }
}
