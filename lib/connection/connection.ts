import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  errorFromRemote,
  WireAuthError,
  WireConnectionError,
  WireError,
  WireErrorCode,
  WireFrameTooLargeError,
  WireHandshakeError,
  WireProtocolError,
} from '../errors.js';
import type { WireCodec } from '../protocol/codec.js';
import {
  COMPRESSION_IDS,
  decodesFeature,
  decompress,
  FEATURES_SENDS_SHIFT,
  type PayloadCompressor,
} from '../protocol/compression.js';
import { DecodeBudget } from '../protocol/msgpack-validator.js';
import {
  ERROR_TRANSPORT,
  FEATURE_FRAGMENTS,
  FrameType,
  HEADER_SIZE,
  LENGTH_SIZE,
  MAGIC,
  MAX_PING_BODY_BYTES,
  MIN_MAX_FRAME_SIZE,
  PAYLOAD_COMPRESSED,
  PROTOCOL_VERSION,
} from '../protocol/frame.js';
import { FrameDecoder } from '../protocol/frame-decoder.js';
import { FrameEncoder } from '../protocol/frame-encoder.js';
import { decodeHelloBody, encodeHelloBody, HANDSHAKE_MAX_FRAME_BYTES, type Hello } from '../protocol/hello.js';
import { decodeTransportError, encodeTransportError } from '../protocol/transport-error.js';
import { TransportCounters } from './transport-stats.js';
import { WriteCoalescer } from './write-coalescer.js';

export enum ConnectionState {
  /** Preface and HELLO not yet exchanged; only HELLO (or a connection ERROR) is accepted. */
  HANDSHAKING = 'handshaking',
  OPEN = 'open',
  CLOSED = 'closed',
}

/** What a connection reports to its owner (a client pool or a server session). */
export interface ConnectionHandler {
  /** The handshake completed; `conn.peer` holds the peer's HELLO. */
  onOpen(conn: WireConnection): void;
  /** A frame other than HELLO / PING / PONG arrived on an open connection. */
  onFrame(conn: WireConnection, type: number, flags: number, id: number, body: Buffer): void;
  /** The socket took what was waiting (a write completed): held values may go out now. */
  onWritable?(conn: WireConnection): void;
  /** Called once. `err` is null for an orderly close. */
  onClose(conn: WireConnection, err: WireError | null): void;
}

export interface ConnectionOptions {
  role: 'client' | 'server';
  codec: WireCodec;
  maxFrameSize: number;
  handshakeTimeoutMs: number;
  /** Calls this side runs at once per connection, announced to the peer (0: none announced). */
  maxInFlight?: number;
  heartbeatMs?: number;
  /** Client: the HELLO extension (codec-encoded `{ credentials }`), or null. */
  extension?: Uint8Array | null;
  /** Shared counters of the client or server this connection belongs to. */
  counters?: TransportCounters;
  /** Compresses large payloads, if configured; used only when the peer can decode it. */
  compression?: PayloadCompressor | null;
  /**
   * Server: decides whether the peer may proceed, from its HELLO. Until it answers, no
   * frame of the peer is decoded; false or a throw refuses it with `WireAuthError`.
   */
  authenticate?: (hello: Hello, conn: WireConnection) => boolean | Promise<boolean>;
  /**
   * Unsent bytes (encoder + socket) past which this side stops reading the peer until
   * they are written: a peer that does not read cannot make it queue answers (PONG,
   * refusals, responses) without bound. Default 64 MiB.
   */
  maxQueuedBytes?: number;
  /** Estimated heap one decoded payload may take (`DecodeBudget`). Default 16 MiB. */
  maxDecodedBytes?: number;
  /** Largest payload after decompression. Default 1 MiB. */
  maxDecompressedBytes?: number;
}

/** Why reading is stopped; reading resumes once no reason is left. */
export const PAUSE_AUTH = 1;
/** The session runs as many calls as it allows. */
export const PAUSE_CALLS = 2;
/** More than `maxQueuedBytes` wait for a peer that does not read. */
export const PAUSE_BACKLOG = 4;
/** This socket read used its work budget: other sockets get the event loop first. */
export const PAUSE_YIELD = 8;

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

