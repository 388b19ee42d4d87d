import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { WireCodecError, WireLimitError } from '../../lib/index.js';
import { MsgpackCodec } from '../../lib/protocol/codec.js';
import { validateMsgpack } from '../../lib/protocol/msgpack-validator.js';
import { params } from '../helpers/fuzz.js';

/**
 * The strict pre-scan against arbitrary input: it never throws anything but a typed
 * WIRE_CODEC / WIRE_LIMIT error, whatever it accepts msgpackr decodes, and it accepts
 * every standard encoding of a JSON-like value.
 */
const codec = new MsgpackCodec();
const bare = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true });

describe('msgpack validator fuzz', () => {
  it('random bytes: a typed refusal, or a decode', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          validateMsgpack(bytes, 1 << 20);
        } catch (err) {
          return err instanceof WireCodecError || err instanceof WireLimitError;
        }
        try {
          bare.unpack(bytes);
        } catch {
          // Standard msgpack the JS mapping cannot hold (a map as a map key): the codec refuses it typed.
          expect(() => codec.decode(bytes)).toThrow(WireCodecError);
        }
        return true;
      }),
      params(20_000),
    );
  });

  it('standard encodings of JSON-like values are accepted and round-trip', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        // A "__proto__" key is renamed by msgpackr on purpose (prototype pollution): not a round trip.
        fc.pre(!JSON.stringify(value).includes('"__proto__"'));
        const bytes = codec.encode(value);
        validateMsgpack(bytes, 1 << 30);
        expect(JSON.stringify(codec.decode(bytes))).toBe(JSON.stringify(value));
      }),
      params(2_000),
    );
  });

  it('mutated standard encodings: a typed refusal or a decode', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.nat(), fc.integer({ min: 0, max: 255 }), (value, at, byte) => {
        const bytes = Buffer.from(codec.encode(value));
        bytes[at % bytes.length] = byte;
        try {
          codec.decode(bytes);
        } catch (err) {
          return err instanceof WireCodecError || err instanceof WireLimitError;
        }
        return true;
      }),
      params(5_000),
    );
  });
});
