import {
  BadGatewayException,
  GatewayTimeoutException,
  HttpException,
  HttpStatus,
  ServiceUnavailableException,
} from '@nestjs/common';
import { WireConnectionError, WireError, WireTimeoutError } from 'nest-wire';
import { STATUS_CODES } from 'node:http';

/** The shape an `RpcException({ status, message })` thrown by a handler arrives in. */
interface RemoteError {
  status?: unknown;
  message: string;
}

/**
 * Maps what a call to the microservice can fail with to an HTTP answer:
 * - the handler's `RpcException({ status, message })` keeps its status (if it is an
 *   HTTP error status) and message; anything else from the handler is a 502;
 * - a transport timeout is a 504, an unreachable service a 503, any other
 *   nest-wire error a 502.
 * Returns `undefined` for errors that did not come from the service.
 */
export function toHttpException(err: unknown): HttpException | undefined {
  if (err instanceof HttpException) return err;
  if (err instanceof WireTimeoutError) return new GatewayTimeoutException(`math service: ${err.message}`);
  if (err instanceof WireConnectionError) return new ServiceUnavailableException(`math service: ${err.message}`);
  if (err instanceof WireError) return new BadGatewayException(`math service: ${err.message}`);
  if (isRemoteError(err)) {
    const status = isHttpErrorStatus(err.status) ? err.status : HttpStatus.BAD_GATEWAY;
    return new HttpException({ statusCode: status, message: err.message, error: STATUS_CODES[status] }, status);
  }
  return undefined;
}

function isRemoteError(err: unknown): err is RemoteError {
  return (
    typeof err === 'object' &&
    err !== null &&
    !(err instanceof Error) &&
    typeof (err as RemoteError).message === 'string'
  );
}

function isHttpErrorStatus(status: unknown): status is number {
  return Number.isInteger(status) && (status as number) >= 400 && (status as number) <= 599;
}
