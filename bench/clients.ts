/**
 * One bench client per transport, behind the same small interface: `call(k, done)`
 * sends payload k of the cell and reports whether the echo came back equal;
 * `request(pattern, data, expected, done)` makes any other call of the Nest transports.
 */
import { ClientProxyFactory, Transport, type ClientProxy } from '@nestjs/microservices';
import type { Socket } from 'node:net';
import type { Observable } from 'rxjs';
import { WireClient, type WireClientOptions } from '../lib/index.js';
import type { SocketState, TransportName } from './common.js';
import type { CallDone } from './loop.js';
import { RawClient } from './raw.js';

export type { CallDone } from './loop.js';

/** Bytes a client has sent and received. */
export interface ByteCounts {
  out: number;
  in: number;
}

export interface BenchClient {
  connect(): Promise<void>;
  call(k: number, done: CallDone): void;
  /** Nest transports: `send(pattern, data)`, checking the single value against `expected`. */
  request(pattern: string, data: unknown, expected: unknown, done: CallDone): void;
  /** The library's own count of socket writes, if it keeps one (nest-wire). */
  libraryWrites(): number | null;
  /** Bytes written to / read from the client's sockets (`socket.bytesWritten` / `bytesRead`). */
  socketBytes(): ByteCounts | null;
  /** The library's own byte counters, if it keeps them (nest-wire: `stats().transport`). */
  libraryBytes(): ByteCounts | null;
  /** State of the client socket (diagnostics for hangs). */
  socketState(): SocketState | null;
  /** Closes at once, dropping whatever is in flight. */
  destroy(): void;
}

/** `wireOptions` are added to the nest-wire client's options (ignored by the others). */
export function createClient(
  transport: TransportName,
  host: string,
  port: number,
  payloads: string[],
  wireOptions: WireClientOptions = {},
): BenchClient {
  switch (transport) {
    case 'nest-wire':
      return new WireBenchClient(host, port, payloads, wireOptions);
    case 'nest-tcp':
      return new TcpBenchClient(host, port, payloads);
    case 'raw':
      return new RawBenchClient(host, port, payloads);
  }
}

const NO_VALUE = Symbol('no value');

/** Subscribes to a Nest `send()` and checks the single value it should produce. */
function nestCall(
  client: { send<R, I>(pattern: string, data: I): Observable<R> },
  pattern: string,
  data: unknown,
  expected: unknown,
  done: CallDone,
): void {
  let got: unknown = NO_VALUE;
  client.send<unknown, unknown>(pattern, data).subscribe({
    next: (value) => {
      got = value;
    },
    error: (err: unknown) => done(false, err),
    complete: () =>
      got === expected
        ? done(true)
        : done(
            false,
            new Error(
              got === NO_VALUE
                ? 'completed without a value'
                : pattern === 'echo'
                  ? 'echo differs from the payload'
                  : `${pattern}: unexpected answer (${typeof got}${typeof got === 'string' ? `, ${got.length} chars` : ''})`,
            ),
          ),
  });
}

function bytesOf(sockets: (Socket | null | undefined)[]): ByteCounts | null {
  let out = 0;
  let inn = 0;
  let any = false;
  for (const s of sockets) {
    if (s === null || s === undefined) continue;
    any = true;
    out += s.bytesWritten ?? 0;
    inn += s.bytesRead ?? 0;
  }
  return any ? { out, in: inn } : null;
}

function stateOf(socket: Socket | null | undefined): SocketState | null {
  if (socket === null || socket === undefined) return null;
  return { writableLength: socket.writableLength, readableLength: socket.readableLength, paused: socket.isPaused() };
}

export class WireBenchClient implements BenchClient {
  readonly client: WireClient;

  constructor(
    host: string,
    port: number,
    private readonly payloads: string[],
    wireOptions: WireClientOptions = {},
  ) {
    // timeout 0: the bench has its own hang detection and must not see timeouts as errors.
    this.client = new WireClient({ host, port, timeout: 0, ...wireOptions });
    this.client.on('error', () => {});
  }

  connect(): Promise<void> {
    return this.client.connect();
  }

  call(k: number, done: CallDone): void {
    const p = this.payloads[k];
    nestCall(this.client, 'echo', p, p, done);
  }

  request(pattern: string, data: unknown, expected: unknown, done: CallDone): void {
    nestCall(this.client, pattern, data, expected, done);
  }

  libraryWrites(): number {
    return this.client.counters().writes;
  }

  socketBytes(): ByteCounts | null {
    const sockets = this.client.unwrap<Socket[]>();
    return Array.isArray(sockets) ? bytesOf(sockets) : null;
  }

  libraryBytes(): ByteCounts {
    const t = this.client.stats().transport;
    return { out: t.bytesOut, in: t.bytesIn };
  }

  socketState(): SocketState | null {
    const sockets = this.client.unwrap<Socket[]>();
    return stateOf(Array.isArray(sockets) ? sockets[0] : null);
  }

  destroy(): void {
    this.client.close();
  }
}

class TcpBenchClient implements BenchClient {
  private readonly client: ClientProxy;

  constructor(
    host: string,
    port: number,
    private readonly payloads: string[],
  ) {
    this.client = ClientProxyFactory.create({ transport: Transport.TCP, options: { host, port } });
  }

  connect(): Promise<void> {
    return this.client.connect();
  }

  call(k: number, done: CallDone): void {
    const p = this.payloads[k];
    nestCall(this.client, 'echo', p, p, done);
  }

  request(pattern: string, data: unknown, expected: unknown, done: CallDone): void {
    nestCall(this.client, pattern, data, expected, done);
  }

  libraryWrites(): null {
    return null;
  }

  socketBytes(): ByteCounts | null {
    try {
      return bytesOf([this.client.unwrap<Socket>()]);
    } catch {
      return null;
    }
  }

  libraryBytes(): null {
    return null;
  }

  socketState(): SocketState | null {
    try {
      return stateOf(this.client.unwrap<Socket>());
    } catch {
      return null;
    }
  }

  destroy(): void {
    try {
      this.client.unwrap<Socket>().destroy();
    } catch {
      /* not connected */
    }
    void this.client.close();
  }
}

class RawBenchClient implements BenchClient {
  private readonly client: RawClient;
  private readonly buffers: Buffer[];

  constructor(host: string, port: number, payloads: string[]) {
    this.client = new RawClient(host, port);
    this.buffers = payloads.map((p) => Buffer.from(p, 'latin1'));
  }

  connect(): Promise<void> {
    return this.client.connect();
  }

  call(k: number, done: CallDone): void {
    const expected = this.buffers[k];
    this.client.call(expected, (err, payload) => {
      if (err !== null) done(false, err);
      else if (payload !== null && payload.equals(expected)) done(true);
      else done(false, new Error('echo differs from the payload'));
    });
  }

  request(_pattern: string, _data: unknown, _expected: unknown, done: CallDone): void {
    done(false, new Error('the raw socket client only echoes'));
  }

  libraryWrites(): null {
    return null;
  }

  socketBytes(): ByteCounts | null {
    return bytesOf([this.client.netSocket]);
  }

  libraryBytes(): null {
    return null;
  }

  socketState(): SocketState | null {
    return stateOf(this.client.netSocket);
  }

  destroy(): void {
    this.client.close();
  }
}
