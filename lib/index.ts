export {
  WireClient,
  type WireClientEvents,
  type WireClientStatus,
  type WireClientCounters,
  type WireClientStats,
} from './client/wire-client.js';
export {
  WIRE_TRANSPORT,
  WireServer,
  type WireServerEvents,
  type WireServerStatus,
  type WireServerCounters,
  type WireServerStats,
} from './server/wire-server.js';
export { wireClient, wireClientAsync, type WireClientAsyncOptions } from './client/clients-module.js';
export { WireContext } from './server/wire-context.js';
export type { WireStream } from './server/request-payload.js';
export type { StreamSource } from './client/request-stream.js';
export {
  WireErrorCode,
  WireError,
  WireProtocolError,
  WireFrameTooLargeError,
  WireHandshakeError,
  WireConnectionError,
  WireTimeoutError,
  WireCancelledError,
  WireAuthError,
  WireLimitError,
  WireNoHandlerError,
  WireCodecError,
  WireOverloadedError,
  WireDrainingError,
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
  DEFAULT_MAX_STREAM_BUFFER_VALUES,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_RESOLVE_INTERVAL_MS,
  DEFAULT_DRAIN_TIMEOUT_MS,
  DEFAULT_MAX_PATTERN_BYTES,
  DEFAULT_MAX_METADATA_ENTRIES,
  DEFAULT_MAX_METADATA_BYTES,
  DEFAULT_MAX_CONNECTIONS,
  type WireCommonOptions,
  type WireServerOptions,
  type WireClientOptions,
  type WireCallOptions,
  type WireAuthInfo,
} from './options.js';
export { formatAddress, parseEndpoint, type EndpointAddress, type WireEndpoint } from './client/endpoint-address.js';
export {
  MsgpackCodec,
  MSGPACK_CODEC_ID,
  type MsgpackCodecOptions,
  type PayloadTypes,
  type WireCodec,
} from './protocol/codec.js';
export { DecodeBudget } from './protocol/msgpack-validator.js';
export type { CompressionAlgorithm } from './protocol/compression.js';
