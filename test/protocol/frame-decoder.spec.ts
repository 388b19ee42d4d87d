import { WireFrameTooLargeError, WireHandshakeError, WireProtocolError } from '../../lib/errors.js';
import { FrameType, MAGIC } from '../../lib/protocol/frame.js';
import { FrameEncoder } from '../../lib/protocol/frame-encoder.js';
import { collectingDecoder, joinChunks } from '../helpers/frames.js';
import { rawFrame } from '../helpers/raw-peer.js';

const frame = rawFrame;

function sampleStream(count: number): { bytes: Buffer; bodies: Buffer[] } {
  const bodies: Buffer[] = [];
  const parts: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const body = Buffer.alloc(i % 37, i & 0xff);
    bodies.push(body);
    parts.push(frame(FrameType.RESPONSE, i & 3, i + 1, body));
  }
  return { bytes: Buffer.concat(parts), bodies };
}

describe('FrameDecoder', () => {
  it('yields every frame of a stream fed one byte at a time', () => {
    const { bytes, bodies } = sampleStream(50);
    const { decoder, frames } = collectingDecoder({ maxFrameSize: 1024, expectMagic: false });
    for (let i = 0; i < bytes.length; i++) decoder.push(bytes.subarray(i, i + 1));
    expect(frames).toHaveLength(50);
    frames.forEach((f, i) => {
      expect(f).toEqual({ type: FrameType.RESPONSE, flags: i & 3, id: i + 1, body: bodies[i] });
    });
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('yields the same frames for every split point of a two-chunk stream', () => {
    const { bytes } = sampleStream(8);
    const expected = collectingDecoder({ maxFrameSize: 1024, expectMagic: false });
    expected.decoder.push(bytes);
    for (let split = 0; split <= bytes.length; split++) {
      const { decoder, frames } = collectingDecoder({ maxFrameSize: 1024, expectMagic: false });
      decoder.push(bytes.subarray(0, split));
      decoder.push(bytes.subarray(split));
      expect(frames).toEqual(expected.frames);
    }
  });

  it('handles 100 000 frames in one chunk without recursion', () => {
    const one = frame(FrameType.CANCEL, 0, 7, Buffer.alloc(0));
    const bytes = Buffer.concat(new Array(100_000).fill(one));
    let count = 0;
    const { decoder } = collectingDecoder({ maxFrameSize: 64, expectMagic: false });
    (decoder as unknown as { sink: { onFrame: () => void } }).sink.onFrame = () => count++;
    decoder.push(bytes);
    expect(count).toBe(100_000);
  });

  it('hands complete frames over as views of the chunk, without copying', () => {
    const bytes = frame(FrameType.RESPONSE, 0, 1, Buffer.from('hello'));
    let seen: Buffer | null = null;
    const { decoder } = collectingDecoder({ maxFrameSize: 64, expectMagic: false });
    (decoder as unknown as { sink: { onFrame: (t: number, f: number, i: number, b: Buffer) => void } }).sink.onFrame = (
      _t,
      _f,
      _i,
      body,
    ) => (seen = body);
    decoder.push(bytes);
    expect(seen!.buffer).toBe(bytes.buffer);
  });

  it('checks the length against the limit before buffering anything', () => {
    const { decoder, frames } = collectingDecoder({ maxFrameSize: 100, expectMagic: false });
    const header = Buffer.alloc(4);
    header.writeUInt32BE(0xfffffff0, 0);
    expect(() => decoder.push(header)).toThrow(WireFrameTooLargeError);
    expect(decoder.bufferedBytes).toBe(0);
    expect(frames).toHaveLength(0);
  });

  it('accepts a frame exactly at the limit and refuses one byte more', () => {
    const atLimit = frame(FrameType.RESPONSE, 0, 1, Buffer.alloc(100 - 6));
    const ok = collectingDecoder({ maxFrameSize: 100, expectMagic: false });
    ok.decoder.push(atLimit);
    expect(ok.frames).toHaveLength(1);
    const over = frame(FrameType.RESPONSE, 0, 1, Buffer.alloc(100 - 5));
    const bad = collectingDecoder({ maxFrameSize: 100, expectMagic: false });
    expect(() => bad.decoder.push(over)).toThrow(WireFrameTooLargeError);
  });

  it('detects a limit violation in a length field split across chunks', () => {
    const { decoder } = collectingDecoder({ maxFrameSize: 100, expectMagic: false });
    decoder.push(Buffer.from([0x00, 0x01]));
    expect(() => decoder.push(Buffer.from([0x00, 0x00, 4, 0]))).toThrow(WireFrameTooLargeError);
  });

  it('refuses a length below the header size', () => {
    const { decoder } = collectingDecoder({ maxFrameSize: 100, expectMagic: false });
    expect(() => decoder.push(Buffer.from([0, 0, 0, 2, 1, 0]))).toThrow(WireProtocolError);
  });

  it('refuses unknown frame types', () => {
    for (const type of [0, 13, 200]) {
      const { decoder } = collectingDecoder({ maxFrameSize: 100, expectMagic: false });
      expect(() => decoder.push(frame(type, 0, 1, Buffer.alloc(0)))).toThrow(/unknown frame type/);
    }
  });

  it('ignores input after the first error', () => {
    const { decoder, frames } = collectingDecoder({ maxFrameSize: 100, expectMagic: false });
    expect(() => decoder.push(frame(99, 0, 1, Buffer.alloc(0)))).toThrow(WireProtocolError);
    decoder.push(frame(FrameType.RESPONSE, 0, 1, Buffer.alloc(0)));
    expect(frames).toHaveLength(0);
  });

  it('keeps a truncated frame buffered until the rest arrives', () => {
    const bytes = frame(FrameType.RESPONSE, 0, 9, Buffer.alloc(500, 1));
    const { decoder, frames } = collectingDecoder({ maxFrameSize: 1024, expectMagic: false });
    decoder.push(bytes.subarray(0, 300));
    expect(frames).toHaveLength(0);
    expect(decoder.bufferedBytes).toBe(300);
    decoder.push(bytes.subarray(300));
    expect(frames).toHaveLength(1);
    expect(frames[0].body.length).toBe(500);
  });

  describe('preface', () => {
    it('reads the magic preface split across chunks', () => {
      const { decoder, frames } = collectingDecoder({ maxFrameSize: 100 });
      const bytes = Buffer.concat([MAGIC, frame(FrameType.PING, 0, 0, Buffer.alloc(8))]);
      decoder.push(bytes.subarray(0, 1));
      decoder.push(bytes.subarray(1, 3));
      decoder.push(bytes.subarray(3));
      expect(frames).toHaveLength(1);
    });

    it('refuses a peer that speaks something else', () => {
      const { decoder } = collectingDecoder({ maxFrameSize: 100 });
      expect(() => decoder.push(Buffer.from('GET / HTTP/1.1\r\n'))).toThrow(WireHandshakeError);
    });
  });

  it('round-trips everything the encoder produces', () => {
    const enc = new FrameEncoder();
    enc.encodeCall(FrameType.REQUEST, 1, 'sum', 250, Buffer.from([0x80]), Buffer.from([0x93, 1, 2, 3]), 1 << 20);
    enc.encodeCall(FrameType.EVENT, 0, 'user.created', -1, null, Buffer.from([0xc0]), 1 << 20);
    enc.encodeResponse(1, 0, Buffer.from([0x06]));
    enc.encodeSimple(FrameType.ERROR, 1, 2, Buffer.from([0x80]));
    enc.encodeSimple(FrameType.CANCEL, 0, 3, null);
    enc.encodeSimple(FrameType.PING, 0, 0, Buffer.alloc(8, 7));
    enc.encodeSimple(FrameType.PONG, 0, 0, Buffer.alloc(8, 7));
    enc.encodeSimple(FrameType.GOAWAY, 0, 0, null);
    enc.encodeSimple(FrameType.NACK, 0, 4, Buffer.from([0x80]));
    enc.encodeU32(FrameType.CREDIT, 0, 5, 64);
    enc.encodeSimple(FrameType.HELLO, 0, 0, Buffer.alloc(16));
    const { decoder, frames } = collectingDecoder({ maxFrameSize: 1024, expectMagic: false });
    decoder.push(joinChunks(enc.take()));
    expect(frames.map((f) => f.type)).toEqual([
      FrameType.REQUEST,
      FrameType.EVENT,
      FrameType.RESPONSE,
      FrameType.ERROR,
      FrameType.CANCEL,
      FrameType.PING,
      FrameType.PONG,
      FrameType.GOAWAY,
      FrameType.NACK,
      FrameType.CREDIT,
      FrameType.HELLO,
    ]);
    expect(frames[9].body.readUInt32BE(0)).toBe(64);
    expect(frames.map((f) => f.id)).toEqual([1, 0, 1, 2, 3, 0, 0, 0, 4, 5, 0]);
  });
});
