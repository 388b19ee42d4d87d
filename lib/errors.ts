/**
 * Every code nest-wire uses: the codes the protocol carries (docs/PROTOCOL.md section 4),
 * and the local ones (`WIRE_CONNECTION`, `WIRE_OPTIONS`, `WIRE_ERROR`) that never travel.
 * Each error code has one class, which `errorFromRemote` rebuilds from it; `GOAWAY_ACK` is a
 * control code (a client's GOAWAY), never reported as an error, so it has none.
 */
export const WireErrorCode = Object.freeze({
  /** A `WireError` made without a more specific code. */
  ERROR: 'WIRE_ERROR',
  PROTOCOL: 'WIRE_PROTOCOL',
  FRAME_TOO_LARGE: 'WIRE_FRAME_TOO_LARGE',
  HANDSHAKE: 'WIRE_HANDSHAKE',
  AUTH: 'WIRE_AUTH',
  CONNECTION: 'WIRE_CONNECTION',
  TIMEOUT: 'WIRE_TIMEOUT',
  CANCELLED: 'WIRE_CANCELLED',
  NO_HANDLER: 'WIRE_NO_HANDLER',
  CODEC: 'WIRE_CODEC',
  OVERLOADED: 'WIRE_OVERLOADED',
  DRAINING: 'WIRE_DRAINING',
  LIMIT: 'WIRE_LIMIT',
  OPTIONS: 'WIRE_OPTIONS',
  GOAWAY_ACK: 'WIRE_GOAWAY_ACK',
} as const);

export type WireErrorCode = (typeof WireErrorCode)[keyof typeof WireErrorCode];

/** Marks nest-wire's errors, whichever copy of the package made them (see `WireError[Symbol.hasInstance]`). */
const WIRE_ERROR_BRAND = Symbol.for('nest-wire.error');

/**
 * Every failure nest-wire reports is a `WireError` with a stable `code`, so callers
 * can branch on `err.code` instead of parsing messages. Transport failures (these
 * classes) are kept apart from application errors (whatever a handler threw, which
 * reaches the caller unchanged, as with Nest's TCP transport).
 */
export class WireError extends Error {
  /** A `WireErrorCode`, or (`WireRemoteError`) a code from a newer peer that this side does not know. */
  readonly code: string;

  /**
   * `instanceof` across copies of nest-wire: an app may load both the ESM and the
   * CommonJS build, and an error made by one must still be `instanceof WireTimeoutError`
   * (say) of the other. Past the ordinary prototype check, a nest-wire error (branded on
   * the prototype, from any copy) matches a class whose name appears in its class chain.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true;
    if (
      typeof value !== 'object' ||
      value === null ||
      (value as { [WIRE_ERROR_BRAND]?: unknown })[WIRE_ERROR_BRAND] !== true
    ) {
      return false;
    }
    for (
      let proto = Object.getPrototypeOf(value) as object | null;
      proto !== null;
      proto = Object.getPrototypeOf(proto) as object | null
    ) {
      if (
        Object.hasOwn(proto, 'constructor') &&
        (proto as { constructor: { name: string } }).constructor.name === this.name
      )
        return true;
    }
    return false;
  }

  constructor(message: string, code: string = WireErrorCode.ERROR, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

Object.defineProperty(WireError.prototype, WIRE_ERROR_BRAND, { value: true });

/** The peer sent bytes that are not a valid nest-wire frame stream. */
export class WireProtocolError extends WireError {
  declare readonly code: typeof WireErrorCode.PROTOCOL;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, WireErrorCode.PROTOCOL, options);
  }
}

/**
 * A frame's declared length is above the receiver's `maxFrameSize`. `length` and `limit` are 0
 * when the peer reported it (an ERROR frame carries only a message, which gives the sizes).
 */
export class WireFrameTooLargeError extends WireError {
  declare readonly code: typeof WireErrorCode.FRAME_TOO_LARGE;
  constructor(
    readonly length: number,
    readonly limit: number,
    message = `frame of ${length} bytes exceeds maxFrameSize ${limit}; raise maxFrameSize on the receiving side or send smaller payloads`,
  ) {
    super(message, WireErrorCode.FRAME_TOO_LARGE);
  }
}

/** The handshake failed: wrong magic, unsupported version or codec, or no answer in time. */
export class WireHandshakeError extends WireError {
  declare readonly code: typeof WireErrorCode.HANDSHAKE;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, WireErrorCode.HANDSHAKE, options);
  }
}

/**
 * The connection carrying a call closed, failed, or could not be opened. `code` stays
 * `WIRE_CONNECTION`; when a socket error is at the root, `syscallCode` is its code
 * (`ECONNREFUSED`, `ECONNRESET`, `ETIMEDOUT`, `ENOTFOUND`...) — what `err.code` is over Nest's
 * TCP transport — and `cause` is that socket error itself, or the nest-wire error that led here.
 */
export class WireConnectionError extends WireError {
  declare readonly code: typeof WireErrorCode.CONNECTION;

  readonly syscallCode: string | undefined;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, WireErrorCode.CONNECTION, options);
    this.syscallCode = socketErrorOf(options?.cause)?.code;
  }
}

/**
 * The Node system error (`code` and `syscall`, from a socket or a DNS lookup) at the root of
 * `err`'s cause chain, if there is one within a few links.
 */
