import type { Socket } from 'node:net';
import { MAX_REQUEST_ID, type ConnectionOptions } from '../connection/connection.js';
import { ClientWireConnection, type ClientWireHandler } from '../connection/client-wire-connection.js';
import type { TimeoutWheel } from '../connection/timeout-wheel.js';
import { WireConnectionError, WireError, WireTimeoutError } from '../errors.js';
import type { CallOwner, PendingCall } from './pending-call.js';
import { RequestStream, sourceErrorForWire, type StreamConnection } from './request-stream.js';

/** What a client connection tells its endpoint about its life. */
export interface ClientConnectionEvents {
  onOpen(conn: ClientConnection): void;
  /** The server sent GOAWAY: no new calls here; the connection closes once its calls end. */
  onGoAway(conn: ClientConnection): void;
  onClose(conn: ClientConnection, err: WireError | null, wasOpen: boolean): void;
}

/**
 * The client's side of one connection: its table of pending calls, keyed by integer
 * request id, and what the answers of the server mean for them. Every way a call ends
 * goes through `remove` or `detach`, which free its id (and its timer).
 */
export class ClientConnection implements ClientWireHandler, CallOwner, StreamConnection {
  readonly wire: ClientWireConnection;
  /** Calls written here and not yet settled. Invariant: each one's `owner` is this connection. */
  private readonly calls = new Map<number, PendingCall>();
  private nextId = 1;
  /** Ids have wrapped around once: from now on a fresh id is one not in `calls`. */
  private wrapped = false;
  /** The handshake completed (reported with the close: an endpoint counts failed dials). */
  private wasOpen = false;
  /** Values delivered on a stream before its credit is renewed: half the grant. */
  private readonly creditRenewal: number;

  constructor(
    socket: Socket,
    options: ConnectionOptions,
    private readonly wheel: TimeoutWheel<PendingCall>,
    private readonly events: ClientConnectionEvents,
    private readonly streamCredit: number,
    /** The endpoint this connection belongs to (`host:port`). */
    readonly endpointKey: string,
    /** Bytes of partly received fragmented values this connection holds at most. */
    maxFragmentedBytes = 64 * 1024 * 1024,
  ) {
    this.wire = new ClientWireConnection(socket, { ...options, maxFragmentedBytes }, this);
    this.creditRenewal = Math.max(1, streamCredit >>> 1);
  }

  /** Calls written on this connection and not yet settled. */
  get inFlight(): number {
    return this.calls.size;
  }

  /** ConnectionHandler: a draining connection closes once this is 0. */
  get activeCalls(): number {
    return this.calls.size;
  }

  /** Bytes encoded and not yet taken by the socket. */
  get queuedBytes(): number {
    return this.wire.queuedBytes;
  }

  /** Open and not draining: new calls may be written here. */
  get isOpen(): boolean {
    return this.wire.acceptsCalls;
  }

  /** True when the server's announced `maxInFlight` is reached: more calls would only queue there. */
  get isFull(): boolean {
    const limit = this.wire.peerMaxInFlight;
    return limit > 0 && this.calls.size >= limit;
  }

  /**
   * Encodes and queues the call's REQUEST. Throws a `WireError` (codec, frame size)
   * without side effects if it cannot be sent.
   */
  write(call: PendingCall, budgetMs: number): void {
    if (!this.wire.isOpen) throw new WireConnectionError(`connection to ${this.endpointKey} is closed`);
    const id = this.allocateId();
    const stream = call.data instanceof RequestStream ? call.data : null;
    // Until this generation has been taken, the frame can still be abandoned unsent.
    call.generation =
      stream === null
        ? this.wire.sendRequest(id, call.pattern, budgetMs, call.data, call.metadata, this.streamCredit)
        : this.wire.sendStreamRequest(id, call.pattern, budgetMs, call.metadata, this.streamCredit);
    stream?.attach(this, id);
    call.id = id;
    call.owner = this;
    this.calls.set(id, call);
    if (call.trace !== null) call.trace.written(this.endpointKey, this.wire.peerSocket);
  }

