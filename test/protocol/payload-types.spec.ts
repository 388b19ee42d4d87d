import fc from 'fast-check';
import { WireCodecError, WireOptionsError } from '../../lib/errors.js';
import { MsgpackCodec } from '../../lib/protocol/codec.js';
import { resolveClientOptions, resolveServerOptions } from '../../lib/options.js';
import { plain, readStrict } from '../helpers/strict-msgpack.js';

const json = new MsgpackCodec();
const native = new MsgpackCodec({ payloadTypes: 'native' });
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const roundTrip = (codec: MsgpackCodec, value: unknown) => codec.decode(codec.encode(value));

class Point {
  constructor(
    public x: number,
    public y: number,
  ) {}
  get length() {
    return Math.hypot(this.x, this.y);
  }
}

/**
 * Every kind of JS value a handler might send, including each one msgpackr has a private
 * extension for (undefined, Set, Map, Error, RegExp, typed arrays, big BigInts, repeated
 * object shapes that records would compress, long strings it would bundle).
 */
function catalogue(): Array<[string, unknown]> {
  const shape = () => ({ id: 1, name: 'n', tags: ['a'] });
  return [
    [
      'integers',
      [
        0,
        1,
        127,
        128,
        255,
        256,
        65535,
        65536,
        2 ** 31,
        2 ** 32 - 1,
        2 ** 32,
        2 ** 40,
        2 ** 53,
        2 ** 60,
        2 ** 64,
        -1,
        -32,
        -33,
        -128,
        -129,
        -32768,
        -32769,
        -(2 ** 31),
        -(2 ** 31) - 1,
        -(2 ** 53),
        -(2 ** 63),
        -(2 ** 64),
      ],
    ],
    ['floats', [0.5, -1.25, 1e300, -1e-300, Number.EPSILON, NaN, Infinity, -Infinity, -0]],
    [
      'strings',
      [
        '',
        'a',
        'x'.repeat(31),
        'x'.repeat(32),
        'x'.repeat(255),
        'x'.repeat(256),
        'x'.repeat(65535),
        'x'.repeat(65536),
        'é'.repeat(20),
        'é'.repeat(200),
        '😀'.repeat(30),
        '\ud800',
        'a\udc00'.repeat(40),
      ],
    ],
    ['booleans and null', [true, false, null]],
    ['undefined everywhere', { a: undefined, b: [undefined, 1], c: { d: undefined } }],
    ['top-level undefined', undefined],
    ['bigints', [0n, 5n, -5n, 2n ** 40n, 2n ** 63n - 1n, 2n ** 64n - 1n, -(2n ** 63n)]],
    [
      'dates',
      [
        new Date(0),
        new Date('2026-12-01T08:00:00.123Z'),
        new Date(-1),
        new Date(2 ** 34 * 1000),
        new Date(-8.64e15),
        new Date(8.64e15),
      ],
    ],
    ['toJSON', { toJSON: () => ({ replaced: true }) }],
    ['class instance', new Point(3, 4)],
    [
      'map',
      new Map<unknown, unknown>([
        ['a', 1],
        [2, 'b'],
        [{ k: 1 }, [1]],
        ['u', undefined],
      ]),
    ],
    ['set', new Set([1, 'a', { b: 2 }])],
    ['buffer', Buffer.from([1, 2, 3])],
    ['uint8array', new Uint8Array([4, 5, 6])],
    [
      'typed arrays',
      [
        new Int8Array([-1]),
        new Uint16Array([65535]),
        new Float32Array([1.5]),
        new Float64Array([2.5]),
        new BigInt64Array([5n]),
        new Uint8ClampedArray([9]),
        new DataView(new ArrayBuffer(2)),
      ],
    ],
    ['arraybuffer', new Uint8Array([7, 8]).buffer],
    ['regexp', /(a+)+$/g],
    ['error', Object.assign(new Error('boom'), { code: 'E_X' })],
    ['symbol and function', { s: Symbol('s'), f: () => 1, [Symbol('k')]: 1, arr: [Symbol('t'), () => 2] }],
    ['boxed primitives', [new Number(1), new String('s'), new Boolean(false), Object(2n)]],
    ['repeated shapes', Array.from({ length: 100 }, shape)],
    ['many strings', Array.from({ length: 300 }, (_, i) => `string number ${i}`)],
    ['null prototype', Object.assign(Object.create(null) as object, { a: 1 })],
    ['sparse array', [1, , 3]], // eslint-disable-line no-sparse-arrays
    ['deep', JSON.parse('['.repeat(500) + ']'.repeat(500)) as unknown],
    [
      'map skipping entries',
      Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, i % 8 === 0 ? undefined : i])),
    ],
  ];
}

