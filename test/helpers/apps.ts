import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { INestMicroservice } from '@nestjs/common';
import { WireClient, WireServer, type WireClientOptions, type WireServerOptions } from '../../lib/index.js';

export interface RunningServer {
  app: INestMicroservice;
  server: WireServer;
  port: number;
}

/** Starts a real Nest microservice on a free loopback port. */
export async function startWireApp(module: unknown, options: WireServerOptions = {}): Promise<RunningServer> {
  const server = new WireServer({ host: '127.0.0.1', port: 0, ...options });
  const app = await NestFactory.createMicroservice(module as never, { strategy: server, logger: false });
  await app.listen();
  return { app, server, port: server.port };
}

export function clientFor(running: { port: number }, options: WireClientOptions = {}): WireClient {
  return new WireClient({ host: '127.0.0.1', port: running.port, ...options });
}

/**
 * Starts a Nest microservice and a connected client before the tests of the enclosing
 * `describe`, and closes both after them. Read them as `app.running` / `app.client`.
 */
export function withRunningApp(
  module: unknown,
  serverOptions: WireServerOptions = {},
  clientOptions: WireClientOptions = {},
): { readonly running: RunningServer; readonly client: WireClient } {
  const app = {} as { running: RunningServer; client: WireClient };
  beforeAll(async () => {
    app.running = await startWireApp(module, serverOptions);
    app.client = clientFor(app.running, clientOptions);
    await app.client.connect();
  });
  afterAll(async () => {
    app.client.close();
    await app.running.app.close();
  });
  return app;
}
