import type { Socket } from 'node:net';
import type { PeerCertificate, TLSSocket } from 'node:tls';
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
import type { PayloadCompressor } from '../protocol/compression.js';
import { ERROR_TRANSPORT, FrameType, HEADER_SIZE, LENGTH_SIZE, MAGIC, MAX_PING_BODY_BYTES } from '../protocol/frame.js';
import { FrameDecoder } from '../protocol/frame-decoder.js';
import { FrameEncoder } from '../protocol/frame-encoder.js';
import { decodeHelloBody, encodeHelloBody, HANDSHAKE_MAX_FRAME_BYTES, type Hello } from '../protocol/hello.js';
import { decodeTransportError, encodeTransportError } from '../protocol/transport-error.js';
import { localHello, negotiate, type LocalSettings } from './handshake.js';
import { judgeLiveness, Liveness } from './heartbeat.js';
import { PayloadCodec } from './payload-codec.js';
import { ReadBudget } from './read-budget.js';
import type { FragmentQueue } from './fragment-queue.js';
import { destroyLater, LINGER_MS } from './refuse-socket.js';
import { TransportCounters } from './transport-stats.js';
import { WriteCoalescer } from './write-coalescer.js';

/**
 * A connection's lifecycle. Moves only forward, through `transition()`:
 * HANDSHAKING → OPEN → DRAINING → CLOSING → CLOSED, any live state straight to CLOSING
 * (orderly close) or CLOSED (socket gone or destroyed).
 */
export enum ConnectionState {
  /** Preface and HELLO not yet exchanged; only HELLO (or a connection ERROR) is accepted. */
  HANDSHAKING = 'handshaking',
  OPEN = 'open',
  /** GOAWAY said (either way): no new calls; closes once the calls running have ended. */
  DRAINING = 'draining',
  /** Orderly close: nothing is read or sent any more; what was queued is still being written. */
  CLOSING = 'closing',
  CLOSED = 'closed',
}

/** What a connection reports to its owner (a client connection or a server session). */
export interface ConnectionHandler {
  /** The handshake completed; `peer` holds the peer's HELLO. */
  onOpen(): void;
  /** The socket took what was waiting (a write completed): held values may go out now. */
  onWritable?(): void;
  /** Called once, on leaving the live states (CLOSING or CLOSED). `err` is null for an orderly close. */
  onClose(err: WireError | null): void;
  /** Calls of this connection that have not ended: a draining connection closes once none is left. */
  readonly activeCalls: number;
}

export interface ConnectionOptions {
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

// What the layers above need of the protocol comes through here: they know the connection, not the format.
export type { Hello } from '../protocol/hello.js';
export { MAX_REQUEST_ID, MAX_STREAM_CREDIT } from '../protocol/frame.js';

/** Why reading is stopped; reading resumes once no reason is left. */
export const PAUSE_AUTH = 1;
/** The session runs as many calls as it allows. */
export const PAUSE_CALLS = 2;
/** More than `maxQueuedBytes` wait for a peer that does not read. */
export const PAUSE_BACKLOG = 4;
/** This socket read used its work budget: other sockets get the event loop first. */
export const PAUSE_YIELD = 8;

const DEFAULT_MAX_QUEUED_BYTES = 64 * 1024 * 1024;
const DEFAULT_MAX_DECODED_BYTES = 16 * 1024 * 1024;
const DEFAULT_MAX_DECOMPRESSED_BYTES = 1024 * 1024;
const EMPTY_BUFFER = Buffer.alloc(0);

/** Longest an orderly close waits for a slow reader to take what was still queued. */
const END_TIMEOUT_MS = 10_000;

/**
 * One socket's life, shared by client and server: preface and HELLO exchange, frame
 * decoding within a work budget, coalesced writes, PING answers, liveness, the GOAWAY
 * drain, and a single close path. It knows frames, not patterns or Nest. Its owner talks
 * to it through verbs (`ClientWireConnection`, `ServerWireConnection` add the ones of each
 * role); the encoder, the coalescer and the payload codec stay inside connection/.
 *
 * Handshake: both sides write the 4-byte preface. The client sends HELLO at once; the
 * server answers with its own HELLO once it has accepted the client's, or with an
 * ERROR (id 0) and closes. Either side is OPEN once it holds the peer's HELLO.
 */
export abstract class WireConnection<H extends ConnectionHandler = ConnectionHandler> {
  /** Changed only by `transition()`. */
  private current = ConnectionState.HANDSHAKING;
  /** The peer's HELLO; set once, when it arrives (authentication, if any, then decides on OPEN). */
  private peerHello: Hello | null = null;
  /** The peer sent GOAWAY: it will start no new call here. */
  private peerSaidGoAway = false;
  /** First error that explains the close, reported to the handler. */
  private closeError: WireError | null = null;
  private handshakeTimer: NodeJS.Timeout | null = null;
  private cachedRemoteAddress: string | null = null;

