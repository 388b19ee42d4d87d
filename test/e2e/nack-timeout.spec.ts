import 'reflect-metadata';
import { WireClient, WireError } from '../../lib/index.js';
import { FrameType, MAGIC } from '../../lib/protocol/frame.js';
import { encodeTransportError } from '../../lib/protocol/transport-error.js';
import { collectingDecoder } from '../helpers/frames.js';
import { helloFrame, rawFrame } from '../helpers/raw-peer.js';
import { FakeServer } from '../helpers/fake-server.js';
import { within } from '../helpers/wait.js';

/**
 * Found by test/e2e/frames.fuzz.spec.ts: a call that the server refused with NACK was
 * re-sent without its timeout (taken out of the timeout wheel and never put back), so an
 * unanswered re-send never settled. Re-sent calls now keep their deadline.
 */
describe('a call re-sent after NACK', () => {
  let fake: FakeServer;

  beforeAll(async () => {
    // A server that completes the handshake, NACKs the first request, then never answers.
    fake = await FakeServer.start((s) => {
      const decoder = collectingDecoder({ maxFrameSize: 1 << 20, expectMagic: true });
      let nacked = false;
      s.on('data', (d: Buffer) => {
        decoder.decoder.push(d);
        for (const f of decoder.frames.splice(0)) {
          if (f.type === FrameType.HELLO) s.write(Buffer.concat([MAGIC, helloFrame({ maxFrameSize: 1 << 20 })]));
          if (f.type === FrameType.REQUEST && !nacked) {
            nacked = true;
            s.write(rawFrame(FrameType.NACK, 0, f.id, encodeTransportError('WIRE_OVERLOADED', 'busy, try again')));
          }
        }
      });
    });
  });
  afterAll(() => fake.close());

  it('still fails with WIRE_TIMEOUT at its timeout', async () => {
    const client = new WireClient({ host: '127.0.0.1', port: fake.port, timeout: 100 });
    try {
      const outcome = await within(
        new Promise<unknown>((resolve) => client.send('sum', [1, 2]).subscribe({ next: resolve, error: resolve })),
        1000,
        'the re-sent call to settle (it must time out at 100 ms)',
      );
      expect(client.counters().resends).toBe(1); // the NACK did cause a re-send
      expect(outcome).toBeInstanceOf(WireError);
      expect((outcome as WireError).code).toBe('WIRE_TIMEOUT');
    } finally {
      client.close();
    }
  });
});
