import { Observable, of, Subject } from 'rxjs';
import { CALL_CANCELLED, type Outcome } from '../../lib/stats/call-stats.js';
import { WireOverloadedError } from '../../lib/errors.js';
import { ServerCall, type CallSink } from '../../lib/server/server-call.js';
import { nextTurn, waitFor } from '../helpers/wait.js';

type Event = ['value', unknown] | ['end'] | ['failure', unknown] | ['release', Outcome] | ['expire'];

/** A connection stand-in that records, in order, everything a call asks of it. */
class FakeSink implements CallSink {
  readonly events: Event[] = [];
  /** Set to make the next encodeValue() throw it. */
  encodeError: Error | null = null;
  /** Values encoded so far: a held value is encoded when it is sent, not when it is emitted. */
  encoded = 0;
  /** Values the calls on this sink hold now (reserveHeld minus releaseHeld). */
  heldValues = 0;

  constructor(readonly maxHeldValues = 1 << 20) {}

  encodeValue(value: unknown): Uint8Array | null {
    if (this.encodeError !== null) throw this.encodeError;
    this.encoded++;
    return value === undefined ? null : Buffer.from(JSON.stringify(value));
  }
  writeValue(_call: ServerCall, bytes: Uint8Array | null): void {
    this.events.push(['value', bytes === null ? undefined : JSON.parse(Buffer.from(bytes).toString())]);
  }
  writeEnd(): void {
    this.events.push(['end']);
  }
  writeFailure(_call: ServerCall, err: unknown): void {
    this.events.push(['failure', err]);
  }
  /** What reached mapUncaughtError (the server logs it there). */
  readonly uncaught: unknown[] = [];
  mapUncaughtError(err: unknown): unknown {
    this.uncaught.push(err);
    return { mapped: (err as Error).message };
  }
  release(_call: ServerCall, outcome: Outcome): void {
    this.events.push(['release', outcome]);
  }
  expire(): void {
    this.events.push(['expire']);
  }
  // A connection that always takes values: the backlog bound is tested end to end (test/hardening/backlog*.spec.ts).
  canWrite(): boolean {
    return true;
  }
  waitWritable(): void {}
  reserveHeld(values: number): boolean {
    if (this.heldValues + values > this.maxHeldValues) return false;
    this.heldValues += values;
    return true;
  }
  releaseHeld(values: number): void {
    this.heldValues -= values;
  }

  values(): unknown[] {
    return this.events.filter((e) => e[0] === 'value').map((e) => e[1]);
  }
  kinds(): string[] {
    return this.events.map((e) => e[0]);
  }
}

/** A handler stream the test pushes into, that records its teardown. */
function handlerStream() {
  const subject = new Subject<unknown>();
  const state = { tornDown: false };
  const stream$ = new Observable<unknown>((s) => {
    const sub = subject.subscribe(s);
    return () => {
      state.tornDown = true;
      sub.unsubscribe();
    };
  });
  return { subject, stream$, state };
}

function call(credit: number, maxHeldValues = 1 << 20) {
  const sink = new FakeSink(maxHeldValues);
  return { sink, call: new ServerCall(7, sink, credit) };
}

