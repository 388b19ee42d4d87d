import assert from 'node:assert/strict';
import fc from 'fast-check';
import { WireError, WireFrameTooLargeError, WireHandshakeError, WireProtocolError } from '../../lib/errors.js';
import { CallBody, readCallBody } from '../../lib/protocol/call-body.js';
import {
  FrameType,
  HEADER_SIZE,
  MAGIC,
  MAX_FRAME_TYPE,
  MIN_FRAME_LENGTH,
  REQUEST_HAS_CREDIT,
  REQUEST_HAS_DEADLINE,
  REQUEST_HAS_METADATA,
} from '../../lib/protocol/frame.js';
import { FrameDecoder } from '../../lib/protocol/frame-decoder.js';
import { FrameEncoder } from '../../lib/protocol/frame-encoder.js';
import { HANDSHAKE_MAX_FRAME_BYTES } from '../../lib/protocol/hello.js';
import { DEFAULT_MAX_FRAME_BYTES } from '../../lib/options.js';
import type { DecodedFrame } from '../helpers/frames.js';
import {
  CaseCounter,
  frameBoundaries,
  interestingLengths,
  isDecoderError,
  mutate,
  mutationArb,
  params,
  splitAt,
} from '../helpers/fuzz.js';

/**
 * Property-based fuzzing of FrameDecoder. Invariants checked on every push of every case:
 *   - the decoder yields frames or throws a decoder error (WireProtocolError,
 *     WireFrameTooLargeError, WireHandshakeError), never anything else;
 *   - it never holds more than one frame's worth of bytes: bufferedBytes <= maxFrameSize + 4,
 *     and its partial buffer is never allocated larger than that (or its 4 KiB minimum);
 *   - every frame it yields has a known type and a body within the limit;
 *   - after an error it ignores input: no frame, no exception.
 */

const counter = new CaseCounter();
afterAll(() => counter.report('frame-decoder fuzz'));

const ALL_TYPES = Array.from({ length: MAX_FRAME_TYPE }, (_, i) => i + 1);
const MIN_PARTIAL_CAPACITY = 4096;

interface FeedResult {
  frames: DecodedFrame[];
  error: unknown;
  /** Largest bufferedBytes seen after any push. */
  maxBuffered: number;
}

/** Feeds `chunks` in order, checking the invariants after every push. */
function feed(chunks: Buffer[], options: { maxFrameSize: number; expectMagic: boolean }): FeedResult {
  const frames: DecodedFrame[] = [];
  const decoder = new FrameDecoder(
    {
      onFrame: (type, flags, id, body) => {
        // A yielded frame is always well-formed. (node:assert in the hot path: jest's expect is slow.)
        assert.ok(type >= 1 && type <= MAX_FRAME_TYPE, `yielded unknown frame type ${type}`);
        assert.ok(body.length + MIN_FRAME_LENGTH <= options.maxFrameSize, 'yielded a frame above maxFrameSize');
        frames.push({ type, flags, id, body: Buffer.from(body) });
      },
    },
    options,
  );
  let error: unknown = null;
  let maxBuffered = 0;
  for (const chunk of chunks) {
    const before = frames.length;
    try {
      decoder.push(chunk);
    } catch (err) {
      if (error !== null) throw new Error(`decoder threw twice: ${String(err)}`, { cause: err });
      if (!isDecoderError(err))
        throw new Error(`decoder threw a non-wire error: ${(err as Error)?.stack ?? String(err)}`, { cause: err });
      error = err;
      assert.equal(decoder.bufferedBytes, 0, 'bytes still buffered after an error');
      continue;
    }
    if (error !== null) assert.equal(frames.length, before, 'a frame was yielded after an error');
    checkBuffered(decoder, options.maxFrameSize);
    maxBuffered = Math.max(maxBuffered, decoder.bufferedBytes);
  }
  return { frames, error, maxBuffered };
}

function checkBuffered(decoder: FrameDecoder, maxFrameSize: number): void {
  assert.ok(
    decoder.bufferedBytes <= maxFrameSize + 4,
    `buffered ${decoder.bufferedBytes} bytes, limit ${maxFrameSize}`,
  );
  // The allocation behind the partial frame obeys the same bound (it starts at 4 KiB).
  const partial = (decoder as unknown as { partial?: Buffer | null }).partial;
  if (partial !== undefined && partial !== null) {
    assert.ok(
      partial.length <= Math.max(maxFrameSize + 4, MIN_PARTIAL_CAPACITY),
      `partial buffer of ${partial.length} bytes for limit ${maxFrameSize}`,
    );
  }
}

