import { Controller } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
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
import { badRequest } from './rpc-errors.js';

@Controller()
export class MathController {
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

  /** A stream: every value is sent to the caller as it is produced. */
  @MessagePattern(COUNTDOWN)
  countdown(@Payload() { from, tickMs }: CountdownRequest): Observable<number> {
    if (!isIntegerIn(from, 0, MAX_COUNTDOWN_FROM)) {
      throw badRequest(`from must be an integer from 0 to ${MAX_COUNTDOWN_FROM}`);
    }
    if (!isIntegerIn(tickMs, 0, MAX_TICK_MS)) {
      throw badRequest(`tickMs must be an integer from 0 to ${MAX_TICK_MS}`);
    }
    return timer(0, tickMs).pipe(
      take(from + 1),
      map((tick) => from - tick),
    );
  }
}

function isFiniteNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

function isIntegerIn(value: unknown, min: number, max: number): value is number {
  return Number.isInteger(value) && (value as number) >= min && (value as number) <= max;
}