describe('ServerCall (fake CallSink)', () => {
  it('writes values within credit at once, then the end, then releases once as a success', () => {
    const { sink, call: c } = call(10);
    c.run(of(1, 2, 3));
    expect(sink.events).toEqual([['value', 1], ['value', 2], ['value', 3], ['release', null], ['end']]);
    expect(c.done).toBe(true);
  });

  it('credit 0 means no flow control: every value goes at once', () => {
    const { sink, call: c } = call(0);
    c.run(of(...Array.from({ length: 1000 }, (_, i) => i)));
    expect(sink.values()).toHaveLength(1000);
    expect(sink.kinds().slice(-2)).toEqual(['release', 'end']);
  });

  it('holds values past its credit, in order, and sends them as credit arrives', () => {
    const { sink, call: c } = call(2);
    const { subject, stream$ } = handlerStream();
    c.run(stream$);
    for (let i = 1; i <= 5; i++) subject.next(i);
    expect(sink.values()).toEqual([1, 2]);
    c.addCredit(2);
    expect(sink.values()).toEqual([1, 2, 3, 4]);
    c.addCredit(10);
    expect(sink.values()).toEqual([1, 2, 3, 4, 5]);
    subject.next(6); // credit left: at once
    expect(sink.values()).toEqual([1, 2, 3, 4, 5, 6]);
    expect(c.done).toBe(false);
  });

  it('sends the end only after the values still held, when credit lets them out', () => {
    const { sink, call: c } = call(1);
    c.run(of('a', 'b', 'c'));
    expect(sink.events).toEqual([['value', 'a']]); // completed, but 'b' and 'c' wait for credit
    expect(c.done).toBe(false);
    c.addCredit(1);
    expect(sink.events).toEqual([
      ['value', 'a'],
      ['value', 'b'],
    ]);
    c.addCredit(1);
    expect(sink.events).toEqual([['value', 'a'], ['value', 'b'], ['value', 'c'], ['release', null], ['end']]);
    expect(c.done).toBe(true);
  });

  it('sends an error only after the values still held', () => {
    const { sink, call: c } = call(1);
    const { subject, stream$ } = handlerStream();
    c.run(stream$);
    subject.next('a');
    subject.next('b');
    const boom = new Error('boom');
    subject.error(boom);
    expect(sink.events).toEqual([['value', 'a']]);
    c.addCredit(5);
    expect(sink.events).toEqual([
      ['value', 'a'],
      ['value', 'b'],
      ['release', { error: boom }],
      ['failure', boom],
    ]);
  });

  it('fails with WIRE_OVERLOADED past maxHeldValues, drops what it held and stops the handler', () => {
    const { sink, call: c } = call(1, 3);
    const { subject, stream$, state } = handlerStream();
    c.run(stream$);
    subject.next('first'); // within credit
    subject.next('a');
    subject.next('b');
    subject.next('c');
    expect(sink.kinds()).toEqual(['value']); // 3 values held: at the bound, not past it
    expect(sink.heldValues).toBe(3);
    const signal = c.signal;
    subject.next('d'); // a fourth: past it
    expect(sink.kinds()).toEqual(['value', 'release', 'failure']);
    const err = sink.events[2][1];
    expect(err).toBeInstanceOf(WireOverloadedError);
    expect((err as WireOverloadedError).code).toBe('WIRE_OVERLOADED');
    expect((err as Error).message).toMatch(/hold maxStreamBufferValues \(3\) values/);
    expect(sink.heldValues).toBe(0); // what it held is released
    expect(state.tornDown).toBe(true);
    expect(signal.aborted).toBe(true);
    c.addCredit(10); // nothing held any more: nothing more is sent
    subject.next('late');
    expect(sink.kinds()).toEqual(['value', 'release', 'failure']);
  });

  it('holds values unencoded: each is encoded when it is sent', () => {
    const { sink, call: c } = call(2);
    c.run(of(...Array.from({ length: 1000 }, (_, i) => i)));
    expect(sink.encoded).toBe(2); // the 998 beyond the credit wait as they are
    expect(sink.heldValues).toBe(998);
    c.addCredit(100);
    expect(sink.encoded).toBe(102);
    expect(sink.heldValues).toBe(898);
    c.addCredit(2000);
    expect(sink.encoded).toBe(1000);
    expect(sink.values()).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(sink.heldValues).toBe(0);
    expect(sink.kinds().slice(-2)).toEqual(['release', 'end']); // the end right after the last value
  });

  it('a held value that cannot be encoded fails the call when it is sent, after the values before it', () => {
    const { sink, call: c } = call(1);
    const { subject, stream$, state } = handlerStream();
    c.run(stream$);
    subject.next(1);
    subject.next(2);
    subject.next(3);
    subject.complete();
    expect(sink.values()).toEqual([1]);
    c.addCredit(1);
    expect(sink.values()).toEqual([1, 2]);
    sink.encodeError = new Error('cannot encode');
    c.addCredit(1); // 3 is encoded now, and fails
    expect(sink.events.slice(-2)).toEqual([
      ['release', { error: sink.encodeError }],
      ['failure', sink.encodeError],
    ]);
    expect(sink.heldValues).toBe(0);
    expect(state.tornDown).toBe(true);
    expect(c.done).toBe(true);
  });

  it('counts the values it holds until they are sent, and releases them when cancelled', () => {
    const { sink, call: c } = call(1);
    const { subject, stream$ } = handlerStream();
    c.run(stream$);
    for (let i = 0; i < 10; i++) subject.next(i);
    expect(sink.heldValues).toBe(9);
    c.addCredit(4);
    expect(sink.heldValues).toBe(5);
    c.cancel('bye');
    expect(sink.heldValues).toBe(0);
    expect(sink.kinds().filter((k) => k === 'release')).toHaveLength(1);
  });

  it('cancel() stops the handler, sends nothing, releases once as cancelled, and ignores what comes later', () => {
    const { sink, call: c } = call(10);
    const { subject, stream$, state } = handlerStream();
    c.run(stream$);
    const signal = c.signal;
    subject.next(1);
    c.cancel('client cancelled');
    expect(state.tornDown).toBe(true);
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toBe('client cancelled');
    expect(sink.events).toEqual([
      ['value', 1],
      ['release', CALL_CANCELLED],
    ]);
    c.cancel('again');
    c.addCredit(1);
    c.expire();
    subject.next(2);
    subject.complete();
    expect(sink.events).toEqual([
      ['value', 1],
      ['release', CALL_CANCELLED],
    ]);
  });

  it('a handler teardown that throws on cancel is reported, and the call still settles exactly once', () => {
    const { sink, call: c } = call(10);
    c.run(
      new Observable<unknown>(() => () => {
        throw new Error('teardown broke');
      }),
    );
    c.cancel('bye');
    expect(sink.events).toEqual([['release', CALL_CANCELLED]]);
    expect(sink.uncaught).toHaveLength(1);
    c.cancel('again');
    expect(sink.kinds()).toEqual(['release']);
  });

  it('cancel() with an outcome counts it as given (a deadline)', () => {
    const { sink, call: c } = call(10);
    c.run(new Subject<unknown>());
    const outcome = { error: new Error('deadline') };
    c.cancel('deadline', outcome);
    expect(sink.events).toEqual([['release', outcome]]);
  });

  it('a value that cannot be encoded fails the call with that error and stops the handler', () => {
    const { sink, call: c } = call(10);
    const { subject, stream$, state } = handlerStream();
    c.run(stream$);
    const signal = c.signal;
    sink.encodeError = new Error('cannot encode');
    subject.next(Symbol('x'));
    expect(sink.events).toEqual([
      ['release', { error: sink.encodeError }],
      ['failure', sink.encodeError],
    ]);
    expect(state.tornDown).toBe(true);
    expect(signal.aborted).toBe(true);
  });

  it('expire() asks the sink to expire it while running, not after', () => {
    const { sink, call: c } = call(10);
    c.run(new Subject<unknown>());
    c.expire();
    expect(sink.kinds()).toEqual(['expire']);
    c.cancel('x');
    c.expire();
    expect(sink.kinds()).toEqual(['expire', 'release']);
  });

  it('run() after the call is done subscribes to nothing', () => {
    const { sink, call: c } = call(10);
    c.cancel('early');
    let subscribed = false;
    c.run(new Observable(() => void (subscribed = true)));
    expect(subscribed).toBe(false);
    expect(sink.kinds()).toEqual(['release']);
  });

  it('passes undefined values through as null bytes', () => {
    const { sink, call: c } = call(10);
    c.run(of(1, undefined));
    expect(sink.events.slice(0, 2)).toEqual([
      ['value', 1],
      ['value', undefined],
    ]);
  });

  describe('a handler returning an AsyncIterable', () => {
    function iterable(count: number, onPull: (i: number) => void = () => {}) {
      const state = { pulled: 0, finalized: false };
      const it = (async function* () {
        try {
          for (let i = 0; i < count; i++) {
            state.pulled++;
            onPull(i);
            yield i;
          }
        } finally {
          state.finalized = true;
        }
      })();
      return { it, state };
    }

    it('is pulled only while credit lasts, resumes on credit, and ends with the end', async () => {
      const { sink, call: c } = call(3);
      const { it, state } = iterable(5);
      c.run(of(it));
      await waitFor(() => sink.values().length === 3, { what: 'the three values credit allows' });
      // The generator runs on microtasks only: a pump that pulled past its credit would have
      // done so before the next event-loop turn.
      await nextTurn();
      expect(state.pulled).toBe(3); // credit is checked before each pull
      expect(sink.values()).toEqual([0, 1, 2]);
      c.addCredit(10);
      await waitFor(() => c.done, { what: 'the iterable to be finished' });
      expect(sink.events).toEqual([
        ['value', 0],
        ['value', 1],
        ['value', 2],
        ['value', 3],
        ['value', 4],
        ['release', null],
        ['end'],
      ]);
      expect(state.finalized).toBe(true);
    });

    it('is ended (return()) when the call is cancelled', async () => {
      const { sink, call: c } = call(2);
      const { it, state } = iterable(1000);
      c.run(of(it));
      await waitFor(() => sink.values().length === 2, { what: 'the credit to be used' });
      c.cancel('bye');
      await waitFor(() => state.finalized, { what: 'the iterator to be ended' });
      expect(sink.kinds()).toEqual(['value', 'value', 'release']);
      expect(state.pulled).toBeLessThan(10);
    });

    it('an error thrown by the iterable is mapped by the sink and ends the call', async () => {
      const { sink, call: c } = call(10);
      const { it } = iterable(5, (i) => {
        if (i === 2) throw new Error('iterable broke');
      });
      c.run(of(it));
      await waitFor(() => c.done, { what: 'the call to fail' });
      expect(sink.events).toEqual([
        ['value', 0],
        ['value', 1],
        ['release', { error: { mapped: 'iterable broke' } }],
        ['failure', { mapped: 'iterable broke' }],
      ]);
    });
  });
});
