import { MsgpackCodec } from '../../lib/protocol/codec.js';
import { FrameType, RESPONSE_END } from '../../lib/protocol/frame.js';
import { FrameEncoder } from '../../lib/protocol/frame-encoder.js';
import { encodeTransportError } from '../../lib/protocol/transport-error.js';

/** The byte-level examples of docs/PROTOCOL.md, checked against the encoder. */
describe('docs/PROTOCOL.md examples', () => {
  const codec = new MsgpackCodec();
  const hex = (chunks: Buffer[] | null) => Buffer.concat(chunks ?? []).toString('hex');

  it('REQUEST sum [1, 2, 3] with a 30 s budget', () => {
    const enc = new FrameEncoder();
    enc.encodeCall(FrameType.REQUEST, 1, 'sum', 30_000, null, codec.encode([1, 2, 3]), 1 << 20);
    expect(hex(enc.take())).toBe('00000013' + '02' + '01' + '00000001' + '00007530' + '0003' + '73756d' + '93010203');
  });

  it('RESPONSE 6 with END', () => {
    const enc = new FrameEncoder();
    enc.encodeResponse(1, RESPONSE_END, codec.encode(6));
    expect(hex(enc.take())).toBe('00000007' + '04' + '01' + '00000001' + '06');
  });

  it('transport error layout', () => {
    expect(encodeTransportError('WIRE_X', 'bad').toString('hex')).toBe(
      '06' + Buffer.from('WIRE_X').toString('hex') + '626164',
    );
  });
});
