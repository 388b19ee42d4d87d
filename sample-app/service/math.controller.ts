import { Controller } from '@nestjs/common';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import { WireContext } from 'nest-wire';
import { map, take, timer, type Observable } from 'rxjs';
import {
  COUNTDOWN,
  DIVIDE,
  MAX_COUNTDOWN_FROM,
  MAX_TICK_MS,
  SUM,
  type CountdownRequest,
  type DivideRequest,
} from '../patterns.js';
import { CountdownTracker } from './countdown-tracker.js';
import { badRequest } from './rpc-errors.js';

@Controller()
export class MathController {
  constructor(private readonly countdowns: CountdownTracker) {}

  @MessagePattern(SUM)
  sum(@Payload() numbers: unknown): number {
    if (!Array.isArray(numbers) || !numbers.every(isFiniteNumber)) {
      throw badRequest('expected an array of finite numbers');
    }
    return numbers.reduce((total: number, n: number) => total + n, 0);
  }

  @MessagePattern(DIVIDE)
  divide(@Payload() { a, b }: DivideRequest): number {
    if (!isFiniteNumber(a) || !isFiniteNumber(b)) throw badRequest('a and b must be finite numbers');
    if (b === 0) throw badRequest('Division by zero');
    return a / b;
  }

  /**
   * A stream: every value is sent to the caller as it is produced. When the caller
   * goes away first (the gateway's SSE client disconnects), its CANCEL makes the
   * server unsubscribe: the timer stops, and `ctx.getSignal()` aborts.
   */
  @MessagePattern(COUNTDOWN)
  countdown(@Payload() { from, tickMs }: CountdownRequest, @Ctx() ctx: WireContext): Observable<number> {
    if (!isIntegerIn(from, 0, MAX_COUNTDOWN_FROM)) {
      throw badRequest(`from must be an integer from 0 to ${MAX_COUNTDOWN_FROM}`);
    }
    if (!isIntegerIn(tickMs, 0, MAX_TICK_MS)) {
      throw badRequest(`tickMs must be an integer from 0 to ${MAX_TICK_MS}`);
    }
    const countdown = timer(0, tickMs).pipe(
      take(from + 1),
      map((tick) => from - tick),
    );
    return this.countdowns.track(countdown, ctx.getSignal());
  }
}

function isFiniteNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

function isIntegerIn(value: unknown, min: number, max: number): value is number {
  return Number.isInteger(value) && (value as number) >= min && (value as number) <= max;
}
