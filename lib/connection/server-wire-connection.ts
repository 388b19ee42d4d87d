import type { Socket } from 'node:net';
import { WireErrorCode, WireProtocolError, type WireError } from '../errors.js';
import { ERROR_TRANSPORT, FrameType, RESPONSE_END, RESPONSE_NO_VALUE } from '../protocol/frame.js';
import { readCallBody, type CallBody } from '../protocol/call-body.js';
import type { DecodeBudget } from '../protocol/msgpack-validator.js';
import { encodeTransportError } from '../protocol/transport-error.js';
import {
  PAUSE_CALLS,
  remoteTransportError,
  WireConnection,
  type ConnectionHandler,
  type ConnectionOptions,
} from './connection.js';
import { FragmentJoiner, isJoinRefused } from './fragment-joiner.js';
import { FragmentQueue } from './fragment-queue.js';
import { acceptsFragments } from './handshake.js';
import { ValueSender } from './value-sender.js';

/** What a server connection's frames mean to its owner: calls to run and to steer. */
export interface ServerWireHandler extends ConnectionHandler {
  /** A REQUEST. `flags` are opaque here: hand them back to `readCallBody` and `decodePayload`. */
  onRequest(id: number, flags: number, body: Buffer): void;
  /** An EVENT (its id is checked by the owner, which reports a bad one as a dropped event). */
  onEvent(id: number, flags: number, body: Buffer): void;
  /** The client no longer wants call `id`. */
  onCancel(id: number): void;
  /** The client granted call `id`'s stream `n` more values. */
  onCredit(id: number, n: number): void;
  /** What to do with a STREAM or client ERROR frame of call `id` (`StreamRoute`). */
  routeStream?(id: number): StreamRoute;
  /**
   * A value of call `id`'s request stream (`hasValue` false: the frame carried none), and
   * whether it is the last; `decodedBytes` is the decode's estimated heap (`decodeBudget.lastBytes`).
   */
  onStreamValue?(id: number, hasValue: boolean, value: unknown, end: boolean, decodedBytes: number): void;
  /** The client's request stream of call `id` failed (its source errored): `err` is a `WireError` or its error value. */
  onStreamError?(id: number, err: unknown): void;
  /** This side could not take a value of call `id`'s request stream (undecodable, past a limit). */
  onStreamBroken?(id: number, err: WireError): void;
}

export { CallBody } from '../protocol/call-body.js';

export interface ServerWireOptions extends ConnectionOptions {
  /**
   * Bytes of partly received request-stream values this connection holds at most (one
   * value per streaming call can be in fragments); past it the call fails with `WireLimitError`.
   */
  maxFragmentedBytes?: number;
}

/** Where a request-stream frame (STREAM, a client's ERROR) of an id goes. */
export enum StreamRoute {
  /** The call reads its request stream: decode and deliver. */
  READ,
  /** No such call (it ended: the frame was on its way), or its stream is no longer read: drop it. */
  DROP,
  /** A running call that has no request stream: the client broke the protocol (connection-level). */
  REFUSE,
}

/**
 * The server's side of one socket: the verbs that answer calls (values, END, ERROR, NACK)
 * and the reading of the client's call frames. Large values leave through the fragment
 * queue, which lives only here (a client sends none); the order of one call's frames
 * behind a fragmented value, END folding and the compression flag are decided here, not
 * by the owner.
 */
export class ServerWireConnection extends WireConnection<ServerWireHandler> {
  /** Large values leaving in fragments, and the later frames of their calls (the coalescer feeds them out). */
  private readonly fragments: FragmentQueue;
  /** Values, END and ERROR of the calls' answers. */
  private readonly values: ValueSender;
  /** Request-stream values arriving in fragments: the window granted back, values joined. */
  private readonly joiner: FragmentJoiner;

