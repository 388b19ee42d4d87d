import type { PeerCertificate, ConnectionOptions as TlsConnectionOptions, TlsOptions } from 'node:tls';
import { WireOptionsError } from './errors.js';
import { parseEndpoint, type EndpointAddress, type WireEndpoint } from './client/endpoint-address.js';
import { checkInteger, MAX_TIMEOUT_MS } from './option-checks.js';
import { INTEGER_OPTIONS, resolveInteger } from './option-table.js';
import { checkOptionKeys, unknownOptionError, type OptionKeys } from './option-keys.js';
import { MsgpackCodec, type PayloadTypes, type WireCodec } from './protocol/codec.js';
import { MAX_COMPRESSED_PAYLOAD_BYTES, PayloadCompressor, type CompressionAlgorithm } from './protocol/compression.js';

// The integer defaults are stated once, in their row (lib/option-table.ts); these names stay importable.
export const DEFAULT_HOST = 'localhost';
export const DEFAULT_PORT = INTEGER_OPTIONS.port.default;
export const DEFAULT_TIMEOUT_MS = INTEGER_OPTIONS.timeout.default;
export const DEFAULT_POOL_SIZE = INTEGER_OPTIONS.poolSize.default;
export const DEFAULT_MAX_FRAME_BYTES = INTEGER_OPTIONS.maxFrameSize.default;
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = INTEGER_OPTIONS.handshakeTimeoutMs.default;
export const DEFAULT_CONNECT_TIMEOUT_MS = INTEGER_OPTIONS.connectTimeoutMs.default;
export const DEFAULT_MAX_IN_FLIGHT_PER_CONNECTION = INTEGER_OPTIONS.maxInFlightPerConnection.default;
export const DEFAULT_MAX_PENDING_CALLS = INTEGER_OPTIONS.maxPendingCalls.default;
export const DEFAULT_MAX_QUEUED_BYTES = INTEGER_OPTIONS.maxQueuedBytes.default;
export const DEFAULT_STREAM_CREDIT = INTEGER_OPTIONS.streamCredit.default;
export const DEFAULT_MAX_STREAM_BUFFER_VALUES = INTEGER_OPTIONS.maxStreamBufferValues.default;
export const DEFAULT_HEARTBEAT_INTERVAL_MS = INTEGER_OPTIONS.heartbeatIntervalMs.default;
export const DEFAULT_RESOLVE_INTERVAL_MS = INTEGER_OPTIONS.resolveIntervalMs.default;
export const DEFAULT_RECONNECT_INITIAL_DELAY_MS = INTEGER_OPTIONS['reconnect.initialDelayMs'].default;
export const DEFAULT_RECONNECT_MAX_DELAY_MS = 5_000;
export const DEFAULT_DRAIN_TIMEOUT_MS = INTEGER_OPTIONS.drainTimeoutMs.default;
export const DEFAULT_NACK_RETRIES = INTEGER_OPTIONS.nackRetries.default;
export const DEFAULT_MAX_PATTERN_BYTES = INTEGER_OPTIONS.maxPatternBytes.default;
export const DEFAULT_MAX_METADATA_ENTRIES = INTEGER_OPTIONS.maxMetadataEntries.default;
export const DEFAULT_MAX_METADATA_BYTES = INTEGER_OPTIONS.maxMetadataBytes.default;
export const DEFAULT_MAX_CONNECTIONS = INTEGER_OPTIONS.maxConnections.default;
export const DEFAULT_RETRY_MAX_ATTEMPTS = INTEGER_OPTIONS['retry.maxAttempts'].default;
export const DEFAULT_HEDGE_DELAY_MS = 50;
export const DEFAULT_EJECTION_CONSECUTIVE_FAILURES = INTEGER_OPTIONS['outlierDetection.consecutiveFailures'].default;
export const DEFAULT_BASE_EJECTION_MS = INTEGER_OPTIONS['outlierDetection.baseEjectionMs'].default;
export const DEFAULT_MAX_EJECTION_MS = 300_000;
export const DEFAULT_MAX_EJECTED_PERCENT = INTEGER_OPTIONS['outlierDetection.maxEjectedPercent'].default;
export const DEFAULT_HEDGE_MAX_EXTRA_PERCENT = INTEGER_OPTIONS['hedge.maxExtraPercent'].default;
export const DEFAULT_RETRY_BUDGET_PERCENT = INTEGER_OPTIONS['retry.budget.percent'].default;
export const DEFAULT_RETRY_BUDGET_MIN_PER_SECOND = INTEGER_OPTIONS['retry.budget.minPerSecond'].default;
/** Estimated JS heap one decoded payload may take (see docs/SECURITY.md for the estimate). */
export const DEFAULT_MAX_DECODED_BYTES = INTEGER_OPTIONS.maxDecodedBytes.default;
/** Estimated JS heap of the inputs of all calls running on one connection. */
export const DEFAULT_MAX_DECODED_BYTES_PER_CONNECTION = INTEGER_OPTIONS.maxDecodedBytesPerConnection.default;
/** Estimated JS heap of the inputs of all calls running on one server. */
export const DEFAULT_MAX_DECODED_BYTES_PER_SERVER = INTEGER_OPTIONS.maxDecodedBytesPerServer.default;
/** Largest payload after decompression (also the largest a sender compresses). */
export const DEFAULT_MAX_DECOMPRESSED_BYTES = 1024 * 1024;
/** Bytes of partly received fragmented values a client connection holds. */
export const DEFAULT_MAX_FRAGMENTED_BYTES = INTEGER_OPTIONS.maxFragmentedBytes.default;