export function socketErrorOf(err: unknown): NodeJS.ErrnoException | undefined {
  // Duck-typed, not `instanceof Error`: errors from another realm (a vm context, Jest) count too.
  for (let depth = 0; depth < 4 && typeof err === 'object' && err !== null; depth++) {
    const { code, syscall } = err as NodeJS.ErrnoException;
    if (typeof code === 'string' && typeof syscall === 'string') return err as NodeJS.ErrnoException;
    err = (err as Error).cause;
  }
  return undefined;
}

/**
 * The call's deadline passed before it settled. `timeoutMs` is the time limit the call had
 * on the side that reports it: the caller's timeout on the client, the budget the request
 * carried on the server. 0 when the call had no time left to begin with, and when a peer's
 * `WIRE_TIMEOUT` is rebuilt for a call without a timeout of its own (the limit is not known).
 */
export class WireTimeoutError extends WireError {
  declare readonly code: typeof WireErrorCode.TIMEOUT;
  constructor(
    readonly timeoutMs: number,
    message = `call timed out after ${timeoutMs} ms`,
  ) {
    super(message, WireErrorCode.TIMEOUT);
  }
}

/** The call was cancelled: by its caller, or because the call it was made for ended. */
export class WireCancelledError extends WireError {
  declare readonly code: typeof WireErrorCode.CANCELLED;
  constructor(message = 'call cancelled') {
    super(message, WireErrorCode.CANCELLED);
  }
}

/** No handler on the server matches the pattern (Nest's standard message). */
export class WireNoHandlerError extends WireError {
  declare readonly code: typeof WireErrorCode.NO_HANDLER;
  constructor(message = 'There is no matching message handler defined in the remote service.') {
    super(message, WireErrorCode.NO_HANDLER);
  }
}

/** A value could not be encoded or decoded by the codec. */
export class WireCodecError extends WireError {
  declare readonly code: typeof WireErrorCode.CODEC;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, WireErrorCode.CODEC, options);
  }
}

/**
 * Too many calls or bytes are outstanding: the call was not sent, or the server refused it
 * without running it. `WireDrainingError` is a kind of it (safe to send elsewhere as well).
 */
export class WireOverloadedError extends WireError {
  declare readonly code: typeof WireErrorCode.OVERLOADED | typeof WireErrorCode.DRAINING;
  constructor(
    message: string,
    code: typeof WireErrorCode.OVERLOADED | typeof WireErrorCode.DRAINING = WireErrorCode.OVERLOADED,
  ) {
    super(message, code);
  }
}

/**
 * The server is shutting down (GOAWAY): it refused the call with NACK `WIRE_DRAINING`
 * without running it, on every connection the client tried. A `WireOverloadedError`, so that
 * code shedding or retrying refused calls handles both; `code` tells them apart.
 */
export class WireDrainingError extends WireOverloadedError {
  declare readonly code: typeof WireErrorCode.DRAINING;
  constructor(message = 'server is shutting down; the request was not processed') {
    super(message, WireErrorCode.DRAINING);
  }
}

/** The server's `authenticate` refused the client's credentials (or failed). */
export class WireAuthError extends WireError {
  declare readonly code: typeof WireErrorCode.AUTH;
  constructor(message = 'authentication failed: the server refused these credentials') {
    super(message, WireErrorCode.AUTH);
  }
}

/** A request exceeded one of the server's limits (pattern length, metadata size or entries). */
export class WireLimitError extends WireError {
  declare readonly code: typeof WireErrorCode.LIMIT;
  constructor(message: string) {
    super(message, WireErrorCode.LIMIT);
  }
}

/** An option has a value nest-wire cannot use. Thrown from constructors. */
export class WireOptionsError extends WireError {
  declare readonly code: typeof WireErrorCode.OPTIONS;
  constructor(message: string) {
    super(message, WireErrorCode.OPTIONS);
  }
}

/**
 * A transport-level error reported by the remote side whose code this side does not
 * know (a newer peer), or a control code misused as an error. The remote code is kept in `code`.
 */
export class WireRemoteError extends WireError {}

/**
 * Rebuilds a typed error from a transport error's `{ code, message }` (ERROR, NACK): the
 * same class as the error the peer made, so `instanceof` does not depend on which side noticed.
 */
export function errorFromRemote(code: string, message: string): WireError {
  switch (code) {
    case WireErrorCode.NO_HANDLER:
      return new WireNoHandlerError(message);
    case WireErrorCode.PROTOCOL:
      return new WireProtocolError(message);
    case WireErrorCode.CODEC:
      return new WireCodecError(message);
    case WireErrorCode.HANDSHAKE:
      return new WireHandshakeError(message);
    case WireErrorCode.OVERLOADED:
      return new WireOverloadedError(message);
    case WireErrorCode.AUTH:
      return new WireAuthError(message);
    case WireErrorCode.LIMIT:
      return new WireLimitError(message);
    case WireErrorCode.TIMEOUT:
      // The peer's message says its budget; this side knows the limit only per call (client-connection).
      return new WireTimeoutError(0, message);
    case WireErrorCode.CANCELLED:
      return new WireCancelledError(message);
    case WireErrorCode.FRAME_TOO_LARGE:
      return new WireFrameTooLargeError(0, 0, message);
    case WireErrorCode.DRAINING:
      return new WireDrainingError(message);
    case WireErrorCode.CONNECTION:
      return new WireConnectionError(message);
    case WireErrorCode.OPTIONS:
      return new WireOptionsError(message);
    case WireErrorCode.ERROR:
      return new WireError(message);
    default:
      return new WireRemoteError(message, code);
  }
}