  /** Encodes and queues an EVENT; resolves once it has been handed to the OS. */
  writeEvent(pattern: string, data: unknown, metadata: Record<string, string> | undefined): Promise<void> {
    return this.wire.sendEvent(pattern, data, metadata);
  }

  /** CallOwner: the caller unsubscribed. Tell the server to stop working on it. */
  abandon(call: PendingCall): void {
    this.remove(call);
    this.wire.cancel(call.id);
  }

  /** Called by the client's timeout wheel. */
  expire(call: PendingCall): void {
    this.remove(call);
    this.wire.cancel(call.id);
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

  /** Takes no new calls and closes once the calls in flight have ended (GOAWAY, as the server's drain). */
  drain(): void {
    this.wire.drain();
  }

  onOpen(): void {
    this.wasOpen = true;
    this.events.onOpen(this);
  }

  onGoAway(): void {
    this.events.onGoAway(this);
  }

  onClose(err: WireError | null): void {
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
    for (const call of [...this.calls.values()]) {
      if (!this.wire.neverWritten(call.generation) || call.settled) continue;
      this.detach(call);
      call.tracker.resend(call, reason);
    }
    this.failAll(reason);
  }

  hasCall(id: number): boolean {
    return this.calls.has(id);
  }

  onValue(id: number, hasValue: boolean, value: unknown, end: boolean): void {
    const call = this.calls.get(id)!;
    if (!end) {
      // Renew the server's credit once half of it has been consumed.
      if (++call.delivered >= this.creditRenewal) {
        this.wire.grantCredit(id, call.delivered);
        call.delivered = 0;
      }
      call.next(value);
      return;
    }
    this.remove(call);
    // Its latency ends at the read that brought the answer: no clock read per call.
    call.answeredAt = this.wire.lastRead;
    call.complete(hasValue, value);
  }

  onCallError(id: number, err: unknown): void {
    const call = this.calls.get(id)!;
    this.remove(call);
    // The server's deadline is the caller's timeout: report it as the caller's own.
    if (err instanceof WireTimeoutError && call.timeoutMs > 0) err = new WireTimeoutError(call.timeoutMs);
    call.attemptFailed(err);
  }

  onCallBroken(id: number, err: unknown): void {
    const call = this.calls.get(id)!;
    this.remove(call);
    call.fail(err);
  }

  /** The server did not process this call (draining, overloaded): it may go elsewhere. */
  onNack(id: number, err: WireError): void {
    const call = this.calls.get(id)!;
    this.detach(call);
    call.tracker.resend(call, err);
  }

  /** The server's handler consumed request-stream values of call `id`: its source may send `n` more. */
  onStreamCredit(id: number, n: number): void {
    const data = this.calls.get(id)?.data;
    if (data instanceof RequestStream) data.addCredit(n);
  }

  /** StreamConnection: one value of call `id`'s request stream. */
  sendStreamValue(id: number, value: unknown): void {
    this.wire.sendStreamValue(id, this.wire.encodeValue(value));
  }

  /** StreamConnection: call `id`'s source completed. */
  endStream(id: number): void {
    this.wire.endStream(id);
  }

  /**
   * StreamConnection: the call's source failed (or a value could not be sent). The server
   * is told (ERROR; it sends nothing more for the id) and the call fails with `err`: it
   * may have run, so it is never re-sent.
   */
  failStreamCall(id: number, err: unknown): void {
    const call = this.calls.get(id);
    if (call === undefined) return;
    this.remove(call);
    this.wire.failStream(id, sourceErrorForWire(err));
    call.fail(err);
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
    this.calls.delete(call.id);
    call.owner = null;
    if (call.data instanceof RequestStream) call.data.detach();
    this.wire.callEnded();
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
