import { WireFrameTooLargeError, WireHandshakeError, WireProtocolError } from '../errors.js';
import { FrameSink, HEADER_SIZE, LENGTH_SIZE, MAGIC, MAX_FRAME_TYPE, MIN_FRAME_LENGTH } from './frame.js';

/** A partial-frame buffer above this size is dropped after use instead of kept for reuse. */
const RETAINED_BUFFER_BYTES = 1024 * 1024;

/**
 * Splits a byte stream into frames. Pure: bytes in, `sink.onFrame` calls out, no I/O.
 *
 * Complete frames inside a chunk are handed over as views of that chunk (no copy);
 * only a frame that spans chunks is copied, into one reusable buffer. The declared
 * length is checked against `maxFrameSize` before anything is buffered, so a peer
 * cannot make this side allocate more than the limit. One loop over an offset, no
 * recursion per frame: a chunk holding 100 000 frames costs no stack.
 *
 * After the first error every later `push` is ignored: a byte stream that lost its
 * framing cannot be resynchronised, the connection has to close.
 */
export class FrameDecoder {
  /** Largest accepted value of a frame's length field. Adjustable after the handshake. */
  maxFrameSize: number;

  /** Bytes of the magic preface still expected (0 once it has been read). */
  private magicRemaining: number;
  /** Partial frame: `partial[0, partialLength)` holds the bytes read so far. */
  private partial: Buffer | null = null;
  private partialLength = 0;
  /** Total size (length field included) of the partial frame, or 0 while its length is unknown. */
  private partialTarget = 0;
  private failed = false;
  /** While true, no frame is emitted; unread input waits in `held`. */
  private paused = false;
  /** Input received (or left over) while paused, in order. Views, not copies. */
  private held: Buffer[] = [];
  /** True while `consume` is on the stack (guards re-entrant resume). */
  private decoding = false;

  constructor(
    private readonly sink: FrameSink,
    options: { maxFrameSize: number; expectMagic?: boolean },
  ) {
    this.maxFrameSize = options.maxFrameSize;
    this.magicRemaining = options.expectMagic === false ? 0 : MAGIC.length;
  }

  /** Bytes held for a frame that has not fully arrived. */
  get bufferedBytes(): number {
    return this.partialLength;
  }

  /** True while paused. */
  get isPaused(): boolean {
    return this.paused;
  }

  /** Bytes received but not yet decoded because the decoder is paused. */
  get heldBytes(): number {
    let n = 0;
    for (const b of this.held) n += b.length;
    return n;
  }

  /**
   * Feeds the next chunk. Throws `WireProtocolError` (or a subclass) on malformed
   * input; the sink must not throw.
   */
  push(chunk: Buffer): void {
    if (this.failed) return;
    if (this.paused) {
      this.held.push(chunk);
      return;
    }
    this.guarded(chunk);
  }

  /**
   * Stops emitting frames after the current one: the rest of the chunk being decoded
   * is kept (as a view) until `resume()`. Lets a server stop at an exact frame boundary
   * when it has as many calls running as it allows.
   */
  pause(): void {
    this.paused = true;
  }

  /** Decodes what was held while paused, then accepts input again. */
  resume(): void {
    if (!this.paused || this.failed) return;
    this.paused = false;
    // Called from inside a sink callback: the decoding loop below us carries on by itself.
    if (this.decoding) return;
    while (this.held.length > 0 && !this.paused && !this.failed) {
      this.guarded(this.held.shift()!);
    }
  }

  private guarded(chunk: Buffer): void {
    this.decoding = true;
    try {
      this.consume(chunk);
      this.decoding = false;
    } catch (err) {
      this.decoding = false;
      this.failed = true;
      this.partial = null;
      this.partialLength = 0;
      this.held = [];
      throw err;
    }
  }

