import type { MessageHandler } from '@nestjs/microservices';
import type { Socket } from 'node:net';
import { WireConnection, type ConnectionHandler, type ConnectionOptions } from '../connection/connection.js';
import { performance } from 'node:perf_hooks';
import type { TimeoutWheel } from '../connection/timeout-wheel.js';
import { FRAGMENT_THRESHOLD_BYTES } from '../connection/fragment-queue.js';
import { CALL_CANCELLED, type CallStats, type Outcome } from '../connection/transport-stats.js';
import {
  WireCancelledError,
  WireCodecError,
  WireConnectionError,
  WireDrainingError,
  WireError,
  WireErrorCode,
  WireLimitError,
  WireNoHandlerError,
  WireOverloadedError,
  WireProtocolError,
  WireTimeoutError,
} from '../errors.js';
import { CallBody, readCallBody } from '../protocol/call-body.js';
import type { WireCodec } from '../protocol/codec.js';
import {
  FrameType,
  MAX_STREAM_CREDIT,
  PAYLOAD_COMPRESSED,
  RESPONSE_END,
  RESPONSE_NO_VALUE,
} from '../protocol/frame.js';
import { encodeTransportError } from '../protocol/transport-error.js';
import { ServerCall, type CallSink } from './server-call.js';
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

const EMPTY = new Uint8Array(0);

export class ServerSession implements ConnectionHandler, CallSink {
  readonly wire: WireConnection;
  private readonly calls = new Map<number, ServerCall>();
  /** Reused for every call frame read on this connection. */
  private readonly body = new CallBody();
  /** True while reading is stopped because `maxInFlight` calls are running. */
  private readingPaused = false;
  /** GOAWAY sent: new requests are refused with NACK; closes once idle and acknowledged. */
  private draining = false;
  /** The client sent GOAWAY: it will send no more requests on this connection. */
  private peerDone = false;
  /** Estimated heap of the metadata and payload `decodeCall` decoded last. */
  private decodedBytes = 0;
  /** Estimated heap of the decoded inputs of calls (and events) running on this connection. */
  private decodedInUse = 0;
  /** Stream values held, unencoded, by this connection's calls: at most `maxStreamBufferValues`. */
  private heldValues = 0;
  /** Calls holding values until the socket takes what is queued. */
  private readonly waitingToWrite = new Set<ServerCall>();

  constructor(
    socket: Socket,
    options: ConnectionOptions,
    private readonly codec: WireCodec,
    private readonly host: SessionHost,
  ) {
    this.wire = new WireConnection(socket, options, this);
  }

  get inFlight(): number {
    return this.calls.size;
  }

  /** When the last request or event arrived (`performance.now()`), for the idle timeout. */
  lastCallAt = performance.now();

  close(err: WireError | null = null): void {
    this.wire.close(err);
  }

  /**
   * Graceful shutdown of this connection: GOAWAY tells the client to send new calls
   * elsewhere; the calls running finish; the connection closes once the client has
   * acknowledged (its GOAWAY, after which TCP order guarantees no request follows) and
   * nothing is running.
   */
  beginDrain(): void {
    if (this.draining) return;
    this.draining = true;
    this.wire.sendGoAway(WireErrorCode.DRAINING, 'server is shutting down; send new calls elsewhere');
    this.closeIfDone();
  }

  onOpen(): void {
    this.host.onSessionOpen(this);
  }

  onFrame(_wire: WireConnection, type: number, flags: number, id: number, body: Buffer): void {
    switch (type) {
      case FrameType.REQUEST:
        return this.onRequest(flags, id, body);
      case FrameType.EVENT:
        return this.onEvent(flags, id, body);
      case FrameType.CANCEL: {
        const call = this.calls.get(id);
        if (call !== undefined) call.cancel(new WireCancelledError('call cancelled by the client'));
        return;
      }
      case FrameType.CREDIT: {
        if (body.length < 4) throw new WireProtocolError('CREDIT frame without its 32-bit count');
        const n = body.readUInt32BE(0);
        if (id === 0) {
          // Connection-level: fragment bytes the client has consumed.
          this.wire.coalescer.fragments.grant(n);
          this.wire.coalescer.schedule();
          if (this.waitingToWrite.size > 0) this.onWritable();
        } else {
          this.calls.get(id)?.addCredit(n);
        }
        return;
      }
      case FrameType.GOAWAY:
        // The client will send no more requests. Unasked (we were not draining), it is
        // answered like a drain: our GOAWAY, then close as soon as no call is running.
        this.peerDone = true;
        this.beginDrain();
        this.closeIfDone();
        return;
      default:
        throw new WireProtocolError(`a client does not send frame type ${type} to a server`);
    }
  }

