import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { nextTurn, pause } from './wait.js';

/** Which way a fault applies: `up` is client → server, `down` server → client. */
export type Direction = 'up' | 'down' | 'both';

/**
 * How the proxy treats bytes. The mode is read for every chunk as it is forwarded, so
 * switching modes takes effect at once, on existing connections as well as new ones.
 */
export type FaultMode =
  /** Forward every chunk as it comes. */
  | { kind: 'behave' }
  /**
   * Split every chunk into `size`-byte writes (default 1), each one in its own turn of
   * the event loop, so the receiver really reads them one by one; `delayMs` waits
   * between them instead.
   */
  | { kind: 'fragment'; size?: number; delayMs?: number; direction?: Direction }
  /** Hold every chunk `delayMs` before forwarding it (order is kept). */
  | { kind: 'delay'; delayMs: number; direction?: Direction }
  /**
   * Forward the first `afterBytes` bytes of each connection in `direction`, then close
   * both sides: a connection cut in the middle of a frame. A function is asked once per
   * connection (for varied cut points).
   */
  | { kind: 'cut'; afterBytes: number | (() => number); direction?: Direction }
  /** Reset every connection (RST) `afterMs` after it was accepted (0: at once). */
  | { kind: 'reset'; afterMs?: number | (() => number) }
  /** Accept and read, forward nothing (a peer that went silent). */
  | { kind: 'blackhole' };

interface Pipe {
  readonly name: 'up' | 'down';
  readonly src: Socket;
  readonly dst: Socket;
  readonly queue: Buffer[];
  queued: number;
  forwarded: number;
  running: boolean;
  /** The source sent FIN: end the destination once the queue is empty. */
  ended: boolean;
}

interface Link {
  readonly id: number;
  readonly client: Socket;
  readonly upstream: Socket;
  readonly up: Pipe;
  readonly down: Pipe;
  /** Cut point of this connection, fixed when the link was accepted under a cut mode. */
  cutAt: number | null;
  resetTimer: NodeJS.Timeout | null;
  closed: boolean;
}

/** Bytes queued in one direction before the source is paused (backpressure). */
const HIGH_WATER = 256 * 1024;

/** Counters of what the proxy did, for the test report. */
export interface FaultProxyStats {
  accepted: number;
  cuts: number;
  resets: number;
  bytesUp: number;
  bytesDown: number;
}

/**
 * A TCP proxy on 127.0.0.1 for fault injection: clients connect to `port`, every
 * connection is forwarded to `targetPort`, and the current `FaultMode` decides what
 * happens to the bytes on the way. Real sockets, no mocks.
 */
export class FaultProxy {
  readonly stats: FaultProxyStats = { accepted: 0, cuts: 0, resets: 0, bytesUp: 0, bytesDown: 0 };
  private mode: FaultMode = { kind: 'behave' };
  private readonly links = new Set<Link>();
  private nextId = 1;

  private constructor(
    private readonly server: Server,
    readonly port: number,
    readonly targetPort: number,
    private readonly targetHost: string,
  ) {}

