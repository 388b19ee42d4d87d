import { WireCodecError, WireFrameTooLargeError } from '../errors.js';
import {
  FrameType,
  HEADER_SIZE,
  LENGTH_SIZE,
  MAX_PATTERN_BYTES,
  PAYLOAD_COMPRESSED,
  REQUEST_HAS_CREDIT,
  REQUEST_HAS_DEADLINE,
  REQUEST_HAS_METADATA,
  RESPONSE_END,
} from './frame.js';

/** Size of each output arena. Frames are packed back to back into it. */
const ARENA_BYTES = 64 * 1024;
/** First arena of an encoder: an idle connection (one HELLO, then heartbeats) holds only this. */
const FIRST_ARENA_BYTES = 4 * 1024;
/** Payloads above this are not copied into the arena but queued as their own chunk. */
const COPY_LIMIT_BYTES = 16 * 1024;
/** True if a payload of `length` bytes is copied into the arena (else it is queued by reference until written). */
export function copiesPayload(length: number): boolean {
  return length <= COPY_LIMIT_BYTES;
}
/** When less than this is left in the arena after a take, start a fresh one. */
const MIN_ARENA_TAIL_BYTES = 1024;

/**
 * Encodes frames into a pooled output arena. Pure: it only produces bytes; the
 * connection's `WriteCoalescer` hands them to the socket.
 *
 * Frames are written back to back into an arena (4 KiB at first, growing to 64 KiB), so
 * the frames of one tick leave as one contiguous chunk. A region handed out by `take()`
 * is not written again while the socket may still be sending it: the arena moves on past
 * it, and a new one is allocated when it runs out. Once the owner reports that the socket
 * has consumed everything taken (`reuseTaken()`), the same arena is written from its
 * start again, so a busy connection does not allocate (and collect) an arena per write.
 */
export class FrameEncoder {
  private arena: Buffer | null = null;
  /**
   * The arena `take()` set aside because too little was left in it; `reuseTaken()` brings
   * it back. Forgotten once another arena is allocated.
   */
  private retired: Buffer | null = null;
  /** Size of the last arena allocated (0 before the first). */
  private arenaBytes = 0;
  /** Next free byte of the arena. */
  private pos = 0;
  /** First byte of the arena not yet handed out by `take()`. */
  private start = 0;
  /** Sealed chunks waiting for `take()`, in order, before `arena[start, pos)`. */
  private sealed: Buffer[] = [];
  private sealedBytes = 0;
  /** Where the flags byte of the last RESPONSE frame is, while it has not been taken. */
  private lastResponseBuf: Buffer | null = null;
  private lastResponseFlags = 0;
  private lastResponseId = -1;

  /** Frames encoded since construction. */
  frames = 0;
  /**
   * Number of `take()` calls that handed bytes out. A frame encoded while this was N has
   * left the encoder once it is greater than N: until then it can still be abandoned.
   */
  generation = 0;

  /**
   * True when frames copied into the arena have filled most of it (at its full size, with
   * less room left than a copied payload may need): writing them now lets the next frames
   * go into the same arena again (after `reuseTaken()`) instead of spilling into a new one.
   * Not for an arena holding only the headers of large payloads queued by reference.
   */
  get nearlyFull(): boolean {
    const arena = this.arena;
    return (
      arena !== null &&
      arena.length >= ARENA_BYTES &&
      arena.length - this.pos < COPY_LIMIT_BYTES &&
      this.pos - this.start >= ARENA_BYTES / 2
    );
  }

  /** Bytes encoded and not yet taken. */
  get pendingBytes(): number {
    return this.sealedBytes + (this.pos - this.start);
  }