  // Reading. Invariant: the decoder and the socket are paused exactly while `pausedFor` is not 0.
  private bytesReadTotal = 0;
  /** When bytes were last read (`performance.now()`), for heartbeats. */
  private lastReadAt = performance.now();
  /** Why reading is stopped (PAUSE_* bits); 0 while reading. */
  private pausedFor = 0;
  /** Work done by the current socket read (frames, decoding, time). */
  private readonly readBudget = new ReadBudget();
  /** When the backlog last moved while reading is stopped for it (`performance.now()`); -1 if it is not. */
  private backlogSince = -1;

  // Liveness. Invariant: `keepalive` runs only while reading is stopped on purpose and the connection is open.
  private pingSentAt = 0;
  private keepalive: NodeJS.Timeout | null = null;
  /** An `onWritable` notification is awaited (at most one at a time). */
  private writableWaiting = false;

  protected readonly encoder = new FrameEncoder();
  protected readonly coalescer: WriteCoalescer;
  protected readonly payloads: PayloadCodec;
  private readonly decoder: FrameDecoder;
  private readonly counters: TransportCounters;
  private readonly maxQueuedBytes: number;
  private readonly local: LocalSettings;

  protected constructor(
    protected readonly socket: Socket,
    private readonly options: ConnectionOptions,
    protected readonly handler: H,
    /** The side that starts calls (it sends its HELLO first) or runs them (it answers the peer's). */
    private readonly role: 'client' | 'server',
    /** The server's queue of large values leaving in fragments (a client sends none). */
    fragments: FragmentQueue | null = null,
  ) {
    this.decoder = new FrameDecoder(this, { maxFrameSize: HANDSHAKE_MAX_FRAME_BYTES });
    this.counters = options.counters ?? new TransportCounters();
    this.coalescer = new WriteCoalescer(socket, this.encoder, this.counters, fragments);
    this.payloads = new PayloadCodec(
      options.codec,
      options.compression ?? null,
      options.maxDecodedBytes ?? DEFAULT_MAX_DECODED_BYTES,
      options.maxDecompressedBytes ?? DEFAULT_MAX_DECOMPRESSED_BYTES,
      this.readBudget,
    );
    this.maxQueuedBytes = options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    this.local = {
      codec: options.codec,
      maxFrameSize: options.maxFrameSize,
      maxInFlight: options.maxInFlight ?? 0,
      heartbeatMs: options.heartbeatMs ?? 0,
      extension: options.extension ?? null,
      compression: options.compression ?? null,
      requestStreams: role === 'server',
    };
    socket.setNoDelay(true);
    socket.on('data', this.onData);
    socket.on('error', this.onSocketError);
    socket.on('close', this.onSocketClose);
    this.handshakeTimer = setTimeout(this.onHandshakeTimeout, options.handshakeTimeoutMs).unref();
    this.encoder.writeRaw(MAGIC);
    if (role === 'client') this.sendHello();
    this.coalescer.schedule();
  }

  get state(): ConnectionState {
    return this.current;
  }

  /** Handshake done and not closing: frames are read and sent (draining included). */
  get isOpen(): boolean {
    return this.current === ConnectionState.OPEN || this.current === ConnectionState.DRAINING;
  }

  /** Open and not draining: new calls may start here. */
  get acceptsCalls(): boolean {
    return this.current === ConnectionState.OPEN;
  }

  get isDraining(): boolean {
    return this.current === ConnectionState.DRAINING;
  }

  /** Not closing or closed: frames may still be queued (a refusal during the handshake too). */
  protected get isLive(): boolean {
    return this.current !== ConnectionState.CLOSING && this.current !== ConnectionState.CLOSED;
  }

  /** The socket itself, for `unwrap()` (Nest's escape hatch); nothing outside connection/ writes to it. */
  get underlyingSocket(): Socket {
    return this.socket;
  }