const DEFAULT_MAX_QUEUED_BYTES = 64 * 1024 * 1024;
const EMPTY_BUFFER = Buffer.alloc(0);
const DEFAULT_MAX_DECODED_BYTES = 16 * 1024 * 1024;
const DEFAULT_MAX_DECOMPRESSED_BYTES = 1024 * 1024;

/** Time given to a refused peer to read our ERROR frame before the socket is destroyed. */
const LINGER_MS = 1000;
/** Longest an orderly close waits for a slow reader to take what was still queued. */
const END_TIMEOUT_MS = 10_000;

/**
 * One socket's life, shared by client and server: preface and HELLO exchange, frame
 * decoding, coalesced writes, PING answers, and a single close path. It knows frames,
 * not patterns or Nest: what the frames mean is the owner's business.
 *
 * Handshake: both sides write the 4-byte preface. The client sends HELLO at once; the
 * server answers with its own HELLO once it has accepted the client's, or with an
 * ERROR (id 0) and closes. Either side is OPEN once it holds the peer's HELLO.
 */
export class WireConnection {
  state = ConnectionState.HANDSHAKING;
  /** The peer's HELLO, once received. */
  peer: Hello | null = null;
  readonly encoder = new FrameEncoder();
  readonly coalescer: WriteCoalescer;
  readonly remoteAddress: string;
  bytesRead = 0;
  framesRead = 0;
  /** When bytes were last read (`performance.now()`), for heartbeats. */
  lastReadAt = performance.now();
  private pingSentAt = 0;
  /** Why reading is stopped (PAUSE_* bits); 0 while reading. */
  private pausedFor = 0;
  /** Work done by the current socket read (see READ_WORK_BYTES). */
  private readWork = 0;
  /** Frames of the current socket read, and when it started (`performance.now()`). */
  private readFrames = 0;
  private readStartedAt = 0;
  /** When the backlog last made progress while reading is stopped for it (`performance.now()`). */
  private backlogSince = 0;
  /**
   * Bounds what one decode may allocate. Owned by this connection; its owner (the
   * session) may lower `maxBytes` before a decode to charge a per-connection total.
   */
  readonly decodeBudget: DecodeBudget;
  private readonly maxQueuedBytes: number;
  private readonly maxDecompressedBytes: number;
  /** Compressor usable toward this peer (configured, and the peer decodes it), else null. */
  private compressor: PayloadCompressor | null = null;
  /** Algorithm id the peer compresses with (0: none). */
  private peerCompression = 0;
  /** Whether the last `compressOutgoing` compressed. */
  lastCompressed = false;
  private pingSeq = 0;
  private readonly pings = new Map<number, { sentAt: number; resolve(ms: number): void; reject(err: Error): void }>();

  private readonly decoder: FrameDecoder;
  private readonly counters: TransportCounters;
  private handshakeTimer: NodeJS.Timeout | null = null;
  private closeError: WireError | null = null;

  constructor(
    readonly socket: Socket,
    private readonly options: ConnectionOptions,
    private readonly handler: ConnectionHandler,
  ) {
    this.remoteAddress = `${socket.remoteAddress ?? 'unknown'}:${socket.remotePort ?? 0}`;
    this.decoder = new FrameDecoder(this, { maxFrameSize: HANDSHAKE_MAX_FRAME_BYTES });
    this.counters = options.counters ?? new TransportCounters();
    this.coalescer = new WriteCoalescer(socket, this.encoder, this.counters);
    this.decodeBudget = new DecodeBudget(options.maxDecodedBytes ?? DEFAULT_MAX_DECODED_BYTES);
    this.maxQueuedBytes = options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    this.maxDecompressedBytes = options.maxDecompressedBytes ?? DEFAULT_MAX_DECOMPRESSED_BYTES;
    socket.setNoDelay(true);
    socket.on('data', this.onData);
    socket.on('error', this.onSocketError);
    socket.on('close', this.onSocketClose);
    this.handshakeTimer = setTimeout(this.onHandshakeTimeout, options.handshakeTimeoutMs).unref();
    this.encoder.writeRaw(MAGIC);
    if (options.role === 'client') this.sendHello();
    this.coalescer.schedule();
  }

