import type { Socket } from 'node:net';
import { WireConnection, type ConnectionHandler, type ConnectionOptions } from '../connection/connection.js';
import {
  WireConnectionError,
  WireError,
  WireErrorCode,
  WireFrameTooLargeError,
  WireLimitError,
  WireProtocolError,
  WireTimeoutError,
} from '../errors.js';
import type { WireCodec } from '../protocol/codec.js';
import {
  ERROR_TRANSPORT,
  FrameType,
  MAX_REQUEST_ID,
  FRAGMENT_WINDOW_BYTES,
  RESPONSE_END,
  RESPONSE_LAST_FRAGMENT,
  RESPONSE_MORE,
  RESPONSE_NO_VALUE,
} from '../protocol/frame.js';
import type { CallOwner, PendingCall } from './pending-call.js';
import type { TimeoutWheel } from '../connection/timeout-wheel.js';

/** What a client connection tells its endpoint about its life. */
export interface ClientConnectionEvents {
  onOpen(conn: ClientConnection): void;
  /** The server sent GOAWAY: no new calls here; the connection closes once its calls end. */
  onGoAway(conn: ClientConnection): void;
  onClose(conn: ClientConnection, err: WireError | null, wasOpen: boolean): void;
}

/**
 * The client's side of one connection: its table of pending calls, keyed by integer
 * request id, and the mapping of RESPONSE / ERROR frames onto their observers.
 * Every way a call ends goes through `settle`, which frees its id and its timer.
 */
export class ClientConnection implements ConnectionHandler, CallOwner {
  readonly wire: WireConnection;
  private readonly calls = new Map<number, PendingCall>();
  private nextId = 1;
  private wrapped = false;
  private wasOpen = false;
  /** No new calls: GOAWAY received, or the endpoint is being removed. Closes when idle. */
  draining = false;

  /** Values delivered on a stream before its credit is renewed: half the grant. */
  private readonly creditRenewal: number;

  constructor(
    socket: Socket,
    options: ConnectionOptions,
    private readonly codec: WireCodec,
    private readonly wheel: TimeoutWheel<PendingCall>,
    private readonly events: ClientConnectionEvents,
    private readonly streamCredit: number,
    /** The endpoint this connection belongs to (`host:port`). */
    readonly endpointKey: string,
    /** Bytes of partly received fragmented values this connection holds at most. */
    private readonly maxFragmentedBytes = 64 * 1024 * 1024,
  ) {
    this.wire = new WireConnection(socket, options, this);
    this.creditRenewal = Math.max(1, streamCredit >>> 1);
  }

  /** Calls written on this connection and not yet settled. */
  get inFlight(): number {
    return this.calls.size;
  }

  /** Bytes encoded and not yet taken by the socket. */
  get queuedBytes(): number {
    return this.wire.queuedBytes;
  }

  get isOpen(): boolean {
    return this.wire.isOpen && !this.draining;
  }

  /** True when the server's announced `maxInFlight` is reached: more calls would only queue there. */
  get isFull(): boolean {
    const limit = this.wire.peer?.maxInFlight ?? 0;
    return limit > 0 && this.calls.size >= limit;
  }

  /**
   * Encodes and queues the call's REQUEST. Throws a `WireError` (codec, frame size)
   * without side effects if it cannot be sent.
   */
  write(call: PendingCall, budgetMs: number): void {
    if (!this.wire.isOpen) throw new WireConnectionError(`connection to ${this.endpointKey} is closed`);
    const id = this.allocateId();
    // Read before encoding: the first frame of a turn is written (its generation taken) at once.
    const generation = this.wire.encoder.generation;
    this.encodeCall(FrameType.REQUEST, id, call.pattern, budgetMs, call.data, call.metadata, this.streamCredit);
    call.id = id;
    call.owner = this;
    // Until this generation has been taken, the frame can still be abandoned unsent.
    call.generation = generation;
    this.calls.set(id, call);
    if (call.trace !== null) call.trace.written(this.endpointKey, this.wire.socket);
  }

  /** Encodes and queues an EVENT; resolves once it has been handed to the OS. */
  writeEvent(pattern: string, data: unknown, metadata: Record<string, string> | undefined): Promise<void> {
    this.encodeCall(FrameType.EVENT, 0, pattern, -1, data, metadata, 0);
    return new Promise((resolve, reject) => {
      this.wire.coalescer.whenWritten((err) =>
        err ? reject(new WireConnectionError(`event not written: ${err.message}`, { cause: err })) : resolve(),
      );
    });
  }

