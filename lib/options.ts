import type { PeerCertificate, ConnectionOptions as TlsConnectionOptions, TlsOptions } from 'node:tls';
import { WireOptionsError } from './errors.js';
import { MsgpackCodec, type WireCodec } from './protocol/codec.js';
import { MAX_COMPRESSED_PAYLOAD_BYTES, PayloadCompressor, type CompressionAlgorithm } from './protocol/compression.js';
import { MAX_STREAM_CREDIT } from './protocol/frame.js';

export const DEFAULT_HOST = 'localhost';
export const DEFAULT_PORT = 3000;
export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_POOL_SIZE = 1;
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION = 1024;
export const DEFAULT_MAX_PENDING_CALLS = 10_000;
export const DEFAULT_MAX_QUEUED_BYTES = 64 * 1024 * 1024;
export const DEFAULT_STREAM_CREDIT = 256;
export const DEFAULT_MAX_STREAM_BUFFER_BYTES = 4 * 1024 * 1024;
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 5_000;
export const DEFAULT_RESOLVE_INTERVAL_MS = 30_000;
export const DEFAULT_RECONNECT_INITIAL_DELAY_MS = 100;
export const DEFAULT_RECONNECT_MAX_DELAY_MS = 5_000;
export const DEFAULT_DRAIN_TIMEOUT_MS = 10_000;
export const DEFAULT_NACK_RETRIES = 3;
export const DEFAULT_MAX_PATTERN_BYTES = 1024;
export const DEFAULT_MAX_METADATA_ENTRIES = 64;
export const DEFAULT_MAX_METADATA_BYTES = 8 * 1024;
export const DEFAULT_MAX_CONNECTIONS = 10_000;
/** Estimated JS heap one decoded payload may take (see docs/SECURITY.md for the estimate). */
export const DEFAULT_MAX_DECODED_BYTES = 16 * 1024 * 1024;
/** Estimated JS heap of the inputs of all calls running on one connection. */
export const DEFAULT_MAX_DECODED_BYTES_PER_CONNECTION = 64 * 1024 * 1024;
/** Estimated JS heap of the inputs of all calls running on one server. */
export const DEFAULT_MAX_DECODED_BYTES_PER_SERVER = 256 * 1024 * 1024;
/** Largest payload after decompression (also the largest a sender compresses). */
export const DEFAULT_MAX_DECOMPRESSED_BYTES = 1024 * 1024;
/** Bytes of partly received fragmented values a client connection holds. */
export const DEFAULT_MAX_FRAGMENTED_BYTES = 64 * 1024 * 1024;

/** What `authenticate` learns about the connection besides the credentials. */
export interface WireAuthInfo {
  remoteAddress: string;
  /** The client's certificate when mutual TLS is on; undefined otherwise. */
  tlsPeerCertificate?: PeerCertificate;
}

/** A server to connect to: `'host:port'`, `'[::1]:port'`, `{ host, port }` or a Unix socket `{ path }`. */
export type WireEndpoint = string | { host: string; port: number } | { path: string };