/** Frames as comparable strings (jest's toEqual walks Buffers byte by byte: too slow here). */
function keys(frames: DecodedFrame[]): string[] {
  return frames.map((f) => `${f.type}/${f.flags}/${f.id}/${f.body.toString('hex')}`);
}

function sameFrames(actual: DecodedFrame[], expected: DecodedFrame[]): void {
  assert.deepEqual(keys(actual), keys(expected));
}

function errorCode(err: unknown): string | null {
  return err === null ? null : (err as WireError).code;
}

// ---------------------------------------------------------------------------------------
// Valid frame streams, built with the library's own FrameEncoder.

type FrameSpec =
  | { kind: 'simple'; type: number; flags: number; id: number; body: Uint8Array | null }
  | { kind: 'u32'; type: number; flags: number; id: number; value: number }
  | { kind: 'response'; id: number; flags: number; payload: Uint8Array | null }
  | {
      kind: 'call';
      type: FrameType.REQUEST | FrameType.EVENT;
      id: number;
      pattern: string;
      budgetMs: number;
      metadata: Uint8Array | null;
      payload: Uint8Array;
      credit: number;
    };

const u32 = fc.integer({ min: 0, max: 0xffffffff });
/** Mostly small bodies, sometimes above the encoder's 16 KiB copy limit (queued as their own chunk). */
const bodyArb = fc.oneof(
  { weight: 12, arbitrary: fc.uint8Array({ maxLength: 48 }) },
  { weight: 3, arbitrary: fc.uint8Array({ minLength: 100, maxLength: 2000 }) },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 16 * 1024 - 16, max: 20 * 1024 }).map((n) => new Uint8Array(n).fill(n & 0xff)),
  },
);

const frameSpecArb: fc.Arbitrary<FrameSpec> = fc.oneof(
  fc.record({
    kind: fc.constant('simple' as const),
    type: fc.constantFrom(...ALL_TYPES),
    flags: fc.integer({ min: 0, max: 255 }),
    id: u32,
    body: fc.option(bodyArb, { nil: null }),
  }),
  fc.record({
    kind: fc.constant('u32' as const),
    type: fc.constantFrom(FrameType.CREDIT, FrameType.PING, FrameType.PONG),
    flags: fc.integer({ min: 0, max: 255 }),
    id: u32,
    value: u32,
  }),
  fc.record({
    kind: fc.constant('response' as const),
    id: u32,
    flags: fc.integer({ min: 0, max: 3 }),
    payload: fc.option(bodyArb, { nil: null }),
  }),
  fc.record({
    kind: fc.constant('call' as const),
    type: fc.constantFrom(FrameType.REQUEST as const, FrameType.EVENT as const),
    id: u32,
    pattern: fc.string({ unit: 'grapheme', maxLength: 24 }),
    budgetMs: fc.oneof(fc.constant(-1), u32),
    metadata: fc.option(fc.uint8Array({ maxLength: 40 }), { nil: null }),
    payload: bodyArb.filter((b) => b.length > 0),
    credit: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 0xffffffff })),
  }),
);

function encodeStream(specs: FrameSpec[], withMagic: boolean): Buffer {
  const encoder = new FrameEncoder();
  const parts: Buffer[] = [];
  const takeInto = () => {
    const taken = encoder.take();
    if (taken !== null) parts.push(...taken.map((b) => Buffer.from(b)));
  };
  if (withMagic) encoder.writeRaw(MAGIC);
  specs.forEach((s, i) => {
    switch (s.kind) {
      case 'simple':
        encoder.encodeSimple(s.type, s.flags, s.id, s.body);
        break;
      case 'u32':
        encoder.encodeU32(s.type, s.flags, s.id, s.value);
        break;
      case 'response':
        encoder.encodeResponse(s.id, s.flags, s.payload);
        break;
      case 'call':
        encoder.encodeCall(s.type, s.id, s.pattern, s.budgetMs, s.metadata, s.payload, 0xffffffff, s.credit);
        break;
    }
    // Take at varying moments, as the connection's coalescer does once per tick.
    if (i % 3 === 2) takeInto();
  });
  takeInto();
  return Buffer.concat(parts);
}

