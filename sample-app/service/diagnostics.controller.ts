import { Controller } from '@nestjs/common';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import { WireContext } from 'nest-wire';
import { map, timer, type Observable } from 'rxjs';
import {
  CALL_INFO,
  MAX_SLEEP_MS,
  PING,
  SLEEP,
  type CallInfo,
  type PingResult,
  type SleepRequest,
  type SleepResult,
} from '../patterns.js';
import { badRequest } from './rpc-errors.js';

@Controller()
export class DiagnosticsController {
  private readonly startedAt = Date.now();

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

  @MessagePattern(PING)
  ping(): PingResult {
    return { status: 'ok', uptimeSeconds: Math.floor((Date.now() - this.startedAt) / 1000) };
  }
}
