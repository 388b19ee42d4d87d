import { Packr, type Options } from 'msgpackr';
import { WireCodecError } from '../errors.js';
import { DEFAULT_DECODE_LIMIT_BYTES, validateMsgpack, type DecodeBudget } from './msgpack-validator.js';

/**
 * Turns payloads into bytes and back. Pluggable: both sides announce the codec id
 * in the handshake and refuse a peer whose codec differs.
 */
export interface WireCodec {
  /** Announced in HELLO; 1 is msgpack. Ids 128-255 are free for private codecs. */
  readonly id: number;
  readonly name: string;
  /** Returns bytes the caller may hold until they are written; must not be reused by the codec. */
  encode(value: unknown): Uint8Array;
  /**
   * `bytes` is a view into a read buffer that is reused after this call returns.
   * `budget`, when given, bounds what the decoded value may allocate (`budget.maxBytes`)
   * and receives the estimate (`budget.lastBytes`). A custom codec that ignores it is
   * bounded only by byte sizes (maxFrameSize, maxDecompressedBytes): see docs/SECURITY.md.
   */
  decode(bytes: Uint8Array, budget?: DecodeBudget): unknown;
}

export const MSGPACK_CODEC_ID = 1;

// `int64AsType: 'auto'` is supported at runtime but missing from msgpackr's typings.
const MSGPACK_OPTIONS = {
  useRecords: false,
  moreTypes: false,
  encodeUndefinedAsNil: true,
  skipValues: [undefined],
  copyBuffers: true,
  int64AsType: 'auto',
  mapsAsObjects: true,
} as unknown as Options;

/**
 * msgpack in its standard form, readable by any msgpack library:
 * - `useRecords: false`: msgpackr's record extension is private to msgpackr.
 * - `encodeUndefinedAsNil` + `skipValues: [undefined]`: msgpackr would otherwise write
 *   `undefined` as a private extension; this maps it the way JSON does (dropped from
 *   objects, `null` in arrays), so a handler sees what it would see over Nest's TCP transport.
 * - `copyBuffers: true`: binary values must not alias the reusable read buffer.
 * - `int64AsType: 'auto'`: 64-bit integers from other languages become numbers when exact.
 * - Maps decode to plain objects; msgpackr drops `__proto__` keys while decoding.
 * See docs/PROTOCOL.md (Codec) for the measurements behind these choices.
 */
export class MsgpackCodec implements WireCodec {
  readonly id = MSGPACK_CODEC_ID;
  readonly name = 'msgpack';
  private readonly packr = new Packr(MSGPACK_OPTIONS);


  encode(value: unknown): Uint8Array {
    try {
      return this.packr.pack(value);
    } catch (err) {
      throw new WireCodecError(`cannot encode value as msgpack: ${(err as Error).message}`, { cause: err });
    }
  }

  decode(bytes: Uint8Array, budget?: DecodeBudget): unknown {
    // Standard msgpack only, and no more heap than the budget: checked before msgpackr allocates.
    const estimate = validateMsgpack(bytes, budget === undefined ? DEFAULT_DECODE_LIMIT_BYTES : budget.maxBytes);
    if (budget !== undefined) budget.lastBytes = estimate;
    try {
      return this.packr.unpack(bytes);
    } catch (err) {
      throw new WireCodecError(`cannot decode msgpack payload: ${(err as Error).message}`, { cause: err });
    }
  }
}
