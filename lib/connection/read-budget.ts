import { performance } from 'node:perf_hooks';

/**
 * Work one socket read may do before the connection yields to the event loop (pauses,
 * resumes on `setImmediate`): frame bytes + bytes inflated + estimated heap decoded, and
 * `FRAME_WORK_BYTES` per frame (so 4 096 tiny frames also count as 1 MiB). The frame that
 * crosses it is finished; its own cost is bounded by `maxDecodedBytes` / `maxDecompressedBytes`.
 */
export const READ_WORK_BYTES = 1024 * 1024;
export const FRAME_WORK_BYTES = 256;
/**
 * A REQUEST or EVENT starts a handler whose continuation (Nest resolves it through
 * promises, and encodes its answer) runs after this read, out of the clock's sight: each
 * counts as 8 KiB, so one read starts at most 128 calls.
 */
export const CALL_WORK_BYTES = 8 * 1024;
/**
 * ...and time: what the frames of one read start synchronously (handlers, encoding their
 * answers) is not counted in bytes, so the clock is read every 16 frames too.
 */
export const READ_WORK_MS = 10;

/**
 * The work budget of one socket read (see READ_WORK_BYTES): what the frames cost, what
 * decoding them cost (`PayloadCodec` charges it), and the time they took.
 */
export class ReadBudget {
  /** Work counted since the read started. */
  private work = 0;
  /** Frames checked since the read started, and when it started (`performance.now()`). */
  private frames = 0;
  private startedAt = 0;

  /** A socket read (or a resume after a yield) starts with a fresh budget; `now` if the caller has just read the clock. */
  start(now = performance.now()): void {
    this.work = 0;
    this.frames = 0;
    this.startedAt = now;
  }

  /** Counts a frame: its body, and a fixed cost (more for one that starts a call). */
  frame(bodyBytes: number, startsCall: boolean): void {
    this.work += bodyBytes + (startsCall ? CALL_WORK_BYTES : FRAME_WORK_BYTES);
  }

  /** Counts bytes of work decoding did (inflated, estimated heap decoded). */
  charge(bytes: number): void {
    this.work += bytes;
  }

  /** After a frame: true once this read has used its budget, in bytes or (read every 16 frames) in time. */
  spent(): boolean {
    if ((++this.frames & 15) === 0 && performance.now() - this.startedAt >= READ_WORK_MS) this.work = READ_WORK_BYTES;
    return this.work >= READ_WORK_BYTES;
  }
}
