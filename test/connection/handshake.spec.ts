import { acceptsFragments, localHello, negotiate, type LocalSettings } from '../../lib/connection/handshake.js';
import { WireHandshakeError } from '../../lib/errors.js';
import { MsgpackCodec } from '../../lib/protocol/codec.js';
import { PayloadCompressor } from '../../lib/protocol/compression.js';
import { FEATURE_FRAGMENTS, MIN_MAX_FRAME_SIZE, PROTOCOL_VERSION } from '../../lib/protocol/frame.js';
import type { Hello } from '../../lib/protocol/hello.js';

const codec = new MsgpackCodec();

function settings(over: Partial<LocalSettings> = {}): LocalSettings {
  return { codec, maxFrameSize: 1 << 20, maxInFlight: 0, heartbeatMs: 0, extension: null, compression: null, ...over };
}

function peer(over: Partial<Hello> = {}): Hello {
  return { ...localHello(settings()), ...over };
}

describe('handshake: localHello and negotiate (pure)', () => {
  it("announces this side's limits, fragments, and the compression it decodes and sends", () => {
    const deflate = new PayloadCompressor('deflate', 1024);
    const hello = localHello(settings({ maxInFlight: 7, heartbeatMs: 500, compression: deflate }));
    expect(hello).toMatchObject({ version: PROTOCOL_VERSION, codec: codec.id, maxInFlight: 7, heartbeatMs: 500 });
    // bit 8 fragments, bit 0 decodes deflate (id 1), bits 4-5 send with deflate
    expect(hello.features).toBe(FEATURE_FRAGMENTS | 0b1 | (1 << 4));
    expect(localHello(settings()).features).toBe(FEATURE_FRAGMENTS);
    expect(acceptsFragments(hello)).toBe(true);
    expect(acceptsFragments({ ...hello, features: 0 })).toBe(false);
  });

  it('refuses another version, another codec, a frame size under the floor, compression algorithm 3', () => {
    const cases: [Partial<Hello>, RegExp][] = [
      [{ version: PROTOCOL_VERSION + 1 }, /protocol version/],
      [{ codec: codec.id + 1 }, /configure the same codec/],
      [{ maxFrameSize: MIN_MAX_FRAME_SIZE - 1 }, /below the protocol minimum/],
      [{ features: 3 << 4 }, /unknown compression algorithm \(3\)/],
    ];
    for (const [over, message] of cases) {
      expect(() => negotiate(settings(), peer(over))).toThrow(WireHandshakeError);
      expect(() => negotiate(settings(), peer(over))).toThrow(message);
    }
    expect(negotiate(settings(), peer({ maxFrameSize: MIN_MAX_FRAME_SIZE })).peer.maxFrameSize).toBe(
      MIN_MAX_FRAME_SIZE,
    );
  });

  it('compresses toward a peer only with an algorithm it decodes; records what the peer sends with', () => {
    const brotli = new PayloadCompressor('brotli', 1024);
    // The peer decodes deflate only (bit 0): no compression toward it with brotli.
    expect(negotiate(settings({ compression: brotli }), peer({ features: 0b01 })).compressor).toBeNull();
    // It decodes brotli (bit 1): compressed.
    expect(negotiate(settings({ compression: brotli }), peer({ features: 0b10 })).compressor).toBe(brotli);
    // Nothing configured here: never compressed, whatever the peer decodes.
    expect(negotiate(settings(), peer({ features: 0b11 })).compressor).toBeNull();
    expect(negotiate(settings(), peer({ features: 2 << 4 })).peerCompression).toBe(2);
    expect(negotiate(settings(), peer({ features: 0 })).peerCompression).toBe(0);
  });
});
