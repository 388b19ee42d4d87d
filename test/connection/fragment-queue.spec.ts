import { FRAGMENT_BYTES, FragmentQueue } from '../../lib/connection/fragment-queue.js';
import { FrameType, RESPONSE_END, RESPONSE_MORE, RESPONSE_NO_VALUE } from '../../lib/protocol/frame.js';
import { FrameEncoder } from '../../lib/protocol/frame-encoder.js';
import { collectingDecoder, joinChunks } from '../helpers/frames.js';

function drain(queue: FragmentQueue, encoder: FrameEncoder) {
  const { decoder, frames } = collectingDecoder({ maxFrameSize: 1 << 20, expectMagic: false });
  let flushes = 0;
  for (;;) {
    const more = queue.encodeInto(encoder);
    decoder.push(joinChunks(encoder.take()));
    flushes++;
    if (!more) break;
  }
  return { frames, flushes };
}

describe('FragmentQueue', () => {
  it('cuts a large value into 64 KiB fragments, MORE on all but the last, which keeps the END', () => {
    const queue = new FragmentQueue();
    const payload = Buffer.alloc(FRAGMENT_BYTES * 3 + 10, 7);
    queue.push(5, FrameType.RESPONSE, 0, payload);
    expect(queue.markLast(5, RESPONSE_END)).toBe(true);
    const { frames, flushes } = drain(queue, new FrameEncoder());
    expect(flushes).toBe(4); // one fragment per flush: other frames can go in between
    expect(frames.map((f) => f.flags)).toEqual([RESPONSE_MORE, RESPONSE_MORE, RESPONSE_MORE, RESPONSE_END]);
    expect(Buffer.concat(frames.map((f) => f.body))).toEqual(payload);
    expect(queue.isEmpty).toBe(true);
    expect(queue.has(5)).toBe(false);
  });

  it('keeps the frames of one call in order behind its large value', () => {
    const queue = new FragmentQueue();
    queue.push(1, FrameType.RESPONSE, 0, Buffer.alloc(FRAGMENT_BYTES + 1));
    queue.push(1, FrameType.RESPONSE, 0, Buffer.from([0x01]));
    queue.push(1, FrameType.RESPONSE, RESPONSE_END | RESPONSE_NO_VALUE, new Uint8Array(0));
    const { frames } = drain(queue, new FrameEncoder());
    expect(frames.map((f) => [f.id, f.flags, f.body.length])).toEqual([
      [1, RESPONSE_MORE, FRAGMENT_BYTES],
      [1, 0, 1],
      [1, 0, 1],
      [1, RESPONSE_END | RESPONSE_NO_VALUE, 0],
    ]);
  });

  it('drops what a cancelled call had queued, but finishes a value already begun', () => {
    const queue = new FragmentQueue();
    queue.push(2, FrameType.RESPONSE, 0, Buffer.alloc(FRAGMENT_BYTES * 2));
    queue.push(2, FrameType.RESPONSE, 0, Buffer.alloc(FRAGMENT_BYTES * 2));
    const encoder = new FrameEncoder();
    queue.encodeInto(encoder); // first fragment of the first value leaves
    queue.drop(2);
    const { frames } = drain(queue, encoder);
    expect(frames.map((f) => f.flags)).toEqual([RESPONSE_MORE, 0]); // the begun value completes; the second is gone
    expect(queue.has(2)).toBe(false);
  });
});
