import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { Ctx, EventPattern, MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { range, type Observable } from 'rxjs';
import { WireContext } from '../../lib/index.js';

/**
 * The conformance service of docs/conformance/README.md: the handlers every server under
 * test must expose for docs/conformance/vectors.json. Kept apart from the other test apps
 * so that its behaviour is exactly what the README promises, and nothing more.
 */
@Controller()
class ConformanceController {
  /** Notes (EVENT `note` payloads) received, per connection (keyed by the peer's address). */
  private readonly notes = new Map<string, unknown[]>();

  @MessagePattern('echo')
  echo(@Payload() data: unknown): unknown {
    return data;
  }

  @MessagePattern('sum')
  sum(@Payload() data: number[]): number {
    return data.reduce((a, b) => a + b, 0);
  }

  @MessagePattern('nothing')
  nothing(): void {}

  @MessagePattern('stream')
  stream(@Payload() count: number): Observable<number> {
    return range(1, count);
  }

  @MessagePattern('delayed')
  delayed(@Payload() ms: number, @Ctx() ctx: WireContext): Promise<string> {
    const signal = ctx.getSignal();
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve('done'), ms);
      signal.addEventListener('abort', () => clearTimeout(timer));
    });
  }

  @MessagePattern('big')
  big(@Payload() length: number): string {
    return 'b'.repeat(length);
  }

  @MessagePattern('fail')
  fail(@Payload() length: number): never {
    throw new RpcException(length > 0 ? 'x'.repeat(length) : 'x');
  }

  /** A request stream (REQUEST_STREAM): answers the array of its values once it completes. */
  @MessagePattern('collect')
  async collect(@Payload() values: AsyncIterable<unknown>): Promise<unknown[]> {
    const all: unknown[] = [];
    for await (const value of values) all.push(value);
    return all;
  }

  @EventPattern('note')
  note(@Payload() data: unknown, @Ctx() context: unknown): void {
    const key = (context as WireContext).getRemoteAddress();
    const list = this.notes.get(key) ?? [];
    list.push(data);
    this.notes.set(key, list);
  }

  @MessagePattern('notes')
  noted(@Ctx() ctx: WireContext): unknown[] {
    return this.notes.get(ctx.getRemoteAddress()) ?? [];
  }
}

@Module({ controllers: [ConformanceController] })
export class ConformanceAppModule {}