/** A resolved place to dial. */
export type EndpointAddress = { host: string; port: number } | { path: string };
/** Largest timeout Node's timers accept (2^31 - 1 ms, about 24.8 days). */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** Options shared by `WireServer` and `WireClient`. */
export interface WireCommonOptions {
  /** Host to listen on / connect to. Default `'localhost'`. */
  host?: string;
  /** TCP port. Default `3000`. */
  port?: number;
  /** Largest frame this side accepts, in bytes (announced in the handshake). Default 16 MiB. */
  maxFrameSize?: number;
  /** Time allowed for the handshake after the TCP connection opens, in ms. Default 10 000. */
  handshakeTimeoutMs?: number;
  /** Payload codec; both sides must use the same one. Default msgpack (standard form). */
  codec?: WireCodec;
  /** Unix domain socket path, instead of host/port (same-host deployments). */
  path?: string;
  /**
   * Compress payloads of at least `thresholdBytes` (default 1 024) with Node's zlib. Off by
   * default: it pays on links slower than the CPU can compress, not on loopback. Both sides
   * announce it in the handshake; a side only compresses toward a peer that can decode it.
   */
  compression?: { algorithm: CompressionAlgorithm; thresholdBytes?: number };
  /**
   * A connection that has read nothing for this long is sent a PING; one silent for twice
   * as long is closed and its calls failed. In ms; 0 disables. Default 5 000.
   */
  heartbeatIntervalMs?: number;
  /**
   * Estimated JS heap one decoded payload may allocate, in bytes; a larger one is refused
   * with `WIRE_LIMIT` before it is decoded. Default 16 MiB (about 2 MiB of msgpack of
   * small objects, or 16 MiB of strings and binary).
   */
  maxDecodedBytes?: number;
  /**
   * Largest payload after decompression, in bytes; a compressed payload that inflates
   * beyond it is refused with `WIRE_CODEC`. Payloads above 1 MiB are never compressed.
   * Default 1 MiB (the least every peer accepts), at most `maxFrameSize`.
   */
  maxDecompressedBytes?: number;
}

export interface WireServerOptions extends WireCommonOptions {
  /** Node `tls.createServer` options (`key`, `cert`, `ca`, `requestCert` for mutual TLS...). Default: plaintext. */
  tls?: TlsOptions;
  /**
   * Called with the client's `credentials` before any of its frames is dispatched;
   * return (or resolve) true to accept. A refused client gets `WireAuthError` and is disconnected.
   */
  authenticate?: (credentials: unknown, info: WireAuthInfo) => boolean | Promise<boolean>;
  /** Longest pattern accepted, in UTF-8 bytes. Default 1 024. */
  maxPatternBytes?: number;
  /** Most metadata entries accepted per call. Default 64. */
  maxMetadataEntries?: number;
  /** Largest encoded metadata accepted per call, in bytes. Default 8 KiB. */
  maxMetadataBytes?: number;
  /** Connections accepted at once; past it new ones are refused with `WIRE_OVERLOADED`. Default 10 000. */
  maxConnections?: number;
  /** Close a connection with no call for this long, in ms; 0 (default) keeps pooled connections open. */
  idleTimeoutMs?: number;
  /** `close()` waits this long for calls in flight to finish after sending GOAWAY, in ms. Default 10 000. */
  drainTimeoutMs?: number;
  /**
   * Calls run at once per connection. Past it the server stops reading that socket, so
   * TCP's own backpressure slows the sender; announced to clients, which queue instead. Default 1 024.
   */
  maxInFlightPerConnection?: number;
  /**
   * Bytes of stream values a call may hold while the client has granted no credit; past it
   * the stream fails with `WIRE_OVERLOADED`. Default 4 MiB.
   */
  maxStreamBufferBytes?: number;
  /**
   * Bytes of responses waiting for a socket that does not drain; past it new requests on
   * that connection are refused with `WIRE_OVERLOADED`. Default 64 MiB.
   */
  maxQueuedBytes?: number;
  /**
   * Estimated JS heap of the decoded inputs of all calls running on one connection; past
   * it new requests are refused with NACK `WIRE_OVERLOADED`. Default 64 MiB.
   */
  maxDecodedBytesPerConnection?: number;
  /** The same, summed over every connection of the server. Default 256 MiB. */
  maxDecodedBytesPerServer?: number;
}

