import 'reflect-metadata';
import { firstValueFrom, lastValueFrom, toArray } from 'rxjs';
import { withRunningApp } from '../helpers/apps.js';
import { TestAppModule } from '../helpers/test-app.js';

/**
 * The write-time bound (issue 11 items 2 and 4) must not cost a reader that keeps up:
 * with a tiny maxQueuedBytes, values wait for the socket instead of being written, and
 * every one of them still arrives, in order, once the socket takes the bytes before it.
 */
describe('hardening: values held for the backlog go out when the socket drains', () => {
  // 1 MiB unsent at most, then up to 1 MiB of values held until the socket takes them.
  const app = withRunningApp(TestAppModule, { maxQueuedBytes: 1024 * 1024 });

  it('delivers 16 concurrent 100 KB answers (1.6 MB: some wait for the socket)', async () => {
    const answers = await Promise.all(
      Array.from({ length: 16 }, () => firstValueFrom(app.client.send('big', 100_000))),
    );
    expect(answers.every((a) => a === 'b'.repeat(100_000))).toBe(true);
  });

  it('delivers an 8 000-value firehose and a 20 000-value generator whole and in order', async () => {
    const [fire, generated] = await Promise.all([
      lastValueFrom(app.client.send('firehose', 8_000).pipe(toArray())),
      lastValueFrom(app.client.send('generate', 20_000).pipe(toArray())),
    ]);
    expect(fire).toHaveLength(8_000);
    expect(fire.every((v, i) => (v as string).startsWith(`value-${i}-`))).toBe(true);
    expect(generated).toEqual(Array.from({ length: 20_000 }, (_, i) => i));
    expect(await lastValueFrom(app.client.send('mixed.stream', {}).pipe(toArray()))).toHaveLength(4);
  });
});
