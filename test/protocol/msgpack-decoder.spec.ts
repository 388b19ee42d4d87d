import fc from 'fast-check';
import { Unpackr, type Options } from 'msgpackr';
import { WireCodecError } from '../../lib/errors.js';
import { MsgpackCodec } from '../../lib/protocol/codec.js';
import { decodeCommonMsgpack, NOT_COMMON } from '../../lib/protocol/msgpack-decoder.js';
import { lastValidated, validateMsgpack } from '../../lib/protocol/msgpack-validator.js';
import { datesToJson } from '../../lib/protocol/json-dates.js';

/** msgpackr with the codec's decoding options ('json' payload types). */
const reference = new Unpackr({
  useRecords: false,
  moreTypes: false,
  copyBuffers: true,
  int64AsType: 'number',
  mapsAsObjects: true,
} as unknown as Options);

const codec = new MsgpackCodec();

/** Decodes `bytes` both ways; the common decoder must agree with msgpackr or step aside. */
function agree(bytes: Uint8Array): unknown {
  validateMsgpack(bytes, 1 << 30);
  const ascii = lastValidated.allStringsAscii;
  const common = decodeCommonMsgpack(bytes, ascii);
  const expected: unknown = reference.unpack(bytes);
  if (common !== NOT_COMMON) {
    expect(common).toStrictEqual(expected);
    // Without the validator's word, the decoder looks at the bytes itself: same value.
    expect(decodeCommonMsgpack(bytes)).toStrictEqual(expected);
  }
  // 'json' payload types: a timestamp arrives as its ISO string.
  expect(codec.decode(bytes)).toStrictEqual(datesToJson(reference.unpack(bytes)));
  return common;
}

// Strings of every kind: ASCII (short, long, past the JS-checked length), 2-, 3- and 4-byte UTF-8.
const text = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.string({ minLength: 200, maxLength: 700 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: 'binary', minLength: 100, maxLength: 400 }),
);
const scalar = fc.oneof(
  text,
  fc.integer(),
  fc.integer({ min: -200, max: 300 }),
  fc.double({ noNaN: true }),
  fc.boolean(),
  fc.constant(null),
  fc.maxSafeInteger(),
);
const { value } = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, scalar, tie('array'), tie('object')),
  array: fc.array(tie('value'), { maxLength: 6 }),
  object: fc.dictionary(text, tie('value'), { maxKeys: 6 }),
}));

describe('decodeCommonMsgpack', () => {
  it('reads what the encoder writes into the values msgpackr reads (or leaves it to msgpackr)', () => {
    fc.assert(
      fc.property(value, (v) => {
        agree(codec.encode(v));
      }),
      { numRuns: 2000 },
    );
  });

  it('reads a call payload of every size itself', () => {
    for (const size of [0, 1, 16, 17, 128, 256, 257, 4096, 65536]) {
      const ascii = { id: size, body: 'x'.repeat(size) };
      expect(agree(codec.encode(ascii))).toStrictEqual(ascii);
      const accented = { id: -size - 1, body: 'é'.repeat(size) };
      expect(agree(codec.encode(accented))).toStrictEqual(accented);
    }
  });

  it('reads map keys that share a key-cache slot (same length, first, second and last byte) each as itself', () => {
    for (let round = 0; round < 3; round++) {
      for (const key of ['abXc', 'abYc', 'abXc', 'ab\u00e9c', 'abXc']) {
        expect(agree(codec.encode({ [key]: key }))).toStrictEqual({ [key]: key });
      }
    }
  });

  it('still refuses invalid UTF-8 in strings of every length the ASCII checks handle', () => {
    for (const n of [5, 33, 100, 192, 193, 300]) {
      const body = Buffer.alloc(n, 0x61);
      body[n - 1] = 0xff; // never valid in UTF-8
      const bytes = Buffer.concat([Buffer.from([0xda, n >> 8, n & 0xff]), body]);
      expect(() => codec.decode(bytes)).toThrow(WireCodecError);
      body[n - 1] = 0x61;
      expect(agree(Buffer.concat([Buffer.from([0xda, n >> 8, n & 0xff]), body]))).toBe('a'.repeat(n));
    }
  });

  it('reads every integer width up to 32 bits', () => {
    for (const n of [
      0,
      127,
      128,
      255,
      256,
      65535,
      65536,
      2 ** 32 - 1,
      -1,
      -32,
      -33,
      -128,
      -129,
      -32768,
      -32769,
      -(2 ** 31),
    ]) {
      expect(agree(codec.encode({ n }))).toStrictEqual({ n });
    }
  });

  it('leaves binary, 64-bit integers, float32, timestamps, non-string keys and __proto__ to msgpackr', () => {
    const cases = [
      Buffer.from([0xc4, 2, 1, 2]), // bin 8
      Buffer.from([0xcf, 0, 0, 0, 1, 0, 0, 0, 0]), // uint64
      Buffer.from([0xd3, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 0]), // int64
      Buffer.from([0xca, 0x3f, 0xc0, 0, 0]), // float32 1.5
      Buffer.from([0xd6, 0xff, 0, 0, 0, 1]), // timestamp 32
      Buffer.from([0x81, 0x01, 0xa1, 0x61]), // { 1: 'a' }
      Buffer.from([0x91, 0x81, 0xa9, ...Buffer.from('__proto__'), 0xc3]), // [{ __proto__: true }]
    ];
    for (const bytes of cases) expect(agree(bytes)).toBe(NOT_COMMON);
    // The validator tells the codec beforehand for all but the keys, which only decoding meets.
    expect(
      cases.map((bytes) => {
        validateMsgpack(bytes, 1 << 30);
        return lastValidated.commonTypesOnly;
      }),
    ).toEqual([false, false, false, false, false, true, true]);
  });
});
