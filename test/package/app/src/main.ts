// The app the package test builds against the packed tarball, in each variant (ESM Nest 12,
// CommonJS Nest 11): a WireServer microservice and a WireClient registered through
// ClientsModule, one process, loopback. Exits 0 after checking the answers, 1 otherwise.
import 'reflect-metadata';
import { Controller, Module, type DynamicModule } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientsModule, MessagePattern, Payload, RpcException, type MicroserviceOptions } from '@nestjs/microservices';
import { firstValueFrom } from 'rxjs';
import { WireClient, WireError, WireServer, type WireClientOptions } from 'nest-wire';
import { WireHealthIndicator } from 'nest-wire/terminus';

@Controller()
class MathController {
  @MessagePattern('sum')
  sum(@Payload() numbers: number[]): number {
    return numbers.reduce((a, b) => a + b, 0);
  }

  @MessagePattern('divide')
  divide(@Payload() { a, b }: { a: number; b: number }): number {
    if (b === 0) throw new RpcException({ status: 400, message: 'Division by zero' });
    return a / b;
  }
}

@Module({ controllers: [MathController] })
class ServiceModule {}

@Module({})
class GatewayModule {
  static forPort(port: number): DynamicModule {
    const options = { host: '127.0.0.1', port, timeout: 10_000 } satisfies WireClientOptions;
    return {
      module: GatewayModule,
      imports: [ClientsModule.register([{ name: 'MATH', customClass: WireClient, options }])],
    };
  }
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`package test: ${what}`);
}

async function main(): Promise<void> {
  const server = new WireServer({ host: '127.0.0.1', port: 0 });
  const service = await NestFactory.createMicroservice<MicroserviceOptions>(ServiceModule, {
    strategy: server,
    logger: ['error', 'warn'],
  });
  await service.listen();
  const gateway = await NestFactory.createApplicationContext(GatewayModule.forPort(server.port), {
    logger: ['error', 'warn'],
  });
  try {
    const math = gateway.get<WireClient>('MATH');
    const sum = await firstValueFrom(math.send<number>('sum', [1, 2, 3], { metadata: { from: 'package-test' } }));
    check(sum === 6, `sum answered ${String(sum)}`);
    const refused = await firstValueFrom(math.send('divide', { a: 1, b: 0 })).then(
      () => null,
      (err: unknown) => err as { status?: number; message?: string },
    );
    check(refused?.status === 400 && refused.message === 'Division by zero', `divide by 0: ${JSON.stringify(refused)}`);
    const missing = await firstValueFrom(math.send('no-such-pattern', {})).then(
      () => null,
      (err: unknown) => err,
    );
    check(missing instanceof WireError && missing.code === 'WIRE_NO_HANDLER', `no handler: ${String(missing)}`);
    check(typeof WireHealthIndicator === 'function', 'nest-wire/terminus did not load');
    console.log(
      `package test: ok (sum ${sum}, RpcException status ${refused!.status}, ${(missing as WireError).code})`,
    );
  } finally {
    await gateway.close();
    await service.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
