import 'reflect-metadata';
import { FrameType } from '../../lib/protocol/frame.js';
import { decodeTransportError } from '../../lib/protocol/transport-error.js';
import { withRunningApp } from '../helpers/apps.js';
import { RawPeer } from '../helpers/raw-peer.js';
import { TestAppModule } from '../helpers/test-app.js';
import { streamRequest } from './frames.js';

/**
 * Issue 11 item 2, the refusal: credit is bounded on arrival. The memory bound for streams
 * within credit that are never read is measured in a child process, in test/soak/hardening-backlog.spec.ts.
 */
describe('hardening: stream credit from a hostile peer', () => {
  const app = withRunningApp(TestAppModule);

  it('item 2: a REQUEST announcing more credit than the server accepts is refused', async () => {
    const peer = await RawPeer.connect(app.running.port);
    peer.handshake();
    peer.write(streamRequest(1, 'stream', 0xffffffff));
    const f = await peer.waitForFrame((x) => x.id === 1, 10_000);
    expect(f.type).toBe(FrameType.ERROR);
    expect(decodeTransportError(f.body).code).toBe('WIRE_LIMIT');
    peer.destroy();
  });
});
