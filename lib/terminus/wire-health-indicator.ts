import { Injectable } from '@nestjs/common';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import type { WireClient } from '../client/wire-client.js';

/**
 * A `@nestjs/terminus` health indicator that checks a `WireClient` end to end: a PING
 * round trip to a server over the client's own pool, reporting the round-trip time.
 *
 * ```ts
 * @Get('health') @HealthCheck()
 * check() {
 *   return this.health.check([() => this.wire.pingCheck('math-service', this.mathClient)]);
 * }
 * ```
 */
@Injectable()
export class WireHealthIndicator {
  constructor(private readonly health: HealthIndicatorService) {}

  async pingCheck<const Key extends string>(
    key: Key,
    client: WireClient,
    options: { timeoutMs?: number } = {},
  ): Promise<HealthIndicatorResult<Key>> {
    const indicator = this.health.check(key);
    try {
      const rttMs = await client.ping(options.timeoutMs ?? 1000);
      return indicator.up({ rttMs: Math.round(rttMs * 1000) / 1000 });
    } catch (err) {
      return indicator.down({ message: (err as Error).message, code: (err as { code?: string }).code ?? 'UNKNOWN' });
    }
  }
}