  /** Encodes a REQUEST or EVENT frame and schedules its write; throws, encoding nothing, if it cannot go. */
  private encodeCall(
    type: FrameType.REQUEST | FrameType.EVENT,
    id: number,
    pattern: string,
    budgetMs: number,
    data: unknown,
    metadata: Record<string, string> | undefined,
    credit: number,
  ): void {
    const wire = this.wire;
    const encoded = this.codec.encode(data);
    // Checked uncompressed, as the server checks it once inflated.
    if (encoded.length > wire.peerMaxFrameSize) throw new WireFrameTooLargeError(encoded.length, wire.peerMaxFrameSize);
    const payload = wire.compressOutgoing(encoded);
    const meta = metadata === undefined ? null : this.codec.encode(metadata);
    wire.encoder.encodeCall(
      type,
      id,
      pattern,
      budgetMs,
      meta,
      payload,
      wire.peerMaxFrameSize,
      credit,
      wire.lastCompressed,
    );
    wire.coalescer.schedule();
  }

  /** CallOwner: the caller unsubscribed. Tell the server to stop working on it. */
  abandon(call: PendingCall): void {
    this.remove(call);
    this.wire.sendEmpty(FrameType.CANCEL, call.id);
  }

  /** Called by the client's timeout wheel. */
  expire(call: PendingCall): void {
    this.remove(call);
    this.wire.sendEmpty(FrameType.CANCEL, call.id);
    call.fail(new WireTimeoutError(call.timeoutMs));
  }

  /** Fails every pending call with `err` (used by close). */
  failAll(err: WireError): void {
    if (this.calls.size === 0) return;
    const calls = [...this.calls.values()];
    this.calls.clear();
    for (const call of calls) {
      call.owner = null;
      this.wheel.remove(call);
      call.attemptFailed(err);
    }
  }

  close(err: WireError | null): void {
    this.wire.close(err);
  }

  /** Takes no new calls and closes once the calls in flight have ended. */
  drain(): void {
    this.draining = true;
    this.closeIfDrained();
  }

  onOpen(): void {
    this.wasOpen = true;
    this.events.onOpen(this);
  }

  onFrame(_wire: WireConnection, type: number, flags: number, id: number, body: Buffer): void {
    switch (type) {
      case FrameType.RESPONSE:
        return this.onResponse(flags, id, body);
      case FrameType.ERROR:
        return this.onError(flags, id, body);
      case FrameType.NACK:
        return this.onNack(id, body);
      case FrameType.GOAWAY:
        return this.onGoAway();
      default:
        throw new WireProtocolError(`a server does not send frame type ${type} to a client`);
    }
  }

  onClose(_wire: WireConnection, err: WireError | null): void {
    const reason =
      err instanceof WireConnectionError
        ? err
        : new WireConnectionError(err === null ? 'connection closed' : `connection closed: ${err.message}`, {
            cause: err ?? undefined,
          });
    // Out of rotation first: failing a call frees a slot, and the next call must not come here.
    this.events.onClose(this, err, this.wasOpen);
    // Calls whose frame never left the encoder cannot have reached the server: send them
    // elsewhere. Any other call may have been processed, so it fails (at most once).
    const generation = this.wire.encoder.generation;
    for (const call of [...this.calls.values()]) {
      if (call.generation !== generation || call.settled) continue;
      this.detach(call);
      call.tracker.resend(call, reason);
    }
    this.failAll(reason);
  }

  /** The server did not process this call (draining, overloaded): it may go elsewhere. */
  private onNack(id: number, body: Buffer): void {
    const call = this.calls.get(id);
    if (call === undefined) return;
    this.detach(call);
    call.tracker.resend(call, this.wire.decodeRemoteError(ERROR_TRANSPORT, body));
    this.closeIfDrained();
  }

  private onGoAway(): void {
    if (this.draining) return;
    this.draining = true;
    // Acknowledge: nothing more will be sent here, so the server may close once idle.
    this.wire.sendGoAway(WireErrorCode.GOAWAY_ACK, 'client will send no more requests on this connection');
    this.events.onGoAway(this);
    this.closeIfDrained();
  }

  private closeIfDrained(): void {
    if (this.draining && this.calls.size === 0) this.wire.end();
  }

  private onResponse(flags: number, id: number, body: Buffer): void {
    if ((flags & (RESPONSE_MORE | RESPONSE_LAST_FRAGMENT)) !== 0) this.consumedFragment(body.length);
    const call = this.calls.get(id);
    if (call === undefined) return; // timed out or cancelled: a late answer is dropped
    if ((flags & RESPONSE_MORE) !== 0 || call.fragments !== null) {
      const joined = this.joinFragments(call, flags, body);
      if (joined === null) return;
      body = joined;
    }
    let value: unknown;
    if ((flags & RESPONSE_NO_VALUE) === 0) {
      try {
        value = this.wire.decodePayload(flags, body);
      } catch (err) {
        this.remove(call);
        this.wire.sendEmpty(FrameType.CANCEL, id);
        call.fail(err);
        return;
      }
    }
    if ((flags & RESPONSE_END) === 0) {
      // Renew the server's credit once half of it has been consumed.
      if (++call.delivered >= this.creditRenewal) {
        this.wire.encoder.encodeU32(FrameType.CREDIT, 0, id, call.delivered);
        this.wire.coalescer.schedule();
        call.delivered = 0;
      }
      call.next(value);
      return;
    }
    this.remove(call);
    call.complete((flags & RESPONSE_NO_VALUE) === 0, value);
  }