describe('payload encoding writes standard msgpack only', () => {
  it.each(catalogue())('%s, in both modes', (_name, value) => {
    for (const codec of [json, native]) {
      let bytes: Uint8Array;
      try {
        bytes = codec.encode(value);
      } catch (err) {
        // Only what the mode documents as refused, as a typed error.
        expect(err).toBeInstanceOf(WireCodecError);
        expect(codec.payloadTypes).toBe('native');
        continue;
      }
      expect(() => readStrict(bytes)).not.toThrow();
      expect(() => codec.decode(bytes)).not.toThrow();
    }
  });

  it('holds for arbitrary values (property)', () => {
    fc.assert(
      fc.property(anyValue, (value) => {
        readStrict(json.encode(value)); // 'json' encodes everything fc.anything makes
        let bytes: Uint8Array;
        try {
          bytes = native.encode(value);
        } catch (err) {
          expect(err).toBeInstanceOf(WireCodecError);
          expect((err as Error).message).toMatch(/Map key|invalid Date|BigInt/); // documented refusals
          return;
        }
        readStrict(bytes);
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 300) },
    );
  });
});

const key = fc.string().filter((k) => k !== '__proto__');
const anyValue = fc.anything({
  key,
  withDate: true,
  withMap: true,
  withSet: true,
  withBoxedValues: true,
  withNullPrototype: true,
  withSparseArray: true,
  withObjectString: true,
  withUnicodeString: true,
});

