import { FRAGMENT_BYTES, FRAGMENT_THRESHOLD_BYTES, FragmentQueue } from '../../lib/connection/fragment-queue.js';
import {
  FRAGMENT_WINDOW_BYTES,
  FrameType,
  RESPONSE_END,
  RESPONSE_LAST_FRAGMENT,
  RESPONSE_MORE,
  RESPONSE_NO_VALUE,
} from '../../lib/protocol/frame.js';
import { FrameEncoder } from '../../lib/protocol/frame-encoder.js';
import { collectingDecoder, joinChunks } from '../helpers/frames.js';
import { expectSameBytes } from '../helpers/bytes.js';

/** Flushes until the queue has nothing it may send; grants the window back as a receiver would. */
function drain(queue: FragmentQueue, encoder: FrameEncoder, grant = true) {
  const { decoder, frames } = collectingDecoder({ maxFrameSize: 1 << 20, expectMagic: false });
  let flushes = 0;
  for (let guard = 0; guard < 1000; guard++) {
    const more = queue.encodeInto(encoder);
    const before = frames.length;
    decoder.push(joinChunks(encoder.take()));
    flushes++;
    if (grant) {
      for (const f of frames.slice(before))
        if (f.flags & (RESPONSE_MORE | RESPONSE_LAST_FRAGMENT)) queue.grant(f.body.length);
    }
    if (!more && !(grant && !queue.isEmpty)) break;
  }
  return { frames, flushes };
}

const LARGE = FRAGMENT_THRESHOLD_BYTES + 10; // cut into 5 fragments

describe('FragmentQueue', () => {
  it('cuts a large value into 64 KiB fragments: MORE on all but the last, which has LAST_FRAGMENT and the END', () => {
    const queue = new FragmentQueue();
    const payload = Buffer.alloc(LARGE, 7);
    queue.push(5, FrameType.RESPONSE, 0, payload);
    expect(queue.markLast(5, RESPONSE_END)).toBe(true);
    const { frames, flushes } = drain(queue, new FrameEncoder());
    expect(flushes).toBe(5); // one fragment per flush: other frames can go in between
    expect(frames.map((f) => f.flags)).toEqual([
      RESPONSE_MORE,
      RESPONSE_MORE,
      RESPONSE_MORE,
      RESPONSE_MORE,
      RESPONSE_END | RESPONSE_LAST_FRAGMENT,
    ]);
    expectSameBytes(Buffer.concat(frames.map((f) => f.body)), payload);
    expect(queue.isEmpty).toBe(true);
    expect(queue.has(5)).toBe(false);
  });

  it('keeps the frames of one call in order behind its large value', () => {
    const queue = new FragmentQueue();
    queue.push(1, FrameType.RESPONSE, 0, Buffer.alloc(LARGE));
    queue.push(1, FrameType.RESPONSE, 0, Buffer.from([0x01]));
    queue.push(1, FrameType.RESPONSE, RESPONSE_END | RESPONSE_NO_VALUE, new Uint8Array(0));
    const { frames } = drain(queue, new FrameEncoder());
    expect(frames.map((f) => [f.id, f.flags, f.body.length]).slice(-3)).toEqual([
      [1, RESPONSE_LAST_FRAGMENT, LARGE - 4 * FRAGMENT_BYTES],
      [1, 0, 1],
      [1, RESPONSE_END | RESPONSE_NO_VALUE, 0],
    ]);
  });

  it('stops at the fragment window until the peer grants more', () => {
    const queue = new FragmentQueue();
    queue.push(3, FrameType.RESPONSE, 0, Buffer.alloc(FRAGMENT_WINDOW_BYTES * 2));
    const { frames } = drain(queue, new FrameEncoder(), false);
    const sent = frames.reduce((n, f) => n + f.body.length, 0);
    expect(sent).toBe(FRAGMENT_WINDOW_BYTES); // no more without CREDIT
    expect(queue.encodeInto(new FrameEncoder())).toBe(false);
    queue.grant(2 * FRAGMENT_BYTES);
    expect(queue.encodeInto(new FrameEncoder())).toBe(true); // one fragment sent, window left for another
  });

  it('clamps the window to 256 KiB: a grant made early or beyond what was sent widens nothing', () => {
    const queue = new FragmentQueue();
    queue.grant(10 * FRAGMENT_WINDOW_BYTES); // before anything was sent
    queue.push(4, FrameType.RESPONSE, 0, Buffer.alloc(FRAGMENT_WINDOW_BYTES * 2));
    const { frames } = drain(queue, new FrameEncoder(), false);
    expect(frames.reduce((n, f) => n + f.body.length, 0)).toBe(FRAGMENT_WINDOW_BYTES);
    queue.grant(1000);
    const after = drain(queue, new FrameEncoder(), false).frames;
    // A short window gives a short fragment, never an empty one.
    expect(after.map((f) => f.body.length)).toEqual([1000]);
  });

  it('drops what a cancelled call had queued, but finishes a value already begun', () => {
    const queue = new FragmentQueue();
    queue.push(2, FrameType.RESPONSE, 0, Buffer.alloc(LARGE));
    queue.push(2, FrameType.RESPONSE, 0, Buffer.alloc(LARGE));
    const encoder = new FrameEncoder();
    queue.encodeInto(encoder); // first fragment of the first value leaves
    queue.drop(2);
    const { frames } = drain(queue, encoder);
    expect(frames.filter((f) => f.flags & RESPONSE_LAST_FRAGMENT)).toHaveLength(1); // the second value is gone
    expect(queue.has(2)).toBe(false);
  });
});