  /** Fragment bytes read since the last window grant (never more than the window). */
  private fragmentBytesRead = 0;
  /** Invariant: the sum of `fragmentBytes` over the pending calls (at most `maxFragmentedBytes`). */
  private fragmentedBytes = 0;

  /**
   * Counts fragment bytes read (wanted or not: the server counts every one it sends) and
   * grants them back with CREDIT id 0 once half the window is used. A server that sends
   * more than the window it was granted breaks the protocol: the connection closes.
   */
  private consumedFragment(bytes: number): void {
    this.fragmentBytesRead += bytes;
    if (this.fragmentBytesRead > FRAGMENT_WINDOW_BYTES) {
      throw new WireProtocolError(
        `server sent ${this.fragmentBytesRead} fragment bytes, past the ${FRAGMENT_WINDOW_BYTES}-byte window it was granted`,
      );
    }
    if (this.fragmentBytesRead < FRAGMENT_WINDOW_BYTES / 2) return;
    this.wire.encoder.encodeU32(FrameType.CREDIT, 0, 0, this.fragmentBytesRead);
    this.wire.coalescer.schedule();
    this.fragmentBytesRead = 0;
  }

  /**
   * Collects the fragments of a large value (copies: the frames are views of a reused
   * read buffer). Returns the whole payload with the last fragment, null before it.
   */
  private joinFragments(call: PendingCall, flags: number, body: Buffer): Buffer | null {
    const parts = (call.fragments ??= []);
    call.fragmentBytes += body.length;
    this.fragmentedBytes += body.length;
    if (call.fragmentBytes > this.wire.maxFrameSize) {
      const size = call.fragmentBytes;
      this.remove(call);
      this.wire.sendEmpty(FrameType.CANCEL, call.id);
      call.fail(new WireFrameTooLargeError(size, this.wire.maxFrameSize));
      return null;
    }
    if (this.fragmentedBytes > this.maxFragmentedBytes) {
      // The total of every partial value on this connection is bounded, not only each one.
      this.remove(call);
      this.wire.sendEmpty(FrameType.CANCEL, call.id);
      call.fail(
        new WireLimitError(
          `partly received values on this connection passed maxFragmentedBytes ${this.maxFragmentedBytes}`,
        ),
      );
      return null;
    }
    if ((flags & RESPONSE_MORE) !== 0) {
      parts.push(Buffer.from(body));
      return null;
    }
    parts.push(body);
    const whole = Buffer.concat(parts, call.fragmentBytes);
    this.dropFragments(call);
    return whole;
  }

  private dropFragments(call: PendingCall): void {
    this.fragmentedBytes -= call.fragmentBytes;
    call.fragments = null;
    call.fragmentBytes = 0;
  }

  private onError(flags: number, id: number, body: Buffer): void {
    const call = this.calls.get(id);
    if (call === undefined) return;
    this.remove(call);
    let err: unknown;
    if ((flags & ERROR_TRANSPORT) !== 0) {
      err = this.wire.decodeRemoteError(flags, body);
      // The server's deadline is the caller's timeout: report it as the caller's own.
      if (err instanceof WireTimeoutError && call.timeoutMs > 0) err = new WireTimeoutError(call.timeoutMs);
    } else {
      try {
        err = this.wire.decodePayload(flags, body);
      } catch (e) {
        err = e;
      }
    }
    call.attemptFailed(err);
  }

  /** Takes an ended call out of this connection's table and out of the timeout wheel. */
  private remove(call: PendingCall): void {
    this.detach(call);
    this.wheel.remove(call);
  }

  /**
   * Takes a call out of this connection's table only: one that will be re-sent keeps its
   * place in the timeout wheel, so its deadline still holds on the next connection.
   */
  private detach(call: PendingCall): void {
    if (call.fragments !== null) this.dropFragments(call);
    this.calls.delete(call.id);
    call.owner = null;
    if (this.draining && this.calls.size === 0) queueMicrotask(() => this.closeIfDrained());
  }

  /** Next free request id, skipping 0 and ids still pending after a wrap-around. */
  private allocateId(): number {
    let id = this.nextId;
    if (id > MAX_REQUEST_ID) {
      id = 1;
      this.wrapped = true;
    }
    // Before the first wrap-around every id is fresh; after it, skip ids still in use.
    if (this.wrapped) {
      while (this.calls.has(id)) id = id >= MAX_REQUEST_ID ? 1 : id + 1;
    }
    this.nextId = id + 1;
    return id;
  }
}