/** What `authenticate` learns about the connection besides the credentials. */
export interface WireAuthInfo {
  remoteAddress: string;
  /** The client's certificate when mutual TLS is on; undefined otherwise. */
  tlsPeerCertificate?: PeerCertificate;
}

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
  /**
   * How JS values map to msgpack payloads (README "Payload types"): `'json'` (default) delivers
   * them the way Nest's TCP transport (JSON) does, binary data excepted; `'native'` carries
   * Date, BigInt, Map, Set and typed arrays natively. Each side picks its own; not with `codec`.
   */
  payloadTypes?: PayloadTypes;
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
   * Stream values the calls of one connection may hold, unencoded, beyond their client's
   * credit or while its socket is backed up (they are encoded when sent); past it the call
   * that would hold one more fails with `WIRE_OVERLOADED`. Default 1 048 576.
   */
  maxStreamBufferValues?: number;
  /**
   * Bytes of responses waiting for a socket that does not drain; past it new requests on
   * that connection are refused with `WIRE_OVERLOADED`. Default 64 MiB.
   */
  maxQueuedBytes?: number;
  /**
   * Calls run at once across the whole server; past it new requests get NACK
   * `WIRE_OVERLOADED` without running (clients send them elsewhere). 0 (default): no limit.
   */
  maxConcurrentCalls?: number;
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
   * `send(pattern, source$)` with an Observable source: values it pushes beyond the
   * server's credit are held, at most this many; one more fails the call with
   * `WireOverloadedError`. Default 1 024 (an AsyncIterable source is pulled, never held).
   */
  maxStreamHeldValues?: number;
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
  /**
   * Patterns safe to run more than once (retried after a lost connection or an overloaded
   * server, hedged): exact strings, regular expressions, or a function of the pattern.
   * Default: none. Per call: `send(p, d, { idempotent: true })`.
   */
  idempotent?: (string | RegExp)[] | ((pattern: string) => boolean);
  /**
   * Retries: at most `maxAttempts` attempts per call (default 3), all within its timeout;
   * every retry (NACK re-sends included) spends from one budget per client: `percent` %
   * (default 20) of the calls started over the last 10 s, plus `minPerSecond` (default 10).
   */
  retry?: { maxAttempts?: number; budget?: { percent?: number; minPerSecond?: number } };
  /**
   * Hedged requests for idempotent calls: with no answer `delayMs` after a call was written
   * (a number, default 50, or `'p95'`: the latency observed for its pattern), a copy goes to
   * another server; the first answer wins, the other copy is cancelled. Copies add at most
   * `maxExtraPercent` % (default 5) of the calls started. Default: off.
   */
  hedge?: { delayMs?: number | 'p95'; maxExtraPercent?: number };
  /**
   * Outlier ejection: an endpoint whose calls fail `consecutiveFailures` times in a row
   * (default 5) for transport reasons leaves rotation for `baseEjectionMs` (default 30 000),
   * doubling on each repeat up to `maxEjectionMs` (default 300 000), and is PINGed before it
   * gets calls again; at most `maxEjectedPercent` % (default 50) of endpoints at once. Default: off.
   */
  outlierDetection?: {
    consecutiveFailures?: number;
    baseEjectionMs?: number;
    maxEjectionMs?: number;
    maxEjectedPercent?: number;
  };
}

