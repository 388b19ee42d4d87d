import { brotliCompressSync, constants } from 'node:zlib';
import { FrameType, PAYLOAD_COMPRESSED, REQUEST_HAS_CREDIT } from '../../lib/protocol/frame.js';
import { codec, rawFrame } from '../helpers/raw-peer.js';

/** A REQUEST frame with a raw payload (any bytes, standard msgpack or not). */
export function requestFrame(id: number, pattern: string, payload: Uint8Array, flags = 0): Buffer {
  const p = Buffer.from(pattern);
  const head = Buffer.alloc(2);
  head.writeUInt16BE(p.length);
  return rawFrame(FrameType.REQUEST, flags, id, Buffer.concat([head, p, payload]));
}

/** A REQUEST frame that opens a stream with `credit` (payload null). */
export function streamRequest(id: number, pattern: string, credit: number): Buffer {
  const p = Buffer.from(pattern);
  const body = Buffer.alloc(4 + 2 + p.length);
  body.writeUInt32BE(credit >>> 0, 0);
  body.writeUInt16BE(p.length, 4);
  p.copy(body, 6);
  return rawFrame(FrameType.REQUEST, REQUEST_HAS_CREDIT, id, Buffer.concat([body, codec.encode(null)]));
}

/** msgpack: an array32 of `n` empty arrays (n + 5 bytes; decodes to n JS arrays). */
export function emptyArrays(n: number): Buffer {
  const out = Buffer.alloc(5 + n, 0x90);
  out[0] = 0xdd;
  out.writeUInt32BE(n, 1);
  return out;
}

let bomb: Buffer | null = null;
/** The bomb: brotli of 16 million empty arrays (just under 16 MiB, the default maxFrameSize), a few dozen bytes. */
export function brotliBomb(): Buffer {
  bomb ??= brotliCompressSync(emptyArrays(16_000_000), { params: { [constants.BROTLI_PARAM_QUALITY]: 5 } });
  return bomb;
}

export function compressedRequest(id: number, pattern: string, compressed: Buffer): Buffer {
  return requestFrame(id, pattern, compressed, PAYLOAD_COMPRESSED);
}
