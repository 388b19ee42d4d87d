import type { Socket } from 'node:net';
import type { FrameEncoder } from '../protocol/frame-encoder.js';
import { FragmentQueue } from './fragment-queue.js';
import { TransportCounters } from './transport-stats.js';

type WriteCallback = (err?: Error | null) => void;

/** Pending bytes past which frames are written at once instead of at the end of the turn. */
const FLUSH_EARLY_BYTES = 8 * 1024;
/** ...and at least this many frames, unless the batch is already this large: big frames batch too. */
const FLUSH_EARLY_FRAMES = 16;
const FLUSH_EARLY_MAX_BYTES = 256 * 1024;

/**
 * Coalescers of this process with an end-of-turn flush scheduled (`scheduled` true). Only the
 * first of a turn writes its first frame at once: with many connections busy, the peer has
 * the others' work to overlap with, and a lone frame per connection per turn would double the
 * writes (64 connections x 4 calls: 1.9 calls per write instead of 3.8, see BENCHMARKS.md).
 */
let turnFlushesPending = 0;

/**
 * Turns the frames encoded during one turn of the event loop into few socket writes.
 *
 * The first frame of a turn is written at once and schedules a flush with
 * `setImmediate` for the rest: that runs after the I/O callbacks of this loop iteration
 * *and* the promise chains they started (Nest resolves handlers through several awaits,
 * so a microtask flush would fire before most responses of a batch exist), yet before
 * the loop waits for I/O again. No timer is involved and a lone frame waits for nothing,
 * unless other connections of this process write this turn too (`turnFlushesPending`):
 * then it waits for the end of the turn with theirs, still before the loop waits for I/O.
 * A batch that reaches 8 KiB and 16 frames (or 256 KiB) is written early, so the peer
 * works while this side produces the rest (measured in BENCHMARKS.md: otherwise both
 * processes take turns). Large values leave in fragments through `fragments`, if given.
 *
 * While the socket reports it is full (`write()` returned false), frames keep
 * accumulating in the encoder and leave together on `drain`.
 */
export class WriteCoalescer {
  /** Socket writes issued. */
  writes = 0;
  bytesWritten = 0;

  private scheduled = false;
  private blocked = false;
  private closed = false;
  private waiters: WriteCallback[] = [];
  private readonly flushBound = () => {
    this.scheduled = false;
    turnFlushesPending--;
    this.flush();
    if (this.onFlushed !== null) this.checkFlushed();
  };
  private readonly onDrainBound = () => {
    this.blocked = false;
    this.flush();
    if (this.onFlushed !== null) this.checkFlushed();
  };

  /** Frames of the encoder already counted into `counters`. */
  private framesCounted = 0;
  /**
   * A plain socket hands libuv the bytes of a write and, if the write completed at once
   * (nothing left in `writableLength`), keeps no reference to them: the encoder may reuse
   * its arena. Not assumed for TLS, which may keep cleartext it could not yet encrypt.
   */
  private readonly reusesArena: boolean;

  constructor(
    private readonly socket: Socket,
    private readonly encoder: FrameEncoder,
    private readonly counters: TransportCounters = new TransportCounters(),
    /** Large values leaving in fragments, interleaved with everything else (the side that sends them). */
    private readonly fragments: FragmentQueue | null = null,
  ) {
    socket.on('drain', this.onDrainBound);
    this.reusesArena = (socket as { encrypted?: boolean }).encrypted !== true;
  }

  /** True while the socket has refused more data and a drain is awaited. */
  get isBlocked(): boolean {
    return this.blocked;
  }

  /**
   * Called after frames were encoded: makes sure a flush is coming. Past
   * `FLUSH_EARLY_BYTES` the batch is written at once, so the peer starts working on it
   * while this side is still producing the rest of the turn's frames (otherwise both
   * processes take turns, each idle while the other works). `early` is false for a
   * RESPONSE value whose completion may follow synchronously: the END flag must still be
   * able to fold into that frame.
   */
  schedule(early = true): void {
    if (this.closed) return;
    if (this.scheduled) {
      if (early && this.worthWritingEarly()) this.flush();
      return;
    }
    this.scheduled = true;
    setImmediate(this.flushBound);
    // The first frame of a turn leaves at once: a lone call waits for nothing, and at low
    // concurrency the peer starts on it while this side produces the rest of the batch. If
    // other connections have frames leaving this turn too, it waits for the end of the turn.
    if (++turnFlushesPending === 1 && early) this.flush();
  }

