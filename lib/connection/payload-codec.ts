import { MsgpackCodec, type WireCodec } from '../protocol/codec.js';
import { decompress, type PayloadCompressor } from '../protocol/compression.js';
import { PAYLOAD_COMPRESSED } from '../protocol/frame.js';
import { copiesPayload } from '../protocol/frame-encoder.js';
import { DecodeBudget } from '../protocol/msgpack-validator.js';
import type { Negotiated } from './handshake.js';
import type { ReadBudget } from './read-budget.js';

/**
 * A connection's payloads: the codec, compression toward the peer as negotiated, and
 * decoding within a budget (`DecodeBudget`, `maxDecompressedBytes`). It charges the work
 * decoding did (bytes inflated + estimated heap decoded) to the connection's `ReadBudget`.
 */
export class PayloadCodec {
  /**
   * Bounds what one decode may allocate. Its owner (the server session) may lower
   * `maxBytes` before a decode to charge a per-connection total.
   */
  readonly budget: DecodeBudget;
  /** Compressor usable toward this peer, once negotiated; null: payloads leave as they are. */
  private compressor: PayloadCompressor | null = null;
  /** Algorithm id the peer compresses with (0: none). */
  private peerCompression = 0;
  /** The codec, if it is the built-in msgpack one (which can reuse the bytes of a copied value). */
  private readonly msgpack: MsgpackCodec | null;

  constructor(
    readonly codec: WireCodec,
    /** The algorithm this side enabled (it decodes only that one), or null. */
    private readonly mine: PayloadCompressor | null,
    maxDecodedBytes: number,
    private readonly maxDecompressedBytes: number,
    private readonly readBudget: ReadBudget,
  ) {
    this.budget = new DecodeBudget(maxDecodedBytes);
    this.msgpack = codec instanceof MsgpackCodec ? codec : null;
  }

  /** The handshake settled what each side compresses with. */
  negotiated(result: Negotiated): void {
    this.compressor = result.compressor;
    this.peerCompression = result.peerCompression;
  }

  encode(value: unknown): Uint8Array {
    return this.codec.encode(value);
  }

  /**
   * `bytes`, the last `encode()`'s, were copied into a frame (or compressed) and are not
   * read again: the msgpack codec writes the next value over them (no new slab every few
   * values). Other codecs promise their bytes may be held, and are left alone.
   */
  recycle(bytes: Uint8Array): void {
    if (this.msgpack !== null) this.msgpack.recycle(bytes);
  }

  /**
   * `bytes`, from `encode()`, went into a frame as `sent`: themselves, or their compressed
   * form. Recycled unless the frame holds them by reference (a large payload queued as a
   * chunk of its own until written).
   */
  recycleSent(bytes: Uint8Array, sent: Uint8Array): void {
    if (sent !== bytes || copiesPayload(bytes.length)) this.recycle(bytes);
  }

  /**
   * `payload` compressed if that is negotiated and worth it, else null (send it as it is,
   * without PAYLOAD_COMPRESSED).
   */
  compress(payload: Uint8Array): Uint8Array | null {
    return this.compressor === null ? null : this.compressor.compress(payload);
  }

  /**
   * Decodes a frame's payload, decompressing it first if the frame's flags say so (only
   * with the algorithm this side enabled, to at most `maxDecompressedBytes`).
   */
  decodePayload(flags: number, bytes: Buffer): unknown {
    if ((flags & PAYLOAD_COMPRESSED) !== 0) {
      // Counted even when refused: a bomb stopped at the limit cost the work of the limit.
      this.readBudget.charge(this.maxDecompressedBytes);
      bytes = decompress(this.peerCompression, this.mine?.algorithm ?? null, bytes, this.maxDecompressedBytes);
    }
    return this.decode(bytes);
  }

  /** Decodes codec bytes (a payload, metadata) within `budget`, counting the work. */
  decode(bytes: Uint8Array): unknown {
    const budget = this.budget;
    // A custom codec may ignore the budget: its bytes are then the only measure.
    budget.lastBytes = bytes.length;
    try {
      return this.codec.decode(bytes, budget);
    } finally {
      this.readBudget.charge(budget.lastBytes);
    }
  }
}