  /** The peer's HELLO, once the handshake is done. */
  get peer(): Hello | null {
    return this.peerHello;
  }

  /** `host:port` of the peer (known once the socket is connected). */
  get remoteAddress(): string {
    if (this.cachedRemoteAddress !== null) return this.cachedRemoteAddress;
    const { remoteAddress, remotePort } = this.socket;
    if (remoteAddress === undefined) return 'unknown:0';
    return (this.cachedRemoteAddress = `${remoteAddress}:${remotePort ?? 0}`);
  }

  /** The client certificate of a TLS peer that presented one, else undefined. */
  get peerCertificate(): PeerCertificate | undefined {
    const socket = this.socket as TLSSocket;
    if (typeof socket.getPeerCertificate !== 'function') return undefined;
    const certificate = socket.getPeerCertificate();
    return certificate !== undefined && Object.keys(certificate).length > 0 ? certificate : undefined;
  }

  get bytesRead(): number {
    return this.bytesReadTotal;
  }

  /** When bytes were last read (`performance.now()`). */
  get lastRead(): number {
    return this.lastReadAt;
  }

  /** Socket writes issued on this connection. */
  get writes(): number {
    return this.coalescer.writes;
  }

  /** Frames encoded on this connection. */
  get framesWritten(): number {
    return this.encoder.frames;
  }

  /** Largest frame (and largest value assembled from fragments) this side accepts. */
  get maxFrameSize(): number {
    return this.options.maxFrameSize;
  }

  /** Largest frame the peer accepts (its HELLO), or the handshake limit before that. */
  get peerMaxFrameSize(): number {
    return this.peerHello === null ? HANDSHAKE_MAX_FRAME_BYTES : this.peerHello.maxFrameSize;
  }

  /** Bytes read and not yet decoded: a partial frame, or input held while reading is paused. */
  get bufferedBytes(): number {
    return this.decoder.bufferedBytes + this.decoder.heldBytes;
  }

  /** Bytes written or encoded but not yet accepted by the OS (a slow reader's backlog). */
  get queuedBytes(): number {
    return this.writeBacklog;
  }

  /**
   * Whether another value may be queued now (the bound on unsent bytes, fragments
   * included, holds when bytes are written, not only when requests arrive).
   */
  get canQueue(): boolean {
    return this.queuedBytes < this.maxQueuedBytes;
  }

  /** Unsent bytes that leave without the peer's help (fragments wait for its CREDIT). */
  private get writeBacklog(): number {
    return this.encoder.pendingBytes + this.socket.writableLength;
  }

  // ---- GOAWAY drain, the same on both sides ----

  /**
   * Starts no new call here any more and says so (GOAWAY); the connection closes once the
   * calls running have ended — on the side that runs calls, only once the peer has said
   * GOAWAY too, because until then a REQUEST may be on its way (TCP order guarantees none
   * follows the peer's GOAWAY). Before the handshake is done there is nothing to drain.
   */
  drain(): void {
    if (this.current === ConnectionState.HANDSHAKING) return this.end();
    if (this.current !== ConnectionState.OPEN) return;
    this.transition(ConnectionState.DRAINING);
    this.sendGoAway();
    this.closeIfDrained();
  }

  /** The owner calls this when a call has left its table: a draining connection may close now. */
  callEnded(): void {
    // Deferred: the call's last frames are encoded after it leaves the table, in this turn.
    if (this.current === ConnectionState.DRAINING && this.handler.activeCalls === 0) {
      queueMicrotask(this.closeIfDrained);
    }
  }

  /** The peer said GOAWAY: answer with ours (once), and tell the owner (it takes the connection out of rotation). */
  protected onPeerGoAway(): void {
    this.peerSaidGoAway = true;
    if (this.current === ConnectionState.OPEN) {
      this.transition(ConnectionState.DRAINING);
      this.sendGoAway();
      this.onDrainedByPeer();
    }
    this.closeIfDrained();
  }

  /** What the GOAWAY of this side says (code and message are for logs, docs/PROTOCOL.md §2.7). */
  protected abstract goAwayReason(): { code: WireErrorCode; message: string };

  /** The peer's GOAWAY put this connection in DRAINING. */
  protected onDrainedByPeer(): void {}

  private sendGoAway(): void {
    const { code, message } = this.goAwayReason();
    this.encoder.encodeSimple(FrameType.GOAWAY, 0, 0, encodeTransportError(code, message, this.peerMaxFrameSize));
    this.coalescer.schedule();
  }