describe("payloadTypes 'json' (default)", () => {
  it('delivers what JSON.stringify + JSON.parse would (property)', () => {
    fc.assert(
      fc.property(anyValue, (value) => {
        const viaJson: unknown = value === undefined ? null : JSON.parse(JSON.stringify(value));
        expect(roundTrip(json, value)).toEqual(viaJson);
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 500) },
    );
  });

  it('is the default of MsgpackCodec, WireServer and WireClient', () => {
    expect(json.payloadTypes).toBe('json');
    expect((resolveServerOptions().codec as MsgpackCodec).payloadTypes).toBe('json');
    expect((resolveClientOptions().codec as MsgpackCodec).payloadTypes).toBe('json');
    expect((resolveServerOptions({ payloadTypes: 'native' }).codec as MsgpackCodec).payloadTypes).toBe('native');
    expect((resolveClientOptions({ payloadTypes: 'native' }).codec as MsgpackCodec).payloadTypes).toBe('native');
  });

  it('sends a Date as its ISO string and an invalid Date as null', () => {
    const placedAt = new Date('2026-12-01T08:00:00.123Z');
    expect(roundTrip(json, { placedAt })).toEqual({ placedAt: '2026-12-01T08:00:00.123Z' });
    expect(hex(json.encode(placedAt))).toBe('b8' + Buffer.from('2026-12-01T08:00:00.123Z').toString('hex'));
    expect(hex(json.encode(new Date(NaN)))).toBe('c0');
    for (const ms of [-8.64e15, -1, 0, 253402300799999, 253402300800000, 8.64e15]) {
      expect(roundTrip(json, new Date(ms))).toBe(new Date(ms).toISOString()); // years outside 0-9999 too
    }
  });

  it('honours toJSON, with the key JSON passes to it', () => {
    const echoKey = { toJSON: (k: string) => `key:${k}` };
    expect(roundTrip(json, { a: echoKey, b: [echoKey] })).toEqual({ a: 'key:a', b: ['key:0'] });
    expect(roundTrip(json, echoKey)).toBe('key:');
    expect(roundTrip(json, { gone: { toJSON: () => undefined }, kept: 1 })).toEqual({ kept: 1 });
    const self = {
      a: 1,
      toJSON() {
        return this;
      },
    };
    expect(roundTrip(json, self)).toEqual({ a: 1 });
  });

  it('keeps Buffer, Uint8Array and ArrayBuffer binary', () => {
    expect(hex(json.encode(Buffer.from([1, 2])))).toBe('c4020102');
    expect(hex(json.encode(new Uint8Array([1, 2]).subarray(1)))).toBe('c40102');
    expect(hex(json.encode(new Uint8Array([3]).buffer))).toBe('c40103');
    expect(roundTrip(json, { b: Buffer.from('hi') })).toEqual({ b: Buffer.from('hi') });
  });

  it('sends Map, Set, other typed arrays, RegExp and Error the way JSON does', () => {
    expect(roundTrip(json, new Map([['a', 1]]))).toEqual({});
    expect(roundTrip(json, new Set([1]))).toEqual({});
    expect(roundTrip(json, new Float32Array([1.5, 2]))).toEqual({ 0: 1.5, 1: 2 });
    expect(roundTrip(json, /x/)).toEqual({});
    expect(roundTrip(json, Object.assign(new Error('boom'), { code: 'E' }))).toEqual({ code: 'E' });
  });

  it('writes NaN and ±Infinity as nil and -0 as 0', () => {
    expect(hex(json.encode([NaN, Infinity, -Infinity, -0]))).toBe('94c0c0c000');
  });

  it('sends BigInt as a 64-bit integer, a BigInt.prototype.toJSON patch as JSON would, and refuses > 64 bits', () => {
    expect(hex(json.encode(2n ** 63n))).toBe('cf8000000000000000');
    expect(hex(json.encode(-(2n ** 63n)))).toBe('d38000000000000000');
    expect(hex(json.encode(7n))).toBe('07');
    expect(() => json.encode(2n ** 64n)).toThrow(WireCodecError);
    const proto = BigInt.prototype as unknown as { toJSON?: () => string };
    proto.toJSON = function (this: bigint) {
      return this.toString();
    };
    try {
      expect(roundTrip(json, { n: 2n ** 70n })).toEqual({ n: String(2n ** 70n) });
    } finally {
      delete proto.toJSON;
    }
  });

  it('decodes a timestamp from another peer as its ISO string (null when out of Date range)', () => {
    expect(json.decode(Buffer.from('d6ff00000001', 'hex'))).toBe('1970-01-01T00:00:01.000Z'); // 32-bit
    expect(json.decode(Buffer.from('81a174d7ff0000000400000001', 'hex'))).toEqual({ t: '1970-01-01T00:00:01.000Z' }); // 64-bit, 1 ns
    expect(json.decode(Buffer.from('91c70cff000000007fffffffffffffff', 'hex'))).toEqual([null]); // 96-bit, beyond Date
    expect(native.decode(Buffer.from('d6ff00000001', 'hex'))).toEqual(new Date(1000));
    // Binary data full of 0xff (which the timestamp scan looks for) stays binary, a timestamp next to it a string.
    const ff = Buffer.alloc(100_000, 0xff);
    expect(roundTrip(json, { ff })).toEqual({ ff });
    expect(
      json.decode(
        Buffer.concat([Buffer.from('92c50100', 'hex'), ff.subarray(0, 256), Buffer.from('d6ff00000001', 'hex')]),
      ),
    ).toEqual([ff.subarray(0, 256), '1970-01-01T00:00:01.000Z']);
  });
});

