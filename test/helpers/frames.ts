import { FrameDecoder } from '../../lib/protocol/frame-decoder.js';

export interface DecodedFrame {
  type: number;
  flags: number;
  id: number;
  body: Buffer;
}

/** A decoder that collects copies of every frame it yields. */
export function collectingDecoder(options: { maxFrameSize: number; expectMagic?: boolean }) {
  const frames: DecodedFrame[] = [];
  const decoder = new FrameDecoder(
    { onFrame: (type, flags, id, body) => frames.push({ type, flags, id, body: Buffer.from(body) }) },
    options,
  );
  return { decoder, frames };
}

/** Joins an encoder's pending chunks into one buffer. */
export function joinChunks(chunks: Buffer[] | null): Buffer {
  return chunks === null ? Buffer.alloc(0) : Buffer.concat(chunks);
}
