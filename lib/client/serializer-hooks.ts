import { ClientProxy } from '@nestjs/microservices';
import type { Observer } from 'rxjs';

/** `ClientProxy`'s two protected hooks, which Nest's `createObserver` applies to every answer. */
interface ResponseHooks {
  serializeResponse(response: unknown): unknown;
  serializeError(err: unknown): unknown;
}

const DEFAULT_HOOKS = ClientProxy.prototype as unknown as ResponseHooks;

/**
 * True when `client`'s class overrides `serializeResponse` or `serializeError` (Nest's own
 * e2e suite turns errors into `RpcException` this way). Asked once, in the constructor, so a
 * client without overrides hands its calls' values over untouched.
 */
export function overridesResponseHooks(client: ClientProxy): boolean {
  const hooks = client as unknown as ResponseHooks;
  return (
    hooks.serializeResponse !== DEFAULT_HOOKS.serializeResponse || hooks.serializeError !== DEFAULT_HOOKS.serializeError
  );
}

/**
 * Passes each value through `serializeResponse` and the error through `serializeError`
 * before the caller sees them, as Nest's `createObserver` does for its transports. A hook
 * that throws fails the call with what it threw (a value hook's error goes through
 * `serializeError` first).
 */
export class SerializingObserver implements Observer<unknown> {
  private readonly hooks: ResponseHooks;

  constructor(
    private readonly target: Observer<unknown>,
    client: ClientProxy,
  ) {
    this.hooks = client as unknown as ResponseHooks;
  }

  next(value: unknown): void {
    let out: unknown;
    try {
      out = this.hooks.serializeResponse(value);
    } catch (err) {
      this.error(err);
      return;
    }
    this.target.next(out);
  }

  error(err: unknown): void {
    let out: unknown;
    try {
      out = this.hooks.serializeError(err);
    } catch (thrown) {
      out = thrown;
    }
    this.target.error(out);
  }

  complete(): void {
    this.target.complete();
  }
}
