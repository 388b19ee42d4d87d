import 'reflect-metadata';
import { createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { brotliCompressSync } from 'node:zlib';
import { firstValueFrom } from 'rxjs';
import { WireClient, WireCodecError, WireConnectionError, WireLimitError } from '../../lib/index.js';
import { FrameType, MAGIC, PAYLOAD_COMPRESSED, RESPONSE_END } from '../../lib/protocol/frame.js';
import { helloFrame, rawFrame } from '../helpers/raw-peer.js';
import { emptyArrays } from './frames.js';
import { figure } from './target.js';

/**
 * Issue 11 item 1, client side: an answer whose decoded form is far larger than its bytes
 * is refused with a typed error. The server side (a server in a child process, its RSS
 * measured) is a soak: test/soak/hardening-decoded-size.spec.ts.
 */

/** A hand-written "server" that answers every REQUEST with `answer(id)` frames. */
async function fakeServer(answer: (id: number) => Buffer): Promise<{ server: Server; port: number }> {
  const server = createServer((socket: Socket) => {
    socket.on('error', () => {});
    socket.write(Buffer.concat([MAGIC, helloFrame({ features: 0b11 | (2 << 4) })]));
    let buf = Buffer.alloc(0);
    socket.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      let p = buf.subarray(0, 4).equals(MAGIC) ? 4 : 0;
      while (buf.length - p >= 10 && buf.length - p >= 4 + buf.readUInt32BE(p)) {
        const len = buf.readUInt32BE(p);
        if (buf[p + 4] === FrameType.REQUEST) socket.write(answer(buf.readUInt32BE(p + 6)));
        p += 4 + len;
      }
      buf = buf.subarray(p);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as { port: number }).port };
}

describe('hardening: decoded-size bombs against the client', () => {
  it('refuses an answer that would decode past maxDecodedBytes, and stays usable', async () => {
    const payload = emptyArrays(4 * 1024 * 1024);
    const { server, port } = await fakeServer((id) => rawFrame(FrameType.RESPONSE, RESPONSE_END, id, payload));
    const client = new WireClient({ host: '127.0.0.1', port, timeout: 10_000 });
    const heapBefore = process.memoryUsage().heapUsed;
    const started = performance.now();
    const err = (await firstValueFrom(client.send('x', 1)).catch((e: unknown) => e)) as Error;
    const heapGrowth = process.memoryUsage().heapUsed - heapBefore;
    figure('1-client-decoded-size', {
      result: err?.constructor?.name ?? typeof err,
      ms: performance.now() - started,
      heapGrowthMiB: heapGrowth / 1024 / 1024,
    });
    expect(err).toBeInstanceOf(WireLimitError);
    expect(heapGrowth).toBeLessThan(64 * 1024 * 1024);
    client.close();
    server.close();
  });

  it('item 3, client side: closes the connection to a server whose PING body passes 64 bytes', async () => {
    const { server, port } = await fakeServer((id) =>
      Buffer.concat([
        rawFrame(FrameType.PING, 0, 0, Buffer.alloc(1024 * 1024)),
        rawFrame(FrameType.RESPONSE, RESPONSE_END, id, Buffer.from([1])),
      ]),
    );
    const client = new WireClient({
      host: '127.0.0.1',
      port,
      timeout: 10_000,
      reconnect: { initialDelayMs: 5000, maxDelayMs: 5000 },
    });
    client.on('error', () => {});
    const err = (await firstValueFrom(client.send('x', 1)).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(WireConnectionError);
    expect(err.message).toMatch(/PING body/);
    client.close();
    server.close();
  });

  it('refuses a compressed answer when it did not enable compression', async () => {
    const bomb = brotliCompressSync(emptyArrays(1000));
    const { server, port } = await fakeServer((id) =>
      rawFrame(FrameType.RESPONSE, RESPONSE_END | PAYLOAD_COMPRESSED, id, bomb),
    );
    const client = new WireClient({ host: '127.0.0.1', port, timeout: 10_000 });
    const err = (await firstValueFrom(client.send('x', 1)).catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(WireCodecError);
    client.close();
    server.close();
  });
});
