import { judgeLiveness, Liveness, type LivenessSample } from '../../lib/connection/heartbeat.js';

const INTERVAL = 100;

function sample(over: Partial<LivenessSample> = {}): LivenessSample {
  return { lastReadAt: 1000, pingSentAt: 0, readingStopped: false, backlogSince: -1, ...over };
}

describe('judgeLiveness (pure)', () => {
  it('leaves a connection that read within the interval alone', () => {
    expect(judgeLiveness(sample(), 1000 + INTERVAL - 1, INTERVAL)).toBe(Liveness.ALIVE);
  });

  it('pings once per silence: quiet for an interval → PING, not again until something is read', () => {
    expect(judgeLiveness(sample(), 1000 + INTERVAL, INTERVAL)).toBe(Liveness.PING);
    // Pinged after the last read: wait for the answer.
    expect(judgeLiveness(sample({ pingSentAt: 1000 + INTERVAL }), 1000 + INTERVAL + 50, INTERVAL)).toBe(Liveness.ALIVE);
    // A ping sent before the last read is stale: a new silence gets a new ping.
    expect(judgeLiveness(sample({ pingSentAt: 900 }), 1000 + INTERVAL, INTERVAL)).toBe(Liveness.PING);
  });

  it('closes a peer silent for two intervals', () => {
    expect(judgeLiveness(sample({ pingSentAt: 1100 }), 1000 + 2 * INTERVAL, INTERVAL)).toBe(Liveness.SILENT);
  });

  it('does not judge silence while reading is stopped on purpose', () => {
    expect(judgeLiveness(sample({ readingStopped: true }), 1000 + 10 * INTERVAL, INTERVAL)).toBe(Liveness.ALIVE);
  });

  it('closes a peer that has read nothing queued for two intervals, even while reading is stopped', () => {
    const stalled = sample({ readingStopped: true, backlogSince: 1000 });
    expect(judgeLiveness(stalled, 1000 + 2 * INTERVAL - 1, INTERVAL)).toBe(Liveness.ALIVE);
    expect(judgeLiveness(stalled, 1000 + 2 * INTERVAL, INTERVAL)).toBe(Liveness.NOT_READING);
  });
});
