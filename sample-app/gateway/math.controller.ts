import {
  Controller,
  DefaultValuePipe,
  Get,
  Inject,
  Param,
  ParseFloatPipe,
  ParseIntPipe,
  Query,
  Sse,
  type MessageEvent,
  type PipeTransform,
} from '@nestjs/common';
import { WireClient } from 'nest-wire';
import { map, toArray, type Observable } from 'rxjs';
import {
  COUNTDOWN,
  DIVIDE,
  MAX_COUNTDOWN_FROM,
  MAX_TICK_MS,
  SUM,
  type CountdownRequest,
  type DivideRequest,
} from '../patterns.js';
import { IntRangePipe } from './int-range.pipe.js';
import { DEFAULT_CALL_TIMEOUT_MS, MATH_SERVICE } from './math-service.client.js';
import { ParseNumberListPipe } from './parse-number-list.pipe.js';

const DEFAULT_TICK_MS = 100;
/** `:from` of the countdown routes. */
const FROM_PIPES: PipeTransform[] = [new ParseIntPipe(), new IntRangePipe(0, MAX_COUNTDOWN_FROM)];
/** `?tickMs=` of the countdown routes: time between two values. */
const TICK_MS_PIPES: PipeTransform[] = [
  new DefaultValuePipe(DEFAULT_TICK_MS),
  new ParseIntPipe(),
  new IntRangePipe(0, MAX_TICK_MS),
];

@Controller()
export class MathController {
  constructor(@Inject(MATH_SERVICE) private readonly math: WireClient) {}

  /** `GET /sum?numbers=1,2,3` → `{ numbers: [1, 2, 3], sum: 6 }` */
  @Get('sum')
  sum(@Query('numbers', ParseNumberListPipe) numbers: number[]): Observable<{ numbers: number[]; sum: number }> {
    return this.math.send<number, number[]>(SUM, numbers).pipe(map((sum) => ({ numbers, sum })));
  }

  /** `GET /divide?a=10&b=4` → `{ a: 10, b: 4, quotient: 2.5 }`; `b=0` → 400 from the service. */
  @Get('divide')
  divide(
    @Query('a', ParseFloatPipe) a: number,
    @Query('b', ParseFloatPipe) b: number,
  ): Observable<{ a: number; b: number; quotient: number }> {
    return this.math.send<number, DivideRequest>(DIVIDE, { a, b }).pipe(map((quotient) => ({ a, b, quotient })));
  }

  /** `GET /countdown/3` → `{ from: 3, values: [3, 2, 1, 0] }`, the stream collected. */
  @Get('countdown/:from')
  countdown(
    @Param('from', ...FROM_PIPES) from: number,
    @Query('tickMs', ...TICK_MS_PIPES) tickMs: number,
  ): Observable<{ from: number; values: number[] }> {
    // The whole stream must fit in the call's timeout: allow for every tick.
    const timeout = (from + 1) * tickMs + DEFAULT_CALL_TIMEOUT_MS;
    return this.math.send<number, CountdownRequest>(COUNTDOWN, { from, tickMs }, { timeout }).pipe(
      toArray(),
      map((values) => ({ from, values })),
    );
  }

  /** `GET /countdown/3/stream` → server-sent events, one per value, as the service emits them. */
  @Sse('countdown/:from/stream')
  countdownStream(
    @Param('from', ...FROM_PIPES) from: number,
    @Query('tickMs', ...TICK_MS_PIPES) tickMs: number,
  ): Observable<MessageEvent> {
    // No timeout: the stream ends when the countdown does, or when the HTTP client leaves:
    // Nest then unsubscribes from this Observable, which sends CANCEL, and the service
    // stops its countdown (see `CountdownTracker`).
    return this.math
      .send<number, CountdownRequest>(COUNTDOWN, { from, tickMs }, { timeout: 0 })
      .pipe(map((value) => ({ data: String(value) })));
  }
}