describe('integers on the wire', () => {
  it('sends every safe integer as a msgpack integer of the smallest width, in both modes', () => {
    const cases: Array<[number, string]> = [
      [2 ** 32, 'cf0000000100000000'],
      [2 ** 40 + 5, 'cf0000010000000005'],
      [Number.MAX_SAFE_INTEGER, 'cf001fffffffffffff'],
      [-(2 ** 31) - 1, 'd3ffffffff7fffffff'],
      [Number.MIN_SAFE_INTEGER, 'd3ffe0000000000001'],
      [2 ** 32 - 1, 'ceffffffff'],
      [-(2 ** 31), 'd280000000'],
      [6, '06'],
    ];
    for (const [n, bytes] of cases) {
      expect(hex(json.encode(n))).toBe(bytes);
      expect(hex(native.encode(n))).toBe(bytes);
      expect(readStrict(json.encode(n))).toBe(n);
    }
  });

  it("beyond 2^53: 'json' sends integers up to 64 bits as integers, 'native' sends numbers as float64", () => {
    expect(hex(json.encode(2 ** 60))).toBe('cf1000000000000000');
    expect(hex(json.encode(-(2 ** 63)))).toBe('d38000000000000000');
    expect(hex(json.encode(2 ** 64))).toBe('cb43f0000000000000'); // no 64-bit integer holds it
    expect(hex(native.encode(2 ** 60))).toBe('cb43b0000000000000');
    expect(roundTrip(json, 2 ** 60)).toBe(2 ** 60);
    expect(roundTrip(native, 2 ** 60)).toBe(2 ** 60);
  });

  it("decodes a 64-bit integer beyond 2^53 to the nearest number ('json') or a BigInt ('native')", () => {
    const u = Buffer.from('cf8000000000000001', 'hex'); // 2^63 + 1
    const i = Buffer.from('d3ffdfffffffffffff', 'hex'); // -(2^53) - 1
    expect(json.decode(u)).toBe(Number(2n ** 63n + 1n));
    expect(json.decode(u)).toBe(JSON.parse(String(2n ** 63n + 1n)));
    expect(json.decode(i)).toBe(JSON.parse(String(-(2n ** 53n) - 1n)));
    expect(native.decode(u)).toBe(2n ** 63n + 1n);
    expect(native.decode(i)).toBe(-(2n ** 53n) - 1n);
    expect(native.decode(Buffer.from('cf0000000000000005', 'hex'))).toBe(5); // safe: a number
  });
});

describe("payloadTypes 'native'", () => {
  it('round-trips Date, BigInt, NaN, ±Infinity and -0', () => {
    const dates = [
      new Date(0),
      new Date('2026-12-01T08:00:00.123Z'),
      new Date(-1500),
      new Date(2 ** 34 * 1000 + 7),
      new Date(8.64e15),
    ];
    for (const d of dates) expect(roundTrip(native, d)).toEqual(d);
    expect(hex(native.encode(new Date(1000)))).toBe('d6ff00000001');
    for (const n of [2n ** 63n - 1n, -(2n ** 63n), 2n ** 64n - 1n, 2n ** 53n + 1n])
      expect(roundTrip(native, n)).toBe(n);
    expect(roundTrip(native, [NaN, Infinity, -Infinity])).toEqual([NaN, Infinity, -Infinity]);
    expect(Object.is(roundTrip(native, -0), -0)).toBe(true);
  });

  it('sends Map as a map, Set as an array, typed arrays as their bytes', () => {
    expect(
      roundTrip(
        native,
        new Map<unknown, unknown>([
          ['a', 1],
          [2, 'b'],
        ]),
      ),
    ).toEqual({ a: 1, 2: 'b' });
    expect(roundTrip(native, new Set([1, 'a']))).toEqual([1, 'a']);
    expect(roundTrip(native, new Float32Array([1.5]))).toEqual(Buffer.from(new Float32Array([1.5]).buffer));
    expect(roundTrip(native, { toJSON: () => 'still honoured' })).toBe('still honoured');
  });

  it('refuses an invalid Date and a BigInt beyond 64 bits with WireCodecError', () => {
    expect(() => native.encode({ at: new Date(NaN) })).toThrow(WireCodecError);
    expect(() => native.encode(2n ** 64n)).toThrow(WireCodecError);
    expect(() => native.encode(-(2n ** 63n) - 1n)).toThrow(WireCodecError);
  });
});

