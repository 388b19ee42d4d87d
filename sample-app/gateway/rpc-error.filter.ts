import { Catch, type ArgumentsHost } from '@nestjs/common';
import { BaseExceptionFilter } from '@nestjs/core';
import { toHttpException } from './rpc-error-to-http.js';

/**
 * Answers failed calls to the microservice with a meaningful HTTP status instead
 * of a 500 (see `toHttpException`); everything else gets Nest's default handling.
 */
@Catch()
export class RpcErrorFilter extends BaseExceptionFilter {
  override catch(exception: unknown, host: ArgumentsHost): void {
    super.catch(toHttpException(exception) ?? exception, host);
  }
}
