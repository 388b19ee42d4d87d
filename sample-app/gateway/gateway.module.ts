import { Module, type DynamicModule, type Type } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { ClientsModule, type ClientProxy } from '@nestjs/microservices';
import { WireClient, type WireClientOptions } from 'nest-wire';
import { DiagnosticsController } from './diagnostics.controller.js';
import { HealthController } from './health.controller.js';
import { DEFAULT_CALL_TIMEOUT_MS, MATH_SERVICE } from './math-service.client.js';
import { MathController } from './math.controller.js';
import { RpcErrorFilter } from './rpc-error.filter.js';
import { UsersController } from './users.controller.js';

export interface GatewayModuleOptions {
  /** Where the math service listens. */
  wireHost: string;
  wirePort: number;
}

/** The HTTP gateway: turns HTTP requests into nest-wire calls to the math service. */
@Module({})
export class GatewayModule {
  static forRoot({ wireHost, wirePort }: GatewayModuleOptions): DynamicModule {
    const options: WireClientOptions = { host: wireHost, port: wirePort, timeout: DEFAULT_CALL_TIMEOUT_MS };
    return {
      module: GatewayModule,
      imports: [
        // The cast: `customClass` is typed `Type<ClientProxy>`, which a client with its own
        // status type (Nest's `ClientTCP` included) does not satisfy; the runtime is unaffected.
        ClientsModule.register([{ name: MATH_SERVICE, customClass: WireClient as Type<ClientProxy>, options }]),
      ],
      controllers: [MathController, UsersController, DiagnosticsController, HealthController],
      providers: [{ provide: APP_FILTER, useClass: RpcErrorFilter }],
    };
  }
}