  get isOpen(): boolean {
    return this.state === ConnectionState.OPEN;
  }

  /** Largest frame (and largest value assembled from fragments) this side accepts. */
  get maxFrameSize(): number {
    return this.options.maxFrameSize;
  }

  /** Largest frame the peer accepts (its HELLO), or the handshake limit before that. */
  get peerMaxFrameSize(): number {
    return this.peer === null ? HANDSHAKE_MAX_FRAME_BYTES : this.peer.maxFrameSize;
  }

  /**
   * The payload to put on the wire: compressed when worth it (then `lastCompressed` is
   * true and the frame must carry PAYLOAD_COMPRESSED).
   */
  compressOutgoing(payload: Uint8Array): Uint8Array {
    const compressor = this.compressor;
    if (compressor !== null) {
      const out = compressor.compress(payload);
      if (out !== null) {
        this.lastCompressed = true;
        return out;
      }
    }
    this.lastCompressed = false;
    return payload;
  }

  /**
   * Decodes a frame's payload, decompressing it first if the frame says so (only with the
   * algorithm this side enabled, to at most `maxDecompressedBytes`), within
   * `decodeBudget`. What it inflates and decodes counts toward this read's work budget.
   */
  decodePayload(flags: number, bytes: Buffer): unknown {
    if ((flags & PAYLOAD_COMPRESSED) !== 0) {
      // Counted even when refused: a bomb stopped at the limit cost the work of the limit.
      this.readWork += this.maxDecompressedBytes;
      bytes = decompress(
        this.peerCompression,
        this.options.compression?.algorithm ?? null,
        bytes,
        this.maxDecompressedBytes,
      );
    }
    return this.decode(bytes);
  }

  /** Decodes codec bytes (a payload, metadata) within `decodeBudget`, counting the work. */
  decode(bytes: Uint8Array): unknown {
    const budget = this.decodeBudget;
    // A custom codec may ignore the budget: its bytes are then the only measure.
    budget.lastBytes = bytes.length;
    try {
      return this.options.codec.decode(bytes, budget);
    } finally {
      this.readWork += budget.lastBytes;
    }
  }

  /** Bytes read and not yet decoded: a partial frame, or input held while reading is paused. */
  get bufferedBytes(): number {
    return this.decoder.bufferedBytes + this.decoder.heldBytes;
  }

  /** Bytes written or encoded but not yet accepted by the OS (a slow reader's backlog). */
  get queuedBytes(): number {
    return this.encoder.pendingBytes + this.socket.writableLength + this.coalescer.fragments.pendingBytes;
  }

  /**
   * Whether another value may be queued now (the bound on unsent bytes, fragments
   * included, holds when bytes are written, not only when requests arrive).
   */
  get canQueue(): boolean {
    return this.queuedBytes < this.maxQueuedBytes;
  }

  /** The peer takes large values in fragments (and grants the fragment window). */
  get peerAcceptsFragments(): boolean {
    return this.peer !== null && (this.peer.features & FEATURE_FRAGMENTS) !== 0;
  }

  /**
   * Stops reading at the current frame boundary, for `reason` (a PAUSE_* bit). The socket
   * is paused too, so the kernel's buffers fill and TCP slows the sender: nothing queues
   * without bound here. Reading resumes once every reason is cleared.
   */
  pauseReading(reason = PAUSE_CALLS): void {
    const was = this.pausedFor;
    this.pausedFor |= reason;
    if (was === 0) {
      this.decoder.pause();
      this.socket.pause();
    }
    if (reason === PAUSE_YIELD) return;
    // The peer's PINGs go unread now, so it would soon think this side is dead: tell it
    // otherwise with PINGs of our own at its heartbeat pace, until reading resumes.
    const peerHeartbeatMs = this.peer?.heartbeatMs ?? 0;
    if (peerHeartbeatMs > 0 && this.keepalive === null && this.state === ConnectionState.OPEN) {
      this.keepalive = setInterval(this.sendKeepalive, Math.max(1, peerHeartbeatMs >> 1)).unref();
    }
  }

