import fc from 'fast-check';
import { HEADER_SIZE, LENGTH_SIZE, MIN_MAX_FRAME_SIZE } from '../../lib/protocol/frame.js';
import { decodeTransportError, encodeTransportError } from '../../lib/protocol/transport-error.js';

const FRAME_OVERHEAD = HEADER_SIZE - LENGTH_SIZE;

/** docs/PROTOCOL.md §2.4: a transport error is truncated to fit the peer's maxFrameSize, at a UTF-8 boundary. */
describe('encodeTransportError within a frame limit', () => {
  it('leaves a message that fits untouched, and cuts one that does not to exactly what fits', () => {
    const body = encodeTransportError('WIRE_PROTOCOL', 'x'.repeat(2000), MIN_MAX_FRAME_SIZE);
    expect(FRAME_OVERHEAD + body.length).toBe(MIN_MAX_FRAME_SIZE);
    expect(decodeTransportError(body)).toEqual({ code: 'WIRE_PROTOCOL', message: 'x'.repeat(MIN_MAX_FRAME_SIZE - FRAME_OVERHEAD - 14) });
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
          if (FRAME_OVERHEAD + 1 + code.length + whole.length <= limit) expect(text).toBe(Buffer.from(message).toString('utf8'));
          expect(decodeTransportError(body).code).toBe(code);
        },
      ),
      { numRuns: 500 },
    );
  });
});