/** Per-call options: the optional third argument of `WireClient#send`. */
export interface WireCallOptions {
  /** Overrides the client's `timeout` for this call, in ms; 0 disables. */
  timeout?: number;
  /** Merged over any metadata the dispatch hook set; arrives in `ctx.getMetadata()`. */
  metadata?: Record<string, string>;
  /** Set false to not inherit the deadline and cancellation of the call being handled. */
  propagate?: boolean;
  /** Overrides the client's `idempotent` list for this call. */
  idempotent?: boolean;
}

/**
 * THE known-key lists: every option of the interfaces above, once. `satisfies OptionKeys<...>`
 * makes the compiler demand an entry for each option of the interface (and refuse a key it
 * lacks), so a new option is one line in its interface and one here. Any other key given to
 * a constructor or to `send()` is refused with `WireOptionsError` naming the closest option
 * (lib/option-keys.ts).
 */
const COMMON_OPTION_KEYS = {
  host: true,
  port: true,
  maxFrameSize: true,
  handshakeTimeoutMs: true,
  codec: true,
  path: true,
  compression: true,
  heartbeatIntervalMs: true,
  payloadTypes: true,
  maxDecodedBytes: true,
  maxDecompressedBytes: true,
} as const satisfies OptionKeys<WireCommonOptions>;

export const SERVER_OPTION_KEYS = {
  ...COMMON_OPTION_KEYS,
  tls: true,
  authenticate: true,
  maxPatternBytes: true,
  maxMetadataEntries: true,
  maxMetadataBytes: true,
  maxConnections: true,
  idleTimeoutMs: true,
  drainTimeoutMs: true,
  maxInFlightPerConnection: true,
  maxStreamBufferValues: true,
  maxQueuedBytes: true,
  maxConcurrentCalls: true,
  maxDecodedBytesPerConnection: true,
  maxDecodedBytesPerServer: true,
} as const satisfies OptionKeys<WireServerOptions>;

export const CLIENT_OPTION_KEYS = {
  ...COMMON_OPTION_KEYS,
  tls: true,
  credentials: true,
  servers: true,
  resolveIntervalMs: true,
  reconnect: true,
  nackRetries: true,
  timeout: true,
  poolSize: true,
  connectTimeoutMs: true,
  maxPendingCalls: true,
  overflow: true,
  maxQueuedBytes: true,
  streamCredit: true,
  maxStreamHeldValues: true,
  maxFragmentedBytes: true,
  idempotent: true,
  retry: true,
  hedge: true,
  outlierDetection: true,
  propagate: true,
} as const satisfies OptionKeys<WireClientOptions>;

export const CALL_OPTION_KEYS = {
  timeout: true,
  metadata: true,
  propagate: true,
  idempotent: true,
} as const satisfies OptionKeys<WireCallOptions>;

export const RETRY_OPTION_KEYS = { maxAttempts: true, budget: true } as const satisfies OptionKeys<
  NonNullable<WireClientOptions['retry']>
>;
export const HEDGE_OPTION_KEYS = { delayMs: true, maxExtraPercent: true } as const satisfies OptionKeys<
  NonNullable<WireClientOptions['hedge']>
>;
export const OUTLIER_DETECTION_OPTION_KEYS = {
  consecutiveFailures: true,
  baseEjectionMs: true,
  maxEjectionMs: true,
  maxEjectedPercent: true,
} as const satisfies OptionKeys<NonNullable<WireClientOptions['outlierDetection']>>;
export const RETRY_BUDGET_OPTION_KEYS = { percent: true, minPerSecond: true } as const satisfies OptionKeys<
  NonNullable<NonNullable<WireClientOptions['retry']>['budget']>
