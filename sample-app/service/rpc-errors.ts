import { RpcException } from '@nestjs/microservices';

/**
 * An error the caller should treat as its own fault. The `{ status, message }`
 * object travels to the client unchanged; the gateway turns it into an HTTP 400.
 */
export function badRequest(message: string): RpcException {
  return new RpcException({ status: 400, message });
}