/** The length field of a decoded frame. */
function frameLength(frame: DecodedFrame): number {
  return HEADER_SIZE - 4 + frame.body.length;
}

/** Checks a decoded frame against what was encoded (independently of the decoder). */
function checkFrame(spec: FrameSpec, f: DecodedFrame): void {
  switch (spec.kind) {
    case 'simple':
      expect([f.type, f.flags, f.id]).toEqual([spec.type, spec.flags, spec.id]);
      expect(f.body.equals(Buffer.from(spec.body ?? []))).toBe(true);
      return;
    case 'u32':
      expect([f.type, f.flags, f.id, f.body.length, f.body.readUInt32BE(0)]).toEqual([
        spec.type,
        spec.flags,
        spec.id,
        4,
        spec.value,
      ]);
      return;
    case 'response':
      expect([f.type, f.flags, f.id]).toEqual([FrameType.RESPONSE, spec.flags, spec.id]);
      expect(f.body.equals(Buffer.from(spec.payload ?? []))).toBe(true);
      return;
    case 'call': {
      const flags =
        (spec.budgetMs >= 0 ? REQUEST_HAS_DEADLINE : 0) |
        (spec.metadata !== null ? REQUEST_HAS_METADATA : 0) |
        (spec.credit > 0 ? REQUEST_HAS_CREDIT : 0);
      expect([f.type, f.flags, f.id]).toEqual([spec.type, flags, spec.id]);
      const out = new CallBody();
      readCallBody(f.body, f.flags, out);
      expect(out.pattern).toBe(spec.pattern);
      expect(out.budgetMs).toBe(spec.budgetMs);
      expect(out.credit).toBe(spec.credit);
      expect(out.metadata === null ? null : Buffer.from(out.metadata)).toEqual(
        spec.metadata === null ? null : Buffer.from(spec.metadata),
      );
      expect(out.payload.equals(Buffer.from(spec.payload))).toBe(true);
      return;
    }
  }
}

const cutsArb = fc.oneof(
  { weight: 4, arbitrary: fc.array(fc.nat(), { maxLength: 12 }) },
  { weight: 1, arbitrary: fc.constant([] as number[]) },
);

