/**
 * Server child of the bench: `node --expose-gc dist/bench/server.js <transport> [config]`,
 * started by run.ts with an IPC channel (`config`: JSON `ServerConfig`, nest-wire only).
 * It listens on a free loopback port, reports it, then answers `stats` requests (its
 * own CPU time and socket writes), `heap` (a heap sample after a full GC), `statsCost`
 * (the cost of the nest-wire server's `stats()`) and `release` (the `hold` handler's
 * gate) until told to exit or until the parent goes away.
 */
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { Transport, type MicroserviceOptions } from '@nestjs/microservices';
import type { Server as NetServer, Socket } from 'node:net';
import { WireServer } from '../lib/index.js';
import { performance } from 'node:perf_hooks';
import {
  fullGc,
  heapSample,
  installSocketWriteCounter,
  socketWrites,
  type ChildMessage,
  type ParentMessage,
  type ServerConfig,
  type ServerStats,
  type TransportName,
} from './common.js';
import { EchoModule, holdGate } from './echo.module.js';
import { startRawServer } from './raw.js';

const HOST = '127.0.0.1';

function send(msg: ChildMessage): void {
  if (process.send !== undefined && process.connected) process.send(msg);
}

// The parent is gone (finished, crashed or killed): never outlive it.
process.on('disconnect', () => process.exit(0));

async function main(): Promise<void> {
  const transport = process.argv[2] as TransportName;
  const config = JSON.parse(process.argv[3] ?? '{}') as ServerConfig;
  const gc = typeof globalThis.gc === 'function' ? (globalThis.gc as () => void) : null;
  installSocketWriteCounter();
  let netServer: NetServer;
  let wireServer: WireServer | null = null;
  if (transport === 'raw') {
    netServer = await startRawServer(HOST, 0);
  } else if (transport === 'nest-wire') {
    wireServer = new WireServer({
      host: HOST,
      port: 0,
      ...(config.compression !== undefined ? { compression: config.compression } : {}),
      ...(config.maxInFlightPerConnection !== undefined
        ? { maxInFlightPerConnection: config.maxInFlightPerConnection }
        : {}),
    });
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
    if (msg.type === 'release') holdGate.release();
    if (msg.type === 'heap') {
      const heap = fullGc(gc) ? heapSample() : null;
      send({ type: 'heap', seq: msg.seq, heap, held: holdGate.held });
    }
    if (msg.type === 'statsCost') {
      let usPerCall: number | null = null;
      if (wireServer !== null) {
        let sink = 0;
        for (let i = 0; i < 1000; i++) sink += wireServer.stats().transport.writes; // warm-up
        // The median of several batches, as the client side does (a GC pause must not dominate).
        const perCall: number[] = [];
        for (let batch = 0; batch < msg.batches; batch++) {
          const t0 = performance.now();
          for (let i = 0; i < msg.iterations; i++) sink += wireServer.stats().transport.writes;
          perCall.push(((performance.now() - t0) * 1000) / msg.iterations);
        }
        perCall.sort((a, b) => a - b);
        usPerCall = perCall[perCall.length >> 1];
        if (sink < 0) usPerCall = null; // keeps the loop from being optimised away
      }
      send({ type: 'statsCost', seq: msg.seq, usPerCall });
    }
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
        held: holdGate.held,
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
 * without it, from its sessions' connections; null if neither is there.
 */
function wireServerWrites(server: WireServer): number | null {
  const anyServer = server as unknown as {
    counters?: () => { writes?: number };
    sessions?: Set<{ wire?: { writes?: number } }>;
  };
  try {
    if (typeof anyServer.counters === 'function') {
      const w = anyServer.counters().writes;
      return typeof w === 'number' ? w : null;
    }
    if (anyServer.sessions instanceof Set) {
      let total = 0;
      for (const s of anyServer.sessions) {
        const w = s.wire?.writes;
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
