import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A hand-written server on a free loopback port, for tests that play the server side of
 * the protocol against a real WireClient (a handshake that NACKs, a server that goes
 * silent, answers garbage, or scripted frames). `onSocket` gets every accepted socket;
 * socket errors are swallowed (a client hanging up mid-write is expected here), and
 * close() destroys what is still connected before closing the listener.
 *
 * For the other direction (a hand-driven client against a real WireServer) see RawPeer.
 */
export class FakeServer {
  /** Sockets accepted and not yet closed. */
  readonly sockets = new Set<Socket>();
  /** Every connection accepted so far. */
  accepted = 0;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(onSocket: (socket: Socket) => void = () => {}): Promise<FakeServer> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const fake = new FakeServer(server, (server.address() as AddressInfo).port);
    // Attached once the port is known: nobody can have connected before it is handed out.
    server.on('connection', (socket: Socket) => {
      fake.accepted++;
      fake.sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => fake.sockets.delete(socket));
      onSocket(socket);
    });
    return fake;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** A free loopback port that nothing listens on (for now). */
export async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}
