import 'reflect-metadata';
import { firstValueFrom, lastValueFrom, toArray } from 'rxjs';
import { WireConnectionError, type WireClient } from '../../lib/index.js';
import {
  fleetClient,
  invocationsById,
  startFleet,
  stopFleet,
  waitUntil,
  type FleetMember,
} from '../helpers/resilience-app.js';

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
    // The losing copies were cancelled: the stalled handlers on b saw their signal abort (at most
    // one abort per copy sent; under load a copy on b may also be the one that loses).
    await waitUntil(() => fleet[1].behaviour.aborted > 0);
    expect(fleet[1].behaviour.aborted).toBeLessThanOrEqual(stats.hedges);
  });

  it('a stream is hedged until its first value: the copy streams, the stalled original is cancelled', async () => {
    const c = await fleetClient([fleet[0], fleet[1]], {
      idempotent: ['work.stream'],
      hedge: { delayMs: 20, maxExtraPercent: 100 },
    });
    try {
      // Enough short calls first for the bucket (no burst) to hold a token.
      for (let i = 1; i <= 4; i++) await call(c, 300_000 + i, 0); // ids that never stall
      const aborted = fleet[1].behaviour.aborted;
      // Id 300_020 stalls on b only; sent until one lands there.
      let values: number[] = [];
      for (let i = 0; i < 4 && c.stats().calls.hedgeWins === 0; i++) {
        values = await lastValueFrom(c.send<number>('work.stream', { id: 300_020 + i * 20, count: 3 }).pipe(toArray()));
        expect(values).toEqual([0, 1, 2]);
      }
      expect(c.stats().calls.hedgeWins).toBe(1);
      await waitUntil(() => fleet[1].behaviour.aborted > aborted);
    } finally {
      c.close();
    }
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

describe('outlier ejection: one of three servers answers WIRE_OVERLOADED to everything', () => {
  let fleet: FleetMember[];
  beforeAll(async () => {
    fleet = await startFleet(3);
  });
  afterAll(async () => {
    await stopFleet(fleet);
  });
  const endpointOf = (client: WireClient, member: FleetMember) =>
    client.stats().endpoints.find((e) => e.endpoint === member.endpoint)!;

  it('is ejected after consecutiveFailures failures, its traffic moves, and it returns once it recovers and the time has passed', async () => {
    // Long enough that the calls made while b is out cannot outlast its ejection on a loaded machine.
    const base = 1000;
    const client = await fleetClient(fleet, {
      outlierDetection: { consecutiveFailures: 3, baseEjectionMs: base, maxEjectionMs: 10 * base },
    });
    const b = fleet[1];
    try {
      b.behaviour.overloaded = true;
      let id = 1;
      let failures = 0;
      // Calls one at a time: the tie-breaking rotation spreads them over the three servers.
      for (let i = 0; i < 60 && !endpointOf(client, b).ejected; i++) {
        const r = await call(client, id++, 0);
        if (!r.ok) {
          expect((r.err as Error & { code: string }).code).toBe('WIRE_OVERLOADED');
          failures++;
        }
      }
      const ejectedAfter = b.behaviour.total;
      expect(endpointOf(client, b).ejected).toBe(true);
      expect(failures).toBe(3);
      expect(ejectedAfter).toBe(3);
      expect(endpointOf(client, b).ejections).toBe(1);
      expect(endpointOf(client, b).ejectedUntil).toBeGreaterThan(0);
      // Out of rotation: everything goes to the others and succeeds.
      for (let i = 0; i < 12; i++) expect((await call(client, id++, 0)).ok).toBe(true);
      expect(b.behaviour.total).toBe(ejectedAfter);

      b.behaviour.overloaded = false;
      await waitUntil(() => !endpointOf(client, b).ejected);
      expect(endpointOf(client, b).ejectedUntil).toBe(0);
      for (let i = 0; i < 30; i++) expect((await call(client, id++, 0)).ok).toBe(true);
      expect(b.behaviour.total).toBeGreaterThan(ejectedAfter);

      // A repeat: ejected again, for twice as long.
      b.behaviour.overloaded = true;
      const before = Date.now();
      for (let i = 0; i < 60 && !endpointOf(client, b).ejected; i++) await call(client, id++, 0);
      const again = endpointOf(client, b);
      expect(again.ejected).toBe(true);
      expect(again.ejections).toBe(2);
      expect((again.ejectedUntil ?? 0) - before).toBeGreaterThanOrEqual(2 * base);
      b.behaviour.overloaded = false;
    } finally {
      client.close();
    }
  });

  it('with one server, it is never ejected', async () => {
    const b = fleet[1];
    b.behaviour.overloaded = true;
    const client = await fleetClient([b], { outlierDetection: { consecutiveFailures: 2, baseEjectionMs: 100 } });
    try {
      for (let i = 0; i < 10; i++) expect((await call(client, 1000 + i, 0)).ok).toBe(false);
      expect(endpointOf(client, b)).toMatchObject({ ejected: false, ejections: 0 });
    } finally {
      b.behaviour.overloaded = false;
      client.close();
    }
  });

  it('an ejected endpoint is readmitted at once when no other is left in rotation', async () => {
    const own = await startFleet(3);
    const client = await fleetClient(own, { outlierDetection: { consecutiveFailures: 2, baseEjectionMs: 60_000 } });
    try {
      const b = own[1];
      b.behaviour.overloaded = true;
      for (let i = 0; i < 30 && !endpointOf(client, b).ejected; i++) await call(client, 3000 + i, 0);
      expect(endpointOf(client, b).ejected).toBe(true);
      b.behaviour.overloaded = false;
      await own[0].proxy.close();
      await own[2].proxy.close();
      await waitUntil(() => !endpointOf(client, b).ejected);
      expect(await call(client, 4000, 0)).toMatchObject({ ok: true, server: 'b' });
    } finally {
      client.close();
      await stopFleet(own);
    }
  });

  it('maxEjectedPercent bounds how many are out at once', async () => {
    for (const m of fleet) m.behaviour.overloaded = true;
    const client = await fleetClient(fleet, {
      outlierDetection: { consecutiveFailures: 2, baseEjectionMs: 60_000, maxEjectedPercent: 34 },
    });
    try {
      for (let i = 0; i < 30; i++) await call(client, 2000 + i, 0);
      const ejected = client.stats().endpoints.filter((e) => e.ejected).length;
      expect(ejected).toBe(1);
    } finally {
      for (const m of fleet) m.behaviour.overloaded = false;
      client.close();
    }
  });
});

describe('load shedding on the server', () => {
  let fleet: FleetMember[];
  beforeAll(async () => {
    fleet = await startFleet(2, (i) => (i === 0 ? { maxConcurrentCalls: 1 } : {}));
  });
  afterAll(async () => {
    await stopFleet(fleet);
  });

  it('past maxConcurrentCalls new requests get NACK WIRE_OVERLOADED without running, and go to another server', async () => {
    const [a, b] = fleet;
    // A client of its own keeps a's one slot busy.
    const busy = await fleetClient([a]);
    const client = await fleetClient(fleet);
    try {
      const long = call(busy, 1, 500);
      await waitUntil(() => a.behaviour.total === 1);
      for (let i = 0; i < 10; i++) expect((await call(client, 10 + i, 0)).ok).toBe(true);
      expect(a.behaviour.total).toBe(1); // nothing else ran on a
      expect(b.behaviour.total).toBe(10);
      const nacked = a.running.server.stats().calls.failed.NACK_WIRE_OVERLOADED ?? 0;
      expect(nacked).toBeGreaterThan(0);
      expect(client.stats().calls.retries).toBe(nacked);
      expect((await long).ok).toBe(true);
    } finally {
      busy.close();
      client.close();
    }
  });

  it('the limit counts calls across connections, and frees as calls end', async () => {
    const [a] = fleet;
    const one = await fleetClient([a]);
    const two = await fleetClient([a], { nackRetries: 0 });
    try {
      const long = call(one, 100, 300);
      await waitUntil(() => a.behaviour.invocations.has(100));
      const refused = await call(two, 101, 0);
      expect(refused.ok).toBe(false);
      expect((refused as { err: { code: string } }).err.code).toBe('WIRE_OVERLOADED');
      expect(a.behaviour.invocations.has(101)).toBe(false);
      expect((await long).ok).toBe(true);
      expect((await call(two, 102, 0)).ok).toBe(true);
    } finally {
      one.close();
      two.close();
    }
  });

  it('a handler that throws WireOverloadedError (through a filter that lets it pass) sends idempotent calls elsewhere', async () => {
    const [a, b] = fleet;
    a.behaviour.overloaded = true;
    const client = await fleetClient(fleet, { idempotent: ['work'] });
    try {
      const before = a.behaviour.total;
      for (let i = 0; i < 10; i++)
        expect(await call(client, 200 + i, 0)).toMatchObject({ ok: true, server: b.behaviour.name });
      expect(a.behaviour.total).toBeGreaterThan(before); // a was asked, answered WIRE_OVERLOADED
      expect(client.stats().calls.retries).toBe(a.behaviour.total - before);
    } finally {
      a.behaviour.overloaded = false;
      client.close();
    }
  });
});

describe('the retry budget: every server overloaded for 2 s under a steady load', () => {
  let fleet: FleetMember[];
  beforeAll(async () => {
    fleet = await startFleet(3);
  });
  afterAll(async () => {
    await stopFleet(fleet);
  });

  it('retries stay within 20 % of calls + 10/s (counted on the servers), and calls fail at once, not at their timeout', async () => {
    const client = await fleetClient(fleet, { idempotent: ['work'], timeout: 5000 });
    const results: Promise<Result>[] = [];
    let id = 1;
    const startedAt = performance.now();
    // ~500 calls/s: 5 every 10 ms; 1 s healthy, then 2 s with every server overloaded.
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const t = performance.now() - startedAt;
        for (const m of fleet) m.behaviour.overloaded = t >= 1000;
        if (t >= 3000) {
          clearInterval(timer);
          resolve();
          return;
        }
        for (let k = 0; k < 5; k++) results.push(call(client, id++, 0));
      }, 10);
    });
    const settled = await Promise.all(results);
    const seconds = Math.ceil((performance.now() - startedAt) / 1000);
    for (const m of fleet) m.behaviour.overloaded = false;
    const calls = settled.length;
    const runs = fleet.reduce((s, m) => s + m.behaviour.total, 0);
    const retriesOnServers = runs - calls;
    const stats = client.stats().calls;
    expect(retriesOnServers).toBe(stats.retries);
    expect(retriesOnServers).toBeLessThanOrEqual(0.2 * calls + 10 * seconds);
    const failed = settled.filter((r) => !r.ok) as { err: Error & { code: string } }[];
    expect(failed.length).toBeGreaterThan(0);
    // Each failure is the call's own WIRE_OVERLOADED, never a timeout: nobody waits for a budget.
    for (const f of failed) expect(f.err.code).toBe('WIRE_OVERLOADED');
    const exhausted = failed.filter((f) => /retry budget is exhausted/.test(f.err.message)).length;
    expect(exhausted).toBe(stats.retryBudgetExhausted);
    expect(exhausted).toBeGreaterThan(0);
    client.close();
  });
});