describe('MsgpackEncoder buffers', () => {
  it('never rewrites bytes it has returned, across slab growth', () => {
    const values: unknown[] = [];
    for (let i = 0; i < 400; i++) {
      values.push(i % 50 === 0 ? { big: 'y'.repeat(300_000 + i) } : { i, s: 'z'.repeat(i * 10) });
    }
    values.push({ huge: 'h'.repeat(3 << 20) }, { after: 1 });
    const encoded = values.map((v) => json.encode(v));
    encoded.forEach((bytes, i) => expect(json.decode(bytes)).toEqual(values[i]));
  });

  it('gives a large value a buffer of about its size, and lets small ones share a slab', () => {
    for (const body of ['x'.repeat(65536), 'é'.repeat(100_000), 'y'.repeat(3 << 20)]) {
      const bytes = json.encode({ id: 1, body });
      expect(bytes.buffer.byteLength).toBeLessThan(bytes.length + 1024);
    }
    const many = json.encode(Array.from({ length: 50_000 }, (_, i) => ({ i })));
    expect(many.buffer.byteLength).toBeLessThanOrEqual(2 * many.length + 32 * 1024);
    const a = json.encode({ small: 1 });
    const b = json.encode({ small: 2 });
    expect(a.buffer).toBe(b.buffer);
    expect(a.buffer.byteLength).toBeLessThanOrEqual(32 * 1024); // SLAB_BYTES
    expect(json.decode(a)).toEqual({ small: 1 }); // b went after a, not over it
  });

  it('drops the right map entries when their values are left out, whatever the header width', () => {
    for (const n of [1, 15, 16, 17, 300, 70_000]) {
      const obj: Record<string, unknown> = {};
      for (let i = 0; i < n; i++) obj[`k${i}`] = i % 2 === 0 ? undefined : i;
      const bytes = json.encode(obj);
      expect(plain(readStrict(bytes))).toEqual(JSON.parse(JSON.stringify(obj)));
    }
  });

  it('encodes lone surrogates as U+FFFD, as Buffer does, in short and long strings', () => {
    for (const s of ['\ud800', 'a\udc00b', '\ud83d'.repeat(100), 'x'.repeat(70) + '\udfff']) {
      expect(roundTrip(json, s)).toBe(Buffer.from(s).toString());
    }
  });

  it('lets a toJSON encode with the same codec while it runs', () => {
    const inner = { toJSON: () => Buffer.from(json.encode({ nested: 1 })).toString('hex') };
    expect(roundTrip(json, { inner })).toEqual({ inner: hex(json.encode({ nested: 1 })) });
  });

  it('reports a cycle, a throwing getter and a throwing toJSON as WireCodecError', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => json.encode(cyclic)).toThrow(WireCodecError);
    expect(() => json.encode(cyclic)).toThrow(/cyclic/);
    expect(() =>
      json.encode({
        get x() {
          throw new Error('getter');
        },
      }),
    ).toThrow(WireCodecError);
    expect(() =>
      json.encode({
        toJSON() {
          throw new Error('toJSON');
        },
      }),
    ).toThrow(WireCodecError);
    expect(roundTrip(json, { fine: true })).toEqual({ fine: true }); // the encoder is still usable
  });
});

describe('payloadTypes option', () => {
  it('is refused unless json or native, and together with codec', () => {
    expect(() => resolveServerOptions({ payloadTypes: 'binary' as never })).toThrow(WireOptionsError);
    expect(() => resolveClientOptions({ payloadTypes: 'binary' as never })).toThrow(
      /payloadTypes must be one of 'json', 'native'/,
    );
    expect(() => resolveClientOptions({ payloadTypes: 'native', codec: new MsgpackCodec() })).toThrow(WireOptionsError);
    expect(() => new MsgpackCodec({ payloadTypes: 'x' as never })).toThrow(WireOptionsError);
  });
});
