import { WireHandshakeError } from '../errors.js';

/** Fixed part of a HELLO body, in bytes. */
export const HELLO_FIXED_BYTES = 16;

/** Largest frame either side accepts before the handshake completes. */
export const HANDSHAKE_MAX_FRAME_BYTES = 64 * 1024;

/**
 * What each side announces in its HELLO frame. Limits are what the *sender* accepts,
 * so the receiver keeps itself under them.
 */
export interface Hello {
  version: number;
  codec: number;
  /**
   * Feature bits: 0-1 compression algorithms this side decodes, 4-5 the one it sends with,
   * 8 accepts fragmented values, 9 (server) takes request streams (see docs/PROTOCOL.md).
   */
  features: number;
  /** Largest length field the sender accepts. */
  maxFrameSize: number;
  /** Calls the sender runs at once per connection (0: no limit announced). */
  maxInFlight: number;
  /** The sender's heartbeat interval in ms (0: no heartbeats). */
  heartbeatMs: number;
  /** Optional codec-encoded extension (credentials, later features); null if absent. */
  extension: Uint8Array | null;
}

export function encodeHelloBody(hello: Hello): Buffer {
  const extLength = hello.extension === null ? 0 : hello.extension.length;
  const body = Buffer.allocUnsafe(HELLO_FIXED_BYTES + extLength);
  body[0] = hello.version;
  body[1] = hello.codec;
  body.writeUInt16BE(hello.features, 2);
  body.writeUInt32BE(hello.maxFrameSize, 4);
  body.writeUInt32BE(hello.maxInFlight, 8);
  body.writeUInt32BE(hello.heartbeatMs, 12);
  if (hello.extension !== null) body.set(hello.extension, HELLO_FIXED_BYTES);
  return body;
}

export function decodeHelloBody(body: Buffer): Hello {
  if (body.length < HELLO_FIXED_BYTES) {
    throw new WireHandshakeError(`HELLO body of ${body.length} bytes is shorter than ${HELLO_FIXED_BYTES}`);
  }
  return {
    version: body[0],
    codec: body[1],
    features: body.readUInt16BE(2),
    maxFrameSize: body.readUInt32BE(4),
    maxInFlight: body.readUInt32BE(8),
    heartbeatMs: body.readUInt32BE(12),
    // Copied: the body is a view into a read buffer that is reused.
    extension: body.length > HELLO_FIXED_BYTES ? Buffer.from(body.subarray(HELLO_FIXED_BYTES)) : null,
  };
}
