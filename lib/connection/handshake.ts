import { WireHandshakeError } from '../errors.js';
import type { WireCodec } from '../protocol/codec.js';
import {
  COMPRESSION_IDS,
  decodesFeature,
  FEATURES_SENDS_SHIFT,
  type PayloadCompressor,
} from '../protocol/compression.js';
import { FEATURE_FRAGMENTS, FEATURE_REQUEST_STREAMS, MIN_MAX_FRAME_SIZE, PROTOCOL_VERSION } from '../protocol/frame.js';
import type { Hello } from '../protocol/hello.js';

/** What this side announces and needs to agree with a peer on. */
export interface LocalSettings {
  codec: WireCodec;
  maxFrameSize: number;
  /** Calls this side runs at once per connection (0: none announced). */
  maxInFlight: number;
  heartbeatMs: number;
  /** Client: the HELLO extension (codec-encoded `{ credentials }`), or null. */
  extension: Uint8Array | null;
  compression: PayloadCompressor | null;
  /** Server: announce REQUEST_STREAMS (it takes request streams). A client announces nothing. */
  requestStreams?: boolean;
}

/** The outcome of a handshake: what each side may send the other. */
export interface Negotiated {
  peer: Hello;
  /** Compressor usable toward this peer (configured here, and the peer decodes it), else null. */
  compressor: PayloadCompressor | null;
  /** Algorithm id the peer compresses with (0: none). */
  peerCompression: number;
}

/** This side's HELLO. Every nest-wire peer takes fragmented values. */
export function localHello(local: LocalSettings): Hello {
  const algorithm = local.compression?.algorithm ?? null;
  return {
    version: PROTOCOL_VERSION,
    codec: local.codec.id,
    features:
      FEATURE_FRAGMENTS |
      (local.requestStreams === true ? FEATURE_REQUEST_STREAMS : 0) |
      decodesFeature(algorithm) |
      (algorithm === null ? 0 : COMPRESSION_IDS[algorithm] << FEATURES_SENDS_SHIFT),
    maxFrameSize: local.maxFrameSize,
    maxInFlight: local.maxInFlight,
    heartbeatMs: local.heartbeatMs,
    extension: local.extension,
  };
}

/**
 * Pure: what this side and the peer agree on, from this side's settings and the peer's
 * HELLO, or a `WireHandshakeError` saying why they cannot talk (docs/PROTOCOL.md §3.1).
 */
export function negotiate(local: LocalSettings, hello: Hello): Negotiated {
  if (hello.version !== PROTOCOL_VERSION) {
    throw new WireHandshakeError(`peer speaks protocol version ${hello.version}, this side speaks ${PROTOCOL_VERSION}`);
  }
  if (hello.codec !== local.codec.id) {
    throw new WireHandshakeError(
      `peer uses codec ${hello.codec}, this side uses ${local.codec.id} (${local.codec.name}); configure the same codec on both sides`,
    );
  }
  if (hello.maxFrameSize < MIN_MAX_FRAME_SIZE) {
    throw new WireHandshakeError(
      `peer announced maxFrameSize ${hello.maxFrameSize}, below the protocol minimum of ${MIN_MAX_FRAME_SIZE}`,
    );
  }
  const peerCompression = (hello.features >> FEATURES_SENDS_SHIFT) & 0b11;
  if (peerCompression === 3) throw new WireHandshakeError('peer announced an unknown compression algorithm (3)');
  const mine = local.compression;
  // Compress toward the peer only with an algorithm it says it can decode (bit id-1 of features).
  const compressor =
    mine !== null && (hello.features & (1 << (COMPRESSION_IDS[mine.algorithm] - 1))) !== 0 ? mine : null;
  return { peer: hello, compressor, peerCompression };
}

/** The peer takes large values in fragments (and grants the fragment window). */
export function acceptsFragments(peer: Hello): boolean {
  return (peer.features & FEATURE_FRAGMENTS) !== 0;
}

/** The peer (a server) takes request streams. */
export function acceptsRequestStreams(peer: Hello): boolean {
  return (peer.features & FEATURE_REQUEST_STREAMS) !== 0;
}
