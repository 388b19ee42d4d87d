import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  WireConnectionError,
  WireErrorCode,
  WireFrameTooLargeError,
  WireLimitError,
  WireProtocolError,
  type WireError,
} from '../errors.js';
import {
  ERROR_TRANSPORT,
  FRAGMENT_WINDOW_BYTES,
  FrameType,
  RESPONSE_END,
  RESPONSE_LAST_FRAGMENT,
  RESPONSE_MORE,
  RESPONSE_NO_VALUE,
} from '../protocol/frame.js';
import { remoteTransportError, WireConnection, type ConnectionHandler, type ConnectionOptions } from './connection.js';

/** What a client connection's frames mean to its owner: answers to the calls it started. */
export interface ClientWireHandler extends ConnectionHandler {
  /** Whether call `id` still waits for answers; frames of other ids are dropped undecoded. */
  hasCall(id: number): boolean;
  /** A value of call `id` (`hasValue` false: the frame carried none), and whether it is the last. */
  onValue(id: number, hasValue: boolean, value: unknown, end: boolean): void;
  /** The server ended call `id` with an error: a `WireError` (transport) or the application's error value. */
  onCallError(id: number, err: unknown): void;
  /**
   * This side could not take an answer of call `id` (undecodable, past a size limit): the
   * call is already CANCELled toward the server.
   */
  onCallBroken(id: number, err: unknown): void;
  /** The server did not process call `id` (NACK): it may be sent elsewhere. */
  onNack(id: number, err: WireError): void;
  /** The server sent GOAWAY: no new calls here; the connection closes once its calls have ended. */
  onGoAway(): void;
}

export interface ClientWireOptions extends ConnectionOptions {
  /** Bytes of partly received fragmented values this connection holds at most. */
  maxFragmentedBytes?: number;
}

/** A value being received in fragments. */
interface Partial {
  parts: Buffer[];
  bytes: number;
}

/**
 * The client's side of one socket: the verbs that start and steer calls (REQUEST, EVENT,
 * CANCEL, CREDIT, round-trip PING) and the reading of their answers (RESPONSE, ERROR,
 * NACK), with fragments joined and the fragment window granted back here, so that the
 * owner sees whole decoded values.
 */
export class ClientWireConnection extends WireConnection<ClientWireHandler> {
  private pingSeq = 0;
  /** Round-trip probes waiting for their PONG, by id (1 .. 2^31 − 1). */
  private readonly pings = new Map<number, { sentAt: number; resolve(ms: number): void; reject(err: Error): void }>();
  /** Fragment bytes read since the last window grant (never more than the window). */
  private fragmentBytesRead = 0;
  /** Values being received in fragments, by call id. */
  private readonly partials = new Map<number, Partial>();
  /** Invariant: the sum of `bytes` over `partials` (at most `maxFragmentedBytes`). */
  private fragmentedBytes = 0;
  private readonly maxFragmentedBytes: number;

  constructor(socket: Socket, options: ClientWireOptions, handler: ClientWireHandler) {
    super(socket, options, handler, 'client');
    this.maxFragmentedBytes = options.maxFragmentedBytes ?? 64 * 1024 * 1024;
  }

  /** The socket's peer address fields, as the instrumentation reads them (undefined for a Unix socket). */
  get peerSocket(): { readonly remoteAddress?: string; readonly remotePort?: number } {
    return this.socket;
  }

  /** The server's announced `maxInFlight` (0: none). */
  get peerMaxInFlight(): number {
    return this.peer?.maxInFlight ?? 0;
  }

  /**
   * Encodes and queues call `id`'s REQUEST (metadata and payload codec-encoded, the payload
   * compressed when negotiated). Throws a `WireError` (codec, frame size) without side
   * effects if it cannot be sent. Returns the write generation it was queued under (see
   * `neverWritten`).
   */
  sendRequest(
    id: number,
    pattern: string,
    budgetMs: number,
    data: unknown,
    metadata: Record<string, string> | undefined,
    credit: number,
  ): number {
    if (!this.isOpen) throw new WireConnectionError(`connection to ${this.remoteAddress} is closed`);
    // Read before encoding: the first frame of a turn is written (its generation taken) at once.
    const generation = this.encoder.generation;
    this.encodeCall(FrameType.REQUEST, id, pattern, budgetMs, data, metadata, credit);
    return generation;
  }

