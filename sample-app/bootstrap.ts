import 'reflect-metadata';
import type { INestApplication, INestMicroservice, LoggerService, LogLevel } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { WireServer } from 'nest-wire';
import type { AddressInfo } from 'node:net';
import { DEFAULT_HOST } from './config.js';
import { GatewayModule } from './gateway/gateway.module.js';
import { ServiceModule } from './service/service.module.js';

export interface StartOptions {
  /** Interface to listen on. Default `127.0.0.1`. */
  host?: string;
  /** Nest logger setting; `false` silences the app. Default: Nest's console logger. */
  logger?: LoggerService | LogLevel[] | false;
}

export interface GatewayStartOptions extends StartOptions {
  /** Host of the math service. Default `127.0.0.1`. */
  wireHost?: string;
}

export interface RunningService {
  app: INestMicroservice;
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
  const app = await NestFactory.createMicroservice(ServiceModule, { strategy: server, logger, abortOnError: false });
  await app.listen();
  return { app, port: server.port };
}

/** Starts the HTTP gateway, talking to the math service at `wireHost:wirePort`; `httpPort` 0 picks a free port. */
export async function startGateway(
  httpPort: number,
  wirePort: number,
  { host = DEFAULT_HOST, wireHost = DEFAULT_HOST, logger }: GatewayStartOptions = {},
): Promise<RunningGateway> {
  const app = await NestFactory.create(GatewayModule.forRoot({ wireHost, wirePort }), { logger, abortOnError: false });
  try {
    await app.listen(httpPort, host);
  } catch (err) {
    await app.close();
    throw err;
  }
  const { port } = app.getHttpServer().address() as AddressInfo;
  return { app, port, url: `http://${host.includes(':') ? `[${host}]` : host}:${port}` };
}
