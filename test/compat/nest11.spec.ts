import { Controller, Module } from '@nestjs/common';
import { ClientProxy, EventPattern, MessagePattern, Server } from '@nestjs/microservices';
import { firstValueFrom, lastValueFrom } from 'rxjs';
import { WireClient, WireServer } from '../../lib/index.js';
import { clientFor, startWireApp } from '../helpers/apps.js';

// Runs in both suites: under `npm test` with Nest 12, under `npm run test:nest11` with
// Nest 11, where what Nest 11 lacks (createPacket, setOnDispatchHook,
// runWithProcessingHooks) must not be needed.

@Controller()
class EchoController {
  private readonly notes: unknown[] = [];

  @MessagePattern('echo')
  echo(data: unknown) {
    return data;
  }

  @EventPattern('note')
  note(data: unknown) {
    this.notes.push(data);
  }

  @MessagePattern('notes')
  readNotes() {
    return this.notes;
  }
}

@Module({ controllers: [EchoController] })
class EchoModule {}

/** Which Nest this suite runs on, told apart by the APIs nest-wire feature-detects. */
const nest12 = typeof (ClientProxy.prototype as unknown as Record<string, unknown>).createPacket === 'function';

describe(`on the Nest the suite resolves (${nest12 ? '12' : '11'})`, () => {
  it('lib/ extends the same Nest the test imports (one copy loaded)', () => {
    expect(Object.getPrototypeOf(WireClient.prototype)).toBe(ClientProxy.prototype);
    expect(Object.getPrototypeOf(WireServer.prototype)).toBe(Server.prototype);
    if (process.env.NEST_MAJOR === '11') {
      expect(nest12).toBe(false);
      expect((Server.prototype as unknown as Record<string, unknown>).runWithProcessingHooks).toBeUndefined();
    }
  });

  it('a call and an event go through', async () => {
    const running = await startWireApp(EchoModule);
    const client = clientFor(running);
    try {
      await expect(firstValueFrom(client.send('echo', { a: 1 }))).resolves.toEqual({ a: 1 });
      await lastValueFrom(client.emit('note', 'hello'), { defaultValue: undefined });
      // Same connection, later frame: the event was handled before this call is answered.
      await expect(firstValueFrom(client.send('notes', {}))).resolves.toEqual(['hello']);
    } finally {
      client.close();
      await running.app.close();
    }
  });

  it('processing hooks run around a call, the end hook once the stream completes', async () => {
    const running = await startWireApp(EchoModule);
    const seen: string[] = [];
    const server = running.server as unknown as {
      setOnProcessingStartHook?: (hook: (id: unknown, ctx: unknown, done: () => Promise<unknown>) => unknown) => void;
      setOnProcessingEndHook?: (hook: (id: unknown, ctx: unknown) => void) => void;
    };
    const client = clientFor(running);
    try {
      if (server.setOnProcessingStartHook === undefined) return; // this Nest has no processing hooks
      server.setOnProcessingStartHook((_id, _ctx, done) => {
        seen.push('start');
        return done();
      });
      server.setOnProcessingEndHook!(() => seen.push('end'));
      await expect(firstValueFrom(client.send('echo', 7))).resolves.toBe(7);
      // The end hook runs in the stream's teardown, before the client can see the answer.
      expect(seen).toEqual(['start', 'end']);
    } finally {
      client.close();
      await running.app.close();
    }
  });
});
