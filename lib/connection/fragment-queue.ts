import { FRAGMENT_WINDOW_BYTES, FrameType, RESPONSE_LAST_FRAGMENT, RESPONSE_MORE } from '../protocol/frame.js';
import type { FrameEncoder } from '../protocol/frame-encoder.js';

/**
 * Largest payload of one fragment (the protocol's maximum). A fragment is shorter when the
 * value or the fragment window has less left, never empty (docs/PROTOCOL.md §3.10).
 */
export const FRAGMENT_BYTES = 64 * 1024;
/**
 * Values above this are cut into fragments. Below it they leave whole: cutting a 64 KiB
 * value would cost a second write and a turn of latency for no head-of-line gain worth it.
 */
export const FRAGMENT_THRESHOLD_BYTES = 256 * 1024;
/** Fragment bytes written per flush; other frames get written between two flushes. */
const BYTES_PER_FLUSH = 64 * 1024;

/** A frame waiting its turn: a large value being cut into fragments, or one queued behind it. */
interface Pending {
  id: number;
  type: FrameType;
  /** Flags of the frame (of the last fragment, for a value). */
  flags: number;
  payload: Uint8Array;
  offset: number;
  /** Cut into fragments (a large RESPONSE value), as opposed to queued whole behind one. */
  cut: boolean;
}

/**
 * Keeps a large response from holding up the small ones behind it on the same
 * connection: its payload leaves in fragments of 64 KiB, one flush at a time, and
 * whatever other calls produce in between is written between two fragments.
 *
 * Order within one call is kept: once a call has a value here, its later frames (more
 * values, its END, its ERROR) queue behind it instead of overtaking it.
 */
export class FragmentQueue {
  private readonly queue: Pending[] = [];
  /** Fragment bytes the peer still lets us send (it grants more with CREDIT id 0). */
  private window = FRAGMENT_WINDOW_BYTES;
  /** Frames queued per call id, to keep a call's frames in order. */
  private readonly perId = new Map<number, number>();
  /** Invariant: the sum of `payload.length - offset` over `queue` (read on every write decision). */
  private queuedBytes = 0;

  get isEmpty(): boolean {
    return this.queue.length === 0;
  }

  /** True when frames of call `id` are queued here (its next frames must queue too). */
  has(id: number): boolean {
    return this.perId.has(id);
  }

  push(id: number, type: FrameType, flags: number, payload: Uint8Array): void {
    const cut = isValueFrame(type) && payload.length > FRAGMENT_THRESHOLD_BYTES;
    this.queue.push({ id, type, flags, payload, offset: 0, cut });
    this.queuedBytes += payload.length;
    this.perId.set(id, (this.perId.get(id) ?? 0) + 1);
  }

  /** Adds `flag` (END) to the last frame queued for `id`; false if there is none. */
  markLast(id: number, flag: number): boolean {
    if (!this.perId.has(id)) return false;
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const p = this.queue[i];
      if (p.id === id) {
        if (!isValueFrame(p.type)) return false;
        p.flags |= flag;
        return true;
      }
    }
    return false;
  }

  /** Drops what is queued for `id` (the call was cancelled). */
  drop(id: number): void {
    if (!this.perId.has(id)) return;
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const p = this.queue[i];
      if (p.id === id && p.offset === 0) {
        this.queuedBytes -= p.payload.length;
        this.queue.splice(i, 1);
      }
    }
    const left = this.queue.filter((p) => p.id === id).length;
    if (left === 0) this.perId.delete(id);
    else this.perId.set(id, left);
  }

  /**
   * The peer consumed `bytes` of fragments: they may be sent again. The window never
   * exceeds FRAGMENT_WINDOW_BYTES: a grant made early, or beyond what was sent, is clamped
   * (the excess is ignored), so no peer can widen the window past the protocol's 256 KiB.
   */
  grant(bytes: number): void {
    this.window = Math.min(FRAGMENT_WINDOW_BYTES, this.window + bytes);
  }

  /** Bytes still queued (counts toward the connection's write backlog). */
  get pendingBytes(): number {
    return this.queuedBytes;
  }

  /**
   * Encodes up to `BYTES_PER_FLUSH` of queued payload, in order, within the fragment
   * window. Returns true if more could be sent now (the caller schedules another flush);
   * false when the queue is empty or waits for the peer's CREDIT.
   */
  encodeInto(encoder: FrameEncoder): boolean {
    let budget = BYTES_PER_FLUSH;
    const queue = this.queue;
    while (queue.length > 0 && budget > 0) {
      const p = queue[0];
      const left = p.payload.length - p.offset;
      let n = left;
      if (p.cut) {
        n = Math.min(left, FRAGMENT_BYTES, this.window);
        if (n === 0) return false; // wait for CREDIT
        this.window -= n;
      }
      const last = n === left;
      const part = p.offset === 0 && last ? p.payload : p.payload.subarray(p.offset, p.offset + n);
      let flags = p.flags;
      if (p.cut) flags = last ? flags | RESPONSE_LAST_FRAGMENT : (flags & ~RESPONSE_END_MASK) | RESPONSE_MORE;
      encoder.encodeSimple(p.type, flags, p.id, part);
      p.offset += n;
      this.queuedBytes -= n;
      budget -= n;
      if (!last) continue;
      queue.shift();
      const count = this.perId.get(p.id)! - 1;
      if (count === 0) this.perId.delete(p.id);
      else this.perId.set(p.id, count);
    }
    return queue.length > 0 && (!queue[0].cut || this.window > 0);
  }
}

/** END stays on the last fragment only. */
const RESPONSE_END_MASK = 0x01;

/** RESPONSE (server → client) and STREAM (client → server) carry values and are cut alike. */
function isValueFrame(type: FrameType): boolean {
  return type === FrameType.RESPONSE || type === FrameType.STREAM;
}