  private keepalive: NodeJS.Timeout | null = null;

  private readonly sendKeepalive = (): void => {
    if (this.state !== ConnectionState.OPEN) return this.stopKeepalive();
    this.encoder.encodeU32(FrameType.PING, 0, 0, 0);
    this.coalescer.schedule();
  };

  private stopKeepalive(): void {
    if (this.keepalive !== null) clearInterval(this.keepalive);
    this.keepalive = null;
  }

  resumeReading(reason = PAUSE_CALLS): void {
    if ((this.pausedFor & reason) === 0) return;
    this.pausedFor &= ~reason;
    if ((this.pausedFor & ~PAUSE_YIELD) === 0 && reason !== PAUSE_YIELD) {
      this.stopKeepalive();
      // We were not listening: the peer's silence meanwhile says nothing about it.
      this.lastReadAt = performance.now();
    }
    if (this.state === ConnectionState.CLOSED || this.pausedFor !== 0) return;
    this.startRead();
    try {
      this.decoder.resume();
    } catch (err) {
      this.refuse(toWireError(err));
      return;
    }
    // Decoding what was held may have paused again (call limit, backlog, work budget).
    if (!this.decoder.isPaused) this.socket.resume();
  }

  private readonly resumeAfterYield = (): void => this.resumeReading(PAUSE_YIELD);

  private startRead(): void {
    this.readWork = 0;
    this.readFrames = 0;
    this.readStartedAt = performance.now();
  }

  /** Unsent bytes that leave without the peer's help (fragments wait for its CREDIT). */
  private get writeBacklog(): number {
    return this.encoder.pendingBytes + this.socket.writableLength;
  }

  /** After a frame: yields if this read used its budget, stops reading if the peer does not read. */
  private checkReadBudget(): void {
    if (this.state !== ConnectionState.OPEN) return;
    if (this.writeBacklog >= this.maxQueuedBytes && (this.pausedFor & PAUSE_BACKLOG) === 0) {
      this.backlogSince = performance.now();
      this.pauseReading(PAUSE_BACKLOG);
      this.afterWrites(this.onBacklogWritten);
    }
    if ((++this.readFrames & 15) === 0 && performance.now() - this.readStartedAt >= READ_WORK_MS)
      this.readWork = READ_WORK_BYTES;
    if (this.readWork >= READ_WORK_BYTES && (this.pausedFor & PAUSE_YIELD) === 0) {
      this.pauseReading(PAUSE_YIELD);
      setImmediate(this.resumeAfterYield);
    }
  }

  /** A write completed while reading is stopped for the backlog: read again once it is small. */
  private readonly onBacklogWritten = (err?: Error | null): void => {
    if (err || this.state !== ConnectionState.OPEN) return;
    this.backlogSince = performance.now();
    if (this.writeBacklog >= this.maxQueuedBytes) {
      this.afterWrites(this.onBacklogWritten);
      return;
    }
    this.resumeReading(PAUSE_BACKLOG);
    this.handler.onWritable?.(this);
  };

  /**
   * Calls the handler's `onWritable` once what is queued now has been written, or at once
   * if nothing waits for the socket (what is left then waits for the peer's CREDIT).
   */
  notifyWhenWritable(): void {
    if (this.writeBacklog === 0 && !this.coalescer.isBlocked) return;
    if (this.writableWaiting) return;
    this.writableWaiting = true;
    this.afterWrites(this.onWrittenForHandler);
  }

  /**
   * Calls `cb` once everything queued so far has been handed to the OS. With nothing left
   * in the encoder, an empty write marks the end of the socket's queue: its callback comes
   * when the bytes before it are written (never at once while the peer does not read).
   */
  private afterWrites(cb: (err?: Error | null) => void): void {
    if (this.encoder.pendingBytes > 0 || this.coalescer.isBlocked) this.coalescer.whenWritten(cb);
    else if (this.socket.writableLength > 0 && !this.socket.destroyed) this.socket.write(EMPTY_BUFFER, cb);
    else process.nextTick(cb, null);
  }