export interface WireClientOptions extends WireCommonOptions {
  /** Node `tls.connect` options (`ca`, and `cert`/`key` for mutual TLS...). Default: plaintext. */
  tls?: TlsConnectionOptions;
  /**
   * Sent in the handshake for the server's `authenticate`: any msgpack value, or a function
   * returning one (or a promise of one), called for every new connection so tokens can rotate.
   */
  credentials?: unknown;
  /**
   * Servers to spread calls over, instead of `host`/`port`/`path`. Hostnames are resolved
   * with DNS (every address is used) and re-resolved every `resolveIntervalMs`.
   */
  servers?: WireEndpoint[];
  /** How often hostnames are resolved again, in ms; 0 resolves once. Default 30 000. */
  resolveIntervalMs?: number;
  /** Reconnect backoff after a connection fails: exponential with jitter. Default `{ initialDelayMs: 100, maxDelayMs: 5 000 }`. */
  reconnect?: { initialDelayMs?: number; maxDelayMs?: number };
  /** Times a call refused with NACK ("not processed") is re-sent to another connection. Default 3. */
  nackRetries?: number;
  /** Default time a call may take before it fails with `WireTimeoutError`, in ms; 0 disables. Default 30 000. */
  timeout?: number;
  /** Connections kept to the server; calls go to the one with the fewest in flight. Default 1. */
  poolSize?: number;
  /** Time allowed to open the TCP connection, in ms. Default 10 000. */
  connectTimeoutMs?: number;
  /** Calls outstanding at once (written or queued). Default 10 000. */
  maxPendingCalls?: number;
  /** Past `maxPendingCalls`: `'fail'` errors the call with `WireOverloadedError` (default), `'wait'` holds it until a slot frees. */
  overflow?: 'fail' | 'wait';
  /** Bytes queued on a connection that cannot drain; past it calls fail with `WireOverloadedError`. Default 64 MiB. */
  maxQueuedBytes?: number;
  /** Stream values the server may send ahead of consumption (renewed as values are delivered). Default 256, at most 65 536. */
  streamCredit?: number;
  /**
   * Bytes of partly received fragmented values held per connection; the call whose
   * fragment would pass it fails with `WireLimitError`. Default 64 MiB.
   */
  maxFragmentedBytes?: number;
  /**
   * Calls made while handling a nest-wire call inherit its remaining deadline and are
   * cancelled with it. Default true; per call: `send(p, d, { propagate: false })`.
   */
  propagate?: boolean;
}

/** Per-call options: the optional third argument of `WireClient#send`. */
export interface WireCallOptions {
  /** Overrides the client's `timeout` for this call, in ms; 0 disables. */
  timeout?: number;
  /** Merged over any metadata the dispatch hook set; arrives in `ctx.getMetadata()`. */
  metadata?: Record<string, string>;
  /** Set false to not inherit the deadline and cancellation of the call being handled. */
  propagate?: boolean;
}

export interface ResolvedCommonOptions {
  compression: PayloadCompressor | null;
  host: string;
  port: number;
  path: string | null;
  heartbeatIntervalMs: number;
  maxFrameSize: number;
  handshakeTimeoutMs: number;
  codec: WireCodec;
  maxDecodedBytes: number;
  maxDecompressedBytes: number;
}

export interface ResolvedServerOptions extends ResolvedCommonOptions {
  tls: TlsOptions | null;
  authenticate: WireServerOptions['authenticate'] | null;
  maxPatternBytes: number;
  maxMetadataEntries: number;
  maxMetadataBytes: number;
  maxConnections: number;
  idleTimeoutMs: number;
  drainTimeoutMs: number;
  maxInFlightPerConnection: number;
  maxStreamBufferBytes: number;
  maxQueuedBytes: number;
  maxDecodedBytesPerConnection: number;
  maxDecodedBytesPerServer: number;
}

export interface ResolvedClientOptions extends ResolvedCommonOptions {
  tls: TlsConnectionOptions | null;
  credentials: unknown;
  servers: EndpointAddress[];
  /** True when `servers` was given: hostnames there are resolved to all their addresses. */
  lookupHostnames: boolean;
  resolveIntervalMs: number;
  reconnect: { initialDelayMs: number; maxDelayMs: number };
  nackRetries: number;
  timeout: number;
  poolSize: number;
  connectTimeoutMs: number;
  maxPendingCalls: number;
  overflow: 'fail' | 'wait';
  maxQueuedBytes: number;
  streamCredit: number;
  propagate: boolean;
  maxFragmentedBytes: number;
}

