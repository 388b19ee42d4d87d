import { WireCodecError, WireFrameTooLargeError } from '../../lib/errors.js';
import { CallBody, readCallBody } from '../../lib/protocol/call-body.js';
import { FrameType, RESPONSE_END, RESPONSE_NO_VALUE } from '../../lib/protocol/frame.js';
import { FrameEncoder } from '../../lib/protocol/frame-encoder.js';
import { collectingDecoder, joinChunks } from '../helpers/frames.js';

/** `later` starts where `earlier` started, in the same memory: the encoder wrote over it. */
function expectWrittenOver(earlier: Buffer, later: Buffer): void {
  expect(later.buffer).toBe(earlier.buffer);
  expect(later.byteOffset).toBe(earlier.byteOffset);
}

function decodeAll(enc: FrameEncoder) {
  const { decoder, frames } = collectingDecoder({ maxFrameSize: 1 << 24, expectMagic: false });
  decoder.push(joinChunks(enc.take()));
  return frames;
}

describe('FrameEncoder', () => {
  it('writes a REQUEST whose body reads back field by field', () => {
    const enc = new FrameEncoder();
    const meta = Buffer.from([0x81, 0xa1, 0x61, 0xa1, 0x62]);
    enc.encodeCall(FrameType.REQUEST, 42, 'math.sum/ü', 1500, meta, Buffer.from([0x92, 1, 2]), 1 << 20);
    const [f] = decodeAll(enc);
    expect(f.type).toBe(FrameType.REQUEST);
    expect(f.id).toBe(42);
    const body = new CallBody();
    readCallBody(f.body, f.flags, body);
    expect(body.budgetMs).toBe(1500);
    expect(body.pattern).toBe('math.sum/ü');
    expect(body.metadata).toEqual(meta);
    expect(body.payload).toEqual(Buffer.from([0x92, 1, 2]));
  });

  it('leaves out deadline and metadata when absent', () => {
    const enc = new FrameEncoder();
    enc.encodeCall(FrameType.EVENT, 0, 'e', -1, null, Buffer.from([0xc0]), 1 << 20);
    const [f] = decodeAll(enc);
    expect(f.flags).toBe(0);
    expect(f.body).toEqual(Buffer.from([0, 1, 0x65, 0xc0]));
  });

  it('refuses a frame over the peer limit without encoding anything', () => {
    const enc = new FrameEncoder();
    expect(() => enc.encodeCall(FrameType.REQUEST, 1, 'p', -1, null, Buffer.alloc(2000), 1024)).toThrow(
      WireFrameTooLargeError,
    );
    expect(enc.pendingBytes).toBe(0);
    expect(enc.take()).toBeNull();
  });

  it('refuses a pattern longer than 65535 bytes', () => {
    const enc = new FrameEncoder();
    expect(() =>
      enc.encodeCall(FrameType.REQUEST, 1, 'é'.repeat(40_000), -1, null, Buffer.from([0xc0]), 1 << 24),
    ).toThrow(WireCodecError);
  });

  it('keeps large payloads as their own chunk instead of copying them', () => {
    const enc = new FrameEncoder();
    const big = Buffer.alloc(100_000, 3);
    enc.encodeResponse(1, RESPONSE_END, big);
    const chunks = enc.take()!;
    expect(chunks).toHaveLength(2);
    expect(chunks[1]).toBe(big);
  });

  it('packs many small frames into one chunk', () => {
    const enc = new FrameEncoder();
    for (let i = 1; i <= 1000; i++) enc.encodeResponse(i, RESPONSE_END, Buffer.from([i & 0x7f]));
    const chunks = enc.take()!;
    expect(chunks.length).toBeLessThanOrEqual(2);
    expect(enc.frames).toBe(1000);
  });

  it('never rewrites bytes it has handed out', () => {
    const enc = new FrameEncoder();
    enc.encodeResponse(1, 0, Buffer.from([1]));
    const first = Buffer.from(joinChunks(enc.take()));
    const firstView = joinChunks(null);
    void firstView;
    const taken = enc.take();
    expect(taken).toBeNull();
    enc.encodeResponse(2, 0, Buffer.from([2]));
    const second = enc.take()!;
    expect(second[0].readUInt32BE(6)).toBe(2);
    expect(first.readUInt32BE(6)).toBe(1);
  });

  it('writes over what it handed out only after reuseTaken(), and not over frames encoded since', () => {
    const enc = new FrameEncoder();
    enc.encodeResponse(1, 0, Buffer.from([1]));
    const [first] = enc.take()!;
    enc.reuseTaken();
    enc.encodeResponse(2, 0, Buffer.from([2]));
    const [second] = enc.take()!;
    // The first chunk's bytes are now the second frame's.
    expectWrittenOver(first, second);
    expect(first.readUInt32BE(6)).toBe(2);

    enc.encodeResponse(3, 0, Buffer.from([3]));
    const [third] = enc.take()!;
    enc.encodeResponse(4, 0, Buffer.from([4]));
    enc.reuseTaken(); // frame 4 is pending: nothing is reused
    const [fourth] = enc.take()!;
    expect(third.readUInt32BE(6)).toBe(3);
    expect(fourth.readUInt32BE(6)).toBe(4);
    expect(fourth.byteOffset).toBe(third.byteOffset + third.length);
  });

  it('brings back an arena set aside for its small tail once what was taken is consumed', () => {
    const enc = new FrameEncoder();
    // Fill the first 4 KiB arena to within a few bytes of its end.
    enc.encodeResponse(1, 0, Buffer.alloc(4096 - 10 - 8));
    const [first] = enc.take()!;
    enc.reuseTaken();
    enc.encodeResponse(2, 0, Buffer.from([2]));
    expectWrittenOver(first, enc.take()![0]);
  });

  it('marks the last RESPONSE of a call as its end while it is still pending', () => {
    const enc = new FrameEncoder();
    enc.encodeResponse(7, 0, Buffer.from([1]));
    expect(enc.tryMarkLastResponseEnd(8)).toBe(false);
    expect(enc.tryMarkLastResponseEnd(7)).toBe(true);
    expect(enc.tryMarkLastResponseEnd(7)).toBe(false);
    const [f] = decodeAll(enc);
    expect(f.flags).toBe(RESPONSE_END);
  });

  it('does not mark a response that was already taken, or followed by another frame', () => {
    const enc = new FrameEncoder();
    enc.encodeResponse(7, 0, Buffer.from([1]));
    enc.take();
    expect(enc.tryMarkLastResponseEnd(7)).toBe(false);
    enc.encodeResponse(9, 0, Buffer.from([1]));
    enc.encodeSimple(FrameType.CANCEL, 0, 3, null);
    expect(enc.tryMarkLastResponseEnd(9)).toBe(false);
    // A bare NO_VALUE frame absorbs END too (`of(undefined)` is one frame, as with Nest TCP).
    enc.encodeResponse(10, RESPONSE_NO_VALUE, null);
    expect(enc.tryMarkLastResponseEnd(10)).toBe(true);
  });
});