  private readonly closeIfDrained = (): void => {
    if (this.current !== ConnectionState.DRAINING || this.handler.activeCalls > 0) return;
    // end(), not close(): the last responses may still be waiting for their flush.
    if (this.peerSaidGoAway || this.role === 'client') this.end();
  };

  // ---- reading ----

  /**
   * Stops reading at the current frame boundary, for `reason` (a PAUSE_* bit). The socket
   * is paused too, so the kernel's buffers fill and TCP slows the sender: nothing queues
   * without bound here. Reading resumes once every reason is cleared.
   */
  protected pauseReading(reason: number): void {
    const was = this.pausedFor;
    this.pausedFor |= reason;
    if (was === 0) {
      this.decoder.pause();
      this.socket.pause();
    }
    if (reason === PAUSE_YIELD) return;
    // The peer's PINGs go unread now, so it would soon think this side is dead: tell it
    // otherwise with PINGs of our own at its heartbeat pace, until reading resumes.
    const peerHeartbeatMs = this.peerHello?.heartbeatMs ?? 0;
    if (peerHeartbeatMs > 0 && this.keepalive === null && this.isOpen) {
      this.keepalive = setInterval(this.sendKeepalive, Math.max(1, peerHeartbeatMs >> 1)).unref();
    }
  }

  protected resumeReading(reason: number): void {
    if ((this.pausedFor & reason) === 0) return;
    this.pausedFor &= ~reason;
    if ((this.pausedFor & ~PAUSE_YIELD) === 0 && reason !== PAUSE_YIELD) {
      this.stopKeepalive();
      // We were not listening: the peer's silence meanwhile says nothing about it.
      this.lastReadAt = performance.now();
    }
    if (!this.isLive || this.pausedFor !== 0) return;
    this.readBudget.start();
    try {
      this.decoder.resume();
    } catch (err) {
      this.refuse(toWireError(err));
      return;
    }
    // Decoding what was held may have paused again (call limit, backlog, work budget).
    if (!this.decoder.isPaused) this.socket.resume();
  }

  private readonly sendKeepalive = (): void => {
    if (!this.isOpen) return this.stopKeepalive();
    this.encoder.encodeU32(FrameType.PING, 0, 0, 0);
    this.coalescer.schedule();
  };

  private stopKeepalive(): void {
    if (this.keepalive !== null) clearInterval(this.keepalive);
    this.keepalive = null;
  }

  private readonly resumeAfterYield = (): void => this.resumeReading(PAUSE_YIELD);

  /** After a frame: yields if this read used its budget, stops reading if the peer does not read. */
  private checkReadBudget(): void {
    if (!this.isOpen) return;
    if (this.writeBacklog >= this.maxQueuedBytes && (this.pausedFor & PAUSE_BACKLOG) === 0) {
      this.backlogSince = performance.now();
      this.pauseReading(PAUSE_BACKLOG);
      this.afterWrites(this.onBacklogWritten);
    }
    if (this.readBudget.spent() && (this.pausedFor & PAUSE_YIELD) === 0) {
      this.pauseReading(PAUSE_YIELD);
      setImmediate(this.resumeAfterYield);
    }
  }

  /** A write completed while reading is stopped for the backlog: read again once it is small. */
  private readonly onBacklogWritten = (err?: Error | null): void => {
    if (err || !this.isOpen) return;
    this.backlogSince = performance.now();
    if (this.writeBacklog >= this.maxQueuedBytes) {
      this.afterWrites(this.onBacklogWritten);
      return;
    }
    this.backlogSince = -1;
    this.resumeReading(PAUSE_BACKLOG);
    this.handler.onWritable?.();
  };

  // ---- writing ----

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

  private readonly onWrittenForHandler = (err?: Error | null): void => {
    this.writableWaiting = false;
    if (err || !this.isOpen) return;
    this.handler.onWritable?.();
  };

  /**
   * Encodes a value of a stream — an answer's (server) or a request stream's (client) —
   * null for `undefined` (sent as NO_VALUE); throws a `WireError`, sending nothing, if it
   * cannot travel (codec, a frame larger than the peer accepts). Compression and
   * fragmenting happen when it is sent.
   */
  encodeValue(value: unknown): Uint8Array | null {
    if (value === undefined) return null;
    const payload = this.payloads.encode(value);
    const length = HEADER_SIZE - LENGTH_SIZE + payload.length;
    if (length > this.peerMaxFrameSize) throw new WireFrameTooLargeError(length, this.peerMaxFrameSize);
    return payload;
  }

