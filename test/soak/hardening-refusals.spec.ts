import 'reflect-metadata';
import { FrameType } from '../../lib/protocol/frame.js';
import { rawFrame } from '../helpers/raw-peer.js';
import { closedOf, figure, flood, rawConnection, runFor, sumWorks, Target } from '../hardening/target.js';

/**
 * Issue 11 item 5 (a flood, so under test/soak): a peer sends 1.5 M refused requests and
 * never reads the 91-byte refusals. The server runs in a child process (1 GiB heap) with
 * the default maxQueuedBytes (64 MiB) and a 1 s heartbeat. Bound asserted on its peak RSS
 * growth: 64 MiB of unsent refusals + 100 MiB of slack; the connection must be closed
 * (before the fix: +103 MiB after the flood and growing, the connection left open).
 */
const HEARTBEAT_MS = 1000;
const MiB = 1024 * 1024;
/**
 * `npm run soak` (SOAK_CALLS set): the 1.5 M requests against the default 64 MiB.
 * `npm test`: 500 000 requests (45 MB of refusals) against maxQueuedBytes 4 MiB: the same behaviour, faster.
 */
const FULL = process.env.SOAK_CALLS !== undefined;
const REQUESTS = FULL ? 1_500_000 : 500_000;
const MAX_QUEUED_MIB = FULL ? 64 : 4;

describe('hardening flood: refusals to a peer that does not read (server in a child process)', () => {
  let target: Target;
  afterEach(() => target?.stop());

  it(`item 5: ${REQUESTS} refused REQUESTs, never read: the server stops reading, then closes`, async () => {
    target = await Target.start({ heartbeatIntervalMs: HEARTBEAT_MS, maxQueuedBytes: MAX_QUEUED_MIB * MiB }, 1024);
    const before = await target.stats();
    const socket = await rawConnection(target.port, {}, false);
    const closed = closedOf(socket);
    // A REQUEST without body: refused with a 91-byte ERROR (9x amplification).
    const one = rawFrame(FrameType.REQUEST, 0, 1, Buffer.alloc(0));
    const batch = Buffer.concat(Array.from({ length: 10_000 }, () => one));
    await flood(socket, batch, REQUESTS / 10_000);
    // Still not reading: a small PING now and then lets this side notice when the server resets it.
    const probe = setInterval(
      () => socket.destroyed || socket.write(rawFrame(FrameType.PING, 0, 0, Buffer.alloc(4))),
      200,
    );
    void closed.then(() => clearInterval(probe));
    const during = target.alive ? await target.stats() : null;
    const outcome = await Promise.race([closed.then(() => 'closed'), runFor(15_000).then(() => 'open')]);
    clearInterval(probe);
    figure('5-refusals-unread', {
      alive: target.alive,
      peakRssGrowthMiB: during && during.peakRss - before.rss,
      connection: outcome,
    });
    expect(target.alive).toBe(true);
    expect(during!.peakRss - before.rss).toBeLessThan(MAX_QUEUED_MIB + 100);
    expect(outcome).toBe('closed');
    await sumWorks(target.port);
  }, 90_000);
});
