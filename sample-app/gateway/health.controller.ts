import { Controller, Get, Inject } from '@nestjs/common';
import { HealthCheck, HealthCheckService, type HealthCheckResult } from '@nestjs/terminus';
import { WireClient } from 'nest-wire';
import { WireHealthIndicator } from 'nest-wire/terminus';
import { MATH_SERVICE } from './math-service.client.js';

/** Time the service has to answer the health check's PING, in ms. */
export const HEALTH_PING_TIMEOUT_MS = 1_000;

@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly wireHealth: WireHealthIndicator,
    @Inject(MATH_SERVICE) private readonly math: WireClient,
  ) {}

  /**
   * `GET /health` → 200 `{ status: 'ok', info: { math: { status: 'up', rttMs } }, ... }`
   * when a PING over the gateway's own client comes back in time; 503 with
   * `{ status: 'error', error: { math: { status: 'down', message, code } }, ... }` otherwise.
   */
  @Get()
  @HealthCheck()
  check(): Promise<HealthCheckResult> {
    return this.health.check([
      () => this.wireHealth.pingCheck('math', this.math, { timeoutMs: HEALTH_PING_TIMEOUT_MS }),
    ]);
  }
}