>;

const RECONNECT_OPTION_KEYS = { initialDelayMs: true, maxDelayMs: true } as const satisfies OptionKeys<
  NonNullable<WireClientOptions['reconnect']>
>;
const COMPRESSION_OPTION_KEYS = { algorithm: true, thresholdBytes: true } as const satisfies OptionKeys<
  NonNullable<WireCommonOptions['compression']>
>;

/**
 * Checks the keys of `send()`'s per-call options (not their values). On the hot path: no
 * allocation unless it throws, one `hasOwn` per key given.
 */
export function checkCallOptionKeys(options: WireCallOptions): void {
  if (options === null || typeof options !== 'object') {
    throw new WireOptionsError(
      `send() options must be an object ({ timeout, metadata, propagate, idempotent }), got ${String(options)}`,
    );
  }
  for (const key in options) {
    if (!Object.hasOwn(CALL_OPTION_KEYS, key)) throw unknownOptionError(key, CALL_OPTION_KEYS, 'send()');
  }
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
  maxStreamBufferValues: number;
  maxQueuedBytes: number;
  maxConcurrentCalls: number;
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
  maxStreamHeldValues: number;
  propagate: boolean;
  /** Whether a pattern is idempotent; null when none is. */
  idempotent: ((pattern: string) => boolean) | null;
  retry: { maxAttempts: number; budget: { percent: number; minPerSecond: number } };
  /** Null when hedging is off. */
  hedge: { delayMs: number | 'p95'; maxExtraPercent: number } | null;
  /** Null when outlier ejection is off. */
  outlierDetection: {
    consecutiveFailures: number;
    baseEjectionMs: number;
    maxEjectionMs: number;
    maxEjectedPercent: number;
  } | null;
  maxFragmentedBytes: number;
}

export function resolveServerOptions(options: WireServerOptions = {}): ResolvedServerOptions {
  const where = 'WireServer';
  checkOptionKeys(options, SERVER_OPTION_KEYS, where);
  return {
    ...resolveCommon(options, where),
    drainTimeoutMs: resolveInteger('drainTimeoutMs', options.drainTimeoutMs, where),
    tls: checkObject(options.tls, `${where} option tls`),
    authenticate: checkFunction(options.authenticate, `${where} option authenticate`),
    maxPatternBytes: resolveInteger('maxPatternBytes', options.maxPatternBytes, where),
    maxMetadataEntries: resolveInteger('maxMetadataEntries', options.maxMetadataEntries, where),
    maxMetadataBytes: resolveInteger('maxMetadataBytes', options.maxMetadataBytes, where),
    maxConnections: resolveInteger('maxConnections', options.maxConnections, where),
    idleTimeoutMs: resolveInteger('idleTimeoutMs', options.idleTimeoutMs, where),
    maxInFlightPerConnection: resolveInteger('maxInFlightPerConnection', options.maxInFlightPerConnection, where),
    maxStreamBufferValues: resolveInteger('maxStreamBufferValues', options.maxStreamBufferValues, where),
    maxQueuedBytes: resolveInteger('maxQueuedBytes', options.maxQueuedBytes, where),
    maxConcurrentCalls: resolveInteger('maxConcurrentCalls', options.maxConcurrentCalls, where),
    maxDecodedBytesPerConnection: resolveInteger(
      'maxDecodedBytesPerConnection',
      options.maxDecodedBytesPerConnection,
      where,
    ),
    maxDecodedBytesPerServer: resolveInteger('maxDecodedBytesPerServer', options.maxDecodedBytesPerServer, where),
  };
}

