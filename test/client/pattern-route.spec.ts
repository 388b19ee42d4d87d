import { ClientProxy } from '@nestjs/microservices';
import { WireClient } from '../../lib/index.js';

/** The route string a call's pattern travels as (private: reached through a cast). */
const routeOf = (client: WireClient, pattern: unknown): string =>
  (client as unknown as { routeOf(p: unknown): string }).routeOf(pattern);
const nestRoute = (client: WireClient, pattern: unknown): string =>
  String(
    (ClientProxy.prototype as unknown as { normalizePattern(p: unknown): string }).normalizePattern.call(
      client,
      pattern,
    ),
  );

describe('WireClient pattern routes', () => {
  const client = new WireClient({ port: 1 });
  afterAll(() => client.close());

  it('gives every pattern the route Nest gives it, one-key objects included', () => {
    const nullProto = Object.assign(Object.create(null) as object, { cmd: 'sum' });
    class Pattern {
      cmd = 'sum';
    }
    const patterns: unknown[] = [
      'sum',
      42,
      { cmd: 'sum' },
      { cmd: 7 },
      { cmd: -1.5 },
      { cmd: NaN },
      { cmd: '' },
      { '': 'x' },
      { cmd: 'with "quotes"' },
      { 'k"ey': 'v' },
      { cmd: 'back\\slash' },
      { cmd: 'é ü 中' },
      { cmd: true },
      { cmd: null },
      { cmd: { nested: 'x' } },
      { cmd: ['a', 1] },
      { role: 'math', cmd: 'sum' },
      ['a', 'b'],
      nullProto,
      new Pattern(),
    ];
    for (const pattern of patterns) expect(routeOf(client, pattern)).toBe(nestRoute(client, pattern));
  });

  it('calls an overriding normalizePattern for every object pattern', () => {
    class Custom extends WireClient {
      protected override normalizePattern(): string {
        return 'custom';
      }
    }
    const custom = new Custom({ port: 1 });
    expect(routeOf(custom, { cmd: 'sum' })).toBe('custom');
    custom.close();
  });
});