  private worthWritingEarly(): boolean {
    const encoder = this.encoder;
    const bytes = encoder.pendingBytes;
    if (bytes < FLUSH_EARLY_BYTES) return false;
    return (
      bytes >= FLUSH_EARLY_MAX_BYTES ||
      encoder.frames - this.framesCounted >= FLUSH_EARLY_FRAMES ||
      // Before the next frame spills into a new arena: written at once, this one is reused.
      (this.reusesArena && encoder.nearlyFull)
    );
  }

  /** Calls `cb` once everything encoded so far has been handed to the OS (or failed). */
  whenWritten(cb: WriteCallback): void {
    if (this.closed) {
      process.nextTick(cb, new Error('connection closed'));
      return;
    }
    this.waiters.push(cb);
    this.schedule();
  }

  /** Writes what is pending now, unless the socket is full. */
  flush(): void {
    if (this.blocked || this.closed) return;
    // The next slice of any large value goes after the small frames of this turn.
    const fragments = this.fragments;
    const moreFragments = fragments !== null && !fragments.isEmpty && fragments.encodeInto(this.encoder);
    const chunks = this.encoder.take();
    if (chunks === null) {
      this.releaseWaiters(null);
      return;
    }
    const waiters = this.waiters;
    let callback: WriteCallback | undefined;
    if (waiters.length > 0) {
      this.waiters = [];
      callback = (err) => {
        for (const w of waiters) w(err);
      };
    }
    const socket = this.socket;
    let ok: boolean;
    let bytes = 0;
    if (chunks.length === 1) {
      bytes = chunks[0].length;
      ok = socket.write(chunks[0], callback);
    } else {
      // cork/uncork hands the chunks to libuv as one writev: one syscall.
      socket.cork();
      const last = chunks.length - 1;
      for (let i = 0; i < last; i++) {
        bytes += chunks[i].length;
        socket.write(chunks[i]);
      }
      bytes += chunks[last].length;
      ok = socket.write(chunks[last], callback);
      socket.uncork();
    }
    this.bytesWritten += bytes;
    this.writes++;
    const counters = this.counters;
    counters.writes++;
    counters.bytesOut += bytes;
    counters.framesOut += this.encoder.frames - this.framesCounted;
    this.framesCounted = this.encoder.frames;
    if (!ok) this.blocked = true;
    else if (this.reusesArena && socket.writableLength === 0) this.encoder.reuseTaken();
    // More fragments: another flush next turn (or on drain), so new small frames get in between.
    else if (moreFragments && !this.scheduled) {
      this.scheduled = true;
      turnFlushesPending++;
      setImmediate(this.flushBound);
    }
  }

  /**
   * Graceful end: writes what is pending (waiting for `drain` as often as needed), then
   * calls `done`; frames encoded from now on are not written.
   */
  closeAfterFlush(done: () => void): void {
    if (this.closed) return;
    this.onFlushed = done;
    this.flush();
    this.checkFlushed();
  }

  private onFlushed: (() => void) | null = null;

  private checkFlushed(): void {
    if (this.onFlushed === null) return;
    const fragmentsLeft = this.fragments !== null && !this.fragments.isEmpty;
    if (fragmentsLeft && !this.blocked) this.flush();
    // Still writing: `drain` or the next scheduled flush comes back here.
    if (this.blocked || this.encoder.pendingBytes > 0 || (this.fragments !== null && !this.fragments.isEmpty)) return;
    const done = this.onFlushed;
    this.onFlushed = null;
    this.close();
    done();
  }

  /** Stops writing; waiters are told the connection closed. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.off('drain', this.onDrainBound);
    this.releaseWaiters(new Error('connection closed'));
  }

  private releaseWaiters(err: Error | null): void {
    if (this.waiters.length === 0) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) process.nextTick(w, err);
  }
}
