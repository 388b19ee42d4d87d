import 'reflect-metadata';
import { deflateRawSync } from 'node:zlib';
import { firstValueFrom, lastValueFrom, toArray } from 'rxjs';
import { WireFrameTooLargeError, type CompressionAlgorithm } from '../../lib/index.js';
import { FrameType, PAYLOAD_COMPRESSED } from '../../lib/protocol/frame.js';
import { clientFor, startWireApp } from '../helpers/apps.js';
import { codec, rawFrame, RawPeer } from '../helpers/raw-peer.js';
import { TestAppModule } from '../helpers/test-app.js';

/** 64 KiB of JSON-like text: compresses well. */
const compressible = Array.from({ length: 1200 }, (_, i) => ({ id: i, name: `user-${i}`, active: i % 2 === 0 }));

describe.each<CompressionAlgorithm>(['deflate', 'brotli'])('compression: %s', (algorithm) => {
  it('round-trips large payloads with far fewer bytes on the wire', async () => {
    const running = await startWireApp(TestAppModule, { compression: { algorithm } });
    const plain = clientFor(running);
    const packed = clientFor(running, { compression: { algorithm, thresholdBytes: 512 } });
    expect(await firstValueFrom(plain.send('echo', compressible))).toEqual(compressible);
    expect(await firstValueFrom(packed.send('echo', compressible))).toEqual(compressible);
    const plainOut = plain.stats().transport.bytesOut;
    const packedOut = packed.stats().transport.bytesOut;
    const packedIn = packed.stats().transport.bytesIn;
    expect(packedOut).toBeLessThan(plainOut / 4);
    // The server compresses its answers only toward the client that enabled compression: a
    // side decodes (and announces) only the algorithm it enabled (docs/SECURITY.md).
    expect(packedIn).toBeLessThan(plainOut / 4);
    expect(plain.stats().transport.bytesIn).toBeGreaterThan(plainOut / 2);
    plain.close();
    packed.close();
    await running.app.close();
  });

  it('leaves payloads under the threshold and streams intact', async () => {
    const running = await startWireApp(TestAppModule, { compression: { algorithm, thresholdBytes: 100_000 } });
    const client = clientFor(running, { compression: { algorithm, thresholdBytes: 100_000 } });
    expect(await firstValueFrom(client.send('sum', [1, 2]))).toBe(3);
    expect(await lastValueFrom(client.send('stream', 100).pipe(toArray()))).toHaveLength(100);
    client.close();
    await running.app.close();
  });
});

describe('compression negotiation and limits', () => {
  it('does not compress toward a peer that cannot decode it', async () => {
    const running = await startWireApp(TestAppModule, { compression: { algorithm: 'deflate', thresholdBytes: 16 } });
    const peer = await RawPeer.connect(running.port);
    peer.handshake({ features: 0 }); // decodes nothing
    const p = Buffer.from('echo');
    peer.write(
      rawFrame(FrameType.REQUEST, 0, 1, Buffer.concat([Buffer.from([0, p.length]), p, codec.encode('z'.repeat(5000))])),
    );
    const response = await peer.waitForFrame((f) => f.type === FrameType.RESPONSE);
    expect(response.flags & PAYLOAD_COMPRESSED).toBe(0);
    expect(codec.decode(response.body)).toBe('z'.repeat(5000));
    peer.destroy();
    await running.app.close();
  });

  it('refuses a compressed payload that would inflate past maxFrameSize', async () => {
    const running = await startWireApp(TestAppModule, { maxFrameSize: 64 * 1024 });
    const peer = await RawPeer.connect(running.port);
    peer.handshake({ features: 0b11 | (1 << 4) }); // sends deflate
    const bomb = deflateRawSync(Buffer.from(codec.encode('a'.repeat(10 * 1024 * 1024))));
    expect(bomb.length).toBeLessThan(64 * 1024);
    const p = Buffer.from('echo');
    peer.write(
      rawFrame(FrameType.REQUEST, PAYLOAD_COMPRESSED, 7, Buffer.concat([Buffer.from([0, p.length]), p, bomb])),
    );
    const error = await peer.waitForFrame((f) => f.type === FrameType.ERROR && f.id === 7);
    expect(error.body.toString('latin1')).toContain('WIRE_CODEC');
    peer.destroy();
    await running.app.close();
  });
});

describe('compression and size limits', () => {
  it('checks a request against the server limit before compressing it', async () => {
    const running = await startWireApp(TestAppModule, { maxFrameSize: 64 * 1024 });
    const client = clientFor(running, { compression: { algorithm: 'deflate' } });
    // 200 KiB that would compress to a few hundred bytes, but inflates past the server's limit.
    const err = await firstValueFrom(client.send('echo', 'a'.repeat(200 * 1024))).catch((e) => e);
    expect(err).toBeInstanceOf(WireFrameTooLargeError);
    client.close();
    await running.app.close();
  });
});