export function resolveClientOptions(options: WireClientOptions = {}): ResolvedClientOptions {
  const where = 'WireClient';
  checkOptionKeys(options, CLIENT_OPTION_KEYS, where);
  const common = resolveCommon(options, where);
  const reconnect = options.reconnect ?? {};
  checkOptionKeys(reconnect, RECONNECT_OPTION_KEYS, `${where} option reconnect`);
  const initialDelayMs = resolveInteger('reconnect.initialDelayMs', reconnect.initialDelayMs, where);
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
    resolveIntervalMs: resolveInteger('resolveIntervalMs', options.resolveIntervalMs, where),
    reconnect: { initialDelayMs, maxDelayMs },
    nackRetries: resolveInteger('nackRetries', options.nackRetries, where),
    timeout: resolveInteger('timeout', options.timeout, where),
    poolSize: resolveInteger('poolSize', options.poolSize, where),
    connectTimeoutMs: resolveInteger('connectTimeoutMs', options.connectTimeoutMs, where),
    maxPendingCalls: resolveInteger('maxPendingCalls', options.maxPendingCalls, where),
    overflow: checkOneOf(options.overflow ?? 'fail', ['fail', 'wait'] as const, `${where} option overflow`),
    maxQueuedBytes: resolveInteger('maxQueuedBytes', options.maxQueuedBytes, where),
    streamCredit: resolveInteger('streamCredit', options.streamCredit, where),
    maxStreamHeldValues: resolveInteger('maxStreamHeldValues', options.maxStreamHeldValues, where),
    propagate: checkBoolean(options.propagate ?? true, `${where} option propagate`),
    maxFragmentedBytes: resolveInteger('maxFragmentedBytes', options.maxFragmentedBytes, where),
    idempotent: resolveIdempotent(options.idempotent, where),
    retry: resolveRetry(options.retry, where),
    hedge: resolveHedge(options.hedge, where),
    outlierDetection: resolveOutlierDetection(options.outlierDetection, where),
  };
}

function resolveOutlierDetection(
  value: WireClientOptions['outlierDetection'],
  where: string,
): ResolvedClientOptions['outlierDetection'] {
  if (value === undefined || value === null) return null;
  const what = `${where} option outlierDetection`;
  checkOptionKeys(value, OUTLIER_DETECTION_OPTION_KEYS, what);
  const baseEjectionMs = resolveInteger('outlierDetection.baseEjectionMs', value.baseEjectionMs, where);
  return {
    consecutiveFailures: resolveInteger('outlierDetection.consecutiveFailures', value.consecutiveFailures, where),
    baseEjectionMs,
    maxEjectionMs: checkInteger(
      value.maxEjectionMs ?? Math.max(DEFAULT_MAX_EJECTION_MS, baseEjectionMs),
      baseEjectionMs,
      MAX_TIMEOUT_MS,
      `${what}.maxEjectionMs (at least baseEjectionMs)`,
    ),
    maxEjectedPercent: resolveInteger('outlierDetection.maxEjectedPercent', value.maxEjectedPercent, where),
  };
}

function resolveHedge(value: WireClientOptions['hedge'], where: string): ResolvedClientOptions['hedge'] {
  if (value === undefined || value === null) return null;
  checkOptionKeys(value, HEDGE_OPTION_KEYS, `${where} option hedge`);
  const delay = value.delayMs ?? DEFAULT_HEDGE_DELAY_MS;
  return {
    delayMs:
      delay === 'p95' ? 'p95' : checkInteger(delay, 1, MAX_TIMEOUT_MS, `${where} option hedge.delayMs (ms, or 'p95')`),
    maxExtraPercent: resolveInteger('hedge.maxExtraPercent', value.maxExtraPercent, where),
  };
}

/** One test for the `idempotent` option: a Set for the strings, then the regular expressions. */
function resolveIdempotent(
  value: WireClientOptions['idempotent'],
  where: string,
): ((pattern: string) => boolean) | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'function') return value;
  const what = `${where} option idempotent`;
  if (!Array.isArray(value)) {
    throw new WireOptionsError(
      `${what} must be an array of patterns (strings or RegExps) or a function (pattern) => boolean`,
    );
  }
  const exact = new Set<string>();
  const expressions: RegExp[] = [];
  value.forEach((entry, i) => {
    if (typeof entry === 'string') exact.add(entry);
    else if (entry instanceof RegExp) expressions.push(entry);
    else throw new WireOptionsError(`${what}[${i}] must be a string or a RegExp, got ${typeof entry}`);
  });
  if (expressions.length === 0) return (pattern) => exact.has(pattern);
  return (pattern) => {
    if (exact.has(pattern)) return true;
    for (const re of expressions) {
      re.lastIndex = 0; // a /g or /y expression keeps state between tests
      if (re.test(pattern)) return true;
    }
    return false;
  };
}