  constructor(socket: Socket, options: ServerWireOptions, handler: ServerWireHandler) {
    const fragments = new FragmentQueue();
    super(socket, options, handler, 'server', fragments);
    this.fragments = fragments;
    this.values = new ValueSender(this.encoder, this.coalescer, this.payloads, fragments, this);
    // One request-stream value is bounded like a REQUEST (maxFrameSize); all of them together by maxFragmentedBytes.
    this.joiner = new FragmentJoiner(
      options.maxFrameSize,
      options.maxFragmentedBytes ?? 64 * 1024 * 1024,
      this.grantFragmentWindow,
      'client',
    );
  }

  /** Unsent bytes, fragments waiting for the client's window included. */
  override get queuedBytes(): number {
    return super.queuedBytes + this.fragments.pendingBytes;
  }

  /** Bounds what one decode may allocate; the session lowers `maxBytes` to charge its totals. */
  get decodeBudget(): DecodeBudget {
    return this.payloads.budget;
  }

  /**
   * Parses the body of a REQUEST (or, with `event`, an EVENT) handed to `onRequest` /
   * `onEvent` into `out`; throws `WireProtocolError` for a truncated body.
   */
  readCallBody(frameBody: Buffer, flags: number, out: CallBody, event = false): void {
    readCallBody(frameBody, flags, out, event ? FrameType.EVENT : FrameType.REQUEST);
  }

  /** Decodes a call frame's payload (decompressed if its `flags` say so) within `decodeBudget`. */
  decodePayload(flags: number, bytes: Buffer): unknown {
    return this.payloads.decodePayload(flags, bytes);
  }

  /** Decodes codec bytes (metadata) within `decodeBudget`. */
  decode(bytes: Uint8Array): unknown {
    return this.payloads.decode(bytes);
  }

  /** The session runs as many calls as it allows: stop reading at this frame boundary (TCP backpressure does the rest). */
  stopReadingForCalls(): void {
    this.pauseReading(PAUSE_CALLS);
  }

  resumeReadingForCalls(): void {
    this.resumeReading(PAUSE_CALLS);
  }

  /**
   * Queues a value of call `id` (from `encodeValue`). Compressed when negotiated and worth
   * it; above 256 KiB, or behind a value of the same call still leaving in fragments, it
   * goes through the fragment queue. Writes nothing itself: the END that usually follows
   * in the same turn must still be able to fold into this frame.
   */
  sendValue(id: number, bytes: Uint8Array | null): void {
    if (!this.isLive) return;
    this.values.sendValue(FrameType.RESPONSE, id, bytes);
  }

  /** Ends call `id` successfully: `of(value)` completes right after its value, so END folds into that frame when it can. */
  sendEnd(id: number): void {
    if (!this.isLive) return;
    this.values.sendEnd(FrameType.RESPONSE, id);
  }

  /**
   * Ends call `id` with an ERROR: a `WireError` as a transport error, anything else as the
   * application's error value (a transport error if it cannot be encoded or is too large).
   * Values of the call not yet begun are dropped (the call failed); a value half sent
   * finishes, and the ERROR queues behind its last fragment instead of overtaking it.
   */
  sendFailure(id: number, err: unknown): void {
    if (!this.isLive) return;
    this.values.sendFailure(id, err);
  }

  /** Grants call `id`'s request stream `n` more values (CREDIT). */
  grantStreamCredit(id: number, n: number): void {
    if (!this.isLive) return;
    this.encoder.encodeU32(FrameType.CREDIT, 0, id, n);
    this.coalescer.schedule();
  }

  /** Call `id`'s request stream is no longer read: a value of it partly received is dropped. */
  forgetStream(id: number): void {
    this.joiner.drop(id);
  }

  /** Answers a request that did not run (a refusal) with a transport error. */
  sendRefusal(id: number, err: WireError): void {
    this.sendTransportError(id, err);
  }

  /** Refuses a request without running it (NACK): the client may safely send it elsewhere. */
  sendNack(id: number, err: WireError): void {
    if (!this.isLive) return;
    this.encoder.encodeSimple(
      FrameType.NACK,
      0,
      id,
      encodeTransportError(err.code, err.message, this.peerMaxFrameSize),
    );
    this.coalescer.schedule();
  }

