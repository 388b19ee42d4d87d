import { WireFrameTooLargeError, WireLimitError, WireProtocolError, type WireError } from '../errors.js';
import { FRAGMENT_WINDOW_BYTES, RESPONSE_LAST_FRAGMENT, RESPONSE_MORE } from '../protocol/frame.js';

/** A value being received in fragments. */
interface Partial {
  parts: Buffer[];
  bytes: number;
}

/** `join` outcome for a value that passed a limit: the call must be cancelled and reported broken. */
export interface JoinRefused {
  readonly refused: WireError;
}

/**
 * The receiving side of fragmented values, the same in both directions (RESPONSE values on
 * a client, STREAM values on a server): counts every fragment byte against the 256 KiB
 * window and grants it back (CREDIT id 0) once half is used, and joins the fragments of
 * each call's value, bounded by `maxFrameSize` per value and `maxFragmentedBytes` in all.
 *
 * Invariant: `fragmentedBytes` is the sum of `bytes` over `partials`.
 */
export class FragmentJoiner {
  /** Fragment bytes read since the last window grant (never more than the window). */
  private bytesRead = 0;
  private readonly partials = new Map<number, Partial>();
  private fragmentedBytes = 0;

  constructor(
    private readonly maxFrameSize: number,
    private readonly maxFragmentedBytes: number,
    /** Sends CREDIT id 0 for `bytes` consumed. */
    private readonly grantWindow: (bytes: number) => void,
    /** Who sends the fragments, for the error message. */
    private readonly sender: 'server' | 'client',
  ) {}

  /** True when a value of call `id` is partly received (its next frame continues it). */
  has(id: number): boolean {
    return this.partials.has(id);
  }

  /**
   * Counts a fragment's bytes (wanted or not: the sender counts every one it sends). A peer
   * that sends more than the window it was granted breaks the protocol (throws).
   */
  counted(flags: number, bytes: number): boolean {
    if ((flags & (RESPONSE_MORE | RESPONSE_LAST_FRAGMENT)) === 0) return false;
    this.bytesRead += bytes;
    if (this.bytesRead > FRAGMENT_WINDOW_BYTES) {
      throw new WireProtocolError(
        `${this.sender} sent ${this.bytesRead} fragment bytes, past the ${FRAGMENT_WINDOW_BYTES}-byte window it was granted`,
      );
    }
    if (this.bytesRead >= FRAGMENT_WINDOW_BYTES / 2) {
      this.grantWindow(this.bytesRead);
      this.bytesRead = 0;
    }
    return true;
  }

  /**
   * Collects a fragment of call `id`'s value (copied: frames are views of a reused read
   * buffer). Returns the whole payload with the last fragment, null before it, or a
   * refusal when the value passes a limit (its fragments are dropped).
   */
  join(id: number, flags: number, body: Buffer): Buffer | null | JoinRefused {
    let partial = this.partials.get(id);
    if (partial === undefined) this.partials.set(id, (partial = { parts: [], bytes: 0 }));
    partial.bytes += body.length;
    this.fragmentedBytes += body.length;
    if (partial.bytes > this.maxFrameSize) {
      const size = partial.bytes;
      this.drop(id);
      return { refused: new WireFrameTooLargeError(size, this.maxFrameSize) };
    }
    if (this.fragmentedBytes > this.maxFragmentedBytes) {
      // The total of every partial value on this connection is bounded, not only each one.
      this.drop(id);
      return {
        refused: new WireLimitError(
          `partly received values on this connection passed maxFragmentedBytes ${this.maxFragmentedBytes}`,
        ),
      };
    }
    if ((flags & RESPONSE_MORE) !== 0) {
      partial.parts.push(Buffer.from(body));
      return null;
    }
    partial.parts.push(body);
    const whole = Buffer.concat(partial.parts, partial.bytes);
    this.drop(id);
    return whole;
  }

  drop(id: number): void {
    const partial = this.partials.get(id);
    if (partial === undefined) return;
    this.fragmentedBytes -= partial.bytes;
    this.partials.delete(id);
  }

  clear(): void {
    this.partials.clear();
    this.fragmentedBytes = 0;
  }
}

export function isJoinRefused(joined: Buffer | JoinRefused): joined is JoinRefused {
  return !Buffer.isBuffer(joined);
}