  private writableWaiting = false;

  private readonly onWrittenForHandler = (err?: Error | null): void => {
    this.writableWaiting = false;
    if (err || this.state !== ConnectionState.OPEN) return;
    this.handler.onWritable?.(this);
  };

  /**
   * Heartbeat check, called periodically by a `HeartbeatMonitor`: pings a connection
   * that has been quiet for `intervalMs`, closes one that has been silent for twice that.
   */
  checkLiveness(now: number, intervalMs: number): void {
    if (this.state !== ConnectionState.OPEN) return;
    if ((this.pausedFor & PAUSE_BACKLOG) !== 0 && now - this.backlogSince >= 2 * intervalMs) {
      // Nothing we queued has moved for two intervals: the peer does not read; let it go.
      this.close(
        new WireConnectionError(
          `peer read nothing for ${Math.round(now - this.backlogSince)} ms with ${this.writeBacklog} bytes waiting`,
        ),
      );
      return;
    }
    if ((this.pausedFor & ~PAUSE_YIELD) !== 0) {
      // Reading is stopped on purpose (call limit, backlog): a PONG could not be seen, so do not judge.
      this.lastReadAt = now;
      return;
    }
    const silentMs = now - this.lastReadAt;
    if (silentMs >= 2 * intervalMs) {
      this.close(new WireConnectionError(`peer silent for ${Math.round(silentMs)} ms: no answer to heartbeat PING`));
      return;
    }
    if (silentMs >= intervalMs && this.pingSentAt <= this.lastReadAt) {
      this.pingSentAt = now;
      this.encoder.encodeU32(FrameType.PING, 0, 0, 0);
      this.coalescer.schedule();
    }
  }

  /**
   * Round trip to the peer: a PING whose id is not 0 (0 is the heartbeat's) answered by a
   * PONG with the same id. Resolves with the time it took in ms; rejects if the
   * connection closes first.
   */
  ping(): Promise<number> {
    if (this.state !== ConnectionState.OPEN) return Promise.reject(new WireConnectionError('connection is not open'));
    const id = (this.pingSeq = this.pingSeq >= 0x7fffffff ? 1 : this.pingSeq + 1);
    const sentAt = performance.now();
    return new Promise((resolve, reject) => {
      this.pings.set(id, { sentAt, resolve, reject });
      this.encoder.encodeU32(FrameType.PING, 0, id, 0);
      this.coalescer.schedule();
    });
  }

  private onPong(id: number): void {
    const waiter = this.pings.get(id);
    if (waiter === undefined) return;
    this.pings.delete(id);
    waiter.resolve(performance.now() - waiter.sentAt);
  }

  /** GOAWAY: this side will take no new requests (server) or send none (client) on this connection. */
  sendGoAway(code: WireErrorCode, message: string): void {
    if (this.state === ConnectionState.CLOSED) return;
    this.encoder.encodeSimple(FrameType.GOAWAY, 0, 0, encodeTransportError(code, message, this.peerMaxFrameSize));
    this.coalescer.schedule();
  }

  /** Throws if a frame of `bodyBytes` would exceed what the peer accepts. */
  checkFrameFits(bodyBytes: number): void {
    const length = HEADER_SIZE - LENGTH_SIZE + bodyBytes;
    if (length > this.peerMaxFrameSize) throw new WireFrameTooLargeError(length, this.peerMaxFrameSize);
  }

