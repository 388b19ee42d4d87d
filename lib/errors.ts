/** Marks nest-wire's errors, whichever copy of the package made them (see `WireError[Symbol.hasInstance]`). */
const WIRE_ERROR_BRAND = Symbol.for('nest-wire.error');

/**
 * Every failure nest-wire reports is a `WireError` with a stable `code`, so callers
 * can branch on `err.code` instead of parsing messages. Transport failures (these
 * classes) are kept apart from application errors (whatever a handler threw, which
 * reaches the caller unchanged, as with Nest's TCP transport).
 */
export class WireError extends Error {
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

  constructor(message: string, code = 'WIRE_ERROR', options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

Object.defineProperty(WireError.prototype, WIRE_ERROR_BRAND, { value: true });

/** The peer sent bytes that are not a valid nest-wire frame stream. */
export class WireProtocolError extends WireError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'WIRE_PROTOCOL', options);
  }
}

/** A frame's declared length is above the receiver's `maxFrameSize`. */
export class WireFrameTooLargeError extends WireError {
  constructor(
    readonly length: number,
    readonly limit: number,
  ) {
    super(
      `frame of ${length} bytes exceeds maxFrameSize ${limit}; raise maxFrameSize on the receiving side or send smaller payloads`,
      'WIRE_FRAME_TOO_LARGE',
    );
  }
}

/** The handshake failed: wrong magic, unsupported version or codec, or no answer in time. */
export class WireHandshakeError extends WireError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'WIRE_HANDSHAKE', options);
  }
}

/**
 * The connection carrying a call closed, failed, or could not be opened. `code` stays
 * `WIRE_CONNECTION`; when a socket error is at the root, `syscallCode` is its code
 * (`ECONNREFUSED`, `ECONNRESET`, `ETIMEDOUT`, `ENOTFOUND`...) — what `err.code` is over Nest's
 * TCP transport — and `cause` is that socket error itself, or the nest-wire error that led here.
 */
export class WireConnectionError extends WireError {
  readonly syscallCode: string | undefined;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'WIRE_CONNECTION', options);
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

/** The call's deadline passed before it settled. */
export class WireTimeoutError extends WireError {
  constructor(
    readonly timeoutMs: number,
    message = `call timed out after ${timeoutMs} ms`,
  ) {
    super(message, 'WIRE_TIMEOUT');
  }
}

/** The call was cancelled: by its caller, or because the call it was made for ended. */
export class WireCancelledError extends WireError {
  constructor(message = 'call cancelled') {
    super(message, 'WIRE_CANCELLED');
  }
}

/** No handler on the server matches the pattern (Nest's standard message). */
export class WireNoHandlerError extends WireError {
  constructor(message = 'There is no matching message handler defined in the remote service.') {
    super(message, 'WIRE_NO_HANDLER');
  }
}

/** A value could not be encoded or decoded by the codec. */
export class WireCodecError extends WireError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'WIRE_CODEC', options);
  }
}

/** Too many calls or bytes are outstanding; the call was not sent. */
export class WireOverloadedError extends WireError {
  constructor(message: string) {
    super(message, 'WIRE_OVERLOADED');
  }
}

/** The server's `authenticate` refused the client's credentials (or failed). */
export class WireAuthError extends WireError {
  constructor(message = 'authentication failed: the server refused these credentials') {
    super(message, 'WIRE_AUTH');
  }
}

/** A request exceeded one of the server's limits (pattern length, metadata size or entries). */
export class WireLimitError extends WireError {
  constructor(message: string) {
    super(message, 'WIRE_LIMIT');
  }
}

/** An option has a value nest-wire cannot use. Thrown from constructors. */
export class WireOptionsError extends WireError {
  constructor(message: string) {
    super(message, 'WIRE_OPTIONS');
  }
}

/**
 * A transport-level error reported by the remote side whose code this side does not
 * know (a newer peer). The remote code is kept in `code`.
 */
export class WireRemoteError extends WireError {}

/** Rebuilds a typed error from a transport ERROR frame's `{ code, message }`. */
export function errorFromRemote(code: string, message: string): WireError {
  switch (code) {
    case 'WIRE_NO_HANDLER':
      return new WireNoHandlerError(message);
    case 'WIRE_PROTOCOL':
      return new WireProtocolError(message);
    case 'WIRE_CODEC':
      return new WireCodecError(message);
    case 'WIRE_HANDSHAKE':
      return new WireHandshakeError(message);
    case 'WIRE_OVERLOADED':
      return new WireOverloadedError(message);
    case 'WIRE_AUTH':
      return new WireAuthError(message);
    case 'WIRE_LIMIT':
      return new WireLimitError(message);
    case 'WIRE_TIMEOUT':
      return new WireTimeoutError(0, message);
    case 'WIRE_CANCELLED':
      return new WireCancelledError(message);
    case 'WIRE_FRAME_TOO_LARGE':
      return new WireError(message, code);
    default:
      return new WireRemoteError(message, code);
  }
}