export function resolveServerOptions(options: WireServerOptions = {}): ResolvedServerOptions {
  const where = 'WireServer';
  return {
    ...resolveCommon(options, where),
    drainTimeoutMs: checkTimeout(options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS, `${where} option drainTimeoutMs`),
    tls: checkObject(options.tls, `${where} option tls`),
    authenticate: checkFunction(options.authenticate, `${where} option authenticate`),
    maxPatternBytes: checkInteger(options.maxPatternBytes ?? DEFAULT_MAX_PATTERN_BYTES, 1, 0xffff, `${where} option maxPatternBytes`),
    maxMetadataEntries: checkInteger(
      options.maxMetadataEntries ?? DEFAULT_MAX_METADATA_ENTRIES,
      0,
      Number.MAX_SAFE_INTEGER,
      `${where} option maxMetadataEntries`,
    ),
    maxMetadataBytes: checkInteger(
      options.maxMetadataBytes ?? DEFAULT_MAX_METADATA_BYTES,
      0,
      0xffffffff,
      `${where} option maxMetadataBytes`,
    ),
    maxConnections: checkInteger(options.maxConnections ?? DEFAULT_MAX_CONNECTIONS, 1, Number.MAX_SAFE_INTEGER, `${where} option maxConnections`),
    idleTimeoutMs: checkTimeout(options.idleTimeoutMs ?? 0, `${where} option idleTimeoutMs`),
    maxInFlightPerConnection: checkInteger(
      options.maxInFlightPerConnection ?? DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION,
      1,
      0xffffffff,
      `${where} option maxInFlightPerConnection`,
    ),
    maxStreamBufferBytes: checkInteger(
      options.maxStreamBufferBytes ?? DEFAULT_MAX_STREAM_BUFFER_BYTES,
      0,
      Number.MAX_SAFE_INTEGER,
      `${where} option maxStreamBufferBytes`,
    ),
    maxQueuedBytes: checkInteger(
      options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES,
      1024,
      Number.MAX_SAFE_INTEGER,
      `${where} option maxQueuedBytes`,
    ),
    maxDecodedBytesPerConnection: checkInteger(
      options.maxDecodedBytesPerConnection ?? DEFAULT_MAX_DECODED_BYTES_PER_CONNECTION,
      1024,
      Number.MAX_SAFE_INTEGER,
      `${where} option maxDecodedBytesPerConnection`,
    ),
    maxDecodedBytesPerServer: checkInteger(
      options.maxDecodedBytesPerServer ?? DEFAULT_MAX_DECODED_BYTES_PER_SERVER,
      1024,
      Number.MAX_SAFE_INTEGER,
      `${where} option maxDecodedBytesPerServer`,
    ),
  };
}