  /** An ERROR frame carrying `err` as a transport error (its `code` and `message`). */
  protected sendTransportError(id: number, err: WireError): void {
    if (!this.isLive) return;
    this.encoder.encodeSimple(
      FrameType.ERROR,
      ERROR_TRANSPORT,
      id,
      encodeTransportError(err.code, err.message, this.peerMaxFrameSize),
    );
    this.coalescer.schedule();
  }

  private sendHello(): void {
    this.encoder.encodeSimple(FrameType.HELLO, 0, 0, encodeHelloBody(localHello(this.local)));
    this.coalescer.schedule();
  }

  // ---- liveness ----

  /**
   * Heartbeat check, called periodically by a `HeartbeatMonitor`: pings a connection
   * that has been quiet for `intervalMs`, closes one that has been silent for twice that.
   */
  checkLiveness(now: number, intervalMs: number): void {
    if (!this.isOpen) return;
    const readingStopped = (this.pausedFor & ~PAUSE_YIELD) !== 0;
    const backlogSince = (this.pausedFor & PAUSE_BACKLOG) !== 0 ? this.backlogSince : -1;
    switch (
      judgeLiveness(
        { lastReadAt: this.lastReadAt, pingSentAt: this.pingSentAt, readingStopped, backlogSince },
        now,
        intervalMs,
      )
    ) {
      case Liveness.NOT_READING:
        return this.close(
          new WireConnectionError(
            `peer read nothing for ${Math.round(now - this.backlogSince)} ms with ${this.writeBacklog} bytes waiting`,
          ),
        );
      case Liveness.SILENT:
        return this.close(
          new WireConnectionError(
            `peer silent for ${Math.round(now - this.lastReadAt)} ms: no answer to heartbeat PING`,
          ),
        );
      case Liveness.PING:
        this.pingSentAt = now;
        this.encoder.encodeU32(FrameType.PING, 0, 0, 0);
        this.coalescer.schedule();
        return;
      case Liveness.ALIVE:
        // Reading is stopped on purpose (call limit, backlog): the silence is ours, not the peer's.
        if (readingStopped) this.lastReadAt = now;
        return;
    }
  }

  /** A PONG with a non-zero id (a round-trip probe's) arrived. */
  protected onPong(_id: number): void {}

  // ---- closing ----

  /** Closes at once. Pending writes are dropped. `err` null means an orderly close. */
  close(err: WireError | null = null): void {
    if (!this.isLive) return;
    if (err !== null && this.closeError === null) this.closeError = err;
    this.socket.destroy();
    this.transition(ConnectionState.CLOSED);
  }

  /**
   * Reports `err` to the peer as a connection-level ERROR, then closes once that
   * frame has been written (or after a short linger).
   */
  refuse(err: WireError): void {
    if (!this.isLive) return;
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
    if (!this.isLive) return;
    this.coalescer.closeAfterFlush(() => {
      this.socket.end();
      destroyLater(this.socket, LINGER_MS);
    });
    // A peer that never reads again must not hold the socket open forever.
    destroyLater(this.socket, END_TIMEOUT_MS);
    this.transition(ConnectionState.CLOSING);
  }

  /** Leaving the live states: what the subclass must release (waiters of its own). */
  protected onClosing(_err: WireError | null): void {}

  /**
   * The one place the state changes. Leaving HANDSHAKING clears the handshake timer;
   * leaving the live states (for CLOSING or CLOSED) stops the keepalive, lets the subclass
   * release what it holds, and notifies the handler — exactly once; entering CLOSED drops
   * whatever was still unwritten.
   */
  private transition(to: ConnectionState): void {
    const from = this.current;
    if (from === to || from === ConnectionState.CLOSED) return;
    this.current = to;
    if (from === ConnectionState.HANDSHAKING) this.clearHandshakeTimer();
    if (to === ConnectionState.CLOSED) this.coalescer.close();
    if ((to === ConnectionState.CLOSING || to === ConnectionState.CLOSED) && from !== ConnectionState.CLOSING) {
      this.stopKeepalive();
      this.onClosing(this.closeError);
      this.handler.onClose(this.closeError);
    }
  }

  // ---- frames in ----

