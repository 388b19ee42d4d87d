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
