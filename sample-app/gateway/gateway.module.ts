import { Module, type DynamicModule } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { ClientsModule } from '@nestjs/microservices';
import { TerminusModule } from '@nestjs/terminus';
import { formatAddress, WireClient, type WireClientOptions } from 'nest-wire';
import { WireHealthIndicator } from 'nest-wire/terminus';
import { DiagnosticsController } from './diagnostics.controller.js';
import { FilesController } from './files.controller.js';
import { HealthController } from './health.controller.js';
import { DEFAULT_CALL_TIMEOUT_MS, MATH_SERVICE, MATH_SERVICE_ADDRESSES } from './math-service.client.js';
import { MathController } from './math.controller.js';
import { RpcErrorFilter } from './rpc-error.filter.js';
import { StatsController } from './stats.controller.js';
import { UsersController } from './users.controller.js';

/** Where the math service is: one host and port, or several `host:port` to spread calls over. */
export type GatewayModuleOptions = { wireHost: string; wirePort: number } | { servers: string[] };

/** The HTTP gateway: turns HTTP requests into nest-wire calls to the math service. */
@Module({})
export class GatewayModule {
  static forRoot(target: GatewayModuleOptions): DynamicModule {
    const options: WireClientOptions =
      'servers' in target
        ? { servers: target.servers, timeout: DEFAULT_CALL_TIMEOUT_MS }
        : { host: target.wireHost, port: target.wirePort, timeout: DEFAULT_CALL_TIMEOUT_MS };
    const addresses =
      'servers' in target ? target.servers : [formatAddress({ host: target.wireHost, port: target.wirePort })];
    return {
      module: GatewayModule,
      imports: [ClientsModule.register([{ name: MATH_SERVICE, customClass: WireClient, options }]), TerminusModule],
      controllers: [
        MathController,
        UsersController,
        DiagnosticsController,
        HealthController,
        StatsController,
        FilesController,
      ],
      providers: [
        { provide: APP_FILTER, useClass: RpcErrorFilter },
        { provide: MATH_SERVICE_ADDRESSES, useValue: addresses },
        WireHealthIndicator,
      ],
    };
  }
}
