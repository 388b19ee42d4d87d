/**
 * One bench client per transport, behind the same small interface: `call(k, done)`
 * sends payload k of the cell and reports whether the echo came back equal.
 */
import { ClientProxyFactory, Transport, type ClientProxy } from '@nestjs/microservices';
import type { Socket } from 'node:net';
import type { Observable } from 'rxjs';
import { WireClient } from '../lib/index.js';
import type { SocketState, TransportName } from './common.js';
import { RawClient } from './raw.js';

export type CallDone = (ok: boolean, err?: unknown) => void;

export interface BenchClient {
  connect(): Promise<void>;
  call(k: number, done: CallDone): void;
  /** The library's own count of socket writes, if it keeps one (nest-wire). */
  libraryWrites(): number | null;
  /** State of the client socket (diagnostics for hangs). */
  socketState(): SocketState | null;
  /** Closes at once, dropping whatever is in flight. */
  destroy(): void;
}

export function createClient(transport: TransportName, host: string, port: number, payloads: string[]): BenchClient {
  switch (transport) {
    case 'nest-wire':
      return new WireBenchClient(host, port, payloads);
    case 'nest-tcp':
      return new TcpBenchClient(host, port, payloads);
    case 'raw':
      return new RawBenchClient(host, port, payloads);
  }
}

const NO_VALUE = Symbol('no value');

/** Subscribes to a Nest `send()` and checks the single value it should produce. */
function nestCall(client: { send<R, I>(pattern: string, data: I): Observable<R> }, expected: string, done: CallDone): void {
  let got: unknown = NO_VALUE;
  client.send<unknown, string>('echo', expected).subscribe({
    next: (value) => {
      got = value;
    },
    error: (err: unknown) => done(false, err),
    complete: () =>
      got === expected
        ? done(true)
        : done(false, new Error(got === NO_VALUE ? 'completed without a value' : 'echo differs from the payload')),
  });
}

function stateOf(socket: Socket | null | undefined): SocketState | null {
  if (socket === null || socket === undefined) return null;
  return { writableLength: socket.writableLength, readableLength: socket.readableLength, paused: socket.isPaused() };
}

class WireBenchClient implements BenchClient {
  private readonly client: WireClient;

  constructor(host: string, port: number, private readonly payloads: string[]) {
    // timeout 0: the bench has its own hang detection and must not see timeouts as errors.
    this.client = new WireClient({ host, port, timeout: 0 });
    this.client.on('error', () => {});
  }

  connect(): Promise<void> {
    return this.client.connect();
  }

  call(k: number, done: CallDone): void {
    nestCall(this.client, this.payloads[k], done);
  }

  libraryWrites(): number {
    return this.client.counters().writes;
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

  constructor(host: string, port: number, private readonly payloads: string[]) {
    this.client = ClientProxyFactory.create({ transport: Transport.TCP, options: { host, port } });
  }

  connect(): Promise<void> {
    return this.client.connect();
  }

  call(k: number, done: CallDone): void {
    nestCall(this.client, this.payloads[k], done);
  }

  libraryWrites(): null {
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

  libraryWrites(): null {
    return null;
  }

  socketState(): SocketState | null {
    return stateOf(this.client.netSocket);
  }

  destroy(): void {
    this.client.close();
  }
}
