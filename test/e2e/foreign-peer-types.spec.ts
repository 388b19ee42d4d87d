import 'reflect-metadata';
import { FrameType } from '../../lib/protocol/frame.js';
import type { WireServerOptions } from '../../lib/index.js';
import { startWireApp, type RunningServer } from '../helpers/apps.js';
import { rawFrame, RawPeer } from '../helpers/raw-peer.js';
import { readStrict, type StrictValue } from '../helpers/strict-msgpack.js';
import { TestAppModule } from '../helpers/test-app.js';

/**
 * A peer written in another language (here: hand-built bytes) calls the test app's `echo`
 * handler: what the handler receives is what it sends back, so the answer's bytes show both
 * directions — how nest-wire decodes standard msgpack and what it encodes — checked with a
 * strict standard reader.
 */
describe('msgpack types from and to a peer in another language (real server, raw socket)', () => {
  let nextId = 1;

  async function echo(running: RunningServer, payloadHex: string): Promise<StrictValue> {
    const peer = await RawPeer.connect(running.port);
    try {
      peer.handshake();
      const id = nextId++;
      const pattern = Buffer.from('echo');
      const body = Buffer.concat([Buffer.from([0, pattern.length]), pattern, Buffer.from(payloadHex, 'hex')]);
      peer.write(rawFrame(FrameType.REQUEST, 0, id, body));
      const answer = await peer.waitForFrame(
        (f) => f.id === id && (f.type === FrameType.RESPONSE || f.type === FrameType.ERROR),
      );
      expect(answer.type).toBe(FrameType.RESPONSE);
      return readStrict(answer.body);
    } finally {
      peer.destroy();
    }
  }

  async function withServer(options: WireServerOptions, run: (running: RunningServer) => Promise<void>): Promise<void> {
    const running = await startWireApp(TestAppModule, options);
    try {
      await run(running);
    } finally {
      await running.app.close();
    }
  }

  it("default 'json': integers stay integers, long ones are rounded as JSON.parse would, timestamps become ISO strings", async () => {
    await withServer({}, async (running) => {
      // uint64 2^40 + 5, int64 -2^33 written in 8 bytes (as Go does for an int64), uint 32
      expect(await echo(running, '93cf0000010000000005d3fffffffe00000000ce80000000')).toEqual([
        2 ** 40 + 5,
        -(2 ** 33),
        2 ** 31,
      ]);
      // uint64 2^63 + 1: the handler gets the nearest number, 2^63, sent back as uint64 (not float64)
      expect(await echo(running, 'cf8000000000000001')).toBe(2n ** 63n);
      // a 64-bit timestamp (1 s + 1 ms) arrives as its ISO string
      expect(await echo(running, '81a174d7ff003d090000000001')).toEqual({ map: [['t', '1970-01-01T00:00:01.001Z']] });
      // float 32 is accepted (and answered as float 64)
      expect(await echo(running, 'ca3fc00000')).toEqual({ float: 1.5 });
    });
  });

  it("'native': a 64-bit integer beyond 2^53 arrives as a BigInt, exact, and a timestamp as a Date", async () => {
    await withServer({ payloadTypes: 'native' }, async (running) => {
      expect(await echo(running, 'cf8000000000000001')).toBe(2n ** 63n + 1n);
      expect(await echo(running, 'd38000000000000000')).toBe(-(2n ** 63n));
      expect(await echo(running, '93cf0000010000000005d3fffffffe00000000ce80000000')).toEqual([
        2 ** 40 + 5,
        -(2 ** 33),
        2 ** 31,
      ]);
      // a Date goes back as a timestamp in its smallest form: 64-bit for 1 s + 1 ms, 96-bit before 1970
      expect(await echo(running, 'd7ff003d090000000001')).toEqual({
        timestamp: { seconds: 1n, nanoseconds: 1_000_000 },
      });
      expect(await echo(running, 'c70cff1dcd6500fffffffffffffffe')).toEqual({
        timestamp: { seconds: -2n, nanoseconds: 500_000_000 },
      });
      expect(await echo(running, 'd6ff00000001')).toEqual({ timestamp: { seconds: 1n, nanoseconds: 0 } });
    });
  });
});
