import { Unpackr, type Options } from 'msgpackr';
import { WireCodecError, WireOptionsError } from '../errors.js';
import { MsgpackEncoder, type PayloadTypes } from './msgpack-encoder.js';
import { datesToJson, mayHoldTimestamp } from './json-dates.js';
import { decodeCommonMsgpack, NOT_COMMON } from './msgpack-decoder.js';

import { DEFAULT_DECODE_LIMIT_BYTES, lastValidated, validateMsgpack, type DecodeBudget } from './msgpack-validator.js';

export type { PayloadTypes } from './msgpack-encoder.js';

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

export interface MsgpackCodecOptions {
  /** How JS values map to msgpack: `'json'` (default, as over Nest TCP) or `'native'`. README "Payload types". */
  payloadTypes?: PayloadTypes;
}

/**
 * Decoding with msgpackr (`int64AsType` is supported at runtime but missing from its typings):
 * - `copyBuffers: true`: binary values must not alias the reusable read buffer.
 * - `int64AsType`: `'number'` in 'json' mode (the nearest double, as `JSON.parse` reads a long
 *   integer); `'auto'` in 'native' mode (a number up to 2^53, a BigInt beyond).
 * - Maps decode to plain objects; msgpackr drops `__proto__` keys while decoding.
 */
function unpackOptions(types: PayloadTypes): Options {
  return {
    useRecords: false,
    moreTypes: false,
    copyBuffers: true,
    int64AsType: types === 'json' ? 'number' : 'auto',
    mapsAsObjects: true,
  } as unknown as Options;
}

/**
 * msgpack in its standard form, readable by any msgpack library (docs/PROTOCOL.md §5). Encoding
 * is nest-wire's own (msgpack-encoder.ts): it writes standard types only, integers as integers,
 * and maps JS values per `payloadTypes`; decoding is msgpackr's, except for values made only of
 * the common types (msgpack-decoder.ts reads those into the same values, in one walk).
 */
export class MsgpackCodec implements WireCodec {
  readonly id = MSGPACK_CODEC_ID;
  readonly name = 'msgpack';
  readonly payloadTypes: PayloadTypes;
  private readonly encoder: MsgpackEncoder;
  private readonly unpackr: Unpackr;
  /** 'json' mode: a received timestamp becomes its ISO string, as a Date through JSON. */
  private readonly jsonDates: boolean;

  constructor(options: MsgpackCodecOptions = {}) {
    const types = options.payloadTypes ?? 'json';
    if (types !== 'json' && types !== 'native') {
      throw new WireOptionsError(`MsgpackCodec option payloadTypes must be 'json' or 'native', got ${String(types)}`);
    }
    this.payloadTypes = types;
    this.encoder = new MsgpackEncoder(types);
    this.unpackr = new Unpackr(unpackOptions(types));
    this.jsonDates = types === 'json';
  }

  encode(value: unknown): Uint8Array {
    try {
      return this.encoder.encode(value);
    } catch (err) {
      const message = (err as Error).message;
      // JSON.stringify names a cycle; a recursive walk only overflows the stack.
      const hint = err instanceof RangeError && /call stack/.test(message) ? ' (is the value cyclic?)' : '';
      throw new WireCodecError(`cannot encode value as msgpack: ${message}${hint}`, { cause: err });
    }
  }

  /** `bytes`, from the last `encode()`, have been copied and are not read again: their memory may be reused. */
  recycle(bytes: Uint8Array): void {
    this.encoder.recycle(bytes);
  }

  decode(bytes: Uint8Array, budget?: DecodeBudget): unknown {
    // Standard msgpack only, and no more heap than the budget: checked before msgpackr allocates.
    const estimate = validateMsgpack(bytes, budget === undefined ? DEFAULT_DECODE_LIMIT_BYTES : budget.maxBytes);
    if (budget !== undefined) budget.lastBytes = estimate;
    // The usual payload (maps, strings, small numbers) in one walk; what holds anything else,
    // timestamps included, goes to msgpackr as a whole (the validator has said which it is).
    if (lastValidated.commonTypesOnly) {
      const common = decodeCommonMsgpack(bytes, lastValidated.allStringsAscii);
      if (common !== NOT_COMMON) return common; // else a non-string or __proto__ key
    }
    try {
      const value: unknown = this.unpackr.unpack(bytes);
      return this.jsonDates && mayHoldTimestamp(bytes) ? datesToJson(value) : value;
    } catch (err) {
      throw new WireCodecError(`cannot decode msgpack payload: ${(err as Error).message}`, { cause: err });
    }
  }
}