  /** Copies raw bytes (the connection preface) into the output. */
  writeRaw(bytes: Uint8Array): void {
    const buf = this.reserve(bytes.length);
    buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  /**
   * REQUEST or EVENT. `budgetMs < 0` means no deadline. `metadata` is already
   * encoded by the codec, or null. Throws `WireFrameTooLargeError`, encoding nothing,
   * if the frame's length field would exceed `maxLength` (the peer's limit).
   * `credit > 0` announces the stream credit (REQUEST only).
   */
  encodeCall(
    type: FrameType.REQUEST | FrameType.EVENT,
    id: number,
    pattern: string,
    budgetMs: number,
    metadata: Uint8Array | null,
    payload: Uint8Array,
    maxLength: number,
    credit = 0,
    compressed = false,
    /** More REQUEST flags (REQUEST_STREAM). */
    extraFlags = 0,
  ): void {
    // Worst case 3 bytes per UTF-16 unit; the exact count is only needed when that is too long.
    const patternMax = pattern.length * 3;
    if (patternMax > MAX_PATTERN_BYTES && Buffer.byteLength(pattern) > MAX_PATTERN_BYTES) {
      throw new WireCodecError(`pattern is longer than ${MAX_PATTERN_BYTES} bytes`);
    }
    let flags = (compressed ? PAYLOAD_COMPRESSED : 0) | extraFlags;
    let fixed = HEADER_SIZE + 2 + patternMax;
    if (budgetMs >= 0) {
      flags |= REQUEST_HAS_DEADLINE;
      fixed += 4;
    }
    if (credit > 0) {
      flags |= REQUEST_HAS_CREDIT;
      fixed += 4;
    }
    if (metadata !== null) {
      flags |= REQUEST_HAS_METADATA;
      fixed += 4 + metadata.length;
    }
    const inline = payload.length <= COPY_LIMIT_BYTES;
    const buf = this.reserve(inline ? fixed + payload.length : fixed);
    const frameStart = this.pos;
    let p = frameStart + HEADER_SIZE;
    if (budgetMs >= 0) {
      buf.writeUInt32BE(Math.min(budgetMs, 0xffffffff), p);
      p += 4;
    }
    if (credit > 0) {
      buf.writeUInt32BE(Math.min(credit, 0xffffffff), p);
      p += 4;
    }
    const patternBytes = buf.write(pattern, p + 2, 'utf8');
    buf.writeUInt16BE(patternBytes, p);
    p += 2 + patternBytes;
    if (metadata !== null) {
      buf.writeUInt32BE(metadata.length, p);
      buf.set(metadata, p + 4);
      p += 4 + metadata.length;
    }
    const length = p - frameStart - LENGTH_SIZE + payload.length;
    // Checked before the header is written: nothing is committed, the arena is unchanged.
    if (length > maxLength) throw new WireFrameTooLargeError(length, maxLength);
    this.writeHeader(buf, frameStart, length, type, flags, id);
    this.finishWithPayload(buf, p, payload, inline);
  }

  /** RESPONSE. `payload` null means the frame carries no value. */
  encodeResponse(id: number, flags: number, payload: Uint8Array | null): void {
    this.encodeSimple(FrameType.RESPONSE, flags, id, payload);
    // A NO_VALUE frame absorbs the END too: an `undefined` last value then reads as a bare
    // completion, exactly as over Nest's TCP transport (its JSON drops `undefined` and
    // merges the completion into the last packet).
    this.lastResponseBuf = this.lastFrameBuf;
    this.lastResponseFlags = this.lastFrameStart + 5;
    this.lastResponseId = id;
  }

  /**
   * Marks the last RESPONSE frame as the end of call `id`, if it is that call's and has
   * not been taken yet. Lets `of(value)` travel as one frame instead of value + completion.
   */
  tryMarkLastResponseEnd(id: number): boolean {
    if (this.lastResponseBuf === null || this.lastResponseId !== id) return false;
    this.lastResponseBuf[this.lastResponseFlags] |= RESPONSE_END;
    this.lastResponseBuf = null;
    return true;
  }

  /** Any frame whose body is a single optional byte string. */
  encodeSimple(type: FrameType, flags: number, id: number, body: Uint8Array | null): void {
    const bodyLength = body === null ? 0 : body.length;
    const inline = bodyLength <= COPY_LIMIT_BYTES;
    const buf = this.reserve(HEADER_SIZE + (inline ? bodyLength : 0));
    const frameStart = this.pos;
    this.writeHeader(buf, frameStart, HEADER_SIZE - LENGTH_SIZE + bodyLength, type, flags, id);
    if (body === null) {
      this.pos = frameStart + HEADER_SIZE;
      this.lastResponseBuf = null;
    } else {
      this.finishWithPayload(buf, frameStart + HEADER_SIZE, body, inline);
    }
  }

  /** Frame with a 32-bit body (CREDIT, and nest-wire's PING) without allocating. */
  encodeU32(type: FrameType, flags: number, id: number, value: number): void {
    const buf = this.reserve(HEADER_SIZE + 4);
    const frameStart = this.pos;
    this.writeHeader(buf, frameStart, HEADER_SIZE - LENGTH_SIZE + 4, type, flags, id);
    buf.writeUInt32BE(value >>> 0, frameStart + HEADER_SIZE);
    this.pos = frameStart + HEADER_SIZE + 4;
    this.lastResponseBuf = null;
  }

  /** Hands out everything encoded since the last call, as chunks in order; null if nothing. */
  take(): Buffer[] | null {
    if (this.pos > this.start) this.seal();
    this.lastResponseBuf = null;
    if (this.sealed.length === 0) return null;
    const out = this.sealed;
    this.sealed = [];
    this.sealedBytes = 0;
    this.generation++;
    if (this.arena !== null && this.arena.length - this.pos < MIN_ARENA_TAIL_BYTES) {
      this.retired = this.arena;
      this.arena = null;
    }
    return out;
  }

  /**
   * Everything `take()` handed out has been consumed: the socket copied it (a write that
   * completed synchronously) and keeps no reference to it. The arena is written from its
   * start again. Does nothing if frames were encoded since the last `take()`.
   */
  reuseTaken(): void {
    if (this.pos !== this.start || this.sealed.length !== 0) return;
    const arena = this.arena ?? this.retired;
    if (arena === null) return;
    this.arena = arena;
    this.retired = null;
    this.pos = this.start = 0;
  }

  private lastFrameBuf: Buffer | null = null;
  private lastFrameStart = 0;

  private writeHeader(buf: Buffer, at: number, length: number, type: number, flags: number, id: number): void {
    buf.writeUInt32BE(length, at);
    buf[at + 4] = type;
    buf[at + 5] = flags;
    buf.writeUInt32BE(id, at + 6);
    this.lastFrameBuf = buf;
    this.lastFrameStart = at;
    this.frames++;
  }

  private finishWithPayload(buf: Buffer, at: number, payload: Uint8Array, inline: boolean): void {
    this.lastResponseBuf = null;
    if (inline) {
      buf.set(payload, at);
      this.pos = at + payload.length;
      return;
    }
    // Large payload: queue it as its own chunk rather than copying it.
    this.pos = at;
    this.seal();
    const view = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.length);
    this.sealed.push(view);
    this.sealedBytes += view.length;
  }

  /** Returns an arena with at least `n` free bytes at `this.pos`. */
  private reserve(n: number): Buffer {
    const arena = this.arena;
    if (arena !== null && arena.length - this.pos >= n) return arena;
    if (arena !== null && this.pos > this.start) this.seal();
    // Arenas grow from 4 KiB to 64 KiB as the connection shows it needs them.
    this.arenaBytes =
      arena === null && this.arenaBytes === 0 ? FIRST_ARENA_BYTES : Math.min(ARENA_BYTES, this.arenaBytes * 2);
    const next = Buffer.allocUnsafe(Math.max(this.arenaBytes, n));
    this.arena = next;
    this.retired = null;
    this.pos = 0;
    this.start = 0;
    return next;
  }

  private seal(): void {
    const chunk = this.arena!.subarray(this.start, this.pos);
    this.sealed.push(chunk);
    this.sealedBytes += chunk.length;
    this.start = this.pos;
  }
}
