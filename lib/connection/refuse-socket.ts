import type { Socket } from 'node:net';
import type { WireError } from '../errors.js';
import { ERROR_TRANSPORT, FrameType, MAGIC } from '../protocol/frame.js';
import { FrameEncoder } from '../protocol/frame-encoder.js';
import { encodeTransportError } from '../protocol/transport-error.js';

/** Time given to a refused peer to read our ERROR frame before the socket is destroyed. */
export const LINGER_MS = 1000;

/**
 * Turns a socket away before any connection exists for it (server at maxConnections):
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
export function destroyLater(socket: Socket, ms: number): void {
  if (socket.destroyed) return;
  const timer = setTimeout(() => socket.destroy(), ms).unref();
  socket.once('close', () => clearTimeout(timer));
}
