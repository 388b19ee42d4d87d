import { Controller, Get, Inject } from '@nestjs/common';
import { WireClient, type WireClientStats } from 'nest-wire';
import { firstValueFrom } from 'rxjs';
import { SERVER_STATS, type ServerInfo } from '../patterns.js';
import { MATH_SERVICE, MATH_SERVICE_ADDRESSES } from './math-service.client.js';

/** Time each service has to answer `GET /stats`' probe, in ms. */
export const STATS_PROBE_TIMEOUT_MS = 1_000;

/** One entry of `GET /stats`' `servers`: what that service reported, or why it could not. */
export type ServerReport = ServerInfo | { address: string; error: string };

export interface GatewayStats {
  /** The gateway's `WireClient#stats()`: calls by outcome, latency, and each endpoint's state. */
  client: WireClientStats;
  /** Each service the gateway is configured with, asked directly (see `StatsController`). */
  servers: ServerReport[];
}

@Controller('stats')
export class StatsController {
  constructor(
    @Inject(MATH_SERVICE) private readonly math: WireClient,
    @Inject(MATH_SERVICE_ADDRESSES) private readonly addresses: readonly string[],
  ) {}

  /**
   * `GET /stats` → the gateway client's statistics, and each service's own.
   *
   * The gateway's client chooses the server of every call, so it cannot ask a given
   * one; each service is asked through a short-lived client of its own instead (its
   * calls do not show in `client`, and each service counts the probe it answers).
   */
  @Get()
  async stats(): Promise<GatewayStats> {
    const client = this.math.stats();
    const servers = await Promise.all(this.addresses.map((address) => probe(address)));
    return { client, servers };
  }
}

async function probe(address: string): Promise<ServerReport> {
  const client = new WireClient({
    servers: [address],
    timeout: STATS_PROBE_TIMEOUT_MS,
    connectTimeoutMs: STATS_PROBE_TIMEOUT_MS,
  });
  client.on('error', () => {}); // a service that is down is reported below, not logged
  try {
    return await firstValueFrom(client.send<ServerInfo>(SERVER_STATS, {}));
  } catch (err) {
    return { address, error: err instanceof Error ? err.message : JSON.stringify(err) };
  } finally {
    client.close();
  }
}
