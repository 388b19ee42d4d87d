import { formatAddress, type WireServer, type WireServerStats } from 'nest-wire';

/** Injection token of the `ServerHandle` of the `WireServer` serving this module. */
export const SERVER_HANDLE = 'SERVER_HANDLE';

/** What the service's handlers may know about the `WireServer` that serves them. */
export interface ServerHandle {
  /** `host:port` it listens on (the real port once listening on port 0). */
  address(): string;
  stats(): WireServerStats;
}

export function serverHandle(server: WireServer, host: string): ServerHandle {
  return {
    address: () => formatAddress({ host, port: server.port }),
    stats: () => server.stats(),
  };
}
