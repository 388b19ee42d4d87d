import { WireHandshakeError } from '../../lib/errors.js';
import { decodeHelloBody, encodeHelloBody, HELLO_FIXED_BYTES, type Hello } from '../../lib/protocol/hello.js';

const base: Hello = {
  version: 1,
  codec: 1,
  features: 0x0113,
  maxFrameSize: 16 << 20,
  maxInFlight: 1024,
  heartbeatMs: 5000,
  extension: null,
};

describe('HELLO body', () => {
  it('round-trips every field, at zero and at the largest value of its width', () => {
    for (const hello of [
      base,
      { ...base, version: 0, codec: 0, features: 0, maxFrameSize: 0, maxInFlight: 0, heartbeatMs: 0 },
      {
        ...base,
        version: 0xff,
        codec: 0xff,
        features: 0xffff,
        maxFrameSize: 0xffffffff,
        maxInFlight: 0xffffffff,
        heartbeatMs: 0xffffffff,
      },
    ]) {
      const body = encodeHelloBody(hello);
      expect(body.length).toBe(HELLO_FIXED_BYTES);
      expect(decodeHelloBody(body)).toEqual(hello);
    }
  });

  it('lays the fixed part out as docs/PROTOCOL.md says: u8 version, u8 codec, u16 features, u32 × 3, big-endian', () => {
    const body = encodeHelloBody({
      ...base,
      version: 1,
      codec: 2,
      features: 0x0304,
      maxFrameSize: 0x05060708,
      maxInFlight: 0x090a0b0c,
      heartbeatMs: 0x0d0e0f10,
    });
    expect([...body]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
  });

  it('carries an extension after the fixed part, and decodes its absence as null', () => {
    const extension = Buffer.from('credentials, codec-encoded');
    const body = encodeHelloBody({ ...base, extension });
    expect(body.length).toBe(HELLO_FIXED_BYTES + extension.length);
    expect(decodeHelloBody(body)).toEqual({ ...base, extension });
    expect(decodeHelloBody(encodeHelloBody({ ...base, extension: new Uint8Array(0) })).extension).toBeNull();
  });

  it('copies the extension: a later reuse of the read buffer does not change it', () => {
    const body = encodeHelloBody({ ...base, extension: Buffer.from([1, 2, 3]) });
    const hello = decodeHelloBody(body);
    body.fill(0xee);
    expect([...hello.extension!]).toEqual([1, 2, 3]);
  });

  it('refuses a body shorter than the fixed part, typed, saying how short', () => {
    for (const length of [0, 1, HELLO_FIXED_BYTES - 1]) {
      let err: unknown;
      try {
        decodeHelloBody(Buffer.alloc(length));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(WireHandshakeError);
      expect((err as WireHandshakeError).code).toBe('WIRE_HANDSHAKE');
      expect((err as Error).message).toBe(`HELLO body of ${length} bytes is shorter than ${HELLO_FIXED_BYTES}`);
    }
  });
});
