import { SpanStatusCode, type Attributes, type Span } from '@opentelemetry/api';
import { CALL_CANCELLED, failureCode, type Outcome } from '../stats/call-stats.js';
import { WireErrorCode } from '../errors.js';

/** `rpc.system` (the name most backends still key on) and its stable successor `rpc.system.name`: both are set. */
export const ATTR_RPC_SYSTEM = 'rpc.system';
export const ATTR_RPC_SYSTEM_NAME = 'rpc.system.name';
/** The pattern, as routed (object patterns as Nest's normalised JSON). */
export const ATTR_RPC_METHOD = 'rpc.method';
/** On a server span for a pattern no handler answers, whose `rpc.method` is `_OTHER`. */
export const ATTR_RPC_METHOD_ORIGINAL = 'rpc.method_original';
/** `OK`, `WIRE_CANCELLED`, a wire error code (`WIRE_TIMEOUT`, `WIRE_NO_HANDLER`, ...) or `APPLICATION`. */
export const ATTR_RPC_STATUS_CODE = 'rpc.status_code';
/** On failed calls: the same code as `rpc.status_code`. */
export const ATTR_ERROR_TYPE = 'error.type';
export const ATTR_SERVER_ADDRESS = 'server.address';
export const ATTR_SERVER_PORT = 'server.port';
export const ATTR_NETWORK_PEER_ADDRESS = 'network.peer.address';
export const ATTR_NETWORK_PEER_PORT = 'network.peer.port';
export const ATTR_NETWORK_TRANSPORT = 'network.transport';

export const RPC_SYSTEM = 'nest-wire';
/** `rpc.method` of a request no handler answers (semantic conventions: unrecognised methods). */
export const UNKNOWN_METHOD = '_OTHER';

/** The attributes every nest-wire span starts with. */
export function callAttributes(pattern: string): Attributes {
  return { [ATTR_RPC_SYSTEM]: RPC_SYSTEM, [ATTR_RPC_SYSTEM_NAME]: RPC_SYSTEM, [ATTR_RPC_METHOD]: pattern };
}

/** An address as nest-wire prints it (`host:port`, `[v6]:port`, `v6:port`, `unix:path`), split. */
export interface ParsedAddress {
  address: string;
  port: number | undefined;
  transport: 'tcp' | 'unix';
}

export function parseAddress(text: string): ParsedAddress {
  if (text.startsWith('unix:')) return { address: text.slice(5), port: undefined, transport: 'unix' };
  const colon = text.lastIndexOf(':');
  if (colon < 0) return { address: text, port: undefined, transport: 'tcp' };
  let host = text.slice(0, colon);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const port = Number(text.slice(colon + 1));
  return { address: host, port: Number.isInteger(port) && port > 0 ? port : undefined, transport: 'tcp' };
}

/** Sets `prefix.address` / `prefix.port` (and `network.transport`) from an address. */
export function setAddress(span: Span, addressKey: string, portKey: string, text: string): void {
  const { address, port, transport } = parseAddress(text);
  if (address === 'unknown') return; // a socket that no longer knows its peer (closed, or a Unix socket's client)
  span.setAttribute(addressKey, address);
  if (port !== undefined) span.setAttribute(portKey, port);
  span.setAttribute(ATTR_NETWORK_TRANSPORT, transport);
}

/**
 * Records how a call ended: success leaves the status unset (the semantic conventions
 * reserve OK for the application), a call the caller cancelled is not an error, and a
 * failure sets status ERROR with its code (`error.type`, `rpc.status_code`) and message.
 */
export function recordOutcome(span: Span, outcome: Outcome): void {
  if (outcome === null) {
    span.setAttribute(ATTR_RPC_STATUS_CODE, 'OK');
    return;
  }
  if (outcome === CALL_CANCELLED) {
    span.setAttribute(ATTR_RPC_STATUS_CODE, WireErrorCode.CANCELLED);
    return;
  }
  const code = failureCode(outcome.error);
  span.setAttribute(ATTR_RPC_STATUS_CODE, code);
  span.setAttribute(ATTR_ERROR_TYPE, code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(outcome.error) });
}

/** The message of an `Error`, or of an RPC error value (`{ status, message }`), if it has one. */
function errorMessage(err: unknown): string | undefined {
  if (err instanceof Error) return err.message;
  if (err !== null && typeof err === 'object') {
    const message = (err as { message?: unknown }).message;
    if (typeof message === 'string') return message;
  }
  return typeof err === 'string' ? err : undefined;
}
