/**
 * The raw-socket ceiling: `[u32 length][u32 id][payload]` frames over plain `net`,
 * pipelined, no serialization, no Nest. Both sides collect the frames of one turn of
 * the event loop and write them once, from a `setImmediate` (as nest-wire does).
 */
import { createServer, Socket, type Server } from 'node:net';

const HEADER = 8;
/** Batches up to this size are copied into one buffer; larger ones leave as a writev. */
const CONCAT_LIMIT = 64 * 1024;

/**
 * Splits a byte stream into frames; `onFrame` gets views into the read buffers for
 * frames that arrive whole, and a fresh buffer (one copy) for frames that span reads.
 */
class FrameReader {
  /** A frame spanning reads: its full size is known, `filled` bytes are in. */
  private partial: Buffer | null = null;
  private filled = 0;
  /** Fewer than HEADER bytes left over at the end of a read (rare). */
  private stub: Buffer | null = null;

  /** With `reuse`, a spanning frame is assembled in one buffer kept for the next (the
   * callback must be done with the frame when it returns); without it, in a fresh one. */
  private spare: Buffer | null = null;

  constructor(
    private readonly onFrame: (id: number, frame: Buffer, payload: Buffer) => void,
    private readonly reuse = false,
  ) {}

  push(chunk: Buffer): void {
    let off = 0;
    if (this.stub !== null) {
      chunk = Buffer.concat([this.stub, chunk]);
      this.stub = null;
    } else if (this.partial !== null) {
      const partial = this.partial;
      const n = Math.min(partial.length - this.filled, chunk.length);
      chunk.copy(partial, this.filled, 0, n);
      this.filled += n;
      off = n;
      if (this.filled < partial.length) return;
      this.partial = null;
      this.onFrame(partial.readUInt32BE(4), partial, partial.subarray(HEADER));
      if (this.reuse) this.spare = partial;
    }
    const end = chunk.length;
    while (end - off >= HEADER) {
      const frameEnd = off + HEADER + chunk.readUInt32BE(off);
      if (frameEnd > end) {
        const size = frameEnd - off;
        const spare = this.spare;
        const partial =
          spare !== null && spare.buffer.byteLength - spare.byteOffset >= size
            ? Buffer.from(spare.buffer, spare.byteOffset, size)
            : Buffer.allocUnsafeSlow(size);
        chunk.copy(partial, 0, off, end);
        this.partial = partial;
        this.filled = end - off;
        return;
      }
      this.onFrame(chunk.readUInt32BE(off + 4), chunk.subarray(off, frameEnd), chunk.subarray(off + HEADER, frameEnd));
      off = frameEnd;
    }
    if (off < end) this.stub = Buffer.from(chunk.subarray(off));
  }
}

/** Queues buffers and writes them once per event-loop turn. */
class TickWriter {
  private queue: Buffer[] = [];
  private bytes = 0;
  private scheduled = false;
  private readonly flushBound = () => this.flush();

  constructor(private readonly socket: Socket) {}

  push(buf: Buffer): void {
    this.queue.push(buf);
    this.bytes += buf.length;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushBound);
    }
  }

  private flush(): void {
    this.scheduled = false;
    const queue = this.queue;
    if (queue.length === 0 || this.socket.destroyed) return;
    this.queue = [];
    const bytes = this.bytes;
    this.bytes = 0;
    if (queue.length === 1) {
      this.socket.write(queue[0]);
    } else if (bytes <= CONCAT_LIMIT) {
      this.socket.write(Buffer.concat(queue, bytes));
    } else {
      this.socket.cork();
      for (const b of queue) this.socket.write(b);
      this.socket.uncork();
    }
  }
}

/** Echo server: every frame goes back unchanged (same id, same payload). */
export function startRawServer(host: string, port: number): Promise<Server> {
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    const writer = new TickWriter(socket);
    const reader = new FrameReader((_id, frame) => writer.push(frame));
    socket.on('data', (chunk: Buffer) => reader.push(chunk));
    socket.on('error', () => socket.destroy());
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

export type RawCallback = (err: Error | null, payload: Buffer | null) => void;

/** Pipelined client: ids map responses to callbacks. */
export class RawClient {
  private socket: Socket | null = null;
  private writer: TickWriter | null = null;
  private readonly pending = new Map<number, RawCallback>();
  private nextId = 1;

  constructor(
    private readonly host: string,
    private readonly port: number,
  ) {}

  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      const socket = new Socket();
      socket.setNoDelay(true);
      // The payload is only compared inside the callback: a spanning frame's buffer can be reused.
      const reader = new FrameReader((id, _frame, payload) => {
        const cb = this.pending.get(id);
        if (cb === undefined) return;
        this.pending.delete(id);
        cb(null, payload);
      }, true);
      socket.on('data', (chunk: Buffer) => reader.push(chunk));
      socket.once('error', (err) => {
        reject(err);
        this.failAll(err);
      });
      socket.on('close', () => this.failAll(new Error('raw connection closed')));
      socket.connect(this.port, this.host, () => resolve());
      this.socket = socket;
      this.writer = new TickWriter(socket);
    });
  }

  call(payload: Buffer, cb: RawCallback): void {
    if (this.writer === null) {
      process.nextTick(cb, new Error('not connected'), null);
      return;
    }
    const id = this.nextId;
    this.nextId = id >= 0xffffffff ? 1 : id + 1;
    const header = Buffer.allocUnsafe(HEADER);
    header.writeUInt32BE(payload.length, 0);
    header.writeUInt32BE(id, 4);
    this.pending.set(id, cb);
    this.writer.push(header);
    this.writer.push(payload);
  }

  get netSocket(): Socket | null {
    return this.socket;
  }

  close(): void {
    this.socket?.destroy();
    this.failAll(new Error('raw client closed'));
  }

  private failAll(err: Error): void {
    if (this.pending.size === 0) return;
    const cbs = [...this.pending.values()];
    this.pending.clear();
    for (const cb of cbs) cb(err, null);
  }
}
