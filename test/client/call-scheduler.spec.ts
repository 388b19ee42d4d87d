import { CallStats } from '../../lib/stats/call-stats.js';
import {
  WireAuthError,
  WireCancelledError,
  WireCodecError,
  WireConnectionError,
  WireFrameTooLargeError,
  WireLimitError,
  WireNoHandlerError,
  WireOverloadedError,
  WireTimeoutError,
  type WireError,
} from '../../lib/errors.js';
import { PatternLatency } from '../../lib/client/pattern-latency.js';
import {
  CallScheduler,
  type CallConnection,
  type CallRouter,
  type SchedulerOptions,
} from '../../lib/client/call-scheduler.js';
import { PendingCall, type CallOwner } from '../../lib/client/pending-call.js';

/** A connection that records what is written on it; `room` calls fit before it is full. */
class FakeConnection implements CallConnection, CallOwner {
  readonly written: PendingCall[] = [];
  queuedBytes = 0;
  refuse: WireError | null = null;
  constructor(
    readonly endpointKey: string,
    public room = Infinity,
  ) {}
  get isFull(): boolean {
    return this.written.length >= this.room;
  }
  write(call: PendingCall, _budgetMs: number): void {
    if (this.refuse !== null) throw this.refuse;
    call.owner = this;
    call.id = this.written.length + 1;
    this.written.push(call);
  }
  readonly abandoned: PendingCall[] = [];
  abandon(call: PendingCall): void {
    this.abandoned.push(call);
    call.owner = null;
  }
  expire(call: PendingCall): void {
    call.owner = null;
    call.fail(new WireTimeoutError(call.timeoutMs));
  }
  /** Answers a written call the way ClientConnection does: out of its table, then complete. */
  answer(call: PendingCall, value: unknown): void {
    call.owner = null;
    call.complete(true, value);
  }
}

class FakeRouter implements CallRouter {
  connections: FakeConnection[] = [];
  isConnecting = true;
  get readyCount(): number {
    return this.connections.length;
  }
  pick(avoid: readonly string[] | null): CallConnection | null {
    let best: FakeConnection | null = null;
    for (const c of this.connections) {
      if (avoid?.includes(c.endpointKey) && this.connections.some((o) => !avoid.includes(o.endpointKey))) continue;
      if (best === null || c.written.length < best.written.length) best = c;
    }
    return best;
  }
  pickAvoiding(avoid: readonly string[]): CallConnection | null {
    let best: FakeConnection | null = null;
    for (const c of this.connections)
      if (!avoid.includes(c.endpointKey) && (best === null || c.written.length < best.written.length)) best = c;
    return best;
  }
  readonly detectsOutliers = false;
  recordOutcome(): void {}
  unreachableError(): WireError {
    return new WireConnectionError('no server reachable (test)');
  }
}

type Seen = { values: unknown[]; error: unknown; completed: boolean };

function setup(options: Partial<SchedulerOptions> = {}) {
  const stats = new CallStats();
  const scheduler = new CallScheduler(
    {
      maxPendingCalls: 100,
      overflow: 'fail',
      maxQueuedBytes: 1 << 20,
      nackRetries: 3,
      retry: { maxAttempts: 3, budget: { percent: 20, minPerSecond: 10 } },
      hedge: null,
      ...options,
    },
    stats,
  );
  const router = new FakeRouter();
  scheduler.router = router;
  const start = (timeoutMs = 0, idempotent = false): { call: PendingCall; seen: Seen } => {
    const seen: Seen = { values: [], error: undefined, completed: false };
    const call = new PendingCall(
      {
        next: (v: unknown) => seen.values.push(v),
        error: (e: unknown) => (seen.error = e),
        complete: () => (seen.completed = true),
      },
      scheduler,
      timeoutMs,
      'p',
      1,
      undefined,
    );
    call.idempotent = idempotent;
    stats.started++;
    scheduler.submit(call, performance.now());
    return { call, seen };
  };
  return { scheduler, router, stats, start };
}