function resolveRetry(value: WireClientOptions['retry'], where: string): ResolvedClientOptions['retry'] {
  const retry = value ?? {};
  checkOptionKeys(retry, RETRY_OPTION_KEYS, `${where} option retry`);
  const budget = retry.budget ?? {};
  checkOptionKeys(budget, RETRY_BUDGET_OPTION_KEYS, `${where} option retry.budget`);
  return {
    maxAttempts: resolveInteger('retry.maxAttempts', retry.maxAttempts, where),
    budget: {
      percent: resolveInteger('retry.budget.percent', budget.percent, where),
      minPerSecond: resolveInteger('retry.budget.minPerSecond', budget.minPerSecond, where),
    },
  };
}

function checkOneOf<T extends string>(value: T, allowed: readonly T[], what: string): T {
  if (!allowed.includes(value)) {
    throw new WireOptionsError(
      `${what} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${String(value)}`,
    );
  }
  return value;
}

function checkObject<T extends object>(value: T | undefined, what: string): T | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'object')
    throw new WireOptionsError(`${what} must be an object of Node tls options, got ${typeof value}`);
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
  if (options.codec != null && options.payloadTypes !== undefined) {
    throw new WireOptionsError(
      `${where}: give either codec or payloadTypes, not both (a custom codec decides its own types; for msgpack use codec: new MsgpackCodec({ payloadTypes }))`,
    );
  }
  const payloadTypes = checkOneOf(
    options.payloadTypes ?? 'json',
    ['json', 'native'] as const,
    `${where} option payloadTypes`,
  );
  const codec = options.codec ?? new MsgpackCodec({ payloadTypes });
  if (typeof codec.encode !== 'function' || typeof codec.decode !== 'function') {
    throw new WireOptionsError(`${where} option codec must implement encode(value) and decode(bytes)`);
  }
  const maxFrameSize = resolveInteger('maxFrameSize', options.maxFrameSize, where);
  const path = options.path ?? null;
  if (path !== null && (typeof path !== 'string' || path.length === 0)) {
    throw new WireOptionsError(`${where} option path must be a non-empty string (a Unix socket path)`);
  }
  return {
    host,
    path,
    compression: resolveCompression(options.compression, where),
    heartbeatIntervalMs: resolveInteger('heartbeatIntervalMs', options.heartbeatIntervalMs, where),
    port: resolveInteger('port', options.port, where),
    maxFrameSize,
    handshakeTimeoutMs: resolveInteger('handshakeTimeoutMs', options.handshakeTimeoutMs, where),
    codec,
    maxDecodedBytes: resolveInteger('maxDecodedBytes', options.maxDecodedBytes, where),
    maxDecompressedBytes: checkInteger(
      options.maxDecompressedBytes ?? Math.min(DEFAULT_MAX_DECOMPRESSED_BYTES, maxFrameSize),
      Math.min(MAX_COMPRESSED_PAYLOAD_BYTES, maxFrameSize),
      maxFrameSize,
      `${where} option maxDecompressedBytes (at most maxFrameSize)`,
    ),
  };
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
    throw new WireOptionsError(
      `${where} option servers must be a non-empty array of 'host:port', { host, port } or { path }`,
    );
  }
  return options.servers.map((s, i) => parseEndpoint(s, `${where} option servers[${i}]`));
}

function resolveCompression(value: WireCommonOptions['compression'], where: string): PayloadCompressor | null {
  if (value === undefined || value === null) return null;
  checkOptionKeys(value, COMPRESSION_OPTION_KEYS, `${where} option compression`);
  const algorithm = checkOneOf(
    value.algorithm,
    ['deflate', 'brotli'] as const,
    `${where} option compression.algorithm`,
  );
  const threshold = resolveInteger('compression.thresholdBytes', value.thresholdBytes, where);
  return new PayloadCompressor(algorithm, threshold);
}
