import { firstValueFrom } from 'rxjs';
import { WireClient, WireOptionsError, WireServer } from '../../lib/index.js';
import { resolveClientOptions } from '../../lib/options.js';

/** The constructor's WireOptionsError message. */
function refusal(make: () => { close(): unknown }): string {
  try {
    void make().close();
  } catch (err) {
    expect(err).toBeInstanceOf(WireOptionsError);
    return (err as Error).message;
  }
  throw new Error('expected a WireOptionsError, nothing was thrown');
}
const client = (options: object) => () => new WireClient({ host: '127.0.0.1', port: 1, ...options });

describe('retry, hedge, outlierDetection, idempotent and maxConcurrentCalls options', () => {
  it('have the documented defaults', () => {
    const o = resolveClientOptions({});
    expect(o.retry).toEqual({ maxAttempts: 3, budget: { percent: 20, minPerSecond: 10 } });
    expect(o.hedge).toBeNull();
    expect(o.outlierDetection).toBeNull();
    expect(o.idempotent).toBeNull();
    expect(resolveClientOptions({ hedge: {} }).hedge).toEqual({ delayMs: 50, maxExtraPercent: 5 });
    expect(resolveClientOptions({ outlierDetection: {} }).outlierDetection).toEqual({
      consecutiveFailures: 5,
      baseEjectionMs: 30_000,
      maxEjectionMs: 300_000,
      maxEjectedPercent: 50,
    });
  });

  it('refuse values out of range, naming the option and the range', () => {
    expect(refusal(client({ retry: { maxAttempts: 0 } }))).toMatch(
      /retry\.maxAttempts must be an integer from 1 to 10, got 0/,
    );
    expect(refusal(client({ retry: { budget: { percent: 101 } } }))).toMatch(
      /retry\.budget\.percent must be an integer from 0 to 100/,
    );
    expect(refusal(client({ retry: { budget: { minPerSecond: -1 } } }))).toMatch(
      /retry\.budget\.minPerSecond must be an integer from 0/,
    );
    expect(refusal(client({ hedge: { delayMs: 'p99' } }))).toMatch(
      /hedge\.delayMs \(ms, or 'p95'\) must be an integer from 1/,
    );
    expect(refusal(client({ hedge: { maxExtraPercent: 0 } }))).toMatch(
      /hedge\.maxExtraPercent must be an integer from 1 to 100/,
    );
    expect(refusal(client({ outlierDetection: { baseEjectionMs: 1000, maxEjectionMs: 10 } }))).toMatch(
      /outlierDetection\.maxEjectionMs \(at least baseEjectionMs\) must be an integer from 1000/,
    );
    expect(refusal(client({ outlierDetection: { consecutiveFailures: 0 } }))).toMatch(
      /outlierDetection\.consecutiveFailures/,
    );
    expect(refusal(client({ outlierDetection: { maxEjectedPercent: 150 } }))).toMatch(
      /maxEjectedPercent must be an integer from 0 to 100/,
    );
    expect(refusal(client({ idempotent: ['users.get', 7] }))).toMatch(
      /idempotent\[1\] must be a string or a RegExp, got number/,
    );
    expect(refusal(client({ idempotent: 'users.get' }))).toMatch(/idempotent must be an array of patterns/);
    expect(refusal(() => new WireServer({ maxConcurrentCalls: -1 }))).toMatch(
      /maxConcurrentCalls \(0: no limit\) must be an integer from 0/,
    );
  });

  it('refuse unknown keys of the nested objects, naming the closest one', () => {
    expect(refusal(client({ retry: { attempts: 2 } }))).toMatch(
      /option retry: unknown option 'attempts'\. Valid options: maxAttempts, budget$/,
    );
    expect(refusal(client({ retry: { budget: { ratio: 2 } } }))).toMatch(
      /option retry\.budget: unknown option 'ratio'/,
    );
    expect(refusal(client({ hedge: { delay: 2 } }))).toMatch(
      /option hedge: unknown option 'delay'; did you mean 'delayMs'\?/,
    );
    expect(refusal(client({ outlierDetection: { baseEjection: 2 } }))).toMatch(/did you mean 'baseEjectionMs'\?/);
  });

  it('idempotent: strings match exactly, RegExps (with /g too) and functions match by test', () => {
    const match = resolveClientOptions({ idempotent: ['users.get', /^catalog\./g] }).idempotent!;
    expect(match('users.get')).toBe(true);
    expect(match('users.getAll')).toBe(false);
    expect([match('catalog.item'), match('catalog.item'), match('catalog.list')]).toEqual([true, true, true]);
    const fn = resolveClientOptions({ idempotent: (p) => p.endsWith('.read') }).idempotent!;
    expect([fn('a.read'), fn('a.write')]).toEqual([true, false]);
  });

  it("per call, send()'s idempotent must be a boolean", async () => {
    const c = new WireClient({ host: '127.0.0.1', port: 1 });
    try {
      const err: unknown = await firstValueFrom(c.send('x', 1, { idempotent: 'yes' } as never)).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(WireOptionsError);
      expect((err as Error).message).toBe('send() option idempotent must be true or false, got yes');
    } finally {
      c.close();
    }
  });
});
