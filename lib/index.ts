export { WireClient, type WireClientEvents, type WireClientStatus, type WireClientCounters } from './client/wire-client.js';
export { WireServer, type WireServerEvents, type WireServerStatus, type WireServerCounters } from './server/wire-server.js';
export { WireContext } from './server/wire-context.js';
export {
  WireError,
  WireProtocolError,
  WireFrameTooLargeError,
  WireHandshakeError,
  WireConnectionError,
  WireTimeoutError,
  WireCancelledError,
  WireNoHandlerError,
  WireCodecError,
  WireOverloadedError,
  WireOptionsError,
  WireRemoteError,
} from './errors.js';
export {
  DEFAULT_TIMEOUT_MS,
  DEFAULT_POOL_SIZE,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION,
  DEFAULT_MAX_PENDING_CALLS,
  DEFAULT_MAX_QUEUED_BYTES,
  DEFAULT_STREAM_CREDIT,
  DEFAULT_MAX_STREAM_BUFFER_BYTES,
  type WireCommonOptions,
  type WireServerOptions,
  type WireClientOptions,
  type WireCallOptions,
} from './options.js';
export { MsgpackCodec, MSGPACK_CODEC_ID, type WireCodec } from './protocol/codec.js';
