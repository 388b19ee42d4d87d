import { Controller, Get, Headers, Inject, ParseIntPipe, Query } from '@nestjs/common';
import { WireClient } from 'nest-wire';
import { randomUUID } from 'node:crypto';
import type { Observable } from 'rxjs';
import { CALL_INFO, SLEEP, type CallInfo, type SleepRequest, type SleepResult } from '../patterns.js';
import { MATH_SERVICE } from './math-service.client.js';

/** The per-call timeout of `GET /slow`, in ms. */
export const SLOW_CALL_TIMEOUT_MS = 500;

@Controller()
export class DiagnosticsController {
  constructor(@Inject(MATH_SERVICE) private readonly service: WireClient) {}

  /**
   * `GET /metadata` → what the service's `WireContext` saw. The gateway attaches
   * per-call metadata (the caller's `x-request-id`, or a fresh one).
   */
  @Get('metadata')
  metadata(@Headers('x-request-id') requestId: string | undefined): Observable<CallInfo> {
    const metadata = { 'x-request-id': requestId ?? randomUUID(), 'x-caller': 'gateway' };
    return this.service.send<CallInfo>(CALL_INFO, {}, { metadata });
  }

  /**
   * `GET /slow?ms=100` → `{ sleptMs: 100 }`. The call has its own timeout of
   * `SLOW_CALL_TIMEOUT_MS`, so `?ms=2000` fails fast with a 504.
   */
  @Get('slow')
  slow(@Query('ms', ParseIntPipe) ms: number): Observable<SleepResult> {
    return this.service.send<SleepResult, SleepRequest>(SLEEP, { ms }, { timeout: SLOW_CALL_TIMEOUT_MS });
  }
}
