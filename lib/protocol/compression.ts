import { brotliCompressSync, brotliDecompressSync, constants, deflateRawSync, inflateRawSync } from 'node:zlib';
import { WireCodecError } from '../errors.js';

export type CompressionAlgorithm = 'deflate' | 'brotli';

/** Ids used in HELLO's features field. */
export const COMPRESSION_IDS: Record<CompressionAlgorithm, number> = { deflate: 1, brotli: 2 };

/** HELLO features, bits 0-1: the algorithms this side can decode (both, in this implementation). */
export const FEATURES_DECODES_ALL = 0b11;
/** HELLO features, bits 4-5: the algorithm this side compresses with (0: it does not compress). */
export const FEATURES_SENDS_SHIFT = 4;

/** Brotli's quality 11 is far too slow for RPC; 4 compresses well at a few hundred MB/s. */
const BROTLI_QUALITY = 4;

/** Compresses payloads above a threshold, keeping the result only when it is smaller. */
export class PayloadCompressor {
  constructor(
    readonly algorithm: CompressionAlgorithm,
    readonly thresholdBytes: number,
  ) {}

  /** The compressed bytes, or null when the payload is small or does not shrink. */
  compress(payload: Uint8Array): Buffer | null {
    if (payload.length < this.thresholdBytes) return null;
    const out =
      this.algorithm === 'deflate'
        ? deflateRawSync(payload, { level: 1 })
        : brotliCompressSync(payload, { params: { [constants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY } });
    return out.length < payload.length ? out : null;
  }
}

/**
 * Decompresses a payload sent with algorithm `id`, refusing to produce more than
 * `maxBytes` (a small frame must not expand into gigabytes).
 */
export function decompress(id: number, bytes: Uint8Array, maxBytes: number): Buffer {
  try {
    if (id === COMPRESSION_IDS.deflate) return inflateRawSync(bytes, { maxOutputLength: maxBytes });
    if (id === COMPRESSION_IDS.brotli) return brotliDecompressSync(bytes, { maxOutputLength: maxBytes });
  } catch (err) {
    throw new WireCodecError(`cannot decompress payload: ${(err as Error).message}`, { cause: err });
  }
  throw new WireCodecError('compressed payload, but the peer announced no compression algorithm');
}