  /** True while frames queued under `generation` have not left the process (they can be abandoned unsent). */
  neverWritten(generation: number): boolean {
    return generation === this.encoder.generation;
  }

  /** Encodes and queues an EVENT; resolves once it has been handed to the OS. */
  sendEvent(pattern: string, data: unknown, metadata: Record<string, string> | undefined): Promise<void> {
    this.encodeCall(FrameType.EVENT, 0, pattern, -1, data, metadata, 0);
    return new Promise((resolve, reject) => {
      this.coalescer.whenWritten((err) =>
        err ? reject(new WireConnectionError(`event not written: ${err.message}`, { cause: err })) : resolve(),
      );
    });
  }

  /** Tells the server to stop working on call `id`; what is still arriving for it is dropped. */
  cancel(id: number): void {
    this.dropPartial(id);
    if (!this.isLive) return;
    this.encoder.encodeSimple(FrameType.CANCEL, 0, id, null);
    this.coalescer.schedule();
  }

  /** Grants call `id`'s stream `n` more values. */
  grantCredit(id: number, n: number): void {
    if (!this.isLive) return;
    this.encoder.encodeU32(FrameType.CREDIT, 0, id, n);
    this.coalescer.schedule();
  }

  /**
   * Round trip to the peer: a PING whose id is not 0 (0 is the heartbeat's) answered by a
   * PONG with the same id. Resolves with the time it took in ms; rejects if the
   * connection closes first.
   */
  ping(): Promise<number> {
    if (!this.isOpen) return Promise.reject(new WireConnectionError('connection is not open'));
    const id = (this.pingSeq = this.pingSeq >= 0x7fffffff ? 1 : this.pingSeq + 1);
    const sentAt = performance.now();
    return new Promise((resolve, reject) => {
      this.pings.set(id, { sentAt, resolve, reject });
      this.encoder.encodeU32(FrameType.PING, 0, id, 0);
      this.coalescer.schedule();
    });
  }

  protected override onPong(id: number): void {
    const waiter = this.pings.get(id);
    if (waiter === undefined) return;
    this.pings.delete(id);
    waiter.resolve(performance.now() - waiter.sentAt);
  }

  protected override goAwayReason(): { code: WireErrorCode; message: string } {
    return { code: WireErrorCode.GOAWAY_ACK, message: 'client will send no more requests on this connection' };
  }

  protected override onDrainedByPeer(): void {
    this.handler.onGoAway();
  }

  protected override onClosing(err: WireError | null): void {
    this.partials.clear();
    this.fragmentedBytes = 0;
    if (this.pings.size === 0) return;
    const reason = new WireConnectionError('connection closed before the PONG arrived', { cause: err ?? undefined });
    for (const waiter of this.pings.values()) waiter.reject(reason);
    this.pings.clear();
  }

  protected onCallFrame(type: number, flags: number, id: number, body: Buffer): void {
    switch (type) {
      case FrameType.RESPONSE:
        return this.onResponse(flags, id, body);
      case FrameType.ERROR:
        return this.onError(flags, id, body);
      case FrameType.NACK:
        if (!this.handler.hasCall(id)) return;
        this.dropPartial(id);
        return this.handler.onNack(id, remoteTransportError(ERROR_TRANSPORT, body));
      default:
        throw new WireProtocolError(`a server does not send frame type ${type} to a client`);
    }
  }

  /** Encodes a REQUEST or EVENT frame and schedules its write; throws, encoding nothing, if it cannot go. */
  private encodeCall(
    type: FrameType.REQUEST | FrameType.EVENT,
    id: number,
    pattern: string,
    budgetMs: number,
    data: unknown,
    metadata: Record<string, string> | undefined,
    credit: number,
  ): void {
    const encoded = this.payloads.encode(data);
    const peerMax = this.peerMaxFrameSize;
    // Checked uncompressed, as the server checks it once inflated.
    if (encoded.length > peerMax) throw new WireFrameTooLargeError(encoded.length, peerMax);
    const compressed = this.payloads.compress(encoded);
    const meta = metadata === undefined ? null : this.payloads.encode(metadata);
    this.encoder.encodeCall(
      type,
      id,
      pattern,
      budgetMs,
      meta,
      compressed ?? encoded,
      peerMax,
      credit,
      compressed !== null,
    );
    this.coalescer.schedule();
  }

