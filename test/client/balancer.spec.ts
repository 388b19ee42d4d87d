import { jest } from '@jest/globals';
import { Balancer, type BalancerListener, type WireClientStatus } from '../../lib/client/balancer.js';
import type { ClientConnection } from '../../lib/client/client-connection.js';
import type { PendingCall } from '../../lib/client/pending-call.js';
import { TimeoutWheel } from '../../lib/connection/timeout-wheel.js';
import { TransportCounters } from '../../lib/connection/transport-stats.js';
import { WireConnectionError, type WireError } from '../../lib/errors.js';
import { resolveClientOptions } from '../../lib/options.js';

/**
 * The balancer's rotation with fake connections, handed to it the way an endpoint does
 * (onConnectionReady / onConnectionGone). Nothing here dials: pick() is only called with
 * connections in rotation.
 */

interface FakeConnection {
  name: string;
  inFlight: number;
  endpointKey: string;
  closed: boolean;
  close(err: WireError | null): void;
}

function fake(name: string, inFlight = 0, endpointKey = `10.0.0.1:${name}`): FakeConnection {
  return {
    name,
    inFlight,
    endpointKey,
    closed: false,
    close() {
      this.closed = true;
    },
  };
}

function setup() {
  const statuses: WireClientStatus[] = [];
  const ready: string[] = [];
  const errors: { endpoint: string; err: WireError; first: boolean }[] = [];
  const listener: BalancerListener = {
    onStatus: (s) => statuses.push(s),
    onReady: (e) => ready.push(e),
    onUnreachable: () => {},
    onConnectionError: (endpoint, err, first) => errors.push({ endpoint, err, first }),
  };
  const balancer = new Balancer(
    resolveClientOptions({ servers: ['10.0.0.1:1'] }),
    new TimeoutWheel<PendingCall>(() => {}),
    listener,
    new TransportCounters(),
  );
  const add = (...conns: FakeConnection[]) =>
    conns.forEach((c) => balancer.onConnectionReady(c as unknown as ClientConnection));
  const gone = (c: FakeConnection, err: WireError | null = null) =>
    balancer.onConnectionGone(c as unknown as ClientConnection, err);
  const pick = () => (balancer.pick() as unknown as FakeConnection | null)?.name;
  return { balancer, statuses, ready, errors, add, gone, pick };
}

describe('Balancer', () => {
  afterEach(() => jest.restoreAllMocks());

  it('reports connected on the first connection in rotation, and each ready endpoint', () => {
    const { balancer, statuses, ready, add } = setup();
    add(fake('a'), fake('b'));
    expect(statuses).toEqual(['connected']);
    expect(ready).toEqual(['10.0.0.1:a', '10.0.0.1:b']);
    expect(balancer.readyCount).toBe(2);
    balancer.close();
  });

  it('with one connection, picks it every time', () => {
    const { balancer, add, pick } = setup();
    add(fake('only', 50));
    expect(Array.from({ length: 5 }, pick)).toEqual(Array(5).fill('only'));
    balancer.close();
  });

  it('spreads ties over every connection in turn (an idle pool goes round robin)', () => {
    const { balancer, add, pick } = setup();
    add(fake('a'), fake('b'), fake('c'));
    const picks = Array.from({ length: 9 }, pick);
    expect(new Set(picks.slice(0, 3))).toEqual(new Set(['a', 'b', 'c']));
    for (const name of ['a', 'b', 'c']) expect(picks.filter((p) => p === name)).toHaveLength(3);
    balancer.close();
  });

  it('picks the connection with the fewest calls in flight, whatever the rotation', () => {
    const { balancer, add, pick } = setup();
    const conns = [fake('a', 5), fake('b', 1), fake('c', 3), fake('d', 2)];
    add(...conns);
    expect(Array.from({ length: 8 }, pick)).toEqual(Array(8).fill('b'));
    conns[1].inFlight = 9;
    expect(Array.from({ length: 8 }, pick)).toEqual(Array(8).fill('d'));
    balancer.close();
  });

  it('above 8 connections, compares two sampled at random and takes the less loaded', () => {
    const { balancer, add, pick } = setup();
    const conns = Array.from({ length: 12 }, (_, i) => fake(`c${i}`, 100 - i));
    add(...conns);
    const random = jest.spyOn(Math, 'random');
    // Samples index 2 (98 in flight) and 7 (93): the second wins.
    random.mockReturnValueOnce(2 / 12).mockReturnValueOnce(7 / 12);
    expect(pick()).toBe('c7');
    // Samples 9 (91) and 4 (96): the first wins.
    random.mockReturnValueOnce(9 / 12).mockReturnValueOnce(4 / 12);
    expect(pick()).toBe('c9');
    // A tie keeps the first sample.
    conns[3].inFlight = conns[5].inFlight = 0;
    random.mockReturnValueOnce(5 / 12).mockReturnValueOnce(3 / 12);
    expect(pick()).toBe('c5');
    expect(random).toHaveBeenCalledTimes(6);
    balancer.close();
  });

  it('takes a gone connection out of rotation; the last one going reports reconnecting', () => {
    const { balancer, statuses, add, gone, pick } = setup();
    const a = fake('a');
    const b = fake('b');
    add(a, b);
    gone(a);
    expect(balancer.readyCount).toBe(1);
    expect(Array.from({ length: 4 }, pick)).toEqual(Array(4).fill('b'));
    expect(statuses).toEqual(['connected']);
    gone(b);
    expect(statuses).toEqual(['connected', 'reconnecting']);
    add(fake('c'));
    expect(statuses).toEqual(['connected', 'reconnecting', 'connected']);
    balancer.close();
  });

  it('reports a connection error once per outage as the first in a row', () => {
    const { balancer, errors, add, gone } = setup();
    const a = fake('a');
    const b = fake('b');
    add(a, b);
    gone(a, new WireConnectionError('reset'));
    gone(b, new WireConnectionError('reset too'));
    expect(errors.map((e) => [e.endpoint, e.first])).toEqual([
      ['10.0.0.1:a', true],
      ['10.0.0.1:b', true], // b was in rotation: a new loss, not a repeat
    ]);
    balancer.close();
  });

  it('after close(): connect() refuses, a late connection is closed, not put in rotation', async () => {
    const { balancer, add, pick } = setup();
    balancer.close();
    await expect(balancer.connect()).rejects.toBeInstanceOf(WireConnectionError);
    const late = fake('late');
    add(late);
    expect(late.closed).toBe(true);
    expect(balancer.readyCount).toBe(0);
    expect(pick()).toBeUndefined(); // null: nothing to pick, and no dialling once closed
  });
});
