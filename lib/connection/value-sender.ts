import { WireError, WireErrorCode, WireFrameTooLargeError } from '../errors.js';
import type { FrameEncoder } from '../protocol/frame-encoder.js';
import {
  ERROR_TRANSPORT,
  FrameType,
  HEADER_SIZE,
  LENGTH_SIZE,
  PAYLOAD_COMPRESSED,
  RESPONSE_END,
  RESPONSE_NO_VALUE,
} from '../protocol/frame.js';
import { encodeTransportError } from '../protocol/transport-error.js';
import { FRAGMENT_THRESHOLD_BYTES, type FragmentQueue } from './fragment-queue.js';
import type { PayloadCodec } from './payload-codec.js';
import type { WriteCoalescer } from './write-coalescer.js';

/** The frame types that carry one value of a stream: a server's answer, a client's request stream. */
export type ValueFrame = FrameType.RESPONSE | FrameType.STREAM;

/** What the sender reads from its connection at each send (both change with the handshake). */
export interface ValuePeer {
  /** The peer's HELLO announced FRAGMENTS. */
  readonly peerTakesFragments: boolean;
  readonly peerMaxFrameSize: number;
}

const EMPTY = new Uint8Array(0);

/**
 * Sends the values of streams, their END and their ERROR, the same way in both directions
 * (RESPONSE from a server, STREAM from a client): compressed when negotiated, large values
 * (above 256 KiB) through the fragment queue, a call's later frames queued behind its
 * value still leaving in fragments, END folded into the call's last frame when it can be.
 */
export class ValueSender {
  constructor(
    private readonly encoder: FrameEncoder,
    private readonly coalescer: WriteCoalescer,
    private readonly payloads: PayloadCodec,
    readonly fragments: FragmentQueue,
    private readonly peer: ValuePeer,
  ) {}

  /**
   * Queues a value of call `id` (codec bytes, null for `undefined`: a NO_VALUE frame). A
   * RESPONSE value writes nothing itself: the END that usually follows in the same turn
   * must still be able to fold into its frame. A STREAM value leaves as soon as it can.
   */
  sendValue(type: ValueFrame, id: number, bytes: Uint8Array | null): void {
    const compressed = bytes === null ? null : this.payloads.compress(bytes);
    const payload = compressed ?? bytes;
    const flags = payload === null ? RESPONSE_NO_VALUE : compressed !== null ? PAYLOAD_COMPRESSED : 0;
    const fragments = this.fragments;
    const behind = fragments.has(id);
    if (payload !== null && (behind || (payload.length > FRAGMENT_THRESHOLD_BYTES && this.peer.peerTakesFragments))) {
      // Large (or behind a large one of the same call): leaves in fragments between other frames.
      fragments.push(id, type, flags, payload);
    } else if (behind) {
      fragments.push(id, type, flags, EMPTY);
    } else {
      if (type === FrameType.RESPONSE) this.encoder.encodeResponse(id, flags, payload);
      else this.encoder.encodeSimple(type, flags, id, payload);
      // Copied into the frame (or compressed): the codec may write the next value over these bytes.
      if (bytes !== null) this.payloads.recycleSent(bytes, payload!);
    }
    this.coalescer.schedule(type !== FrameType.RESPONSE);
  }

  /** Ends the stream of call `id`: END folds into its last frame when still possible, else `END | NO_VALUE`. */
  sendEnd(type: ValueFrame, id: number): void {
    const fragments = this.fragments;
    if (
      !fragments.markLast(id, RESPONSE_END) &&
      !(type === FrameType.RESPONSE && this.encoder.tryMarkLastResponseEnd(id))
    ) {
      if (fragments.has(id)) fragments.push(id, type, RESPONSE_END | RESPONSE_NO_VALUE, EMPTY);
      else this.encoder.encodeSimple(type, RESPONSE_END | RESPONSE_NO_VALUE, id, null);
    }
    this.coalescer.schedule();
  }

  /**
   * Ends call `id` (or its request stream) with an ERROR: a `WireError` as a transport
   * error, anything else as an application error value (a transport error if it cannot be
   * encoded or is too large). Values not yet begun are dropped; a value half sent finishes,
   * and the ERROR queues behind its last fragment instead of overtaking it.
   */
  sendFailure(id: number, err: unknown): void {
    const fragments = this.fragments;
    fragments.drop(id);
    const maxFrameSize = this.peer.peerMaxFrameSize;
    let flags = ERROR_TRANSPORT;
    let body: Uint8Array;
    if (err instanceof WireError) {
      body = encodeTransportError(err.code, err.message, maxFrameSize);
    } else {
      try {
        body = this.payloads.encode(err);
        const length = HEADER_SIZE - LENGTH_SIZE + body.length;
        if (length > maxFrameSize) throw new WireFrameTooLargeError(length, maxFrameSize);
        flags = 0;
      } catch (e) {
        body = encodeTransportError(
          e instanceof WireError ? e.code : WireErrorCode.CODEC,
          `error value could not be sent: ${(e as Error).message}`,
          maxFrameSize,
        );
      }
    }
    if (fragments.has(id)) fragments.push(id, FrameType.ERROR, flags, body);
    else this.encoder.encodeSimple(FrameType.ERROR, flags, id, body);
    this.coalescer.schedule();
  }
}
