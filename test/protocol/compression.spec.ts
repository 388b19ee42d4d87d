import { randomBytes } from 'node:crypto';
import { WireCodecError } from '../../lib/errors.js';
import { COMPRESSION_IDS, decompress, PayloadCompressor, type CompressionAlgorithm } from '../../lib/protocol/compression.js';

const ALGORITHMS: CompressionAlgorithm[] = ['deflate', 'brotli'];
const text = (n: number) => Buffer.from('nest-wire compresses repetitive payloads. '.repeat(Math.ceil(n / 10)).slice(0, n));

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
      expect(decompress(id, compressed, payload.length)).toEqual(payload);
    }
  });

  it('refuses to expand past maxBytes (a small frame must not become gigabytes), typed', () => {
    const payload = Buffer.alloc(4 << 20); // 4 MiB of zeros: a few KiB compressed
    const compressed = new PayloadCompressor(algorithm, 0).compress(payload)!;
    expect(compressed.length).toBeLessThan(64 * 1024);
    expect(decompress(id, compressed, payload.length)).toHaveLength(payload.length); // exactly the limit is fine
    expect(codecError(() => decompress(id, compressed, (1 << 20) - 1)).message).toMatch(/^cannot decompress payload: /);
  });

  it('refuses bytes that are not a compressed stream, typed', () => {
    expect(codecError(() => decompress(id, Buffer.from([0xff, 0xfe, 0xfd, 0xfc, 0x00, 0x13]), 1 << 20)).message).toMatch(
      /^cannot decompress payload: /,
    );
  });
});

describe('decompress with no algorithm', () => {
  it('refuses a compressed payload when the peer announced none, typed', () => {
    for (const id of [0, 3]) {
      expect(codecError(() => decompress(id, Buffer.from([1, 2, 3]), 1024)).message).toBe(
        'compressed payload, but the peer announced no compression algorithm',
      );
    }
  });
});
