import { decode as referenceDecode } from 'msgpackr';
import { WireCodecError } from '../../lib/errors.js';
import { MsgpackCodec } from '../../lib/protocol/codec.js';
import { decodeHelloBody, encodeHelloBody } from '../../lib/protocol/hello.js';

describe('MsgpackCodec', () => {
  const codec = new MsgpackCodec();

  it('round-trips JSON-like values', () => {
    const value = { a: 1, b: 'two', c: [1.5, null, true], d: { e: -3 }, big: 2 ** 40 };
    expect(codec.decode(codec.encode(value))).toEqual(value);
  });

  it('writes standard msgpack maps, not msgpackr records', () => {
    const bytes = codec.encode({ x: 1, y: 2 });
    expect(bytes[0]).toBe(0x82); // fixmap of 2 entries
    expect(referenceDecode(bytes)).toEqual({ x: 1, y: 2 });
  });

  it('treats undefined as JSON does', () => {
    expect(codec.decode(codec.encode({ a: undefined, b: 1 }))).toEqual({ b: 1 });
    expect(codec.decode(codec.encode([undefined, 1]))).toEqual([null, 1]);
  });

  it('does not let a payload pollute Object.prototype', () => {
    // {"__proto__": {"polluted": true}, "constructor": {"prototype": {"polluted": true}}}
    const evil = Buffer.from(
      '82a95f5f70726f746f5f5f81a8706f6c6c75746564c3ab636f6e7374727563746f7281a970726f746f7479706581a8706f6c6c75746564c3',
      'hex',
    );
    const value = codec.decode(evil) as Record<string, unknown>;
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
  });

  it('reports undecodable bytes as WireCodecError', () => {
    expect(() => codec.decode(Buffer.from([0xc7, 1, 5, 0]))).toThrow(WireCodecError); // unknown extension
    expect(() => codec.decode(Buffer.from([0x92, 1]))).toThrow(WireCodecError); // truncated
    expect(() => codec.decode(Buffer.from([1, 2]))).toThrow(WireCodecError); // trailing bytes
  });

  it('reports unencodable values as WireCodecError', () => {
    expect(() => codec.encode(2n ** 70n)).toThrow(WireCodecError);
  });

  it('writes the next value over a recycled one only if it is the last value encoded', () => {
    const own = new MsgpackCodec();
    const a = own.encode({ id: 1, body: 'a' });
    const b = own.encode({ id: 2, body: 'b' });
    own.recycle(a); // not the last: kept
    const c = own.encode({ id: 3, body: 'c' });
    expect(c.byteOffset).toBe(b.byteOffset + b.length);
    expect(own.decode(a)).toEqual({ id: 1, body: 'a' });
    own.recycle(c);
    const d = own.encode({ id: 4, body: 'd' });
    expect(d.buffer).toBe(c.buffer);
    expect(d.byteOffset).toBe(c.byteOffset);
    expect(own.decode(b)).toEqual({ id: 2, body: 'b' });
    // Two values recycled last first (a REQUEST's payload, then its metadata): both are taken back.
    const payload = own.encode({ id: 5, body: 'e' });
    const meta = own.encode({ trace: 'x' });
    own.recycle(meta);
    own.recycle(payload);
    const six = own.encode(6);
    expect(six.byteOffset).toBe(payload.byteOffset);
    // A large value has a buffer of its own; recycling it leaves the shared slab alone.
    const large = own.encode('x'.repeat(20_000));
    own.recycle(large);
    const e = own.encode(5);
    expect(e.byteOffset).toBe(six.byteOffset + six.length);
  });

  it('does not alias the input buffer in decoded binary values', () => {
    const input = Buffer.from(codec.encode({ bin: Buffer.from([1, 2, 3]) }));
    const out = codec.decode(input) as { bin: Uint8Array };
    input.fill(0);
    expect([...out.bin]).toEqual([1, 2, 3]);
  });
});

describe('HELLO body', () => {
  it('round-trips', () => {
    const hello = {
      version: 1,
      codec: 1,
      features: 0,
      maxFrameSize: 16 << 20,
      maxInFlight: 1024,
      heartbeatMs: 5000,
      extension: Buffer.from([0x80]),
    };
    expect(decodeHelloBody(encodeHelloBody(hello))).toEqual(hello);
  });

  it('refuses a short body', () => {
    expect(() => decodeHelloBody(Buffer.alloc(3))).toThrow('shorter');
  });
});
