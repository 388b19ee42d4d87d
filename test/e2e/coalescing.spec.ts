import 'reflect-metadata';
import { firstValueFrom } from 'rxjs';
import type { WireClient } from '../../lib/index.js';
import { clientFor, startWireApp, type RunningServer } from '../helpers/apps.js';
import { TestAppModule } from '../helpers/test-app.js';

describe('write coalescing', () => {
  let running: RunningServer;
  let client: WireClient;

  beforeAll(async () => {
    running = await startWireApp(TestAppModule);
    client = clientFor(running);
    await client.connect();
  });
  afterAll(async () => {
    client.close();
    await running.app.close();
  });

  it('sends 1 000 concurrent calls in far fewer than 1 000 socket writes, on both sides', async () => {
    const before = client.counters();
    const serverBefore = running.server.counters();
    const results = await Promise.all(
      Array.from({ length: 1000 }, (_, i) => firstValueFrom(client.send<number>('sum', [i, 1]))),
    );
    expect(results).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    const after = client.counters();
    const serverAfter = running.server.counters();
    expect(after.frames - before.frames).toBe(1000);
    expect(after.writes - before.writes).toBeLessThanOrEqual(5);
    // One RESPONSE frame per call: the completion is folded into the value's frame.
    expect(serverAfter.frames - serverBefore.frames).toBe(1000);
    expect(serverAfter.writes - serverBefore.writes).toBeLessThanOrEqual(20);
  });

  it('adds no delay to a lone call: one write per call when calls are sequential', async () => {
    const before = client.counters();
    for (let i = 0; i < 20; i++) expect(await firstValueFrom(client.send('sum', [i]))).toBe(i);
    const after = client.counters();
    expect(after.writes - before.writes).toBe(20);
    expect(after.frames - before.frames).toBe(20);
  });
});
