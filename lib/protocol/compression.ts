import { brotliCompressSync, brotliDecompressSync, constants, deflateRawSync, inflateRawSync } from 'node:zlib';
import { WireCodecError } from '../errors.js';

export type CompressionAlgorithm = 'deflate' | 'brotli';

/** Ids used in HELLO's features field. */
export const COMPRESSION_IDS: Record<CompressionAlgorithm, number> = { deflate: 1, brotli: 2 };

/**
 * HELLO features, bits 0-1: the algorithms this side decodes. Only the one it enabled
 * (`compression` option): a side that did not turn compression on inflates nothing.
 */
export function decodesFeature(algorithm: CompressionAlgorithm | null): number {
  return algorithm === null ? 0 : 1 << (COMPRESSION_IDS[algorithm] - 1);
}
/**
 * Largest payload a sender compresses, and the least every receiver inflates
 * (`maxDecompressedBytes` cannot be set lower): larger payloads travel uncompressed.
 */
export const MAX_COMPRESSED_PAYLOAD_BYTES = 1024 * 1024;
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
    if (payload.length < this.thresholdBytes || payload.length > MAX_COMPRESSED_PAYLOAD_BYTES) return null;
    const out =
      this.algorithm === 'deflate'
        ? deflateRawSync(payload, { level: 1 })
        : brotliCompressSync(payload, { params: { [constants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY } });
    return out.length < payload.length ? out : null;
  }
}

/**
 * Decompresses a payload sent with algorithm `id`, which must be `accepted` (the one this
 * side enabled and announced), refusing to produce more than `maxBytes`
 * (`maxDecompressedBytes`): a small frame must not expand into gigabytes.
 */
export function decompress(
  id: number,
  accepted: CompressionAlgorithm | null,
  bytes: Uint8Array,
  maxBytes: number,
): Buffer {
  if (accepted === null || id !== COMPRESSION_IDS[accepted]) {
    throw new WireCodecError(
      accepted === null
        ? 'compressed payload, but this side did not enable compression (its HELLO announced no algorithm)'
        : `compressed payload with algorithm ${id}, but this side decodes only ${accepted}`,
    );
  }
  try {
    if (id === COMPRESSION_IDS.deflate) return inflateRawSync(bytes, { maxOutputLength: maxBytes });
    return brotliDecompressSync(bytes, { maxOutputLength: maxBytes });
  } catch (err) {
    throw new WireCodecError(
      `cannot decompress payload (at most ${maxBytes} bytes, maxDecompressedBytes): ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}
