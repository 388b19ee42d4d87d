import fc from 'fast-check';
import { WireProtocolError } from '../../lib/errors.js';
import { HEADER_SIZE, LENGTH_SIZE, MIN_MAX_FRAME_SIZE } from '../../lib/protocol/frame.js';
import { decodeTransportError, encodeTransportError } from '../../lib/protocol/transport-error.js';

const FRAME_OVERHEAD = HEADER_SIZE - LENGTH_SIZE;

/** docs/PROTOCOL.md §2.4: a transport error is truncated to fit the peer's maxFrameSize, at a UTF-8 boundary. */
describe('encodeTransportError within a frame limit', () => {
  it('leaves a message that fits untouched, and cuts one that does not to exactly what fits', () => {
    const body = encodeTransportError('WIRE_PROTOCOL', 'x'.repeat(2000), MIN_MAX_FRAME_SIZE);
    expect(FRAME_OVERHEAD + body.length).toBe(MIN_MAX_FRAME_SIZE);
    expect(decodeTransportError(body)).toEqual({
      code: 'WIRE_PROTOCOL',
      message: 'x'.repeat(MIN_MAX_FRAME_SIZE - FRAME_OVERHEAD - 14),
    });
    expect(decodeTransportError(encodeTransportError('WIRE_X', 'short', MIN_MAX_FRAME_SIZE)).message).toBe('short');
  });

  it('never splits a multi-byte character: the cut backs up to the start of the character', () => {
    // 'é' is 2 bytes and '😀' 4: the room left (1024 - 6 - 1 - 6 = 1011 bytes) falls inside one.
    for (const unit of ['é', '😀', '€']) {
      const body = encodeTransportError('WIRE_X', unit.repeat(1000), MIN_MAX_FRAME_SIZE);
      const message = new TextDecoder('utf-8', { fatal: true }).decode(body.subarray(7));
      expect(unit.repeat(1000).startsWith(message)).toBe(true);
      expect(FRAME_OVERHEAD + body.length).toBeLessThanOrEqual(MIN_MAX_FRAME_SIZE);
      expect(FRAME_OVERHEAD + body.length).toBeGreaterThan(MIN_MAX_FRAME_SIZE - Buffer.byteLength(unit));
    }
  });

  it('for any code, message and limit ≥ the protocol minimum: fits, stays valid UTF-8, is a prefix of the message', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 40 }).map((s) => s.replace(/[^\x20-\x7e]/g, 'A')),
        fc.string({ unit: 'binary', maxLength: 3000 }),
        fc.integer({ min: MIN_MAX_FRAME_SIZE, max: 4096 }),
        (code, message, limit) => {
          const body = encodeTransportError(code, message, limit);
          expect(FRAME_OVERHEAD + body.length).toBeLessThanOrEqual(limit);
          const text = new TextDecoder('utf-8', { fatal: true }).decode(body.subarray(1 + body[0]));
          const whole = Buffer.from(message, 'utf8');
          expect(whole.subarray(0, Buffer.byteLength(text)).toString('utf8')).toBe(text);
          if (FRAME_OVERHEAD + 1 + code.length + whole.length <= limit)
            expect(text).toBe(Buffer.from(message).toString('utf8'));
          expect(decodeTransportError(body).code).toBe(code);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('transport error round trip', () => {
  it('decodes what it encodes: code as ASCII, message as UTF-8 (empty included)', () => {
    for (const [code, message] of [
      ['WIRE_PROTOCOL', 'unknown frame type 77'],
      ['WIRE_DRAINING', ''],
      ['X', 'é 😀 € — and a NUL \u0000 inside'],
    ]) {
      const body = encodeTransportError(code, message);
      expect(body[0]).toBe(code.length);
      expect(decodeTransportError(body)).toEqual({ code, message });
    }
  });

  it('keeps at most 255 bytes of code (its length is a u8)', () => {
    const body = encodeTransportError('C'.repeat(300), 'm');
    expect(body[0]).toBe(255);
    expect(decodeTransportError(body)).toEqual({ code: 'C'.repeat(255), message: 'm' });
  });

  it('sends an empty message when the limit leaves no room for one, and still the whole code', () => {
    const body = encodeTransportError('WIRE_X', 'message', FRAME_OVERHEAD + 1 + 6);
    expect(decodeTransportError(body)).toEqual({ code: 'WIRE_X', message: '' });
  });

  it('refuses a body that is empty or shorter than its code length, typed', () => {
    for (const body of [Buffer.alloc(0), Buffer.from([5, 0x41, 0x42]), Buffer.from([255])]) {
      let err: unknown;
      try {
        decodeTransportError(body);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(WireProtocolError);
      expect((err as WireProtocolError).code).toBe('WIRE_PROTOCOL');
      expect((err as Error).message).toBe('transport error body is truncated');
    }
    expect(decodeTransportError(Buffer.from([2, 0x41, 0x42]))).toEqual({ code: 'AB', message: '' }); // exactly long enough
  });
});
