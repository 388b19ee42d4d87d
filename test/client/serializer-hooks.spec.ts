import { ClientProxy, type ReadPacket, type WritePacket } from '@nestjs/microservices';
import { overridesResponseHooks, SerializingObserver } from '../../lib/client/serializer-hooks.js';

/** The smallest concrete ClientProxy: only its two response hooks matter here. */
class PlainClient extends ClientProxy {
  async connect(): Promise<void> {}
  async close(): Promise<void> {}
  unwrap<T>(): T {
    return undefined as T;
  }
  protected publish(_packet: ReadPacket, _callback: (packet: WritePacket) => void): () => void {
    return () => {};
  }
  protected async dispatchEvent<T = unknown>(_packet: ReadPacket): Promise<T> {
    return undefined as T;
  }
}

class HookedClient extends PlainClient {
  failValue = false;
  failError = false;
  protected override serializeResponse(response: unknown): unknown {
    if (this.failValue) throw new Error(`value hook refused ${String(response)}`);
    return { wrapped: response };
  }
  protected override serializeError(err: unknown): unknown {
    if (this.failError) throw new Error('error hook threw');
    return { mapped: (err as Error).message ?? err };
  }
}

function recorder() {
  const events: [string, unknown?][] = [];
  return {
    events,
    target: {
      next: (v: unknown) => events.push(['next', v]),
      error: (e: unknown) => events.push(['error', e]),
      complete: () => events.push(['complete']),
    },
  };
}

describe('serializer hooks', () => {
  it('tells a client that overrides serializeResponse or serializeError from one that does not', () => {
    expect(overridesResponseHooks(new PlainClient())).toBe(false);
    expect(overridesResponseHooks(new HookedClient())).toBe(true);
    class OnlyError extends PlainClient {
      protected override serializeError(err: unknown): unknown {
        return err;
      }
    }
    expect(overridesResponseHooks(new OnlyError())).toBe(true);
  });

  it('passes each value through serializeResponse and the error through serializeError', () => {
    const { events, target } = recorder();
    const observer = new SerializingObserver(target, new HookedClient());
    observer.next(1);
    observer.next(2);
    observer.error(new Error('boom'));
    expect(events).toEqual([
      ['next', { wrapped: 1 }],
      ['next', { wrapped: 2 }],
      ['error', { mapped: 'boom' }],
    ]);
  });

  it('completes untouched', () => {
    const { events, target } = recorder();
    new SerializingObserver(target, new HookedClient()).complete();
    expect(events).toEqual([['complete']]);
  });

  it('fails the call when the value hook throws, with what it threw passed through serializeError', () => {
    const { events, target } = recorder();
    const client = new HookedClient();
    client.failValue = true;
    new SerializingObserver(target, client).next(7);
    expect(events).toEqual([['error', { mapped: 'value hook refused 7' }]]);
  });

  it('fails the call with what the error hook threw, if it throws', () => {
    const { events, target } = recorder();
    const client = new HookedClient();
    client.failError = true;
    new SerializingObserver(target, client).error(new Error('original'));
    expect(events).toHaveLength(1);
    expect(events[0][0]).toBe('error');
    expect((events[0][1] as Error).message).toBe('error hook threw');
  });
});