describe('FrameDecoder fuzz', () => {
  it('decodes encoder output cut at random split points to exactly the encoded frames', () => {
    fc.assert(
      fc.property(
        fc.array(frameSpecArb, { minLength: 1, maxLength: 12 }),
        fc.boolean(),
        cutsArb,
        fc.boolean(),
        fc.nat({ max: 3 }),
        (specs, withMagic, cuts, byteByByte, slack) => {
          counter.hit('valid stream, random split points');
          const bytes = encodeStream(specs, withMagic);
          const whole = feed([bytes], { maxFrameSize: DEFAULT_MAX_FRAME_BYTES, expectMagic: withMagic });
          expect(whole.error).toBeNull();
          expect(whole.frames).toHaveLength(specs.length);
          specs.forEach((s, i) => checkFrame(s, whole.frames[i]));

          // The tightest limit that still admits every frame, plus 0..3 bytes of slack.
          const largest = Math.max(...whole.frames.map(frameLength));
          const chunks =
            byteByByte && bytes.length < 4096 ? splitAt(bytes, Array.from(bytes.keys())) : splitAt(bytes, cuts);
          const split = feed(chunks, { maxFrameSize: largest + slack, expectMagic: withMagic });
          expect(split.error).toBeNull();
          sameFrames(split.frames, whole.frames);
          expect(split.maxBuffered).toBeLessThanOrEqual(largest + 4);
        },
      ),
      params(400, 1),
    );
  });

  it('refuses exactly the first frame above maxFrameSize, after yielding the ones before it', () => {
    fc.assert(
      fc.property(fc.array(frameSpecArb, { minLength: 2, maxLength: 10 }), cutsArb, (specs, cuts) => {
        const bytes = encodeStream(specs, false);
        const whole = feed([bytes], { maxFrameSize: DEFAULT_MAX_FRAME_BYTES, expectMagic: false });
        const lengths = whole.frames.map(frameLength);
        fc.pre(Math.max(...lengths) > MIN_FRAME_LENGTH); // some frame must be able to exceed the limit
        counter.hit('valid stream, limit one byte too small');
        const limit = Math.max(MIN_FRAME_LENGTH, Math.max(...lengths) - 1);
        const firstTooBig = lengths.findIndex((l) => l > limit);
        const r = feed(splitAt(bytes, cuts), { maxFrameSize: limit, expectMagic: false });
        expect(r.error).toBeInstanceOf(WireFrameTooLargeError);
        expect((r.error as WireFrameTooLargeError).length).toBe(lengths[firstTooBig]);
        expect((r.error as WireFrameTooLargeError).limit).toBe(limit);
        sameFrames(r.frames, whole.frames.slice(0, firstTooBig));
      }),
      params(300),
    );
  });

  it('gives the same frames with pause/resume at random points, re-entrant or not', () => {
    fc.assert(
      fc.property(
        fc.array(frameSpecArb, { minLength: 1, maxLength: 12 }),
        cutsArb,
        fc.array(fc.constantFrom('none', 'pause', 'pause+resume'), { minLength: 1, maxLength: 16 }),
        fc.array(fc.nat({ max: 2 }), { minLength: 1, maxLength: 16 }),
        (specs, cuts, onFrameActions, resumesPerPush) => {
          counter.hit('valid stream, pause/resume');
          const bytes = encodeStream(specs, true);
          const expected = feed([bytes], { maxFrameSize: DEFAULT_MAX_FRAME_BYTES, expectMagic: true }).frames;
          const frames: DecodedFrame[] = [];
          const decoder: FrameDecoder = new FrameDecoder(
            {
              onFrame: (type, flags, id, body) => {
                frames.push({ type, flags, id, body: Buffer.from(body) });
                const action = onFrameActions[frames.length % onFrameActions.length];
                if (action !== 'none') decoder.pause();
                if (action === 'pause+resume') decoder.resume(); // re-entrant resume from inside the sink
              },
            },
            { maxFrameSize: DEFAULT_MAX_FRAME_BYTES, expectMagic: true },
          );
          const chunks = splitAt(bytes, cuts);
          chunks.forEach((chunk, i) => {
            decoder.push(chunk);
            for (let r = 0; r < resumesPerPush[i % resumesPerPush.length]; r++) decoder.resume();
            checkBuffered(decoder, DEFAULT_MAX_FRAME_BYTES);
          });
          for (let guard = 0; decoder.isPaused && guard < 10_000; guard++) decoder.resume();
          expect(decoder.isPaused).toBe(false);
          expect(decoder.heldBytes).toBe(0);
          sameFrames(frames, expected);
        },
      ),
      params(300),
    );
  });

  it('mutated valid streams: frames or a typed error, the same for any chunking, within the buffer bound', () => {
    const lengthValues = interestingLengths([1024, HANDSHAKE_MAX_FRAME_BYTES]);
    fc.assert(
      fc.property(
        fc.array(frameSpecArb, { minLength: 1, maxLength: 8 }),
        fc.boolean(),
        fc.array(mutationArb(lengthValues), { minLength: 1, maxLength: 6 }),
        cutsArb,
        fc.constantFrom(1024, HANDSHAKE_MAX_FRAME_BYTES, DEFAULT_MAX_FRAME_BYTES),
        (specs, withMagic, mutations, cuts, maxFrameSize) => {
          counter.hit('mutated valid stream');
          const valid = encodeStream(specs, withMagic);
          const bytes = mutate(valid, frameBoundaries(valid, withMagic ? MAGIC.length : 0), mutations);
          const options = { maxFrameSize, expectMagic: withMagic };
          const whole = feed([bytes], options);
          const split = feed(splitAt(bytes, cuts), options);
          // Framing is a function of the bytes, not of how they arrive.
          sameFrames(split.frames, whole.frames);
          expect(errorCode(split.error)).toBe(errorCode(whole.error));
        },
      ),
      params(1000),
    );
  });

  it('random bytes: frames or a typed error, never a buffer above the limit', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 512 }),
          fc.uint8Array({ maxLength: 512 }).map((b) => Buffer.concat([MAGIC, b])),
          // "Frame-shaped" noise: small length fields followed by random bytes.
          fc
            .array(
              fc.tuple(
                fc.integer({ min: 0, max: 40 }),
                fc.integer({ min: 0, max: 16 }),
                fc.uint8Array({ maxLength: 40 }),
              ),
              { maxLength: 8 },
            )
            .map((parts) =>
              Buffer.concat(
                parts.flatMap(([len, type, rest]) => {
                  const h = Buffer.alloc(5);
                  h.writeUInt32BE(len, 0);
                  h[4] = type;
                  return [h, Buffer.from(rest)];
                }),
              ),
            ),
        ),
        fc.boolean(),
        cutsArb,
        fc.integer({ min: MIN_FRAME_LENGTH, max: 200 }),
        (bytes, expectMagic, cuts, maxFrameSize) => {
          counter.hit('random bytes');
          const buf = Buffer.from(bytes);
          const options = { maxFrameSize, expectMagic };
          const whole = feed([buf], options);
          const split = feed(splitAt(buf, cuts), options);
          sameFrames(split.frames, whole.frames);
          expect(errorCode(split.error)).toBe(errorCode(whole.error));
          if (expectMagic && buf.length >= 4 && !buf.subarray(0, 4).equals(MAGIC)) {
            expect(whole.error).toBeInstanceOf(WireHandshakeError);
          }
        },
      ),
      params(1000),
    );
  });

  it('length fields at and just past every limit: accepted up to the limit, refused above it, before buffering', () => {
    const limits = [MIN_FRAME_LENGTH, MIN_FRAME_LENGTH + 1, 1024, HANDSHAKE_MAX_FRAME_BYTES];
    fc.assert(
      fc.property(
        fc.constantFrom(...limits),
        fc.constantFrom(-2, -1, 0, 1, 2, 4),
        fc.constantFrom(0, 1, 5, 6, 7),
        fc.boolean(),
        fc.constantFrom(...ALL_TYPES),
        cutsArb,
        (maxFrameSize, delta, small, useSmall, type, cuts) => {
          counter.hit('length at limits');
          const length = useSmall ? small : maxFrameSize + delta;
          if (length < 0) return;
          // The frame's bytes, fully present when the length is plausible.
          const total = 4 + Math.max(length, 0);
          const frame = Buffer.alloc(Math.min(total, 4 + HANDSHAKE_MAX_FRAME_BYTES + 8));
          frame.writeUInt32BE(length, 0);
          if (frame.length > 4) frame[4] = type;
          const r = feed(splitAt(frame, cuts), { maxFrameSize, expectMagic: false });
          if (length < MIN_FRAME_LENGTH) {
            expect(r.error).toBeInstanceOf(WireProtocolError);
            expect((r.error as Error).message).toMatch(/below the minimum of 6/);
          } else if (length > maxFrameSize) {
            expect(r.error).toBeInstanceOf(WireFrameTooLargeError);
            expect((r.error as WireFrameTooLargeError).length).toBe(length);
            expect((r.error as WireFrameTooLargeError).limit).toBe(maxFrameSize);
            // Refused on its length field: never more than the length field was held.
            expect(r.maxBuffered).toBeLessThan(4);
          } else {
            expect(r.error).toBeNull();
            expect(r.frames).toHaveLength(1);
            expect(r.frames[0].type).toBe(type);
            expect(r.frames[0].body.length).toBe(length - MIN_FRAME_LENGTH);
            expect(r.maxBuffered).toBeLessThanOrEqual(maxFrameSize + 4);
          }
        },
      ),
      params(300),
    );
  });

  it('the default 16 MiB limit: a frame of exactly 16 MiB is accepted, one byte more is refused unbuffered', () => {
    counter.hit('16 MiB limit (deterministic)');
    const max = DEFAULT_MAX_FRAME_BYTES;
    const atLimit = Buffer.alloc(4 + max);
    atLimit.writeUInt32BE(max, 0);
    atLimit[4] = FrameType.RESPONSE;
    const ok = feed(splitAt(atLimit, [3, 4, 10, 1 << 20, max]), { maxFrameSize: max, expectMagic: false });
    expect(ok.error).toBeNull();
    expect(ok.frames).toHaveLength(1);
    expect(ok.frames[0].body.length).toBe(max - MIN_FRAME_LENGTH);
    const over = Buffer.alloc(10);
    over.writeUInt32BE(max + 1, 0);
    const refused = feed([over.subarray(0, 2), over.subarray(2)], { maxFrameSize: max, expectMagic: false });
    expect(refused.error).toBeInstanceOf(WireFrameTooLargeError);
    expect(refused.maxBuffered).toBeLessThan(4);
  });
});
