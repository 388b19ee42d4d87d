import 'reflect-metadata';
import { FrameType, MAX_PING_BODY_BYTES } from '../../lib/protocol/frame.js';
import { withRunningApp } from '../helpers/apps.js';
import { rawFrame, RawPeer } from '../helpers/raw-peer.js';
import { TestAppModule } from '../helpers/test-app.js';
import { pause, waitFor } from '../helpers/wait.js';

/**
 * Issue 13 item 1: each PONG carries the body of its own PING, even when PINGs span
 * socket chunks (so their bodies are views of the decoder's reused buffer) and the peer
 * reads slowly (so PONGs wait in the encoder before they are written).
 */
describe('hardening: PONG echoes its own PING', () => {
  const app = withRunningApp(TestAppModule);

  it('echoes 2 000 distinct PING bodies exactly, written a few bytes at a time to a slow reader', async () => {
    const peer = await RawPeer.connect(app.running.port);
    peer.handshake();
    const bodies = Array.from({ length: 2000 }, (_, i) => Buffer.alloc(1 + (i % MAX_PING_BODY_BYTES), i & 0xff));
    const stream = Buffer.concat(bodies.map((b, i) => rawFrame(FrameType.PING, 0, i + 1, b)));
    peer.socket.pause(); // a slow reader: the PONGs queue up on the server meanwhile
    // Odd-sized writes: most PINGs straddle two chunks.
    for (let p = 0; p < stream.length; p += 7) peer.write(stream.subarray(p, p + 7));
    await pause(200); // kept: a reader that stays away for a while is the input
    peer.socket.resume();
    await waitFor(() => peer.received.filter((f) => f.type === FrameType.PONG).length === 2000, 10_000);
    for (const f of peer.received.filter((x) => x.type === FrameType.PONG)) {
      expect(f.body.equals(bodies[f.id - 1])).toBe(true);
    }
    peer.destroy();
  });

  it('closes the connection on a PING body above the maximum', async () => {
    const peer = await RawPeer.connect(app.running.port);
    peer.handshake();
    peer.write(rawFrame(FrameType.PING, 0, 1, Buffer.alloc(MAX_PING_BODY_BYTES + 1)));
    await peer.closed;
    const error = peer.received.find((f) => f.type === FrameType.ERROR && f.id === 0);
    expect(error?.body.toString('latin1')).toContain('WIRE_PROTOCOL');
  });
});