export function resolveClientOptions(options: WireClientOptions = {}): ResolvedClientOptions {
  const where = 'WireClient';
  const common = resolveCommon(options, where);
  const reconnect = options.reconnect ?? {};
  const initialDelayMs = checkInteger(
    reconnect.initialDelayMs ?? DEFAULT_RECONNECT_INITIAL_DELAY_MS,
    1,
    MAX_TIMEOUT_MS,
    `${where} option reconnect.initialDelayMs`,
  );
  const maxDelayMs = checkInteger(
    reconnect.maxDelayMs ?? Math.max(DEFAULT_RECONNECT_MAX_DELAY_MS, initialDelayMs),
    initialDelayMs,
    MAX_TIMEOUT_MS,
    `${where} option reconnect.maxDelayMs (at least initialDelayMs)`,
  );
  return {
    ...common,
    servers: resolveServers(options, common, where),
    tls: checkObject(options.tls, `${where} option tls`),
    credentials: options.credentials,
    lookupHostnames: options.servers !== undefined,
    resolveIntervalMs: checkTimeout(options.resolveIntervalMs ?? DEFAULT_RESOLVE_INTERVAL_MS, `${where} option resolveIntervalMs`),
    reconnect: { initialDelayMs, maxDelayMs },
    nackRetries: checkInteger(options.nackRetries ?? DEFAULT_NACK_RETRIES, 0, 100, `${where} option nackRetries`),
    timeout: checkTimeout(options.timeout ?? DEFAULT_TIMEOUT_MS, `${where} option timeout`),
    poolSize: checkInteger(options.poolSize ?? DEFAULT_POOL_SIZE, 1, 1024, `${where} option poolSize`),
    connectTimeoutMs: checkInteger(
      options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      1,
      MAX_TIMEOUT_MS,
      `${where} option connectTimeoutMs`,
    ),
    maxPendingCalls: checkInteger(
      options.maxPendingCalls ?? DEFAULT_MAX_PENDING_CALLS,
      1,
      Number.MAX_SAFE_INTEGER,
      `${where} option maxPendingCalls`,
    ),
    overflow: checkOneOf(options.overflow ?? 'fail', ['fail', 'wait'] as const, `${where} option overflow`),
    maxQueuedBytes: checkInteger(
      options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES,
      1024,
      Number.MAX_SAFE_INTEGER,
      `${where} option maxQueuedBytes`,
    ),
    streamCredit: checkInteger(options.streamCredit ?? DEFAULT_STREAM_CREDIT, 1, MAX_STREAM_CREDIT, `${where} option streamCredit`),
    propagate: checkBoolean(options.propagate ?? true, `${where} option propagate`),
    maxFragmentedBytes: checkInteger(
      options.maxFragmentedBytes ?? DEFAULT_MAX_FRAGMENTED_BYTES,
      1024,
      Number.MAX_SAFE_INTEGER,
      `${where} option maxFragmentedBytes`,
    ),
  };
}

function checkOneOf<T extends string>(value: T, allowed: readonly T[], what: string): T {
  if (!allowed.includes(value)) {
    throw new WireOptionsError(`${what} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${String(value)}`);
  }
  return value;
}

function checkObject<T extends object>(value: T | undefined, what: string): T | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'object') throw new WireOptionsError(`${what} must be an object of Node tls options, got ${typeof value}`);
  return value;
}

function checkFunction<T>(value: T | undefined, what: string): T | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'function') throw new WireOptionsError(`${what} must be a function, got ${typeof value}`);
  return value;
}

function checkBoolean(value: boolean, what: string): boolean {
  if (typeof value !== 'boolean') throw new WireOptionsError(`${what} must be true or false, got ${String(value)}`);
  return value;
}

function resolveCommon(options: WireCommonOptions, where: string): ResolvedCommonOptions {
  if (options === null || typeof options !== 'object') {
    throw new WireOptionsError(`${where} expects an options object, got ${typeof options}`);
  }
  const host = options.host ?? DEFAULT_HOST;
  if (typeof host !== 'string' || host.length === 0) {
    throw new WireOptionsError(`${where} option host must be a non-empty string, got ${String(host)}`);
  }
  const codec = options.codec ?? new MsgpackCodec();
  if (typeof codec.encode !== 'function' || typeof codec.decode !== 'function') {
    throw new WireOptionsError(`${where} option codec must implement encode(value) and decode(bytes)`);
  }
  const maxFrameSize = checkInteger(
    options.maxFrameSize ?? DEFAULT_MAX_FRAME_BYTES,
    1024,
    0xffffffff,
    `${where} option maxFrameSize (bytes)`,
  );
  const path = options.path ?? null;
  if (path !== null && (typeof path !== 'string' || path.length === 0)) {
    throw new WireOptionsError(`${where} option path must be a non-empty string (a Unix socket path)`);
  }
  return {
    host,
    path,
    compression: resolveCompression(options.compression, where),
    heartbeatIntervalMs: checkTimeout(
      options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS,
      `${where} option heartbeatIntervalMs`,
    ),
    port: checkInteger(options.port ?? DEFAULT_PORT, 0, 65535, `${where} option port`),
    maxFrameSize,
    handshakeTimeoutMs: checkInteger(
      options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      1,
      MAX_TIMEOUT_MS,
      `${where} option handshakeTimeoutMs`,
    ),
    codec,
    maxDecodedBytes: checkInteger(
      options.maxDecodedBytes ?? DEFAULT_MAX_DECODED_BYTES,
      1024,
      Number.MAX_SAFE_INTEGER,
      `${where} option maxDecodedBytes`,
    ),
    maxDecompressedBytes: checkInteger(
      options.maxDecompressedBytes ?? Math.min(DEFAULT_MAX_DECOMPRESSED_BYTES, maxFrameSize),
      Math.min(MAX_COMPRESSED_PAYLOAD_BYTES, maxFrameSize),
      maxFrameSize,
      `${where} option maxDecompressedBytes (at most maxFrameSize)`,
    ),
  };
}