  /**
   * Ends call `id` with an ERROR: a `WireError` as a transport error, anything else as
   * the application's error value (a transport error if it cannot be encoded or is too
   * large). If a value of that call is still leaving in fragments, the ERROR queues behind
   * its last fragment instead of overtaking it.
   */
  sendCallError(id: number, err: unknown): void {
    if (this.state === ConnectionState.CLOSED) return;
    let flags = ERROR_TRANSPORT;
    let body: Uint8Array;
    if (err instanceof WireError) {
      body = encodeTransportError(err.code, err.message, this.peerMaxFrameSize);
    } else {
      try {
        body = this.options.codec.encode(err);
        this.checkFrameFits(body.length);
        flags = 0;
      } catch (e) {
        body = encodeTransportError(
          e instanceof WireError ? e.code : WireErrorCode.CODEC,
          `error value could not be sent: ${(e as Error).message}`,
          this.peerMaxFrameSize,
        );
      }
    }
    const fragments = this.coalescer.fragments;
    if (fragments.has(id)) fragments.push(id, FrameType.ERROR, flags, body);
    else this.encoder.encodeSimple(FrameType.ERROR, flags, id, body);
    this.coalescer.schedule();
  }

  /** ERROR frame carrying `err` as a transport error (its `code` and `message`). */
  sendTransportError(id: number, err: WireError): void {
    if (this.state === ConnectionState.CLOSED) return;
    this.encoder.encodeSimple(
      FrameType.ERROR,
      ERROR_TRANSPORT,
      id,
      encodeTransportError(err.code, err.message, this.peerMaxFrameSize),
    );
    this.coalescer.schedule();
  }

  /** A frame without body (CANCEL). */
  sendEmpty(type: FrameType, id: number): void {
    if (this.state === ConnectionState.CLOSED) return;
    this.encoder.encodeSimple(type, 0, id, null);
    this.coalescer.schedule();
  }

  /** Closes at once. Pending writes are dropped. `err` null means an orderly close. */
  close(err: WireError | null = null): void {
    if (this.state === ConnectionState.CLOSED) return;
    if (err !== null && this.closeError === null) this.closeError = err;
    this.socket.destroy();
    this.finish();
  }

  /**
   * Reports `err` to the peer as a connection-level ERROR, then closes once that
   * frame has been written (or after a short linger).
   */
  refuse(err: WireError): void {
    if (this.state === ConnectionState.CLOSED) return;
    this.sendTransportError(0, err);
    this.closeError = err;
    this.end();
  }

  /**
   * Orderly close: everything encoded is written first — waiting for `drain` if the peer
   * reads slowly — then the socket is half-closed, and destroyed if the peer does not
   * close its side within a short linger.
   */
  end(): void {
    if (this.state === ConnectionState.CLOSED) return;
    this.coalescer.closeAfterFlush(() => {
      this.socket.end();
      destroyLater(this.socket, LINGER_MS);
    });
    // A peer that never reads again must not hold the socket open forever.
    destroyLater(this.socket, END_TIMEOUT_MS);
    this.finish(false);
  }

  /** FrameSink: called by the decoder for each frame. */
  onFrame(type: number, flags: number, id: number, body: Buffer): void {
    this.framesRead++;
    this.counters.framesIn++;
    if (this.state === ConnectionState.OPEN) {
      this.readWork +=
        body.length + (type === FrameType.REQUEST || type === FrameType.EVENT ? CALL_WORK_BYTES : FRAME_WORK_BYTES);
      switch (type) {
        case FrameType.PING:
          if (body.length > MAX_PING_BODY_BYTES) {
            throw new WireProtocolError(
              `PING body of ${body.length} bytes exceeds the maximum of ${MAX_PING_BODY_BYTES}`,
            );
          }
          // The body is a view of the read buffer: copied (inline, it is small), never queued by reference.
          this.encoder.encodeSimple(FrameType.PONG, 0, id, body);
          this.coalescer.schedule();
          this.checkReadBudget();
          return;
        case FrameType.PONG:
          if (id !== 0) this.onPong(id);
          return;
        case FrameType.HELLO:
          throw new WireProtocolError('HELLO received twice');
        case FrameType.ERROR:
          if (id === 0) return this.onConnectionError(flags, body);
          break;
      }
      this.handler.onFrame(this, type, flags, id, body);
      this.checkReadBudget();
      return;
    }
    if (this.state !== ConnectionState.HANDSHAKING) return;
    if (type === FrameType.HELLO) {
      if (id !== 0) throw new WireHandshakeError(`HELLO with id ${id}: a HELLO's id must be 0`);
      return this.onHello(body);
    }
    if (type === FrameType.ERROR && id === 0) return this.onConnectionError(flags, body);
    throw new WireHandshakeError(`expected HELLO as the first frame, got frame type ${type}`);
  }

