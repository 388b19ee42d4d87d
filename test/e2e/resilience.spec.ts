import 'reflect-metadata';
import { firstValueFrom } from 'rxjs';
import { WireConnectionError, type WireClient } from '../../lib/index.js';
import { fleetClient, invocationsById, startFleet, stopFleet, waitUntil, type FleetMember } from '../helpers/resilience-app.js';

type Result = { ok: true; server: string } | { ok: false; err: unknown };

function call(client: WireClient, id: number, ms: number, idempotent?: boolean): Promise<Result> {
  const options = idempotent === undefined ? undefined : { idempotent };
  return firstValueFrom(client.send<{ id: number; server: string }>('work', { id, ms }, options)).then(
    (r) => {
      expect(r.id).toBe(id);
      return { ok: true as const, server: r.server };
    },
    (err: unknown) => ({ ok: false as const, err }),
  );
}

describe('retries: three servers, one killed with calls in flight', () => {
  let fleet: FleetMember[];
  let client: WireClient;
  beforeEach(async () => {
    fleet = await startFleet(3);
  });
  afterEach(async () => {
    client?.close();
    await stopFleet(fleet);
  });

  /** Starts `n` calls of 300 ms, waits until every one runs on a server, then kills server b. */
  async function killDuringCalls(n: number, idempotent: boolean): Promise<{ results: Result[]; onKilled: number }> {
    const pending = Array.from({ length: n }, (_, i) => call(client, i + 1, 300, idempotent));
    await waitUntil(() => fleet.reduce((s, m) => s + m.behaviour.total, 0) === n);
    const onKilled = fleet[1].behaviour.total;
    expect(onKilled).toBeGreaterThan(0);
    await fleet[1].proxy.close();
    return { results: await Promise.all(pending), onKilled };
  }

  it('idempotent calls: none fails; those on the killed server ran again elsewhere', async () => {
    client = await fleetClient(fleet, { idempotent: ['work'] });
    const { results, onKilled } = await killDuringCalls(30, true);
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(results.filter((r) => r.ok && r.server === 'b')).toEqual([]);
    const stats = client.stats().calls;
    expect(stats.retries).toBe(onKilled);
    expect(stats.retryBudgetExhausted).toBe(0);
  });

  it('calls not declared idempotent: the ones that may have run fail with WireConnectionError, none runs twice', async () => {
    client = await fleetClient(fleet);
    const { results, onKilled } = await killDuringCalls(30, false);
    const failed = results.filter((r) => !r.ok) as { err: unknown }[];
    expect(failed.length).toBe(onKilled);
    for (const f of failed) expect(f.err).toBeInstanceOf(WireConnectionError);
    expect([...invocationsById(fleet).values()].every((n) => n === 1)).toBe(true);
    expect(invocationsById(fleet).size).toBe(30);
    expect(client.stats().calls.retries).toBe(0);
  });

  it('the per-call option overrides the client list, both ways', async () => {
    client = await fleetClient(fleet, { idempotent: [/^wo/] });
    const pending = [call(client, 1, 300, false), call(client, 2, 300), call(client, 3, 300), call(client, 4, 300)];
    await waitUntil(() => fleet.reduce((s, m) => s + m.behaviour.total, 0) === 4);
    const onB = [...fleet[1].behaviour.invocations.keys()];
    await fleet[1].proxy.close();
    const results = await Promise.all(pending);
    results.forEach((r, i) => {
      const id = i + 1;
      // Call 1 opted out: if it ran on b it fails; the others (matched by the RegExp) never do.
      expect(r.ok).toBe(!(id === 1 && onB.includes(1)));
    });
  });
});