  private consume(chunk: Buffer): void {
    let offset = 0;
    const end = chunk.length;
    if (this.magicRemaining > 0) offset = this.readMagic(chunk);
    if (this.partialLength > 0 && offset < end) offset = this.fillPartial(chunk, offset);

    while (offset < end) {
      if (this.paused) {
        // Keep the unread rest for resume(); it goes before anything pushed meanwhile.
        this.held.unshift(chunk.subarray(offset));
        return;
      }
      const remaining = end - offset;
      if (remaining < LENGTH_SIZE) {
        this.startPartial(chunk, offset, end);
        return;
      }
      const length = chunk.readUInt32BE(offset);
      this.checkLength(length);
      const total = LENGTH_SIZE + length;
      if (remaining < total) {
        this.startPartial(chunk, offset, end);
        return;
      }
      this.emit(chunk, offset, total);
      offset += total;
    }
  }

  private readMagic(chunk: Buffer): number {
    const start = MAGIC.length - this.magicRemaining;
    const n = Math.min(this.magicRemaining, chunk.length);
    for (let i = 0; i < n; i++) {
      if (chunk[i] !== MAGIC[start + i]) {
        throw new WireHandshakeError(
          'peer did not open with the nest-wire preface "NWIR"; it speaks another protocol or is not a nest-wire peer',
        );
      }
    }
    this.magicRemaining -= n;
    return n;
  }

  private checkLength(length: number): void {
    if (length < MIN_FRAME_LENGTH) {
      throw new WireProtocolError(`frame length ${length} is below the minimum of ${MIN_FRAME_LENGTH}`);
    }
    if (length > this.maxFrameSize) throw new WireFrameTooLargeError(length, this.maxFrameSize);
  }

  /** Copies the tail of `chunk` into the partial buffer. */
  private startPartial(chunk: Buffer, offset: number, end: number): void {
    const n = end - offset;
    let target = 0;
    if (n >= LENGTH_SIZE) target = LENGTH_SIZE + chunk.readUInt32BE(offset);
    this.ensurePartialCapacity(Math.max(target, HEADER_SIZE));
    chunk.copy(this.partial!, 0, offset, end);
    this.partialLength = n;
    this.partialTarget = target;
  }

  /** Completes the partial frame from `chunk`; returns the new offset. */
  private fillPartial(chunk: Buffer, offset: number): number {
    if (this.partialTarget === 0) {
      // The length field itself was split: take just enough bytes to read it.
      const need = LENGTH_SIZE - this.partialLength;
      const n = Math.min(need, chunk.length - offset);
      chunk.copy(this.partial!, this.partialLength, offset, offset + n);
      this.partialLength += n;
      offset += n;
      if (this.partialLength < LENGTH_SIZE) return offset;
      const length = this.partial!.readUInt32BE(0);
      this.checkLength(length);
      this.partialTarget = LENGTH_SIZE + length;
      this.ensurePartialCapacity(this.partialTarget);
    }
    const n = Math.min(this.partialTarget - this.partialLength, chunk.length - offset);
    chunk.copy(this.partial!, this.partialLength, offset, offset + n);
    this.partialLength += n;
    offset += n;
    if (this.partialLength === this.partialTarget) {
      const frame = this.partial!;
      const total = this.partialTarget;
      this.partialLength = 0;
      this.partialTarget = 0;
      if (frame.length > RETAINED_BUFFER_BYTES) this.partial = null;
      this.emit(frame, 0, total);
    }
    return offset;
  }

  private ensurePartialCapacity(size: number): void {
    const current = this.partial;
    if (current !== null && current.length >= size) return;
    const next = Buffer.allocUnsafe(Math.max(size, 4096));
    if (current !== null && this.partialLength > 0) current.copy(next, 0, 0, this.partialLength);
    this.partial = next;
  }

  private emit(buf: Buffer, offset: number, total: number): void {
    const type = buf[offset + 4];
    if (type === 0 || type > MAX_FRAME_TYPE) {
      throw new WireProtocolError(`unknown frame type ${type}`);
    }
    const flags = buf[offset + 5];
    const id = buf.readUInt32BE(offset + 6);
    this.sink.onFrame(type, flags, id, buf.subarray(offset + HEADER_SIZE, offset + total));
  }
}
