/**
 * Server child of the bench: `node dist/bench/server.js <transport>`, started by
 * run.ts with an IPC channel. It listens on a free loopback port, reports it, then
 * answers `stats` requests (its own CPU time and socket writes) until told to exit or
 * until the parent goes away.
 */
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { Transport, type MicroserviceOptions } from '@nestjs/microservices';
import type { Server as NetServer, Socket } from 'node:net';
import { WireServer } from '../lib/index.js';
import {
  installSocketWriteCounter,
  socketWrites,
  type ChildMessage,
  type ParentMessage,
  type ServerStats,
  type TransportName,
} from './common.js';
import { EchoModule } from './echo.module.js';
import { startRawServer } from './raw.js';

const HOST = '127.0.0.1';

function send(msg: ChildMessage): void {
  if (process.send !== undefined && process.connected) process.send(msg);
}

// The parent is gone (finished, crashed or killed): never outlive it.
process.on('disconnect', () => process.exit(0));

async function main(): Promise<void> {
  const transport = process.argv[2] as TransportName;
  installSocketWriteCounter();
  let netServer: NetServer;
  let wireServer: WireServer | null = null;
  if (transport === 'raw') {
    netServer = await startRawServer(HOST, 0);
  } else if (transport === 'nest-wire') {
    wireServer = new WireServer({ host: HOST, port: 0 });
    const app = await NestFactory.createMicroservice<MicroserviceOptions>(EchoModule, {
      strategy: wireServer,
      logger: false,
    });
    await app.listen();
    netServer = wireServer.unwrap<NetServer>();
  } else if (transport === 'nest-tcp') {
    const app = await NestFactory.createMicroservice<MicroserviceOptions>(EchoModule, {
      transport: Transport.TCP,
      options: { host: HOST, port: 0 },
      logger: false,
    });
    await app.listen();
    netServer = app.unwrap<NetServer>();
  } else {
    throw new Error(`unknown transport ${String(transport)}`);
  }

  const sockets = new Set<Socket>();
  netServer.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  process.on('message', (msg: ParentMessage) => {
    if (msg.type === 'exit') process.exit(0);
    if (msg.type === 'stats') {
      const stats: ServerStats = {
        cpu: process.cpuUsage(),
        socketWrites: socketWrites.count,
        wireWrites: wireServer === null ? null : wireServerWrites(wireServer),
        sockets: [...sockets].map((s) => ({
          writableLength: s.writableLength,
          readableLength: s.readableLength,
          paused: s.isPaused(),
        })),
      };
      send({ type: 'stats', seq: msg.seq, stats });
    }
  });

  const address = netServer.address();
  if (address === null || typeof address !== 'object') throw new Error('server has no port');
  send({ type: 'ready', port: address.port });
}

/**
 * Socket writes of the nest-wire server, from its public `counters()`; for a version
 * without it, from the coalescers of its sessions; null if neither is there.
 */
function wireServerWrites(server: WireServer): number | null {
  const anyServer = server as unknown as {
    counters?: () => { writes?: number };
    sessions?: Set<{ wire?: { coalescer?: { writes?: number } } }>;
  };
  try {
    if (typeof anyServer.counters === 'function') {
      const w = anyServer.counters().writes;
      return typeof w === 'number' ? w : null;
    }
    if (anyServer.sessions instanceof Set) {
      let total = 0;
      for (const s of anyServer.sessions) {
        const w = s.wire?.coalescer?.writes;
        if (typeof w !== 'number') return null;
        total += w;
      }
      return total;
    }
  } catch {
    /* not available */
  }
  return null;
}

main().catch((err: unknown) => {
  const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
  process.stderr.write(`bench server (${process.argv[2]}) failed: ${message}\n`);
  send({ type: 'fatal', message });
  setTimeout(() => process.exit(1), 100);
});
