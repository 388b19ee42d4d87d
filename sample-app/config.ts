export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_WIRE_PORT = 4100;
export const DEFAULT_HTTP_PORT = 3000;

export interface SampleConfig {
  /** Where the math service listens (`WIRE_HOST`, `WIRE_PORT`) and the gateway connects. */
  wireHost: string;
  wirePort: number;
  /** Where the HTTP gateway listens (`HTTP_HOST`, `HTTP_PORT`). */
  httpHost: string;
  httpPort: number;
}

/** Reads the sample's settings from the environment. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): SampleConfig {
  return {
    wireHost: env.WIRE_HOST || DEFAULT_HOST,
    wirePort: portFrom(env, 'WIRE_PORT', DEFAULT_WIRE_PORT),
    httpHost: env.HTTP_HOST || DEFAULT_HOST,
    httpPort: portFrom(env, 'HTTP_PORT', DEFAULT_HTTP_PORT),
  };
}

function portFrom(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`${name} must be a port number from 0 to 65535, got "${raw}"`);
  }
  return port;
}
