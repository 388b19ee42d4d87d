import 'reflect-metadata';
import { firstValueFrom } from 'rxjs';
import { withRunningApp } from '../helpers/apps.js';
import { TestAppModule } from '../helpers/test-app.js';

describe('write coalescing', () => {
  const app = withRunningApp(TestAppModule);

  it('sends 1 000 concurrent calls in far fewer than 1 000 socket writes, on both sides', async () => {
    const before = app.client.counters();
    const serverBefore = app.running.server.counters();
    const results = await Promise.all(
      Array.from({ length: 1000 }, (_, i) => firstValueFrom(app.client.send<number>('sum', [i, 1]))),
    );
    expect(results).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    const after = app.client.counters();
    const serverAfter = app.running.server.counters();
    expect(after.frames - before.frames).toBe(1000);
    expect(after.writes - before.writes).toBeLessThanOrEqual(5);
    // One RESPONSE frame per call: the completion is folded into the value's frame.
    expect(serverAfter.frames - serverBefore.frames).toBe(1000);
    expect(serverAfter.writes - serverBefore.writes).toBeLessThanOrEqual(20);
  });

  it('adds no delay to a lone call: one write per call when calls are sequential', async () => {
    const before = app.client.counters();
    for (let i = 0; i < 20; i++) expect(await firstValueFrom(app.client.send('sum', [i]))).toBe(i);
    const after = app.client.counters();
    expect(after.writes - before.writes).toBe(20);
    expect(after.frames - before.frames).toBe(20);
  });
});
