import { jest } from '@jest/globals';
import type { WireConnection } from '../../lib/connection/connection.js';
import { HeartbeatMonitor } from '../../lib/connection/heartbeat.js';
import { waitFor } from '../helpers/wait.js';

/** A connection stand-in recording what the monitor asks of it. */
function fakeConnection() {
  const checks: { now: number; intervalMs: number }[] = [];
  const conn = { checkLiveness: (now: number, intervalMs: number) => checks.push({ now, intervalMs }) };
  return { checks, conn: conn as unknown as WireConnection };
}

/**
 * Intervals started and not cleared since the spy was set (the monitor's is unref()ed,
 * so process.getActiveResourcesInfo() would not show it).
 */
function intervals() {
  const live = new Set<unknown>();
  const set = jest.spyOn(globalThis, 'setInterval');
  const clear = jest.spyOn(globalThis, 'clearInterval');
  set.mockImplementation(((fn: () => void, ms: number) => {
    const handle = realSetInterval(fn, ms);
    live.add(handle);
    return handle;
  }) as never);
  clear.mockImplementation(((handle: NodeJS.Timeout) => {
    live.delete(handle);
    realClearInterval(handle);
  }) as never);
  return () => live.size;
}
const realSetInterval = globalThis.setInterval;
const realClearInterval = globalThis.clearInterval;

describe('HeartbeatMonitor', () => {
  let timers: () => number;
  beforeEach(() => (timers = intervals()));
  afterEach(() => jest.restoreAllMocks());

  it('checks every connection with its interval, on one timer for all of them', async () => {
    const monitor = new HeartbeatMonitor(20);
    const a = fakeConnection();
    const b = fakeConnection();
    const before = timers();
    monitor.add(a.conn);
    monitor.add(b.conn);
    expect(timers()).toBe(before + 1);
    await waitFor(() => a.checks.length >= 2 && b.checks.length >= 2, { what: 'two checks of each connection' });
    for (const c of [...a.checks, ...b.checks]) expect(c.intervalMs).toBe(20);
    expect(a.checks[1].now).toBeGreaterThan(a.checks[0].now);
    monitor.stop();
  });

  it('stops its timer when the last connection leaves, and stops checking it', async () => {
    const monitor = new HeartbeatMonitor(10);
    const a = fakeConnection();
    const b = fakeConnection();
    const before = timers();
    monitor.add(a.conn);
    monitor.add(b.conn);
    monitor.delete(a.conn);
    expect(timers()).toBe(before + 1); // b is still watched
    await waitFor(() => b.checks.length >= 1, { what: 'a check of the remaining connection' });
    expect(a.checks).toEqual([]); // deleted before the first check: never checked
    monitor.delete(b.conn);
    expect(timers()).toBe(before);
  });

  it('does nothing with interval 0 (heartbeats off)', () => {
    const monitor = new HeartbeatMonitor(0);
    const before = timers();
    monitor.add(fakeConnection().conn);
    expect(timers()).toBe(before); // no timer: nothing could ever check
  });

  it('stop() forgets every connection and clears the timer', () => {
    const monitor = new HeartbeatMonitor(10);
    const before = timers();
    monitor.add(fakeConnection().conn);
    monitor.stop();
    expect(timers()).toBe(before);
  });
});