  private onResponse(flags: number, id: number, body: Buffer): void {
    const fragment = (flags & (RESPONSE_MORE | RESPONSE_LAST_FRAGMENT)) !== 0;
    if (fragment) this.consumedFragment(body.length);
    // Timed out or cancelled: a late answer is dropped.
    if (!this.handler.hasCall(id)) return;
    if (fragment || this.partials.has(id)) {
      const joined = this.joinFragment(id, flags, body);
      if (joined === null) return;
      body = joined;
    }
    let value: unknown;
    const hasValue = (flags & RESPONSE_NO_VALUE) === 0;
    if (hasValue) {
      try {
        value = this.payloads.decodePayload(flags, body);
      } catch (err) {
        this.cancel(id);
        this.handler.onCallBroken(id, err);
        return;
      }
    }
    this.handler.onValue(id, hasValue, value, (flags & RESPONSE_END) !== 0);
  }

  private onError(flags: number, id: number, body: Buffer): void {
    if (!this.handler.hasCall(id)) return;
    this.dropPartial(id);
    let err: unknown;
    if ((flags & ERROR_TRANSPORT) !== 0) {
      err = remoteTransportError(flags, body);
    } else {
      try {
        err = this.payloads.decodePayload(flags, body);
      } catch (e) {
        err = e;
      }
    }
    this.handler.onCallError(id, err);
  }

  /**
   * Counts fragment bytes read (wanted or not: the server counts every one it sends) and
   * grants them back with CREDIT id 0 once half the window is used. A server that sends
   * more than the window it was granted breaks the protocol: the connection closes.
   */
  private consumedFragment(bytes: number): void {
    this.fragmentBytesRead += bytes;
    if (this.fragmentBytesRead > FRAGMENT_WINDOW_BYTES) {
      throw new WireProtocolError(
        `server sent ${this.fragmentBytesRead} fragment bytes, past the ${FRAGMENT_WINDOW_BYTES}-byte window it was granted`,
      );
    }
    if (this.fragmentBytesRead < FRAGMENT_WINDOW_BYTES / 2) return;
    this.encoder.encodeU32(FrameType.CREDIT, 0, 0, this.fragmentBytesRead);
    this.coalescer.schedule();
    this.fragmentBytesRead = 0;
  }

  /**
   * Collects the fragments of a large value (copies: the frames are views of a reused
   * read buffer). Returns the whole payload with the last fragment, null before it or
   * when the value passes a limit (the call is then cancelled and reported broken).
   */
  private joinFragment(id: number, flags: number, body: Buffer): Buffer | null {
    let partial = this.partials.get(id);
    if (partial === undefined) this.partials.set(id, (partial = { parts: [], bytes: 0 }));
    partial.bytes += body.length;
    this.fragmentedBytes += body.length;
    if (partial.bytes > this.maxFrameSize) {
      const size = partial.bytes;
      this.cancel(id);
      this.handler.onCallBroken(id, new WireFrameTooLargeError(size, this.maxFrameSize));
      return null;
    }
    if (this.fragmentedBytes > this.maxFragmentedBytes) {
      // The total of every partial value on this connection is bounded, not only each one.
      this.cancel(id);
      this.handler.onCallBroken(
        id,
        new WireLimitError(
          `partly received values on this connection passed maxFragmentedBytes ${this.maxFragmentedBytes}`,
        ),
      );
      return null;
    }
    if ((flags & RESPONSE_MORE) !== 0) {
      partial.parts.push(Buffer.from(body));
      return null;
    }
    partial.parts.push(body);
    const whole = Buffer.concat(partial.parts, partial.bytes);
    this.dropPartial(id);
    return whole;
  }

  private dropPartial(id: number): void {
    const partial = this.partials.get(id);
    if (partial === undefined) return;
    this.fragmentedBytes -= partial.bytes;
    this.partials.delete(id);
  }
}
