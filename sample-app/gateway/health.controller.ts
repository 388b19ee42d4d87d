import { Controller, Get, Inject, ServiceUnavailableException } from '@nestjs/common';
import { WireClient } from 'nest-wire';
import { firstValueFrom } from 'rxjs';
import { PING, type PingResult } from '../patterns.js';
import { MATH_SERVICE } from './math-service.client.js';

const PING_TIMEOUT_MS = 1_000;

export interface HealthReport {
  status: 'ok';
  gateway: 'up';
  service: 'up';
  serviceUptimeSeconds: number;
}

@Controller('health')
export class HealthController {
  constructor(@Inject(MATH_SERVICE) private readonly service: WireClient) {}

  /** `GET /health` → 200 when the service answers a ping, 503 otherwise. */
  @Get()
  async check(): Promise<HealthReport> {
    let ping: PingResult;
    try {
      ping = await firstValueFrom(this.service.send<PingResult>(PING, {}, { timeout: PING_TIMEOUT_MS }));
    } catch (err) {
      throw new ServiceUnavailableException({
        status: 'degraded',
        gateway: 'up',
        service: 'down',
        reason: err instanceof Error ? err.message : String(err),
      });
    }
    return { status: 'ok', gateway: 'up', service: 'up', serviceUptimeSeconds: ping.uptimeSeconds };
  }
}
