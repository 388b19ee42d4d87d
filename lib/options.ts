import { WireOptionsError } from './errors.js';
import { MsgpackCodec, type WireCodec } from './protocol/codec.js';

export const DEFAULT_HOST = 'localhost';
export const DEFAULT_PORT = 3000;
export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_POOL_SIZE = 1;
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
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
}

export interface WireServerOptions extends WireCommonOptions {}

export interface WireClientOptions extends WireCommonOptions {
  /** Default time a call may take before it fails with `WireTimeoutError`, in ms; 0 disables. Default 30 000. */
  timeout?: number;
  /** Connections kept to the server; calls go to the one with the fewest in flight. Default 1. */
  poolSize?: number;
  /** Time allowed to open the TCP connection, in ms. Default 10 000. */
  connectTimeoutMs?: number;
}

/** Per-call options: the optional third argument of `WireClient#send`. */
export interface WireCallOptions {
  /** Overrides the client's `timeout` for this call, in ms; 0 disables. */
  timeout?: number;
  /** Merged over any metadata the dispatch hook set; arrives in `ctx.getMetadata()`. */
  metadata?: Record<string, string>;
}

export interface ResolvedCommonOptions {
  host: string;
  port: number;
  maxFrameSize: number;
  handshakeTimeoutMs: number;
  codec: WireCodec;
}

export interface ResolvedClientOptions extends ResolvedCommonOptions {
  timeout: number;
  poolSize: number;
  connectTimeoutMs: number;
}

export function resolveServerOptions(options: WireServerOptions = {}): ResolvedCommonOptions {
  return resolveCommon(options, 'WireServer');
}

export function resolveClientOptions(options: WireClientOptions = {}): ResolvedClientOptions {
  const where = 'WireClient';
  return {
    ...resolveCommon(options, where),
    timeout: checkTimeout(options.timeout ?? DEFAULT_TIMEOUT_MS, `${where} option timeout`),
    poolSize: checkInteger(options.poolSize ?? DEFAULT_POOL_SIZE, 1, 1024, `${where} option poolSize`),
    connectTimeoutMs: checkInteger(
      options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      1,
      MAX_TIMEOUT_MS,
      `${where} option connectTimeoutMs`,
    ),
  };
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
  return {
    host,
    port: checkInteger(options.port ?? DEFAULT_PORT, 0, 65535, `${where} option port`),
    maxFrameSize: checkInteger(
      options.maxFrameSize ?? DEFAULT_MAX_FRAME_BYTES,
      1024,
      0xffffffff,
      `${where} option maxFrameSize (bytes)`,
    ),
    handshakeTimeoutMs: checkInteger(
      options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      1,
      MAX_TIMEOUT_MS,
      `${where} option handshakeTimeoutMs`,
    ),
    codec,
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
