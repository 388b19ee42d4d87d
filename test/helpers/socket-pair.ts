import { createServer, connect, type Socket, type AddressInfo } from 'node:net';
import { once } from 'node:events';

/** Two connected loopback sockets: `a` dialled, `b` accepted. */
export async function socketPair(): Promise<{ a: Socket; b: Socket; close: () => Promise<void> }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const a = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port });
  const [[b]] = await Promise.all([accepted, once(a, 'connect')]);
  return {
    a,
    b,
    close: async () => {
      a.destroy();
      b.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
