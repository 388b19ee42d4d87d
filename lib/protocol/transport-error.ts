import { WireProtocolError } from '../errors.js';

/**
 * Body of an ERROR frame with the TRANSPORT flag (and of NACK and GOAWAY): the
 * transport's own `{ code, message }`, in a fixed layout rather than through the
 * codec, so a peer can read it even when the two sides disagree on the codec.
 *
 *   u8 codeLength, code (ASCII), message (UTF-8, the rest of the body)
 */
export function encodeTransportError(code: string, message: string): Buffer {
  const codeBytes = Buffer.from(code.slice(0, 255), 'latin1');
  const messageBytes = Buffer.from(message, 'utf8');
  const body = Buffer.allocUnsafe(1 + codeBytes.length + messageBytes.length);
  body[0] = codeBytes.length;
  codeBytes.copy(body, 1);
  messageBytes.copy(body, 1 + codeBytes.length);
  return body;
}

export function decodeTransportError(body: Buffer): { code: string; message: string } {
  if (body.length < 1 || body.length < 1 + body[0]) {
    throw new WireProtocolError('transport error body is truncated');
  }
  const codeEnd = 1 + body[0];
  return { code: body.toString('latin1', 1, codeEnd), message: body.toString('utf8', codeEnd) };
}
