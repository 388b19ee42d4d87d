import { WireOptionsError } from '../errors.js';
import { checkInteger } from '../option-checks.js';

/** A server to connect to: `'host:port'`, `'[::1]:port'`, `{ host, port }` or a Unix socket `{ path }`. */
export type WireEndpoint = string | { host: string; port: number } | { path: string };

/** A resolved place to dial. */
export type EndpointAddress = { host: string; port: number } | { path: string };

/**
 * Parses one entry of the `servers` option; `what` names it in the `WireOptionsError` of a
 * malformed entry (a string without a port, a bare IPv6 address, a port outside 1–65 535).
 */
export function parseEndpoint(endpoint: WireEndpoint, what = 'endpoint'): EndpointAddress {
  if (typeof endpoint === 'string') {
    const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(endpoint);
    if (match === null)
      throw new WireOptionsError(`${what} must look like 'host:port' or '[ipv6]:port', got '${endpoint}'`);
    return { host: match[1] ?? match[2], port: checkInteger(Number(match[3]), 1, 65535, `${what} port`) };
  }
  if (endpoint !== null && typeof endpoint === 'object') {
    if ('path' in endpoint && typeof endpoint.path === 'string' && endpoint.path.length > 0)
      return { path: endpoint.path };
    if ('host' in endpoint && typeof endpoint.host === 'string' && endpoint.host.length > 0) {
      return { host: endpoint.host, port: checkInteger(endpoint.port, 1, 65535, `${what} port`) };
    }
  }
  throw new WireOptionsError(
    `${what} must be 'host:port', { host, port } or { path }, got ${JSON.stringify(endpoint)}`,
  );
}

/**
 * `host:port`, `[v6]:port` or `unix:path`, for logs and keys; a host/port address comes out
 * in the form `parseEndpoint` (and so the `servers` option) reads back.
 */
export function formatAddress(address: EndpointAddress): string {
  if ('path' in address) return `unix:${address.path}`;
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
