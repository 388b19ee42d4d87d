import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  WireConnectionError,
  WireErrorCode,
  WireFrameTooLargeError,
  WireProtocolError,
  type WireError,
} from '../errors.js';
import { ERROR_TRANSPORT, FrameType, REQUEST_STREAM, RESPONSE_END, RESPONSE_NO_VALUE } from '../protocol/frame.js';
import { remoteTransportError, WireConnection, type ConnectionHandler, type ConnectionOptions } from './connection.js';
import { FragmentJoiner, isJoinRefused } from './fragment-joiner.js';
import { FragmentQueue } from './fragment-queue.js';
import { acceptsFragments, acceptsRequestStreams } from './handshake.js';
import { ValueSender } from './value-sender.js';

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
  /** The server granted call `id`'s request stream `n` more values. */
  onStreamCredit?(id: number, n: number): void;
}

export interface ClientWireOptions extends ConnectionOptions {
  /** Bytes of partly received fragmented values this connection holds at most. */
  maxFragmentedBytes?: number;
}

/** The REQUEST payload of a streaming call: msgpack nil (its values follow in STREAM frames). */
const STREAM_REQUEST_PAYLOAD = null;

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
  /** Answers arriving in fragments: the window granted back, values joined. */
  private readonly joiner: FragmentJoiner;
  /** Request-stream values, END and ERROR (large values in fragments, within the server's window). */
  private readonly values: ValueSender;

  constructor(socket: Socket, options: ClientWireOptions, handler: ClientWireHandler) {
    const fragments = new FragmentQueue();
    super(socket, options, handler, 'client', fragments);
    this.joiner = new FragmentJoiner(
      options.maxFrameSize,
      options.maxFragmentedBytes ?? 64 * 1024 * 1024,
      this.grantFragmentWindow,
      'server',
    );
    this.values = new ValueSender(this.encoder, this.coalescer, this.payloads, fragments, this);
  }

  /** Unsent bytes, request-stream fragments waiting for the server's window included. */
  override get queuedBytes(): number {
    return super.queuedBytes + this.values.fragments.pendingBytes;
  }

  /** ValuePeer: the server takes values in fragments. */
  get peerTakesFragments(): boolean {
    return this.peer !== null && acceptsFragments(this.peer);
  }

  /** The server announced REQUEST_STREAMS: `sendStreamRequest` may be used. */
  get acceptsRequestStreams(): boolean {
    return this.peer !== null && acceptsRequestStreams(this.peer);
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
    return this.queueRequest(id, pattern, budgetMs, data, metadata, credit, 0);
  }

  /**
   * Like `sendRequest`, for a call whose input is a request stream (REQUEST_STREAM): its
   * values follow with `sendStreamValue` within the credit the server grants
   * (`onStreamCredit`). Throws `WireProtocolError` if the server did not announce
   * REQUEST_STREAMS (it would not understand the frames: the call fails instead of hanging).
   */
  sendStreamRequest(
    id: number,
    pattern: string,
    budgetMs: number,
    metadata: Record<string, string> | undefined,
    credit: number,
  ): number {
    if (this.isOpen && !this.acceptsRequestStreams) {
      throw new WireProtocolError(
        `server ${this.remoteAddress} does not take request streams (its HELLO did not announce REQUEST_STREAMS): ` +
          'upgrade it to a nest-wire version with client streaming',
      );
    }
    return this.queueRequest(id, pattern, budgetMs, STREAM_REQUEST_PAYLOAD, metadata, credit, REQUEST_STREAM);
  }

  /** Both kinds of REQUEST: refused on a closed connection; returns the write generation it was queued under. */
  private queueRequest(
    id: number,
    pattern: string,
    budgetMs: number,
    data: unknown,
    metadata: Record<string, string> | undefined,
    credit: number,
    extraFlags: number,
  ): number {
    if (!this.isOpen) throw new WireConnectionError(`connection to ${this.remoteAddress} is closed`);
    // Read before encoding: the first frame of a turn is written (its generation taken) at once.
    const generation = this.encoder.generation;
    this.encodeCall(FrameType.REQUEST, id, pattern, budgetMs, data, metadata, credit, extraFlags);
    return generation;
  }

  /** Queues a value of call `id`'s request stream (from `encodeValue`); large ones leave in fragments. */
  sendStreamValue(id: number, bytes: Uint8Array | null): void {
    if (!this.isLive) return;
    this.values.sendValue(FrameType.STREAM, id, bytes);
  }

  /** The request stream of call `id` is complete (END); the call goes on until the server's answer ends. */
  endStream(id: number): void {
    if (!this.isLive) return;
    this.values.sendEnd(FrameType.STREAM, id);
  }

  /**
   * The request stream of call `id` failed: an ERROR (a `WireError` as a transport error,
   * anything else as an application error value) after which the server sends nothing
   * more for `id`, as after CANCEL. Values of the call not yet begun are dropped.
   */
  failStream(id: number, err: unknown): void {
    this.joiner.drop(id);
    if (!this.isLive) return;
    this.values.sendFailure(id, err);
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
    this.joiner.drop(id);
    this.values.fragments.drop(id);
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
    this.joiner.clear();
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
        this.joiner.drop(id);
        return this.handler.onNack(id, remoteTransportError(ERROR_TRANSPORT, body));
      case FrameType.CREDIT: {
        // A server's CREDIT: for a request stream (id ≠ 0), or its fragment window back (id 0).
        if (body.length < 4) throw new WireProtocolError('CREDIT frame without its 32-bit count');
        const n = body.readUInt32BE(0);
        if (id !== 0) {
          if (this.handler.hasCall(id)) this.handler.onStreamCredit?.(id, n);
          return;
        }
        this.values.fragments.grant(n);
        this.coalescer.schedule();
        return;
      }
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
    extraFlags = 0,
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
      extraFlags,
    );
    // In the frame now: the codec may write the next values over these bytes (the last encoded first).
    if (meta !== null) this.payloads.recycle(meta); // metadata is always copied
    this.payloads.recycleSent(encoded, compressed ?? encoded);
    this.coalescer.schedule();
  }

  private onResponse(flags: number, id: number, body: Buffer): void {
    const fragment = this.joiner.counted(flags, body.length);
    // Timed out or cancelled: a late answer is dropped.
    if (!this.handler.hasCall(id)) return;
    if (fragment || this.joiner.has(id)) {
      const joined = this.joiner.join(id, flags, body);
      if (joined === null) return;
      if (isJoinRefused(joined)) {
        this.cancel(id);
        this.handler.onCallBroken(id, joined.refused);
        return;
      }
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
    this.joiner.drop(id);
    this.values.fragments.drop(id);
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

  /** Fragment bytes of answers read: given back to the server's window (CREDIT id 0). */
  private readonly grantFragmentWindow = (bytes: number): void => {
    this.encoder.encodeU32(FrameType.CREDIT, 0, 0, bytes);
    this.coalescer.schedule();
  };
}
