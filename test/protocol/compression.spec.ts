import { randomBytes } from 'node:crypto';
import { WireCodecError } from '../../lib/errors.js';
import {
  COMPRESSION_IDS,
  decompress,
  MAX_COMPRESSED_PAYLOAD_BYTES,
  PayloadCompressor,
  type CompressionAlgorithm,
} from '../../lib/protocol/compression.js';
import { expectSameBytes } from '../helpers/bytes.js';

const ALGORITHMS: CompressionAlgorithm[] = ['deflate', 'brotli'];
const text = (n: number) =>
  Buffer.from('nest-wire compresses repetitive payloads. '.repeat(Math.ceil(n / 10)).slice(0, n));

function codecError(run: () => unknown): WireCodecError {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(WireCodecError);
    expect((err as WireCodecError).code).toBe('WIRE_CODEC');
    return err as WireCodecError;
  }
  throw new Error('expected a WireCodecError');
}

describe.each(ALGORITHMS)('compression: %s', (algorithm) => {
  const id = COMPRESSION_IDS[algorithm];

  it('leaves payloads under the threshold alone, compresses from the threshold on', () => {
    const compressor = new PayloadCompressor(algorithm, 1024);
    expect(compressor.compress(text(1023))).toBeNull();
    const out = compressor.compress(text(1024));
    expect(out).not.toBeNull();
    expect(out!.length).toBeLessThan(1024);
  });

  it('keeps a payload that does not shrink as it is (null)', () => {
    expect(new PayloadCompressor(algorithm, 0).compress(randomBytes(4096))).toBeNull();
  });

  it('round-trips', () => {
    for (const payload of [text(1024), text(100_000), Buffer.concat([text(5000), randomBytes(100), text(5000)])]) {
      const compressed = new PayloadCompressor(algorithm, 0).compress(payload)!;
      expectSameBytes(decompress(id, algorithm, compressed, payload.length), payload);
    }
  });

  it('refuses to expand past maxBytes (a small frame must not become gigabytes), typed', () => {
    const payload = Buffer.alloc(MAX_COMPRESSED_PAYLOAD_BYTES); // 1 MiB of zeros: a few KiB compressed
    const compressed = new PayloadCompressor(algorithm, 0).compress(payload)!;
    expect(compressed.length).toBeLessThan(64 * 1024);
    expect(decompress(id, algorithm, compressed, payload.length)).toHaveLength(payload.length); // exactly the limit is fine
    expect(codecError(() => decompress(id, algorithm, compressed, payload.length - 1)).message).toMatch(
      /^cannot decompress payload \(at most \d+ bytes, maxDecompressedBytes\): /,
    );
  });

  it('never compresses a payload above 1 MiB (a receiver need not inflate more)', () => {
    expect(new PayloadCompressor(algorithm, 0).compress(Buffer.alloc(MAX_COMPRESSED_PAYLOAD_BYTES + 1))).toBeNull();
  });

  it('refuses bytes that are not a compressed stream, typed', () => {
    expect(
      codecError(() => decompress(id, algorithm, Buffer.from([0xff, 0xfe, 0xfd, 0xfc, 0x00, 0x13]), 1 << 20)).message,
    ).toMatch(/^cannot decompress payload \(at most \d+ bytes, maxDecompressedBytes\): /);
  });
});

describe('decompress with no algorithm enabled', () => {
  it('refuses a compressed payload when this side enabled no compression, typed', () => {
    for (const id of [0, 1, 2, 3]) {
      expect(codecError(() => decompress(id, null, Buffer.from([1, 2, 3]), 1024)).message).toBe(
        'compressed payload, but this side did not enable compression (its HELLO announced no algorithm)',
      );
    }
  });

  it('refuses an algorithm other than the one this side enabled, typed', () => {
    expect(codecError(() => decompress(COMPRESSION_IDS.brotli, 'deflate', Buffer.from([1, 2, 3]), 1024)).message).toBe(
      'compressed payload with algorithm 2, but this side decodes only deflate',
    );
  });
});