  onClose(_wire: WireConnection, err: WireError | null): void {
    if (this.calls.size > 0) {
      const reason = new WireConnectionError('client connection closed');
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
    if (value === undefined) return null;
    const payload = this.codec.encode(value);
    this.wire.checkFrameFits(payload.length);
    return payload;
  }

  writeValue(call: ServerCall, bytes: Uint8Array | null): void {
    const wire = this.wire;
    const payload = bytes === null ? null : wire.compressOutgoing(bytes);
    const flags = payload === null ? RESPONSE_NO_VALUE : wire.lastCompressed ? PAYLOAD_COMPRESSED : 0;
    const fragments = wire.coalescer.fragments;
    const cut = payload !== null && payload.length > FRAGMENT_THRESHOLD_BYTES && wire.peerAcceptsFragments;
    if (payload !== null && (cut || fragments.has(call.id))) {
      // Large (or behind a large one of the same call): leaves in fragments between other frames.
      fragments.push(call.id, FrameType.RESPONSE, flags, payload);
    } else if (fragments.has(call.id)) {
      fragments.push(call.id, FrameType.RESPONSE, flags, EMPTY);
    } else {
      wire.encoder.encodeResponse(call.id, flags, payload);
    }
    wire.coalescer.schedule(false);
  }

  writeEnd(call: ServerCall): void {
    const wire = this.wire;
    // `of(value)` completes right after its value: flag that frame instead of sending another.
    if (wire.coalescer.fragments.markLast(call.id, RESPONSE_END) || wire.encoder.tryMarkLastResponseEnd(call.id)) {
      wire.coalescer.schedule();
      return;
    }
    if (wire.coalescer.fragments.has(call.id)) {
      wire.coalescer.fragments.push(call.id, FrameType.RESPONSE, RESPONSE_END | RESPONSE_NO_VALUE, EMPTY);
    } else {
      wire.encoder.encodeResponse(call.id, RESPONSE_END | RESPONSE_NO_VALUE, null);
    }
    wire.coalescer.schedule();
  }

  writeFailure(call: ServerCall, err: unknown): void {
    // Values of this call not yet begun are dropped: the call failed. A value half sent
    // finishes, and the ERROR follows it (sendCallError keeps that order).
    this.wire.coalescer.fragments.drop(call.id);
    this.wire.sendCallError(call.id, err);
  }

  mapUncaughtError(err: unknown): unknown {
    return this.host.mapUncaughtError(err);
  }

  release(call: ServerCall, outcome: Outcome): void {
    this.host.callStats.settled(call.startedAt, outcome);
    this.releaseDecoded(call.decodedBytes);
    this.waitingToWrite.delete(call);
    if (outcome === CALL_CANCELLED) this.wire.coalescer.fragments.drop(call.id);
    if (this.calls.delete(call.id)) this.host.runningCalls--;
    this.host.deadlines.remove(call);
    if (this.draining && this.calls.size === 0) queueMicrotask(() => this.closeIfDone());
    // A slot freed: read again if we had stopped at the limit.
    if (this.readingPaused && this.calls.size < this.host.limits.maxInFlight) {
      this.readingPaused = false;
      this.wire.resumeReading();
    }
  }

  /** Called by the deadline wheel: the caller's budget is spent. */
  expire(call: ServerCall): void {
    const err = new WireTimeoutError(call.budgetMs, 'deadline exceeded before the handler finished');
    call.cancel(err, { error: err });
    this.writeFailure(call, err);
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

  private closeIfDone(): void {
    // end(), not close(): the last responses may still be waiting for their flush.
    if (this.draining && this.peerDone && this.calls.size === 0) this.wire.end();
  }

  /** Refuses a request without running it: the client may safely send it elsewhere. */
  private nack(id: number, err: WireOverloadedError): void {
    this.host.callStats.fail(`NACK_${err.code}`);
    this.wire.encoder.encodeSimple(
      FrameType.NACK,
      0,
      id,
      encodeTransportError(err.code, err.message, this.wire.peerMaxFrameSize),
    );
    this.wire.coalescer.schedule();
  }

  /** Answers a request that will not run with a transport error, and counts it. */
  private reject(id: number, err: WireError): void {
    this.host.callStats.fail(err.code);
    this.wire.sendTransportError(id, err);
  }

  private onRequest(flags: number, id: number, frameBody: Buffer): void {
    // Id 0 names the connection, not a call: an answer could not be told apart from a connection error.
    if (id === 0) throw new WireProtocolError('REQUEST with id 0 (reserved for connection-level frames)');
    // A live id reused: the peer lost track of its calls, and two calls would end on one id.
    if (this.calls.has(id)) throw new WireProtocolError(`REQUEST id ${id} is already in use by a running call`);
    this.lastCallAt = this.wire.lastReadAt;
    this.host.callStats.started++;
    const body = this.body;
    try {
      readCallBody(frameBody, flags, body);
    } catch (err) {
      // The frame's length was right, so the stream is still in step: only this call fails.
      this.reject(id, err as WireProtocolError); // readCallBody throws only WireProtocolError
      return;
    }
    if (this.draining) {
      this.nack(id, new WireDrainingError());
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
    const metadata = body.decodedMetadata;
    const call = new ServerCall(id, this, body.credit);
    call.decodedBytes = this.decodedBytes;
    this.chargeDecoded(this.decodedBytes);
    let deadlineAt = 0;
    if (body.budgetMs > 0) {
      deadlineAt = Date.now() + body.budgetMs;
      call.budgetMs = body.budgetMs;
      this.host.deadlines.add(call, performance.now() + body.budgetMs);
    }
    this.calls.set(id, call);
    this.host.runningCalls++;
    if (this.calls.size >= limits.maxInFlight && !this.readingPaused) {
      // Stop at this frame boundary; TCP backpressure does the rest.
      this.readingPaused = true;
      this.wire.pauseReading();
    }
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

  private onEvent(flags: number, id: number, frameBody: Buffer): void {
    this.lastCallAt = this.wire.lastReadAt;
    const body = this.body;
    try {
      if (id !== 0) throw new WireProtocolError(`EVENT with id ${id}: an EVENT's id must be 0`);
      readCallBody(frameBody, flags, body, FrameType.EVENT);
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
