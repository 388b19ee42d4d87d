/**
 * The nest-wire frame format. docs/PROTOCOL.md is the normative description; this
 * file is its executable form. All integers are big-endian.
 *
 *   0      4      5       6            10
 *   +------+------+-------+------------+----------------------+
 *   | len  | type | flags | request id | body (len - 6 bytes) |
 *   +------+------+-------+------------+----------------------+
 *
 * `len` counts every byte after the length field itself (type, flags, id, body).
 */

/** Bytes sent once, before the first frame, by both sides: "NWIR". */
export const MAGIC: Buffer = Buffer.from([0x4e, 0x57, 0x49, 0x52]);

export const PROTOCOL_VERSION = 1;

/** Bytes of the length field. */
export const LENGTH_SIZE = 4;
/** Bytes from the start of a frame to the start of its body. */
export const HEADER_SIZE = 10;
/** Smallest legal value of the length field: type + flags + id. */
export const MIN_FRAME_LENGTH = HEADER_SIZE - LENGTH_SIZE;

/**
 * Smallest `maxFrameSize` a HELLO may announce (a lower one is refused with
 * `WIRE_HANDSHAKE`). Every frame a side must be able to send whatever the peer's limit
 * (HELLO, PONG of its own PINGs, CANCEL, CREDIT, GOAWAY, NACK, a transport ERROR whose
 * message is truncated to fit) is far below it.
 */
export const MIN_MAX_FRAME_SIZE = 1024;

export enum FrameType {
  /** First frame on a connection, both directions: version, codec, limits. */
  HELLO = 1,
  /** A call that expects RESPONSE / ERROR frames with the same id. */
  REQUEST = 2,
  /** A fire-and-forget message; nothing is sent back. */
  EVENT = 3,
  /** One value of a call's result; flag END marks the last frame. */
  RESPONSE = 4,
  /** The call failed; ends the call. Id 0 reports a connection-level error. */
  ERROR = 5,
  /** The caller no longer wants the result of this id. */
  CANCEL = 6,
  /** Liveness probe; the peer answers PONG with the same body. */
  PING = 7,
  PONG = 8,
  /** The sender accepts no new requests on this connection and will close it. */
  GOAWAY = 9,
  /** The request was not processed (draining, overloaded); safe to send elsewhere. */
  NACK = 10,
  /**
   * Stream flow control: the receiver grants the sender N more values for an id (a client
   * for the answer's values; a server, with REQUEST_STREAMS, for the request stream's).
   */
  CREDIT = 11,
  /**
   * One value of a call's request stream (client → server, REQUEST_STREAMS only); flags
   * as RESPONSE (END, NO_VALUE, MORE, LAST_FRAGMENT, PAYLOAD_COMPRESSED).
   */
  STREAM = 12,
}

/** Highest frame type this implementation understands. */
export const MAX_FRAME_TYPE = FrameType.STREAM;

/** REQUEST flags. */
export const REQUEST_HAS_DEADLINE = 0x01;
export const REQUEST_HAS_METADATA = 0x02;
/** The body carries the initial stream credit (values the server may send before a CREDIT). */
export const REQUEST_HAS_CREDIT = 0x04;
/**
 * The call's input is a request stream: its values follow in STREAM frames, sent within
 * the CREDIT the server grants; the REQUEST's own payload is ignored (nest-wire sends nil).
 */
export const REQUEST_STREAM = 0x08;

/**
 * REQUEST, EVENT and RESPONSE: the payload is compressed with the algorithm the sender
 * announced in its HELLO (metadata never is).
 */
export const PAYLOAD_COMPRESSED = 0x80;

/** RESPONSE flags. */
export const RESPONSE_END = 0x01;
/** The frame carries no value (a bare completion). */
export const RESPONSE_NO_VALUE = 0x02;
/**
 * The value continues in the next RESPONSE frame(s) of this id: the receiver joins the
 * payloads until a frame without MORE, whose other flags then apply to the whole value.
 */
export const RESPONSE_MORE = 0x04;
/**
 * The last fragment of a value that was cut. Every frame with MORE or LAST_FRAGMENT
 * counts against the connection's fragment window, whether or not its call is still
 * wanted, so both sides count the same bytes.
 */
export const RESPONSE_LAST_FRAGMENT = 0x08;

/** HELLO features bit 8: this side accepts fragmented values and grants the fragment window. */
export const FEATURE_FRAGMENTS = 0x0100;
/**
 * HELLO features bit 9, sent by a server: it takes request streams (REQUEST_STREAM, STREAM
 * frames, a client's ERROR for a streaming call) and grants their credit and fragment window.
 */
export const FEATURE_REQUEST_STREAMS = 0x0200;

/**
 * Fragment bytes a sender may have unacknowledged per connection (the receiver grants more
 * with CREDIT id 0). Keeps a large value from filling the kernel's buffers ahead of small
 * frames.
 */
export const FRAGMENT_WINDOW_BYTES = 256 * 1024;

/** ERROR flags: the body is a transport error `{ code, message }`, not an application value. */
export const ERROR_TRANSPORT = 0x01;

/** Largest pattern, in UTF-8 bytes (the length field is 16 bits). */
export const MAX_PATTERN_BYTES = 0xffff;

/** Request ids are unsigned 32-bit; 0 is reserved for connection-level frames. */
export const MAX_REQUEST_ID = 0xffffffff;

export const FRAME_TYPE_NAMES: Record<number, string> = {
  1: 'HELLO',
  2: 'REQUEST',
  3: 'EVENT',
  4: 'RESPONSE',
  5: 'ERROR',
  6: 'CANCEL',
  7: 'PING',
  8: 'PONG',
  9: 'GOAWAY',
  10: 'NACK',
  11: 'CREDIT',
  12: 'STREAM',
};

/** Receives decoded frames. `body` is a view that is valid only during the call. */
export interface FrameSink {
  onFrame(type: number, flags: number, id: number, body: Buffer): void;
}

/**
 * Largest body of a PING (its PONG echoes it). A larger one is a protocol error that
 * closes the connection: a peer must not make this side queue large answers.
 */
export const MAX_PING_BODY_BYTES = 64;

/**
 * Most stream credit a server holds for one call: a REQUEST announcing more is refused
 * with WIRE_LIMIT, and grants beyond it are clamped (a peer that renews what it consumed
 * never exceeds its initial credit).
 */
export const MAX_STREAM_CREDIT = 65_536;
