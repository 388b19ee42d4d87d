export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_WIRE_PORT = 4100;
export const DEFAULT_HTTP_PORT = 3000;
/** Ports of the two math services `npm run start:cluster` runs. */
export const DEFAULT_CLUSTER_WIRE_PORTS = [4101, 4102];

export interface SampleConfig {
  /** Where the math service listens (`WIRE_HOST`, `WIRE_PORT`) and the gateway connects. */
  wireHost: string;
  wirePort: number;
  /**
   * `WIRE_SERVERS`, e.g. `127.0.0.1:4101,127.0.0.1:4102`: the gateway spreads its calls
   * over these services instead of calling `WIRE_HOST:WIRE_PORT`.
   */
  wireServers: string[] | undefined;
  /** `WIRE_PORTS`, e.g. `4101,4102`: the services `start:cluster` runs, one per port, on `WIRE_HOST`. */
  clusterWirePorts: number[];
  /** Where the HTTP gateway listens (`HTTP_HOST`, `HTTP_PORT`). */
  httpHost: string;
  httpPort: number;
}

/** Reads the sample's settings from the environment. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): SampleConfig {
  return {
    wireHost: env.WIRE_HOST || DEFAULT_HOST,
    wirePort: portFrom(env, 'WIRE_PORT', DEFAULT_WIRE_PORT),
    wireServers: listFrom(env, 'WIRE_SERVERS'),
    clusterWirePorts:
      listFrom(env, 'WIRE_PORTS')?.map((raw) => parsePort('WIRE_PORTS', raw)) ?? DEFAULT_CLUSTER_WIRE_PORTS,
    httpHost: env.HTTP_HOST || DEFAULT_HOST,
    httpPort: portFrom(env, 'HTTP_PORT', DEFAULT_HTTP_PORT),
  };
}

function portFrom(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  return raw === undefined || raw === '' ? fallback : parsePort(name, raw);
}

function parsePort(name: string, raw: string): number {
  const port = Number(raw);
  if (raw.trim() === '' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`${name} must be a port number from 0 to 65535, got "${raw}"`);
  }
  return port;
}

/** A comma-separated list; undefined when unset or empty. */
function listFrom(env: NodeJS.ProcessEnv, name: string): string[] | undefined {
  const items = (env[name] ?? '')
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
  return items.length > 0 ? items : undefined;
}
