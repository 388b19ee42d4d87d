import 'reflect-metadata';
import { FrameType } from '../../lib/protocol/frame.js';
import { decodeTransportError } from '../../lib/protocol/transport-error.js';
import { RawPeer } from '../helpers/raw-peer.js';
import { brotliBomb, compressedRequest, emptyArrays, requestFrame } from '../hardening/frames.js';
import { figure, sumWorks, Target } from '../hardening/target.js';

/**
 * Issue 11 item 1: a payload whose decoded form is far larger than its bytes. Before the
 * fix four 55-byte brotli REQUESTs killed a server with a 1 GiB heap (out of memory).
 * The server here runs in a child process with a 1 GiB heap; the bounds asserted:
 * every bomb is refused with a typed error, the server survives and serves another
 * client, and its RSS grows by less than RSS_BOUND_MIB.
 */
const RSS_BOUND_MIB = 100;

const errorCode = (body: Buffer) => decodeTransportError(body).code;

/** What the server answered to requests 1..n: an ERROR's code, 'RESPONSE', or null (no answer in time). */
async function answers(peer: RawPeer, n: number, ms: number): Promise<(string | null)[]> {
  const out: (string | null)[] = [];
  for (let i = 1; i <= n; i++) {
    const f = await peer.waitForFrame((x) => x.id === i, ms).catch(() => null);
    out.push(f === null ? null : f.type === FrameType.ERROR ? errorCode(f.body) : FrameType[f.type]);
    if (f === null) ms = 100;
  }
  return out;
}

describe('hardening: decoded-size bombs (server in a child process)', () => {
  let target: Target;
  afterEach(() => target?.stop());

  it('a server without compression refuses compressed payloads: 8 brotli bombs cost it nothing', async () => {
    target = await Target.start({}, 1024);
    const before = await target.stats();
    const peer = await RawPeer.connect(target.port);
    peer.handshake({ features: 0b11 | (2 << 4) }); // "sends brotli"
    const frames = [];
    for (let i = 1; i <= 8; i++) frames.push(compressedRequest(i, i % 2 ? 'hold' : 'no-such-pattern', brotliBomb()));
    peer.write(Buffer.concat(frames));
    const codes = await answers(peer, 8, 20_000);
    const after = target.alive ? await target.stats() : null;
    figure('1-bomb-no-compression', {
      alive: target.alive,
      codes,
      rssGrowthMiB: after && after.peakRss - before.rss,
      exit: target.exit,
    });
    expect(codes).toEqual([1, 2, 3, 4, 5, 6, 7, 8].map((i) => (i % 2 ? 'WIRE_CODEC' : 'WIRE_NO_HANDLER')));
    expect(target.alive).toBe(true);
    expect(after!.peakRss - before.rss).toBeLessThan(RSS_BOUND_MIB);
    await sumWorks(target.port, 10_000);
    peer.destroy();
  }, 90_000);

  it('with brotli enabled, a bomb inflates to at most maxDecompressedBytes and is refused', async () => {
    target = await Target.start({ compression: { algorithm: 'brotli' } }, 1024);
    const before = await target.stats();
    const peer = await RawPeer.connect(target.port);
    peer.handshake({ features: 0b10 | (2 << 4) });
    peer.write(Buffer.concat([1, 2, 3, 4, 5, 6, 7, 8].map((i) => compressedRequest(i, 'hold', brotliBomb()))));
    const codes = await answers(peer, 8, 20_000);
    const after = target.alive ? await target.stats() : null;
    figure('1-bomb-brotli-enabled', {
      alive: target.alive,
      codes,
      rssGrowthMiB: after && after.peakRss - before.rss,
      exit: target.exit,
    });
    expect(codes).toEqual(Array(8).fill('WIRE_CODEC'));
    expect(decodeTransportError(peer.received.find((f) => f.id === 1)!.body).message).toMatch(/maxDecompressedBytes/);
    expect(target.alive).toBe(true);
    expect(after!.peakRss - before.rss).toBeLessThan(RSS_BOUND_MIB);
    await sumWorks(target.port, 10_000);
    peer.destroy();
  }, 90_000);

  it('an uncompressed payload that would decode past maxDecodedBytes is refused before decoding', async () => {
    target = await Target.start({}, 1024);
    const before = await target.stats();
    const peer = await RawPeer.connect(target.port);
    peer.handshake();
    // 4 Mi empty arrays: 4 MiB on the wire, ~160 MiB of JS arrays once decoded.
    const payload = emptyArrays(4 * 1024 * 1024);
    for (let i = 1; i <= 8; i++) peer.write(requestFrame(i, 'hold', payload));
    const codes = await answers(peer, 8, 30_000);
    const after = target.alive ? await target.stats() : null;
    figure('1-decoded-size-uncompressed', {
      alive: target.alive,
      codes,
      rssGrowthMiB: after && after.peakRss - before.rss,
      exit: target.exit,
    });
    expect(codes).toEqual(Array(8).fill('WIRE_LIMIT'));
    expect(target.alive).toBe(true);
    expect(after!.peakRss - before.rss).toBeLessThan(RSS_BOUND_MIB);
    await sumWorks(target.port, 10_000);
    peer.destroy();
  }, 120_000);

  it('bounds the decoded inputs held by running calls per connection and per server', async () => {
    // 256 Ki empty arrays estimate ~10 MiB each: at most 4 per connection, 9 per server.
    target = await Target.start(
      { maxDecodedBytesPerConnection: 48 * 1024 * 1024, maxDecodedBytesPerServer: 96 * 1024 * 1024 },
      1024,
    );
    const before = await target.stats();
    const payload = emptyArrays(256 * 1024);
    const peers: RawPeer[] = [];
    for (let c = 0; c < 4; c++) {
      const peer = await RawPeer.connect(target.port);
      peer.handshake();
      for (let i = 1; i <= 8; i++) peer.write(requestFrame(i, 'hold', payload));
      peers.push(peer);
    }
    let nacked = 0;
    for (const peer of peers) {
      for (let i = 1; i <= 8; i++) {
        const f = await peer.waitForFrame((x) => x.id === i, 30_000);
        if (f.type === FrameType.NACK) {
          expect(errorCode(f.body)).toBe('WIRE_OVERLOADED');
          nacked++;
        }
      }
    }
    const during = await target.stats();
    figure('1-decoded-budget', { nacked, admitted: 32 - nacked, peakRssGrowthMiB: during.peakRss - before.rss });
    // Each of the 32 requests is answered (RESPONSE after the hold, or NACK): at most 9 ran.
    expect(32 - nacked).toBeLessThanOrEqual(9);
    expect(during.peakRss - before.rss).toBeLessThan(96 * 1.5 + 50);
    await sumWorks(target.port, 10_000);
    for (const p of peers) p.destroy();
  }, 120_000);
});