  private onHello(body: Buffer): void {
    const hello = decodeHelloBody(body);
    if (hello.version !== PROTOCOL_VERSION) {
      throw new WireHandshakeError(
        `peer speaks protocol version ${hello.version}, this side speaks ${PROTOCOL_VERSION}`,
      );
    }
    if (hello.codec !== this.options.codec.id) {
      throw new WireHandshakeError(
        `peer uses codec ${hello.codec}, this side uses ${this.options.codec.id} (${this.options.codec.name}); configure the same codec on both sides`,
      );
    }
    if (hello.maxFrameSize < MIN_MAX_FRAME_SIZE) {
      throw new WireHandshakeError(
        `peer announced maxFrameSize ${hello.maxFrameSize}, below the protocol minimum of ${MIN_MAX_FRAME_SIZE}`,
      );
    }
    this.peerCompression = (hello.features >> FEATURES_SENDS_SHIFT) & 0b11;
    if (this.peerCompression === 3) throw new WireHandshakeError('peer announced an unknown compression algorithm (3)');
    const mine = this.options.compression ?? null;
    // Compress toward the peer only with an algorithm it says it can decode (bit id-1 of features).
    this.compressor =
      mine !== null && (hello.features & (1 << (COMPRESSION_IDS[mine.algorithm] - 1))) !== 0 ? mine : null;
    this.peer = hello;
    const authenticate = this.options.authenticate;
    if (authenticate === undefined) return this.open();
    // Nothing the peer sent after its HELLO is looked at, or even read, until it is authenticated.
    this.pauseReading(PAUSE_AUTH);
    let verdict: boolean | Promise<boolean>;
    try {
      verdict = authenticate(hello, this);
    } catch (err) {
      return this.refuseAuth(err);
    }
    if (verdict === true) return this.resumeAfterAuth();
    if (verdict === false) return this.refuseAuth(null);
    Promise.resolve(verdict).then(
      (ok) => (ok === true ? this.resumeAfterAuth() : this.refuseAuth(null)),
      (err) => this.refuseAuth(err),
    );
  }

  private resumeAfterAuth(): void {
    if (this.state !== ConnectionState.HANDSHAKING) return;
    this.open();
    this.resumeReading(PAUSE_AUTH);
  }

  private refuseAuth(cause: unknown): void {
    if (this.state !== ConnectionState.HANDSHAKING) return;
    const err = new WireAuthError();
    if (cause !== null) err.cause = cause;
    this.refuse(err);
  }

  private open(): void {
    if (this.options.role === 'server') this.sendHello();
    this.decoder.maxFrameSize = this.options.maxFrameSize;
    this.clearHandshakeTimer();
    this.state = ConnectionState.OPEN;
    this.handler.onOpen(this);
  }

  private onConnectionError(flags: number, body: Buffer): void {
    const err = this.decodeRemoteError(flags, body);
    // An authentication refusal is reported as itself: the caller must see WireAuthError.
    const reported =
      err instanceof WireAuthError
        ? err
        : this.state === ConnectionState.HANDSHAKING
          ? new WireHandshakeError(`peer refused the connection: ${err.message}`, { cause: err })
          : new WireConnectionError(`peer reported a connection error: ${err.message}`, { cause: err });
    this.close(reported);
  }

  /** Rebuilds the error carried by an ERROR frame with the transport flag. */
  decodeRemoteError(flags: number, body: Buffer): WireError {
    if ((flags & ERROR_TRANSPORT) === 0) {
      return new WireProtocolError('connection-level ERROR without the TRANSPORT flag');
    }
    try {
      const { code, message } = decodeTransportError(body);
      return errorFromRemote(code, message);
    } catch (err) {
      return err as WireError;
    }
  }

