import { connect, type Socket } from 'node:net';
import { MsgpackCodec } from '../../lib/protocol/codec.js';
import { FrameType, HEADER_SIZE, MAGIC, PROTOCOL_VERSION } from '../../lib/protocol/frame.js';
import { encodeHelloBody, type Hello } from '../../lib/protocol/hello.js';
import { collectingDecoder, type DecodedFrame } from './frames.js';
import { BARRIER_PATTERN, once, waitFor } from './wait.js';

export const codec = new MsgpackCodec();

/** Builds one frame by hand, so tests can also build broken ones. */
export function rawFrame(type: number, flags: number, id: number, body: Uint8Array = Buffer.alloc(0)): Buffer {
  const out = Buffer.alloc(HEADER_SIZE + body.length);
  out.writeUInt32BE(HEADER_SIZE - 4 + body.length, 0);
  out[4] = type;
  out[5] = flags;
  out.writeUInt32BE(id, 6);
  out.set(body, HEADER_SIZE);
  return out;
}

export function helloFrame(overrides: Partial<Hello> = {}): Buffer {
  return rawFrame(
    FrameType.HELLO,
    0,
    0,
    encodeHelloBody({
      version: PROTOCOL_VERSION,
      codec: codec.id,
      features: 0,
      maxFrameSize: 1 << 20,
      maxInFlight: 0,
      heartbeatMs: 0,
      extension: null,
      ...overrides,
    }),
  );
}

/** A request body: u16 pattern length, pattern, msgpack payload. */
export function requestBody(pattern: string, payload: unknown): Buffer {
  const p = Buffer.from(pattern);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(p.length);
  return Buffer.concat([len, p, codec.encode(payload)]);
}

/** A hand-driven socket that records every frame the other side sends. */
export class RawPeer {
  readonly closed: Promise<void>;
  private readonly decoder = collectingDecoder({ maxFrameSize: 1 << 24 });
  /** Ids of barrier requests: high, away from the ids tests choose. */
  private nextBarrierId = 0x7fff0000;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk) => {
      try {
        this.decoder.decoder.push(chunk);
      } catch {
        socket.destroy();
      }
    });
    socket.on('error', () => {});
    // Not events.once: that rejects on 'error' (an EPIPE while the server hangs up is expected here).
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static async connect(port: number): Promise<RawPeer> {
    const socket = connect({ host: '127.0.0.1', port });
    await once(socket, 'connect', 10_000);
    return new RawPeer(socket);
  }

  get received(): DecodedFrame[] {
    return this.decoder.frames;
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Preface + a valid HELLO. */
  handshake(overrides: Partial<Hello> = {}): void {
    this.write(Buffer.concat([MAGIC, helloFrame(overrides)]));
  }

  async waitForFrame(predicate: (f: DecodedFrame) => boolean, ms = 2000): Promise<DecodedFrame> {
    let found: DecodedFrame | undefined;
    await waitFor(() => (found = this.received.find(predicate)) !== undefined, {
      timeoutMs: ms,
      what: 'a frame from the other side',
    });
    return found!;
  }

  /**
   * Ordering barrier (see helpers/wait.ts): sends a REQUEST for the barrier pattern and
   * awaits its RESPONSE. The server handles a connection's frames in order, so once it
   * is answered every frame written before it has been handled.
   */
  async barrier(ms = 2000): Promise<void> {
    const id = this.nextBarrierId++;
    this.write(rawFrame(FrameType.REQUEST, 0, id, requestBody(BARRIER_PATTERN, {})));
    const answer = await this.waitForFrame(
      (f) => f.id === id && (f.type === FrameType.RESPONSE || f.type === FrameType.ERROR),
      ms,
    );
    if (answer.type !== FrameType.RESPONSE || codec.decode(answer.body) !== true) {
      throw new Error(`barrier request ${id} was not answered true (frame type ${answer.type})`);
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}
