import { Controller, Inject } from '@nestjs/common';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import { WireContext } from 'nest-wire';
import { map, timer, type Observable } from 'rxjs';
import {
  CALL_INFO,
  MAX_SLEEP_MS,
  SERVER_STATS,
  SLEEP,
  type CallInfo,
  type ServerInfo,
  type SleepRequest,
  type SleepResult,
} from '../patterns.js';
import { CountdownTracker } from './countdown-tracker.js';
import { badRequest } from './rpc-errors.js';
import { SERVER_HANDLE, type ServerHandle } from './server-handle.js';

@Controller()
export class DiagnosticsController {
  private readonly startedAt = Date.now();

  constructor(
    @Inject(SERVER_HANDLE) private readonly server: ServerHandle,
    private readonly countdowns: CountdownTracker,
  ) {}

  /** What nest-wire's context carries: metadata set by the caller, deadline, peer. */
  @MessagePattern(CALL_INFO)
  callInfo(@Ctx() ctx: WireContext): CallInfo {
    const deadline = ctx.getDeadline();
    return {
      pattern: ctx.getPattern(),
      metadata: ctx.getMetadata() ?? {},
      deadline: deadline === undefined ? null : new Date(deadline).toISOString(),
      remoteAddress: ctx.getRemoteAddress(),
    };
  }

  /**
   * Answers after `ms`. It returns an Observable rather than awaiting a promise, so
   * when the caller gives up (timeout, unsubscribe) the timer is cancelled too.
   */
  @MessagePattern(SLEEP)
  sleep(@Payload() { ms }: SleepRequest): Observable<SleepResult> {
    if (!Number.isInteger(ms) || ms < 0 || ms > MAX_SLEEP_MS) {
      throw badRequest(`ms must be an integer from 0 to ${MAX_SLEEP_MS}`);
    }
    return timer(ms).pipe(map(() => ({ sleptMs: ms })));
  }

  /** Which service process answered, and what its `WireServer` has counted (this call included). */
  @MessagePattern(SERVER_STATS)
  serverStats(): ServerInfo {
    return {
      address: this.server.address(),
      pid: process.pid,
      uptimeSeconds: this.uptimeSeconds(),
      countdowns: this.countdowns.snapshot(),
      server: this.server.stats(),
    };
  }

  private uptimeSeconds(): number {
    return Math.floor((Date.now() - this.startedAt) / 1000);
  }
}
