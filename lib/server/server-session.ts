import type { MessageHandler } from '@nestjs/microservices';
import type { Socket } from 'node:net';
import { WireConnection, type ConnectionHandler, type ConnectionOptions } from '../connection/connection.js';
import { WireConnectionError, WireError, WireNoHandlerError, WireProtocolError } from '../errors.js';
import { CallBody, readCallBody } from '../protocol/call-body.js';
import type { WireCodec } from '../protocol/codec.js';
import { FrameType, RESPONSE_END, RESPONSE_NO_VALUE } from '../protocol/frame.js';
import { ServerCall, type CallSink } from './server-call.js';
import { WireContext } from './wire-context.js';

/** What a session needs from the server that accepted it. */
export interface SessionHost {
  findHandler(pattern: string): MessageHandler | null;
  runRequest(handler: MessageHandler, data: unknown, ctx: WireContext, call: ServerCall): void;
  runEvent(pattern: string, data: unknown, ctx: WireContext): void;
  onEventDropped(pattern: string, err: unknown): void;
  onSessionClose(session: ServerSession, err: WireError | null): void;
}

/**
 * The server's side of one connection: decodes REQUEST / EVENT / CANCEL frames,
 * hands them to Nest through the host, and writes each call's values back.
 * Calls running for this connection are kept by id so CANCEL and connection loss
 * can stop them.
 */
export class ServerSession implements ConnectionHandler, CallSink {
  readonly wire: WireConnection;
  private readonly calls = new Map<number, ServerCall>();
  /** Reused for every call frame read on this connection. */
  private readonly body = new CallBody();

  constructor(
    socket: Socket,
    options: ConnectionOptions,
    private readonly codec: WireCodec,
    private readonly host: SessionHost,
  ) {
    this.wire = new WireConnection(socket, options, this);
  }

  get inFlight(): number {
    return this.calls.size;
  }

  close(err: WireError | null = null): void {
    this.wire.close(err);
  }

  onOpen(): void {}

  onFrame(_wire: WireConnection, type: number, flags: number, id: number, body: Buffer): void {
    switch (type) {
      case FrameType.REQUEST:
        return this.onRequest(flags, id, body);
      case FrameType.EVENT:
        return this.onEvent(flags, body);
      case FrameType.CANCEL: {
        const call = this.calls.get(id);
        if (call !== undefined) call.cancel(new WireError('call cancelled by the client', 'WIRE_CANCELLED'));
        return;
      }
      case FrameType.GOAWAY:
      case FrameType.CREDIT:
        return;
      default:
        throw new WireProtocolError(`a client does not send frame type ${type} to a server`);
    }
  }

  onClose(_wire: WireConnection, err: WireError | null): void {
    if (this.calls.size > 0) {
      const reason = new WireConnectionError('client connection closed');
      for (const call of [...this.calls.values()]) call.cancel(reason);
    }
    this.host.onSessionClose(this, err);
  }

  sendValue(call: ServerCall, value: unknown): void {
    let payload: Uint8Array | null = null;
    try {
      if (value !== undefined) {
        payload = this.codec.encode(value);
        this.wire.checkFrameFits(payload.length);
      }
    } catch (err) {
      // The value cannot travel: fail the call rather than the connection.
      call.cancel(err);
      const e = err as WireError;
      this.wire.sendTransportError(call.id, e.code ?? 'WIRE_CODEC', e.message);
      return;
    }
    this.wire.encoder.encodeResponse(call.id, payload === null ? RESPONSE_NO_VALUE : 0, payload);
    this.wire.coalescer.schedule();
  }

  sendEnd(call: ServerCall): void {
    // `of(value)` completes right after its value: flag that frame instead of sending another.
    if (this.wire.encoder.tryMarkLastResponseEnd(call.id)) return;
    this.wire.encoder.encodeResponse(call.id, RESPONSE_END | RESPONSE_NO_VALUE, null);
    this.wire.coalescer.schedule();
  }

  sendFailure(call: ServerCall, err: unknown): void {
    if (err instanceof WireError) this.wire.sendTransportError(call.id, err.code, err.message);
    else this.wire.sendError(call.id, err);
  }

  release(call: ServerCall): void {
    this.calls.delete(call.id);
  }

  private onRequest(flags: number, id: number, frameBody: Buffer): void {
    const body = this.body;
    readCallBody(frameBody, flags, body);
    if (id === 0 || this.calls.has(id)) {
      this.wire.sendTransportError(id, 'WIRE_PROTOCOL', `request id ${id} is reserved or already in use`);
      return;
    }
    const pattern = body.pattern;
    let data: unknown;
    let metadata: Record<string, string> | undefined;
    try {
      data = this.codec.decode(body.payload);
      if (body.metadata !== null) metadata = decodeMetadata(this.codec, body.metadata);
    } catch (err) {
      this.wire.sendTransportError(id, 'WIRE_CODEC', (err as Error).message);
      return;
    }
    const handler = this.host.findHandler(pattern);
    if (handler === null) {
      this.wire.sendTransportError(id, 'WIRE_NO_HANDLER', new WireNoHandlerError().message);
      return;
    }
    const deadline = body.budgetMs >= 0 ? Date.now() + body.budgetMs : 0;
    const call = new ServerCall(id, this, deadline);
    this.calls.set(id, call);
    const ctx = new WireContext([pattern, metadata, id, deadline, call, this.wire.remoteAddress]);
    this.host.runRequest(handler, data, ctx, call);
  }

  private onEvent(flags: number, frameBody: Buffer): void {
    const body = this.body;
    readCallBody(frameBody, flags, body);
    let data: unknown;
    let metadata: Record<string, string> | undefined;
    try {
      data = this.codec.decode(body.payload);
      if (body.metadata !== null) metadata = decodeMetadata(this.codec, body.metadata);
    } catch (err) {
      // An event has nobody to answer: report it on this side and drop it.
      this.host.onEventDropped(body.pattern, err);
      return;
    }
    this.host.runEvent(body.pattern, data, new WireContext([body.pattern, metadata, 0, 0, null, this.wire.remoteAddress]));
  }
}

/** Metadata is a map of strings; anything else is a codec error. */
function decodeMetadata(codec: WireCodec, bytes: Buffer): Record<string, string> {
  const value = codec.decode(bytes);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new WireProtocolError('metadata must be a map of strings');
  }
  return value as Record<string, string>;
}