describe('CallScheduler (no Nest, no sockets)', () => {
  it('writes a call on the least-loaded connection at once', () => {
    const { router, start, scheduler } = setup();
    const a = new FakeConnection('a');
    const b = new FakeConnection('b');
    router.connections.push(a, b);
    start();
    start();
    expect(a.written.length + b.written.length).toBe(2);
    expect(a.written.length).toBe(1);
    expect(scheduler.pending).toBe(2);
    expect(scheduler.queued).toBe(0);
  });

  it('queues calls while no connection is open and writes them in order once one is', () => {
    const { router, start, scheduler } = setup();
    const calls = [start().call, start().call, start().call];
    expect(scheduler.queued).toBe(3);
    const conn = new FakeConnection('a');
    router.connections.push(conn);
    scheduler.drain();
    expect(conn.written).toEqual(calls);
    expect(scheduler.queued).toBe(0);
  });

  it('keeps a call queued while the only connection is full, and writes it when a slot frees', () => {
    const { router, start, scheduler } = setup();
    const conn = new FakeConnection('a', 1);
    router.connections.push(conn);
    const first = start();
    const second = start();
    expect(conn.written).toEqual([first.call]);
    expect(scheduler.queued).toBe(1);
    conn.room = 2;
    conn.answer(first.call, 'one');
    expect(first.seen.values).toEqual(['one']);
    expect(conn.written).toEqual([first.call, second.call]);
    expect(scheduler.pending).toBe(1);
  });

  it("overflow 'fail' refuses a call past maxPendingCalls with WireOverloadedError", () => {
    const { router, start, stats } = setup({ maxPendingCalls: 2 });
    router.connections.push(new FakeConnection('a'));
    start();
    start();
    const third = start();
    expect(third.seen.error).toBeInstanceOf(WireOverloadedError);
    expect((third.seen.error as Error).message).toMatch(/maxPendingCalls 2/);
    expect(stats.snapshot().failed).toEqual({ WIRE_OVERLOADED: 1 });
  });

  it("overflow 'wait' holds a call past maxPendingCalls until a slot frees", () => {
    const { router, start, scheduler } = setup({ maxPendingCalls: 1, overflow: 'wait' });
    const conn = new FakeConnection('a');
    router.connections.push(conn);
    const first = start();
    const second = start();
    expect(conn.written).toEqual([first.call]);
    expect(scheduler.queued).toBe(1);
    conn.answer(first.call, 1);
    expect(conn.written).toEqual([first.call, second.call]);
    expect(scheduler.queued).toBe(0);
  });

  it('fails a call when the picked connection has more than maxQueuedBytes waiting', () => {
    const { router, start } = setup({ maxQueuedBytes: 1024 });
    const conn = new FakeConnection('a');
    conn.queuedBytes = 4096;
    router.connections.push(conn);
    const { seen } = start();
    expect(seen.error).toBeInstanceOf(WireOverloadedError);
    expect(conn.written).toEqual([]);
  });

  it('fails a call whose write throws, with that error, and frees its slot', () => {
    const { router, start, scheduler } = setup();
    const conn = new FakeConnection('a');
    conn.refuse = new WireOverloadedError('refused by the fake');
    router.connections.push(conn);
    const { seen } = start();
    expect(seen.error).toBe(conn.refuse);
    expect(scheduler.pending).toBe(0);
  });

  it('re-sends a NACKed call at the head of the queue, at most nackRetries times', () => {
    const { router, start, scheduler } = setup({ nackRetries: 2 });
    const conn = new FakeConnection('a');
    router.connections.push(conn);
    const { call, seen } = start();
    const reason = new WireOverloadedError('nacked');
    for (let i = 0; i < 2; i++) {
      call.owner = null;
      scheduler.resend(call, reason);
      expect(seen.error).toBeUndefined();
    }
    expect(conn.written).toEqual([call, call, call]);
    call.owner = null;
    scheduler.resend(call, reason);
    expect(seen.error).toBe(reason);
    expect(scheduler.resends).toBe(3);
  });

  it('fails queued calls at once when nothing is reachable', () => {
    const { router, start, scheduler } = setup();
    const { seen } = start();
    router.isConnecting = false;
    scheduler.failQueuedCalls(router.unreachableError());
    expect(seen.error).toBeInstanceOf(WireConnectionError);
    const late = start();
    expect((late.seen.error as Error).message).toMatch(/no server reachable/);
    expect(scheduler.pending).toBe(0);
  });

  it('an unsubscribed queued call leaves the queue and its slot', () => {
    const { start, scheduler } = setup();
    const { call, seen } = start();
    call.unsubscribe();
    expect(scheduler.queued).toBe(0);
    expect(scheduler.pending).toBe(0);
    expect(seen.error).toBeUndefined();
  });

  it('close() fails queued and held calls', () => {
    const { start, scheduler } = setup({ maxPendingCalls: 1, overflow: 'wait' });
    const a = start();
    const b = start();
    scheduler.close(new WireConnectionError('client closed'));
    expect(a.seen.error).toBeInstanceOf(WireConnectionError);
    expect(b.seen.error).toBeInstanceOf(WireConnectionError);
  });

  it('a queued call times out with WireTimeoutError, a written one through its connection', async () => {
    const { router, start } = setup();
    const queued = start(20);
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => queued.seen.error !== undefined && (clearInterval(poll), resolve()), 5);
    });
    expect(queued.seen.error).toBeInstanceOf(WireTimeoutError);
    const conn = new FakeConnection('a');
    router.connections.push(conn);
    const written = start(20);
    expect(conn.written).toEqual([written.call]);
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => written.seen.error !== undefined && (clearInterval(poll), resolve()), 5);
    });
    expect((written.seen.error as WireTimeoutError).timeoutMs).toBe(20);
    expect(written.call.owner).toBeNull();
  });

  describe('retries', () => {
    /** What ClientConnection does when a written call's connection is lost: out of its table, then attemptFailed. */
    const lose = (call: PendingCall, err: unknown) => {
      call.owner = null;
      call.attemptFailed(err);
    };

    it('an idempotent call that may have run is retried on another endpoint', () => {
      const { router, start, scheduler } = setup();
      const a = new FakeConnection('a');
      const b = new FakeConnection('b');
      router.connections.push(a, b);
      const { call, seen } = start(0, true);
      const first = a.written.includes(call) ? a : b;
      const other = first === a ? b : a;
      lose(call, new WireConnectionError('connection closed'));
      expect(seen.error).toBeUndefined();
      expect(other.written).toEqual([call]);
      lose(call, new WireOverloadedError('busy'));
      expect(seen.error).toBeUndefined();
      expect(scheduler.retries).toBe(2);
      // Third attempt was the last (maxAttempts 3): the next loss fails it with its own error.
      const last = new WireConnectionError('lost again');
      lose(call, last);
      expect(seen.error).toBe(last);
    });

    it('a call that is not idempotent fails at once: it may have run', () => {
      const { router, start, scheduler } = setup();
      router.connections.push(new FakeConnection('a'), new FakeConnection('b'));
      const { call, seen } = start();
      const err = new WireConnectionError('connection closed');
      lose(call, err);
      expect(seen.error).toBe(err);
      expect(scheduler.retries).toBe(0);
    });

    it('application errors, timeouts and other codes are never retried', () => {
      const { router, start, scheduler } = setup();
      router.connections.push(new FakeConnection('a'), new FakeConnection('b'));
      const answers = [
        { status: 'error', message: 'app' },
        new Error('plain'),
        new WireTimeoutError(5),
        new WireNoHandlerError(),
        new WireAuthError(),
        new WireLimitError('pattern too long'),
        new WireCodecError('bad msgpack'),
        new WireFrameTooLargeError(10, 5),
        new WireCancelledError(),
      ];
      for (const err of answers) {
        const { call, seen } = start(0, true);
        lose(call, err);
        expect(seen.error).toBe(err);
      }
      expect(scheduler.retries).toBe(0);
    });

    it('a retry never outlives the call: past its deadline the call fails with its own error', () => {
      const { router, start, scheduler } = setup();
      router.connections.push(new FakeConnection('a'), new FakeConnection('b'));
      const { call, seen } = start(10_000, true);
      call.deadline = performance.now() - 1; // the time is up (the wheel would fire at its next tick)
      const err = new WireConnectionError('lost');
      lose(call, err);
      expect(seen.error).toBe(err);
      expect(scheduler.retries).toBe(0);
    });

    it('a retried call keeps its one deadline in the wheel', () => {
      const { router, start, scheduler } = setup();
      router.connections.push(new FakeConnection('a'), new FakeConnection('b'));
      const { call } = start(10_000, true);
      const deadline = call.deadline;
      scheduler.wheel.remove(call); // what the connection does when it fails the attempt
      lose(call, new WireConnectionError('lost'));
      expect(call.deadline).toBe(deadline);
      expect(call.wheelSlot).toBeGreaterThanOrEqual(0);
    });

    it('a streaming call that delivered a value is not retried', () => {
      const { router, start } = setup();
      router.connections.push(new FakeConnection('a'), new FakeConnection('b'));
      const { call, seen } = start(0, true);
      call.next(1);
      const err = new WireConnectionError('connection closed');
      lose(call, err);
      expect(seen.values).toEqual([1]);
      expect(seen.error).toBe(err);
    });

    it('once the budget is spent the call fails at once with its own error, saying why', () => {
      const { router, start, scheduler } = setup({
        retry: { maxAttempts: 3, budget: { percent: 0, minPerSecond: 1 } },
      });
      router.connections.push(new FakeConnection('a'), new FakeConnection('b'));
      const one = start(0, true);
      lose(one.call, new WireConnectionError('lost'));
      expect(one.seen.error).toBeUndefined();
      const two = start(0, true);
      const err = new WireConnectionError('lost', {
        cause: Object.assign(new Error('reset'), { code: 'ECONNRESET', syscall: 'read' }),
      });
      lose(two.call, err);
      const got = two.seen.error as WireConnectionError;
      expect(got).toBeInstanceOf(WireConnectionError);
      expect(got.code).toBe('WIRE_CONNECTION');
      expect(got.syscallCode).toBe('ECONNRESET');
      expect(got.message).toMatch(/retry budget is exhausted/);
      expect(got.cause).toBe(err);
      expect(scheduler.retryBudgetExhausted).toBe(1);
    });

    it('NACK re-sends spend from the same budget; frames that never left do not', () => {
      const { router, start, scheduler } = setup({
        retry: { maxAttempts: 3, budget: { percent: 0, minPerSecond: 1 } },
      });
      router.connections.push(new FakeConnection('a'));
      const { call, seen } = start();
      call.owner = null;
      scheduler.resend(call, new WireConnectionError('connection closed before the frame was written'));
      call.owner = null;
      scheduler.resend(call, new WireOverloadedError('nack 1'));
      expect(seen.error).toBeUndefined();
      call.owner = null;
      scheduler.resend(call, new WireOverloadedError('nack 2'));
      expect((seen.error as Error).message).toMatch(/^nack 2 \(not retried: the client's retry budget is exhausted\)$/);
      expect(scheduler.retries).toBe(1);
      expect(scheduler.resends).toBe(3);
    });
  });

  describe('hedging', () => {
    const hedged = { hedge: { delayMs: 5, maxExtraPercent: 100 } } as const;
    const until = (p: () => boolean) =>
      new Promise<void>((resolve) => {
        const poll = setInterval(() => p() && (clearInterval(poll), resolve()), 2);
      });

    function twoServers(options: Partial<SchedulerOptions>) {
      const env = setup(options);
      const a = new FakeConnection('a');
      const b = new FakeConnection('b');
      env.router.connections.push(a, b);
      // One call started first so the bucket (5 % of calls, no floor) has a token.
      return { ...env, a, b };
    }

    it('after delayMs a copy goes to the other server; the first answer wins and the other copy is cancelled', async () => {
      const { start, scheduler, a, b } = twoServers(hedged);
      const { call, seen } = start(1000, true);
      const first = a.written.includes(call) ? a : b;
      const other = first === a ? b : a;
      await until(() => other.written.length === 1);
      const copy = other.written[0];
      expect(copy.isCopy).toBe(true);
      other.answer(copy, 'from the copy');
      expect(seen.values).toEqual(['from the copy']);
      expect(seen.completed).toBe(true);
      // The original was cancelled on its connection.
      expect(first.abandoned).toEqual([call]);
      expect(scheduler.hedges).toBe(1);
      expect(scheduler.hedgeWins).toBe(1);
      expect(scheduler.pending).toBe(0);
    });

    it('when the original answers first the copy is cancelled', async () => {
      const { start, scheduler, a, b } = twoServers(hedged);
      const { call, seen } = start(1000, true);
      const first = a.written.includes(call) ? a : b;
      const other = first === a ? b : a;
      await until(() => other.written.length === 1);
      const copy = other.written[0];
      first.answer(call, 'original');
      expect(seen.values).toEqual(['original']);
      expect(other.abandoned).toEqual([copy]);
      expect(copy.settled).toBe(true);
      expect(scheduler.hedgeWins).toBe(0);
    });

    it('a copy that loses its connection steps aside; the original carries on', async () => {
      const { start, a, b } = twoServers(hedged);
      const { call, seen } = start(1000, true);
      const first = a.written.includes(call) ? a : b;
      const other = first === a ? b : a;
      await until(() => other.written.length === 1);
      const copy = other.written[0];
      copy.owner = null;
      copy.attemptFailed(new WireConnectionError('lost'));
      expect(seen.error).toBeUndefined();
      expect(copy.settled).toBe(true);
      first.answer(call, 'original');
      expect(seen.values).toEqual(['original']);
    });

    it('a stream is hedged only until its first value', async () => {
      const { start, scheduler, a, b } = twoServers(hedged);
      const { call } = start(1000, true);
      expect(call.hedgeTimer).not.toBeNull(); // armed when written
      call.next('first value');
      // The hedge timer has run (it clears itself when it fires) and found the call streaming.
      await until(() => call.hedgeTimer === null);
      expect(a.written.length + b.written.length).toBe(1);
      expect(scheduler.hedges).toBe(0);
    });

    it('copies are limited by the bucket: maxExtraPercent of the calls started', async () => {
      const { start, scheduler, a, b } = twoServers({ hedge: { delayMs: 5, maxExtraPercent: 10 } });
      const calls = Array.from({ length: 25 }, () => start(1000, true).call);
      expect(calls.every((c) => c.hedgeTimer !== null)).toBe(true); // each armed when written
      // Every hedge timer has run (each clears itself when it fires).
      await until(() => calls.every((c) => c.hedgeTimer === null));
      expect(scheduler.hedges).toBe(2);
      expect(a.written.length + b.written.length).toBe(27);
    });
  });

  describe('PatternLatency (for hedge.delayMs: p95)', () => {
    it('has no p95 before 20 calls of a pattern, then the 95th percentile of that pattern only', () => {
      const latency = new PatternLatency();
      for (let i = 1; i <= 19; i++) latency.record('a', i);
      expect(latency.p95('a')).toBe(-1);
      latency.record('a', 20);
      expect(latency.p95('a')).toBeGreaterThanOrEqual(19);
      expect(latency.p95('a')).toBeLessThanOrEqual(21);
      for (let i = 0; i < 100; i++) latency.record('b', 1000);
      expect(latency.p95('b')).toBeGreaterThan(900);
      expect(latency.p95('a')).toBeLessThanOrEqual(21);
      expect(latency.p95('c')).toBe(-1);
    });
  });
});
