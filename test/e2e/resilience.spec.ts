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

/** Runs `total` calls, `concurrency` at a time; returns each call's latency in ms (all must succeed). */
async function runLoad(client: WireClient, total: number, concurrency: number, firstId = 1): Promise<number[]> {
  const latencies: number[] = [];
  let next = firstId;
  const end = firstId + total;
  const worker = async () => {
    while (next < end) {
      const id = next++;
      const t0 = performance.now();
      const r = await call(client, id, 0);
      if (!r.ok) throw r.err;
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return latencies;
}

describe('hedging: one of three servers stalls 5 % of its calls by 500 ms', () => {
  let fleet: FleetMember[];
  let client: WireClient;
  beforeAll(async () => {
    fleet = await startFleet(3);
    fleet[1].behaviour.stallMs = (id) => (id % 20 === 0 ? 500 : 0);
  });
  afterAll(async () => {
    client?.close();
    await stopFleet(fleet);
  });

  it('sends copies of slow calls to another server: the copy wins, the stalled handler is cancelled, extra load stays within 5 %', async () => {
    client = await fleetClient(fleet, { idempotent: ['work'], hedge: { delayMs: 20, maxExtraPercent: 5 } });
    const calls = 600;
    await runLoad(client, calls, 6);
    const stats = client.stats().calls;
    const stalledOnB = [...fleet[1].behaviour.invocations.keys()].filter((id) => id % 20 === 0).length;
    expect(stalledOnB).toBeGreaterThan(0);
    expect(stats.hedges).toBeGreaterThan(0);
    expect(stats.hedgeWins).toBeGreaterThan(0);
    // The bucket has no burst: copies never exceed 5 % of the calls started.
    expect(stats.hedges).toBeLessThanOrEqual(Math.floor(0.05 * stats.started));
    // Counted on the servers: every handler run beyond one per call is a copy.
    const runs = fleet.reduce((s, m) => s + m.behaviour.total, 0);
    expect(runs - calls).toBe(stats.hedges);
    expect(stats.succeeded).toBe(calls);
    // Each copy that won cancelled the stalled original: its handler saw the signal abort.
    await waitUntil(() => fleet[1].behaviour.aborted >= stats.hedgeWins);
    expect(fleet[1].behaviour.aborted).toBe(stats.hedgeWins);
  });

  it('a call answered before the delay sends no copy', async () => {
    const c = await fleetClient(fleet, { idempotent: ['work'], hedge: { delayMs: 2000 } });
    try {
      for (let i = 0; i < 40; i++) expect((await call(c, 100_000 + i, 0)).ok).toBe(true);
      expect(c.stats().calls.hedges).toBe(0);
    } finally {
      c.close();
    }
  });

  it('calls that are not idempotent are never hedged', async () => {
    const c = await fleetClient(fleet, { hedge: { delayMs: 1 } });
    try {
      const before = fleet[1].behaviour.total;
      // Ids that stall on b: no copy goes elsewhere, the call waits for b.
      for (let i = 0; i < 6; i++) expect((await call(c, 200_000 + i * 20, 0)).ok).toBe(true);
      expect(c.stats().calls.hedges).toBe(0);
      expect(fleet[1].behaviour.total).toBeGreaterThan(before);
    } finally {
      c.close();
    }
  });
});