  /** Call `id` was cancelled: what it still has waiting in the fragment queue is dropped. */
  forgetCall(id: number): void {
    this.fragments.drop(id);
  }

  protected override goAwayReason(): { code: WireErrorCode; message: string } {
    return { code: WireErrorCode.DRAINING, message: 'server is shutting down; send new calls elsewhere' };
  }

  protected onCallFrame(type: number, flags: number, id: number, body: Buffer): void {
    switch (type) {
      case FrameType.REQUEST:
        return this.handler.onRequest(id, flags, body);
      case FrameType.EVENT:
        return this.handler.onEvent(id, flags, body);
      case FrameType.CANCEL:
        this.joiner.drop(id);
        return this.handler.onCancel(id);
      case FrameType.STREAM:
        return this.onStreamFrame(flags, id, body);
      case FrameType.ERROR:
        // A client's ERROR ends the request stream of a streaming call (its source failed).
        return this.onStreamErrorFrame(flags, id, body);
      case FrameType.CREDIT: {
        if (body.length < 4) throw new WireProtocolError('CREDIT frame without its 32-bit count');
        const n = body.readUInt32BE(0);
        if (id !== 0) return this.handler.onCredit(id, n);
        // Connection-level: fragment bytes the client has consumed.
        this.fragments.grant(n);
        this.coalescer.schedule();
        this.handler.onWritable?.();
        return;
      }
      default:
        throw new WireProtocolError(`a client does not send frame type ${type} to a server`);
    }
  }

  /** ValuePeer: the client takes values in fragments. */
  get peerTakesFragments(): boolean {
    return this.peer !== null && acceptsFragments(this.peer);
  }

  private onStreamFrame(flags: number, id: number, body: Buffer): void {
    if (id === 0) throw new WireProtocolError('STREAM with id 0 (reserved for connection-level frames)');
    const fragment = this.joiner.counted(flags, body.length);
    // The call ended (answered, cancelled, failed): the rest of its stream is dropped.
    if (this.streamRoute(id, 'STREAM') === StreamRoute.DROP) {
      this.joiner.drop(id);
      return;
    }
    if (fragment || this.joiner.has(id)) {
      const joined = this.joiner.join(id, flags, body);
      if (joined === null) return;
      if (isJoinRefused(joined)) return this.handler.onStreamBroken?.(id, joined.refused);
      body = joined;
    }
    let value: unknown;
    const hasValue = (flags & RESPONSE_NO_VALUE) === 0;
    let decodedBytes = 0;
    if (hasValue) {
      try {
        value = this.payloads.decodePayload(flags, body);
        decodedBytes = this.payloads.budget.lastBytes;
      } catch (err) {
        return this.handler.onStreamBroken?.(id, err as WireError);
      }
    }
    this.handler.onStreamValue?.(id, hasValue, value, (flags & RESPONSE_END) !== 0, decodedBytes);
  }

  private onStreamErrorFrame(flags: number, id: number, body: Buffer): void {
    this.joiner.drop(id);
    if (id === 0) throw new WireProtocolError('ERROR id 0 is handled by the connection');
    if (this.streamRoute(id, 'ERROR') === StreamRoute.DROP) return;
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
    this.handler.onStreamError?.(id, err);
  }

  /** READ or DROP; throws the connection-level `WireProtocolError` for REFUSE. */
  private streamRoute(id: number, frame: string): StreamRoute.READ | StreamRoute.DROP {
    const route = this.handler.routeStream?.(id) ?? StreamRoute.REFUSE;
    if (route === StreamRoute.REFUSE) {
      throw new WireProtocolError(
        `${frame} for call ${id}, which has no request stream (its REQUEST had no REQUEST_STREAM)`,
      );
    }
    return route;
  }

  /** Fragment bytes of request streams read: given back to the client's window (CREDIT id 0). */
  private readonly grantFragmentWindow = (bytes: number): void => {
    this.encoder.encodeU32(FrameType.CREDIT, 0, 0, bytes);
    this.coalescer.schedule();
  };
}
