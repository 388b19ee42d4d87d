import 'reflect-metadata';
import type { INestApplication, INestMicroservice, LoggerService, LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { formatAddress, WireServer } from 'nest-wire';
import type { AddressInfo } from 'node:net';
import { DEFAULT_HOST } from './config.js';
import { GatewayModule } from './gateway/gateway.module.js';
import { serverHandle } from './service/server-handle.js';
import { ServiceModule } from './service/service.module.js';

export interface StartOptions {
  /** Interface to listen on. Default `127.0.0.1`. */
  host?: string;
  /** Nest logger setting; `false` silences the app. Default: Nest's console logger. */
  logger?: LoggerService | LogLevel[] | false;
}

export interface GatewayStartOptions extends StartOptions {
  /** Host of the math service when it is given as a port. Default `127.0.0.1`. */
  wireHost?: string;
}

export interface RunningService {
  app: INestMicroservice;
  server: WireServer;
  /** The port bound (the real one when started on port 0). */
  port: number;
}

export interface RunningGateway {
  app: INestApplication;
  port: number;
  /** Base URL, e.g. `http://127.0.0.1:3000`. */
  url: string;
}

/** Starts the math microservice on a `WireServer`; `port` 0 picks a free port. */
export async function startService(
  port: number,
  { host = DEFAULT_HOST, logger }: StartOptions = {},
): Promise<RunningService> {
  const server = new WireServer({ host, port });
  const app = await NestFactory.createMicroservice(ServiceModule.forRoot(serverHandle(server, host)), {
    strategy: server,
    logger,
    abortOnError: false,
  });
  await app.listen();
  return { app, server, port: server.port };
}

/**
 * Starts the HTTP gateway; `httpPort` 0 picks a free port. `wire` is where the math
 * service is: its port on `wireHost`, or a list of `host:port` (the gateway's client
 * then spreads calls over them, and fails over when one goes away).
 */
export async function startGateway(
  httpPort: number,
  wire: number | readonly string[],
  { host = DEFAULT_HOST, wireHost = DEFAULT_HOST, logger }: GatewayStartOptions = {},
): Promise<RunningGateway> {
  const target = typeof wire === 'number' ? { wireHost, wirePort: wire } : { servers: [...wire] };
  const app = await NestFactory.create(GatewayModule.forRoot(target), { logger, abortOnError: false });
  try {
    await app.listen(httpPort, host);
  } catch (err) {
    await app.close();
    throw err;
  }
  const { port } = (app.getHttpServer() as import('node:net').Server).address() as AddressInfo;
  return { app, port, url: `http://${formatAddress({ host, port })}` };
}