  static async start(targetPort: number, targetHost = '127.0.0.1'): Promise<FaultProxy> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const proxy = new FaultProxy(server, (server.address() as AddressInfo).port, targetPort, targetHost);
    server.on('connection', (socket) => proxy.accept(socket));
    return proxy;
  }

  get connectionCount(): number {
    return this.links.size;
  }

  get currentMode(): FaultMode {
    return this.mode;
  }

  setMode(mode: FaultMode): void {
    this.mode = mode;
    if (mode.kind === 'reset') for (const link of this.links) this.armReset(link);
    if (mode.kind === 'behave') {
      for (const link of this.links) {
        if (link.resetTimer !== null) clearTimeout(link.resetTimer);
        link.resetTimer = null;
        link.cutAt = null;
      }
    }
  }

  /** Resets (RST) every current connection now, whatever the mode. */
  resetAll(): void {
    for (const link of [...this.links]) this.reset(link);
  }

  /** Stops listening and destroys every connection. */
  async close(): Promise<void> {
    for (const link of [...this.links]) this.destroy(link);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    this.stats.accepted++;
    const upstream = connect({ host: this.targetHost, port: this.targetPort, allowHalfOpen: true });
    const link: Link = {
      id: this.nextId++,
      client,
      upstream,
      up: pipe('up', client, upstream),
      down: pipe('down', upstream, client),
      cutAt: null,
      resetTimer: null,
      closed: false,
    };
    this.links.add(link);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    for (const socket of [client, upstream]) {
      socket.on('error', () => this.destroy(link));
      socket.on('close', () => this.destroy(link));
    }
    for (const p of [link.up, link.down]) {
      p.src.on('data', (chunk: Buffer) => {
        p.queue.push(chunk);
        p.queued += chunk.length;
        if (p.queued > HIGH_WATER) p.src.pause();
        void this.pump(link, p);
      });
      p.src.on('end', () => {
        p.ended = true;
        void this.pump(link, p);
      });
    }
    const mode = this.mode;
    if (mode.kind === 'cut') link.cutAt = typeof mode.afterBytes === 'function' ? mode.afterBytes() : mode.afterBytes;
    if (mode.kind === 'reset') this.armReset(link);
    client.resume();
  }

  private armReset(link: Link): void {
    const mode = this.mode;
    if (mode.kind !== 'reset' || link.resetTimer !== null || link.closed) return;
    const after = typeof mode.afterMs === 'function' ? mode.afterMs() : (mode.afterMs ?? 0);
    if (after <= 0) {
      // Let the TCP handshake complete first, so the client sees a reset, not a refusal.
      setImmediate(() => this.reset(link));
      return;
    }
    link.resetTimer = setTimeout(() => this.reset(link), after);
  }

  /** Forwards what is queued in one direction, applying the mode chunk by chunk, in order. */
  private async pump(link: Link, p: Pipe): Promise<void> {
    if (p.running) return;
    p.running = true;
    try {
      while (p.queue.length > 0 && !link.closed) {
        const chunk = p.queue.shift()!;
        p.queued -= chunk.length;
        if (p.queued <= HIGH_WATER && p.src.isPaused()) p.src.resume();
        await this.forward(link, p, chunk);
      }
      if (p.ended && p.queue.length === 0 && !link.closed) p.dst.end();
    } finally {
      p.running = false;
    }
  }

  private async forward(link: Link, p: Pipe, chunk: Buffer): Promise<void> {
    const mode = this.mode;
    const applies = (d: Direction | undefined) => d === undefined || d === 'both' || d === p.name;
    switch (mode.kind) {
      case 'behave':
        return this.write(link, p, chunk);
      case 'blackhole':
        return;
      case 'reset':
        // The reset comes from the link's timer (armed on accept or on the switch to this mode).
        if (link.resetTimer === null) this.armReset(link);
        return this.write(link, p, chunk);
      case 'delay':
        if (applies(mode.direction)) await pause(mode.delayMs);
        return this.write(link, p, chunk);
      case 'fragment': {
        if (!applies(mode.direction)) return this.write(link, p, chunk);
        const size = Math.max(1, mode.size ?? 1);
        for (let i = 0; i < chunk.length && !link.closed; i += size) {
          await this.write(link, p, chunk.subarray(i, i + size));
          if (mode.delayMs !== undefined && mode.delayMs > 0) await pause(mode.delayMs);
          else await nextTurn();
        }
        return;
      }
      case 'cut': {
        if (!applies(mode.direction)) return this.write(link, p, chunk);
        // Switched to 'cut' on a live connection: count from what has passed so far.
        if (link.cutAt === null) {
          link.cutAt = p.forwarded + (typeof mode.afterBytes === 'function' ? mode.afterBytes() : mode.afterBytes);
        }
        const left = link.cutAt - p.forwarded;
        if (left > chunk.length) return this.write(link, p, chunk);
        const part = chunk.subarray(0, Math.max(0, left));
        this.stats.cuts++;
        // The part reaches the peer, then both sides are closed: the frame is cut short.
        if (part.length > 0) p.dst.write(part, () => this.destroy(link));
        else this.destroy(link);
        p.forwarded += part.length;
        link.closed = true;
        return;
      }
    }
  }

  private async write(link: Link, p: Pipe, bytes: Buffer): Promise<void> {
    if (link.closed || p.dst.destroyed) return;
    p.forwarded += bytes.length;
    if (p.name === 'up') this.stats.bytesUp += bytes.length;
    else this.stats.bytesDown += bytes.length;
    if (!p.dst.write(bytes)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          p.dst.off('drain', done);
          p.dst.off('close', done);
          resolve();
        };
        p.dst.on('drain', done);
        p.dst.on('close', done);
      });
    }
  }

  private reset(link: Link): void {
    if (link.closed && link.client.destroyed && link.upstream.destroyed) return;
    this.stats.resets++;
    link.closed = true;
    if (link.resetTimer !== null) clearTimeout(link.resetTimer);
    link.resetTimer = null;
    for (const s of [link.client, link.upstream]) {
      if (s.destroyed) continue;
      // RST where the platform allows it (Node >= 18.3), a plain destroy otherwise.
      if (typeof s.resetAndDestroy === 'function' && !s.connecting) s.resetAndDestroy();
      else s.destroy();
    }
    this.links.delete(link);
  }

  private destroy(link: Link): void {
    link.closed = true;
    if (link.resetTimer !== null) clearTimeout(link.resetTimer);
    link.resetTimer = null;
    link.client.destroy();
    link.upstream.destroy();
    this.links.delete(link);
  }
}

function pipe(name: 'up' | 'down', src: Socket, dst: Socket): Pipe {
  return { name, src, dst, queue: [], queued: 0, forwarded: 0, running: false, ended: false };
}
