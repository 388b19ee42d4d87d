import type { Socket } from 'node:net';
import { WireError, WireErrorCode, WireFrameTooLargeError, WireProtocolError } from '../errors.js';
import {
  ERROR_TRANSPORT,
  FrameType,
  HEADER_SIZE,
  LENGTH_SIZE,
  PAYLOAD_COMPRESSED,
  RESPONSE_END,
  RESPONSE_NO_VALUE,
} from '../protocol/frame.js';
import { readCallBody, type CallBody } from '../protocol/call-body.js';
import type { DecodeBudget } from '../protocol/msgpack-validator.js';
import { encodeTransportError } from '../protocol/transport-error.js';
import { PAUSE_CALLS, WireConnection, type ConnectionHandler, type ConnectionOptions } from './connection.js';
import { FRAGMENT_THRESHOLD_BYTES, FragmentQueue } from './fragment-queue.js';
import { acceptsFragments } from './handshake.js';

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
}

export { CallBody } from '../protocol/call-body.js';

const EMPTY = new Uint8Array(0);

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

  constructor(socket: Socket, options: ConnectionOptions, handler: ServerWireHandler) {
    const fragments = new FragmentQueue();
    super(socket, options, handler, 'server', fragments);
    this.fragments = fragments;
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
   * Encodes a value of a call's answer (null for `undefined`, sent as NO_VALUE); throws a
   * `WireError` if it cannot travel (codec, larger than the client accepts).
   */
  encodeValue(value: unknown): Uint8Array | null {
    if (value === undefined) return null;
    const payload = this.payloads.encode(value);
    this.checkFrameFits(payload.length);
    return payload;
  }

  /**
   * Queues a value of call `id` (from `encodeValue`). Compressed when negotiated and worth
   * it; above 256 KiB, or behind a value of the same call still leaving in fragments, it
   * goes through the fragment queue. Writes nothing itself: the END that usually follows
   * in the same turn must still be able to fold into this frame.
   */
  sendValue(id: number, bytes: Uint8Array | null): void {
    if (!this.isLive) return;
    const compressed = bytes === null ? null : this.payloads.compress(bytes);
    const payload = compressed ?? bytes;
    const flags = payload === null ? RESPONSE_NO_VALUE : compressed !== null ? PAYLOAD_COMPRESSED : 0;
    const fragments = this.fragments;
    const behind = fragments.has(id);
    if (payload !== null && (behind || (payload.length > FRAGMENT_THRESHOLD_BYTES && this.peerTakesFragments))) {
      // Large (or behind a large one of the same call): leaves in fragments between other frames.
      fragments.push(id, FrameType.RESPONSE, flags, payload);
    } else if (behind) {
      fragments.push(id, FrameType.RESPONSE, flags, EMPTY);
    } else {
      this.encoder.encodeResponse(id, flags, payload);
    }
    this.coalescer.schedule(false);
  }

  /** Ends call `id` successfully: `of(value)` completes right after its value, so END folds into that frame when it can. */
  sendEnd(id: number): void {
    if (!this.isLive) return;
    const fragments = this.fragments;
    if (!fragments.markLast(id, RESPONSE_END) && !this.encoder.tryMarkLastResponseEnd(id)) {
      if (fragments.has(id)) fragments.push(id, FrameType.RESPONSE, RESPONSE_END | RESPONSE_NO_VALUE, EMPTY);
      else this.encoder.encodeResponse(id, RESPONSE_END | RESPONSE_NO_VALUE, null);
    }
    this.coalescer.schedule();
  }

  /**
   * Ends call `id` with an ERROR: a `WireError` as a transport error, anything else as the
   * application's error value (a transport error if it cannot be encoded or is too large).
   * Values of the call not yet begun are dropped (the call failed); a value half sent
   * finishes, and the ERROR queues behind its last fragment instead of overtaking it.
   */
  sendFailure(id: number, err: unknown): void {
    if (!this.isLive) return;
    const fragments = this.fragments;
    fragments.drop(id);
    let flags = ERROR_TRANSPORT;
    let body: Uint8Array;
    if (err instanceof WireError) {
      body = encodeTransportError(err.code, err.message, this.peerMaxFrameSize);
    } else {
      try {
        body = this.payloads.encode(err);
        this.checkFrameFits(body.length);
        flags = 0;
      } catch (e) {
        body = encodeTransportError(
          e instanceof WireError ? e.code : WireErrorCode.CODEC,
          `error value could not be sent: ${(e as Error).message}`,
          this.peerMaxFrameSize,
        );
      }
    }
    if (fragments.has(id)) fragments.push(id, FrameType.ERROR, flags, body);
    else this.encoder.encodeSimple(FrameType.ERROR, flags, id, body);
    this.coalescer.schedule();
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
        return this.handler.onCancel(id);
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

  private get peerTakesFragments(): boolean {
    return this.peer !== null && acceptsFragments(this.peer);
  }

  /** Throws if a frame of `bodyBytes` would exceed what the peer accepts. */
  private checkFrameFits(bodyBytes: number): void {
    const length = HEADER_SIZE - LENGTH_SIZE + bodyBytes;
    if (length > this.peerMaxFrameSize) throw new WireFrameTooLargeError(length, this.peerMaxFrameSize);
  }
}