  private sendHello(): void {
    const body = encodeHelloBody({
      version: PROTOCOL_VERSION,
      codec: this.options.codec.id,
      features:
        FEATURE_FRAGMENTS |
        decodesFeature(this.options.compression?.algorithm ?? null) |
        (this.options.compression ? COMPRESSION_IDS[this.options.compression.algorithm] << FEATURES_SENDS_SHIFT : 0),
      maxFrameSize: this.options.maxFrameSize,
      maxInFlight: this.options.maxInFlight ?? 0,
      heartbeatMs: this.options.heartbeatMs ?? 0,
      extension: this.options.extension ?? null,
    });
    this.encoder.encodeSimple(FrameType.HELLO, 0, 0, body);
    this.coalescer.schedule();
  }

  private readonly onData = (chunk: Buffer): void => {
    // A new socket read gets a fresh work budget (a yield resets it too).
    if ((this.pausedFor & PAUSE_YIELD) === 0) this.startRead();
    this.bytesRead += chunk.length;
    this.counters.bytesIn += chunk.length;
    this.lastReadAt = performance.now();
    try {
      this.decoder.push(chunk);
    } catch (err) {
      this.refuse(toWireError(err));
    }
  };

  private readonly onSocketError = (err: Error): void => {
    if (this.closeError === null) {
      this.closeError = new WireConnectionError(`socket error: ${err.message}`, { cause: err });
    }
  };

  private readonly onSocketClose = (): void => {
    if (this.closeError === null && this.state === ConnectionState.HANDSHAKING) {
      this.closeError = new WireHandshakeError(
        this.bytesRead === 0
          ? 'connection closed before the peer sent anything: is it a nest-wire peer, with the same TLS setting?'
          : 'connection closed during the handshake',
      );
    }
    this.coalescer.close();
    this.finish();
  };

  private readonly onHandshakeTimeout = (): void => {
    this.handshakeTimer = null;
    if (this.state !== ConnectionState.HANDSHAKING) return;
    this.close(new WireHandshakeError(`no handshake within ${this.options.handshakeTimeoutMs} ms`));
  };

  private clearHandshakeTimer(): void {
    if (this.handshakeTimer !== null) {
      clearTimeout(this.handshakeTimer);
      this.handshakeTimer = null;
    }
  }

  /** The one place the connection becomes CLOSED. `dropWrites` false: `end()` is still flushing. */
  private finish(dropWrites = true): void {
    if (this.state === ConnectionState.CLOSED) return;
    this.state = ConnectionState.CLOSED;
    if (this.pings.size > 0) {
      const err = new WireConnectionError('connection closed before the PONG arrived', {
        cause: this.closeError ?? undefined,
      });
      for (const waiter of this.pings.values()) waiter.reject(err);
      this.pings.clear();
    }
    this.clearHandshakeTimer();
    this.stopKeepalive();
    if (dropWrites) this.coalescer.close();
    this.handler.onClose(this, this.closeError);
  }
}

function toWireError(err: unknown): WireError {
  return err instanceof WireError
    ? err
    : new WireProtocolError(`unexpected failure reading a frame: ${String(err)}`, { cause: err });
}

/**
 * Turns a socket away before any session exists for it (server at maxConnections):
 * writes the preface and a connection-level ERROR, then closes.
 */
export function refuseSocket(socket: Socket, err: WireError): void {
  const encoder = new FrameEncoder();
  encoder.writeRaw(MAGIC);
  encoder.encodeSimple(FrameType.ERROR, ERROR_TRANSPORT, 0, encodeTransportError(err.code, err.message));
  // The socket is being turned away and no session will ever own it: a reset or EPIPE while
  // the refusal is written changes nothing (the peer is refused either way) and has no one to
  // tell, but an 'error' without a listener would crash the process.
  socket.on('error', () => {});
  socket.end(Buffer.concat(encoder.take()!));
  destroyLater(socket, LINGER_MS);
}

/** Destroys `socket` after `ms` unless it closes first (then the timer is cleared, not left behind). */
function destroyLater(socket: Socket, ms: number): void {
  if (socket.destroyed) return;
  const timer = setTimeout(() => socket.destroy(), ms).unref();
  socket.once('close', () => clearTimeout(timer));
}