  /** FrameSink: called by the decoder for each frame. */
  onFrame(type: number, flags: number, id: number, body: Buffer): void {
    this.counters.framesIn++;
    if (this.isOpen) {
      this.readBudget.frame(body.length, type === FrameType.REQUEST || type === FrameType.EVENT);
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
          break;
        case FrameType.PONG:
          if (id !== 0) this.onPong(id);
          return;
        case FrameType.HELLO:
          throw new WireProtocolError('HELLO received twice');
        case FrameType.ERROR:
          if (id === 0) return this.onConnectionError(flags, body);
          this.onCallFrame(type, flags, id, body);
          break;
        case FrameType.GOAWAY:
          this.onPeerGoAway();
          break;
        default:
          this.onCallFrame(type, flags, id, body);
      }
      this.checkReadBudget();
      return;
    }
    if (this.current !== ConnectionState.HANDSHAKING) return;
    if (type === FrameType.HELLO) {
      if (id !== 0) throw new WireHandshakeError(`HELLO with id ${id}: a HELLO's id must be 0`);
      return this.onHello(body);
    }
    if (type === FrameType.ERROR && id === 0) return this.onConnectionError(flags, body);
    throw new WireHandshakeError(`expected HELLO as the first frame, got frame type ${type}`);
  }

  /** A frame of a call (anything but HELLO, PING, PONG, GOAWAY and ERROR id 0) on an open connection. */
  protected abstract onCallFrame(type: number, flags: number, id: number, body: Buffer): void;

  private onHello(body: Buffer): void {
    const hello = decodeHelloBody(body);
    const agreed = negotiate(this.local, hello);
    this.payloads.negotiated(agreed);
    this.peerHello = hello;
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
    if (this.current !== ConnectionState.HANDSHAKING) return;
    this.open();
    this.resumeReading(PAUSE_AUTH);
  }

  private refuseAuth(cause: unknown): void {
    if (this.current !== ConnectionState.HANDSHAKING) return;
    const err = new WireAuthError();
    if (cause !== null) err.cause = cause;
    this.refuse(err);
  }

  private open(): void {
    if (this.role === 'server') this.sendHello();
    this.decoder.maxFrameSize = this.options.maxFrameSize;
    this.transition(ConnectionState.OPEN);
    this.handler.onOpen();
  }

  private onConnectionError(flags: number, body: Buffer): void {
    const err = remoteTransportError(flags, body);
    // An authentication refusal is reported as itself: the caller must see WireAuthError.
    const reported =
      err instanceof WireAuthError
        ? err
        : this.current === ConnectionState.HANDSHAKING
          ? new WireHandshakeError(`peer refused the connection: ${err.message}`, { cause: err })
          : new WireConnectionError(`peer reported a connection error: ${err.message}`, { cause: err });
    this.close(reported);
  }

  private readonly onData = (chunk: Buffer): void => {
    const now = performance.now();
    // A new socket read gets a fresh work budget (a yield resets it too).
    if ((this.pausedFor & PAUSE_YIELD) === 0) this.readBudget.start(now);
    this.bytesReadTotal += chunk.length;
    this.counters.bytesIn += chunk.length;
    this.lastReadAt = now;
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
    if (this.closeError === null && this.current === ConnectionState.HANDSHAKING) {
      this.closeError = new WireHandshakeError(
        this.bytesReadTotal === 0
          ? 'connection closed before the peer sent anything: is it a nest-wire peer, with the same TLS setting?'
          : 'connection closed during the handshake',
      );
    }
    this.coalescer.close();
    this.transition(ConnectionState.CLOSED);
  };

  private readonly onHandshakeTimeout = (): void => {
    this.handshakeTimer = null;
    if (this.current !== ConnectionState.HANDSHAKING) return;
    this.close(new WireHandshakeError(`no handshake within ${this.options.handshakeTimeoutMs} ms`));
  };

  private clearHandshakeTimer(): void {
    if (this.handshakeTimer !== null) {
      clearTimeout(this.handshakeTimer);
      this.handshakeTimer = null;
    }
  }
}

/** Rebuilds the error carried by an ERROR (with the TRANSPORT flag), NACK or GOAWAY body. */
export function remoteTransportError(flags: number, body: Buffer): WireError {
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

function toWireError(err: unknown): WireError {
  return err instanceof WireError
    ? err
    : new WireProtocolError(`unexpected failure reading a frame: ${String(err)}`, { cause: err });
}
