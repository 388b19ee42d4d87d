import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { firstValueFrom } from 'rxjs';
import { clientFor, startWireApp, type RunningServer } from '../helpers/apps.js';
import type { WireClient } from '../../lib/index.js';

@Controller()
class MathController {
  @MessagePattern('sum')
  sum(@Payload() data: number[]): number {
    return data.reduce((a, b) => a + b, 0);
  }
}

@Module({ controllers: [MathController] })
class MathModule {}

describe('smoke', () => {
  let running: RunningServer;
  let client: WireClient;
  beforeAll(async () => {
    running = await startWireApp(MathModule);
    client = clientFor(running);
  });
  afterAll(async () => {
    client.close();
    await running.app.close();
  });

  it('sums', async () => {
    await expect(firstValueFrom(client.send<number>('sum', [1, 2, 3]))).resolves.toBe(6);
  });
});