/** Validates a timeout in ms: 0 (disabled) up to Node's timer limit. */
export function checkTimeout(value: number, what: string): number {
  return checkInteger(value, 0, MAX_TIMEOUT_MS, `${what} (ms, 0 disables)`);
}

function checkInteger(value: number, min: number, max: number, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new WireOptionsError(`${what} must be an integer from ${min} to ${max}, got ${String(value)}`);
  }
  return value;
}

/** The client's endpoints: `servers` if given, else the single host/port or path. */
function resolveServers(options: WireClientOptions, common: ResolvedCommonOptions, where: string): EndpointAddress[] {
  if (options.servers === undefined) {
    return [common.path !== null ? { path: common.path } : { host: common.host, port: common.port }];
  }
  if (options.host !== undefined || options.port !== undefined || options.path !== undefined) {
    throw new WireOptionsError(`${where}: give either servers or host/port/path, not both`);
  }
  if (!Array.isArray(options.servers) || options.servers.length === 0) {
    throw new WireOptionsError(`${where} option servers must be a non-empty array of 'host:port', { host, port } or { path }`);
  }
  return options.servers.map((s, i) => parseEndpoint(s, `${where} option servers[${i}]`));
}

export function parseEndpoint(endpoint: WireEndpoint, what: string): EndpointAddress {
  if (typeof endpoint === 'string') {
    const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(endpoint);
    if (match === null) throw new WireOptionsError(`${what} must look like 'host:port' or '[ipv6]:port', got '${endpoint}'`);
    return { host: match[1] ?? match[2], port: checkInteger(Number(match[3]), 1, 65535, `${what} port`) };
  }
  if (endpoint !== null && typeof endpoint === 'object') {
    if ('path' in endpoint && typeof endpoint.path === 'string' && endpoint.path.length > 0) return { path: endpoint.path };
    if ('host' in endpoint && typeof endpoint.host === 'string' && endpoint.host.length > 0) {
      return { host: endpoint.host, port: checkInteger(endpoint.port, 1, 65535, `${what} port`) };
    }
  }
  throw new WireOptionsError(`${what} must be 'host:port', { host, port } or { path }, got ${JSON.stringify(endpoint)}`);
}

/** `host:port`, `[v6]:port` or `unix:path`, for logs and keys. */
export function formatAddress(address: EndpointAddress): string {
  if ('path' in address) return `unix:${address.path}`;
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

function resolveCompression(value: WireCommonOptions['compression'], where: string): PayloadCompressor | null {
  if (value === undefined || value === null) return null;
  const algorithm = checkOneOf(value.algorithm, ['deflate', 'brotli'] as const, `${where} option compression.algorithm`);
  const threshold = checkInteger(
    value.thresholdBytes ?? 1024,
    0,
    Number.MAX_SAFE_INTEGER,
    `${where} option compression.thresholdBytes`,
  );
  return new PayloadCompressor(algorithm, threshold);
}
