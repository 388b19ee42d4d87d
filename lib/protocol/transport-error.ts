import { WireProtocolError } from '../errors.js';
import { HEADER_SIZE, LENGTH_SIZE } from './frame.js';

/**
 * Body of an ERROR frame with the TRANSPORT flag (and of NACK and GOAWAY): the
 * transport's own `{ code, message }`, in a fixed layout rather than through the
 * codec, so a peer can read it even when the two sides disagree on the codec.
 *
 *   u8 codeLength, code (ASCII), message (UTF-8, the rest of the body)
 *
 * `maxFrameLength` is the peer's `maxFrameSize`: the message is cut (at a UTF-8 character
 * boundary, without a marker) so that the frame carrying this body fits it. A refusal must
 * never itself break the limit it may be reporting.
 */
export function encodeTransportError(code: string, message: string, maxFrameLength = Infinity): Buffer {
  const codeBytes = Buffer.from(code.slice(0, 255), 'latin1');
  let messageBytes = Buffer.from(message, 'utf8');
  const room = maxFrameLength - (HEADER_SIZE - LENGTH_SIZE) - 1 - codeBytes.length;
  if (messageBytes.length > room)
    messageBytes = messageBytes.subarray(0, utf8Boundary(messageBytes, Math.max(0, room)));
  const body = Buffer.allocUnsafe(1 + codeBytes.length + messageBytes.length);
  body[0] = codeBytes.length;
  codeBytes.copy(body, 1);
  messageBytes.copy(body, 1 + codeBytes.length);
  return body;
}

/** The largest cut ≤ `at` that does not split a UTF-8 sequence (continuation bytes are 10xxxxxx). */
function utf8Boundary(bytes: Buffer, at: number): number {
  while (at > 0 && (bytes[at] & 0xc0) === 0x80) at--;
  return at;
}

export function decodeTransportError(body: Buffer): { code: string; message: string } {
  if (body.length < 1 || body.length < 1 + body[0]) {
    throw new WireProtocolError('transport error body is truncated');
  }
  const codeEnd = 1 + body[0];
  return { code: body.toString('latin1', 1, codeEnd), message: body.toString('utf8', codeEnd) };
}
