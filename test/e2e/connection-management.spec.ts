import 'reflect-metadata';
import { Controller, Inject, Module, type DynamicModule } from '@nestjs/common';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import { connect, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { firstValueFrom } from 'rxjs';
import { WireClient, WireConnectionError, WireContext, type WireClientOptions } from '../../lib/index.js';
import { FrameType, MAGIC, RESPONSE_MORE } from '../../lib/protocol/frame.js';
import { startWireApp, type RunningServer } from '../helpers/apps.js';
import { helloFrame, rawFrame, RawPeer, requestBody } from '../helpers/raw-peer.js';
import { TestAppModule } from '../helpers/test-app.js';
import { once, pause, waitFor } from '../helpers/wait.js';
import { FakeServer } from '../helpers/fake-server.js';

const NAME = 'SERVER_NAME';

@Controller()
class WhoController {
  constructor(@Inject(NAME) private readonly name: string) {}

  @MessagePattern('who')
  async who(@Payload() ms: number, @Ctx() ctx: WireContext): Promise<string> {
    if (ms > 0) await pause(ms, ctx.getSignal()); // less if the call is cancelled
    return this.name;
  }
}

@Module({})
class WhoModule {
  static named(name: string): DynamicModule {
    return { module: WhoModule, controllers: [WhoController], providers: [{ provide: NAME, useValue: name }] };
  }
}

/** A running named server plus the sockets it accepted, so a test can kill it abruptly. */
interface Node extends RunningServer {
  name: string;
  sockets: Set<Socket>;
}

async function startNode(name: string, port = 0, options: Record<string, unknown> = {}): Promise<Node> {
  const running = await startWireApp(WhoModule.named(name), { port, ...options });
  const sockets = new Set<Socket>();
  running.server.unwrap<NetServer>().on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return { ...running, name, sockets };
}

/** Like a crashed process: the port closes and every connection is reset, no GOAWAY. */
async function kill(node: Node): Promise<void> {
  const net = node.server.unwrap<NetServer>();
  const closed = new Promise((r) => net.close(r));
  for (const s of node.sockets) s.destroy();
  await closed;
}

function clientOf(nodes: { port: number }[], options: WireClientOptions = {}): WireClient {
  return new WireClient({ servers: nodes.map((n) => `127.0.0.1:${n.port}`), heartbeatIntervalMs: 0, ...options });
}

async function tally(client: WireClient, count: number, ms = 0): Promise<Record<string, number>> {
  const names = await Promise.all(Array.from({ length: count }, () => firstValueFrom(client.send<string>('who', ms))));
  const counts: Record<string, number> = {};
  for (const n of names) counts[n] = (counts[n] ?? 0) + 1;
  return counts;
}

describe('connection management', () => {
  it('spreads calls over every server of the list', async () => {
    const nodes = await Promise.all(['a', 'b', 'c'].map((n) => startNode(n)));
    const client = clientOf(nodes, { poolSize: 2 });
    await client.connect();
    await waitFor(() => client.counters().openConnections === 6);
    const counts = await tally(client, 3000, 1);
    // Least-pending balancing: each of the three servers gets a third, within 10 %.
    for (const name of ['a', 'b', 'c']) {
      expect(counts[name]).toBeGreaterThan(900);
      expect(counts[name]).toBeLessThan(1100);
    }
    client.close();
    await Promise.all(nodes.map((n) => n.app.close()));
  });

  it('fails over when a server dies with 10 000 calls in flight, then takes it back', async () => {
    const a = await startNode('a');
    const b = await startNode('b');
    const client = clientOf([a, b], { reconnect: { initialDelayMs: 20, maxDelayMs: 100 }, maxPendingCalls: 20_000 });
    await client.connect();
    await waitFor(() => client.counters().openConnections === 2);
    const outcomes = { ok: 0, connectionErrors: 0, other: 0 };
    const calls = Array.from({ length: 10_000 }, () =>
      firstValueFrom(client.send<string>('who', 20)).then(
        () => void outcomes.ok++,
        (err) => void (err instanceof WireConnectionError ? outcomes.connectionErrors++ : outcomes.other++),
      ),
    );
    await waitFor(() => a.server.counters().inFlight > 0 && b.server.counters().inFlight > 0, {
      what: 'calls to run on both servers',
    });
    const inFlightAtKill = client.counters().inFlight;
    const killedAt = performance.now();
    await kill(a);
    await Promise.all(calls); // none hangs: every call ended one way or the other
    expect(outcomes.ok + outcomes.connectionErrors).toBe(10_000);
    expect(outcomes.other).toBe(0);
    expect(outcomes.connectionErrors).toBeGreaterThan(0);
    expect(outcomes.connectionErrors).toBeLessThanOrEqual(inFlightAtKill);

    // Calls issued afterwards all succeed on the survivor.
    expect(await tally(client, 500)).toEqual({ b: 500 });

    // The dead server comes back on its port and gets traffic again.
    const a2 = await startNode('a', a.port);
    await waitFor(() => client.counters().openConnections === 2, 3000);
    const recoveredMs = performance.now() - killedAt;
    const counts = await tally(client, 1000, 1);
    expect(counts.a).toBeGreaterThan(300);
    expect(counts.b).toBeGreaterThan(300);
    console.info(
      `failover: ${inFlightAtKill} in flight at kill; ${outcomes.ok} succeeded, ${outcomes.connectionErrors} failed ` +
        `with WireConnectionError, ${client.counters().resends} re-sent; back in rotation ${Math.round(recoveredMs)} ms after the kill`,
    );
    client.close();
    await Promise.all([a.app.close(), a2.app.close(), b.app.close()]);
  });

  it('loses no call during a rolling restart with GOAWAY under continuous load', async () => {
    let a = await startNode('a');
    let b = await startNode('b');
    const client = clientOf([a, b], { reconnect: { initialDelayMs: 10, maxDelayMs: 50 } });
    await client.connect();
    await waitFor(() => client.counters().openConnections === 2);
    let stop = false;
    const outcomes = { ok: 0, failed: 0 };
    const errors: unknown[] = [];
    const load = (async () => {
      // Bounded: stops when the restarts are done, or after 20 s at most.
      const until = performance.now() + 20_000;
      while (!stop && performance.now() < until) {
        await Promise.all(
          Array.from({ length: 50 }, () =>
            firstValueFrom(client.send<string>('who', 2)).then(
              () => void outcomes.ok++,
              (e) => {
                outcomes.failed++;
                errors.push(e);
              },
            ),
          ),
        );
      }
    })();
    // Each step waits for its event: calls flowing, the client seeing the server go, its return.
    const moreCalls = async (n: number) => {
      const target = outcomes.ok + outcomes.failed + n;
      await waitFor(() => outcomes.ok + outcomes.failed >= target, {
        timeoutMs: 5000,
        what: `${n} more calls of the load to end`,
      });
    };
    await moreCalls(200);
    for (const which of ['a', 'b'] as const) {
      const old = which === 'a' ? a : b;
      await old.app.close(); // GOAWAY, drain, close
      await waitFor(() => client.counters().openConnections === 1, {
        timeoutMs: 3000,
        what: 'the client to see the server go',
      });
      await moreCalls(100); // the load runs on the survivor alone
      const fresh = await startNode(which, old.port);
      if (which === 'a') a = fresh;
      else b = fresh;
      await waitFor(() => client.counters().openConnections === 2, 3000);
      await moreCalls(200);
    }
    stop = true;
    await load;
    expect(errors).toEqual([]);
    expect(outcomes.failed).toBe(0);
    expect(outcomes.ok).toBeGreaterThan(1000);
    console.info(`rolling restart: ${outcomes.ok} calls, 0 failed, ${client.counters().resends} re-sent after NACK`);
    client.close();
    await Promise.all([a.app.close(), b.app.close()]);
  }, 30_000);

  it('detects a half-open server that stops answering PING', async () => {
    const silent = await FakeServer.start((socket) => {
      socket.once('data', () => socket.write(Buffer.concat([MAGIC, helloFrame()])));
      // ...and then never another byte.
    });
    const client = new WireClient({
      host: '127.0.0.1',
      port: silent.port,
      heartbeatIntervalMs: 100,
      timeout: 0,
    });
    client.on('error', () => {});
    await client.connect();
    const started = performance.now();
    const err = await firstValueFrom(client.send('who', 0)).catch((e) => e);
    const elapsed = performance.now() - started;
    expect(err).toBeInstanceOf(WireConnectionError);
    expect(err.message).toMatch(/silent/);
    expect(elapsed).toBeGreaterThanOrEqual(190);
    expect(elapsed).toBeLessThan(400); // 2 intervals of silence, checked every half interval
    client.close();
    await silent.close();
  });

  it('the server closes a client that stops answering PING', async () => {
    const node = await startNode('a', 0, { heartbeatIntervalMs: 100 });
    const peer = await RawPeer.connect(node.port);
    peer.handshake();
    const started = performance.now();
    await peer.closed;
    const elapsed = performance.now() - started;
    expect(peer.received.some((f) => f.type === FrameType.PING)).toBe(true);
    expect(elapsed).toBeGreaterThanOrEqual(190);
    expect(elapsed).toBeLessThan(400);
    await node.app.close();
  });

  it('keeps a busy connection alive without pings', async () => {
    const node = await startNode('a', 0, { heartbeatIntervalMs: 50 });
    const client = clientOf([node], { heartbeatIntervalMs: 50 });
    expect(await tally(client, 10, 300)).toEqual({ a: 10 }); // 300 ms calls, pings keep both sides alive
    client.close();
    await node.app.close();
  });

  it('backs off exponentially, with jitter, up to the cap', async () => {
    const attempts: number[] = [];
    /** The client port of each accepted connection, to tell the probe below from a redial. */
    const peers: number[] = [];
    const refusing = await FakeServer.start((socket) => {
      attempts.push(performance.now());
      peers.push(socket.remotePort!);
      socket.destroy();
    });
    const client = new WireClient({
      host: '127.0.0.1',
      port: refusing.port,
      reconnect: { initialDelayMs: 20, maxDelayMs: 160 },
    });
    client.on('error', () => {});
    await expect(client.connect()).rejects.toBeInstanceOf(WireConnectionError);
    await waitFor(() => attempts.length >= 8, 3000);
    client.close();
    const gaps = attempts.slice(1).map((t, i) => t - attempts[i]);
    const expected = [20, 40, 80, 160, 160, 160, 160];
    gaps.slice(0, 7).forEach((gap, i) => {
      expect(gap).toBeGreaterThanOrEqual(expected[i] * 0.8 - 2);
      expect(gap).toBeLessThanOrEqual(expected[i] * 1.2 + 25);
    });
    const count = attempts.length;
    // No event says "a timer did not fire": let the longest jittered delay (160 ms × 1.2) pass,
    // then a probe dial is the ordering barrier. The kernel accepts connections in order, so a
    // redial made when that delay ran out would be accepted (and counted) before the probe.
    await pause(160 * 1.2 + 10);
    const probe = connect({ host: '127.0.0.1', port: refusing.port });
    probe.on('error', () => {});
    await once(probe, 'connect');
    const probePort = probe.localPort!;
    await waitFor(() => peers.includes(probePort), { what: 'the probe connection to be accepted' });
    probe.destroy();
    expect(peers.indexOf(probePort)).toBe(count); // nothing came before the probe: close() stopped reconnecting
    expect(attempts.length).toBe(count + 1);
    await refusing.close();
  });

  it('fails calls fast while no server is reachable', async () => {
    const node = await startNode('a');
    const port = node.port;
    await node.app.close();
    const client = clientOf([{ port }], { reconnect: { initialDelayMs: 1000, maxDelayMs: 1000 } });
    client.on('error', () => {});
    await expect(firstValueFrom(client.send('who', 0))).rejects.toThrow(/no server reachable/);
    // At once: the failure comes before the event loop reaches its next phase, not at the next reconnect.
    const outcome = await Promise.race([
      firstValueFrom(client.send('who', 0)).catch((err: unknown) => err),
      new Promise((r) => setImmediate(() => r('still waiting after a turn of the event loop'))),
    ]);
    expect(outcome).toBeInstanceOf(WireConnectionError);
    client.close();
  });

  it('speaks over a Unix domain socket on both sides', async () => {
    const path = join(tmpdir(), `nest-wire-${process.pid}-${Date.now()}.sock`);
    const node = await startNode('unix', 0, { path });
    const client = new WireClient({ path });
    expect(await tally(client, 20)).toEqual({ unix: 20 });
    expect(client.endpoints()).toEqual({ [`unix:${path}`]: 'ready' });
    client.close();
    await node.app.close();
  });

  it('resolves a hostname in servers to its addresses', async () => {
    const node = await startNode('a');
    const client = clientOf([], { servers: [`localhost:${node.port}`] });
    client.on('error', () => {});
    expect(await tally(client, 10)).toEqual({ a: 10 });
    // 'localhost' became one endpoint per address; the one the server listens on is ready.
    expect(client.endpoints()[`127.0.0.1:${node.port}`]).toBe('ready');
    client.close();
    await node.app.close();
  });

  it('answers NACK to requests that reach a draining server', async () => {
    const node = await startNode('a');
    const peer = await RawPeer.connect(node.port);
    peer.handshake();
    await peer.waitForFrame((f) => f.type === FrameType.HELLO);
    const closing = node.app.close();
    await peer.waitForFrame((f) => f.type === FrameType.GOAWAY);
    peer.write(rawFrame(FrameType.REQUEST, 0, 5, requestBody('who', 0)));
    const nack = await peer.waitForFrame((f) => f.type === FrameType.NACK);
    expect(nack.id).toBe(5);
    expect(nack.body.toString('latin1')).toContain('WIRE_DRAINING');
    peer.write(rawFrame(FrameType.GOAWAY, 0, 0));
    await peer.closed; // acknowledged and idle: the server closes at once
    await closing;
  });
});

describe('connection management under pressure', () => {
  it('does not mistake a connection paused at its call limit for a silent peer', async () => {
    const node = await startNode('a', 0, { maxInFlightPerConnection: 2, heartbeatIntervalMs: 50 });
    const client = clientOf([node], { heartbeatIntervalMs: 50 });
    // Three 400 ms calls: the server runs two and stops reading (no PONG is read meanwhile).
    expect(await tally(client, 3, 400)).toEqual({ a: 3 });
    expect(client.counters().openConnections).toBe(1);
    client.close();
    await node.app.close();
  });

  it('reads nothing from a peer while its authentication is pending', async () => {
    const node = await startNode('a', 0, {
      authenticate: () => new Promise<boolean>((r) => setTimeout(() => r(false), 300)),
    });
    const peer = await RawPeer.connect(node.port);
    peer.handshake();
    // Try to make the server buffer 32 MiB while it is still deciding.
    const junk = Buffer.alloc(1 << 20, 0x41);
    let peak = 0;
    for (let i = 0; i < 32 && !peer.socket.destroyed; i++) {
      peer.socket.write(junk);
      peak = Math.max(peak, node.server.counters().bufferedBytes);
      await pause(5); // kept: the peer writing over time while authentication is pending is the input
    }
    peak = Math.max(peak, node.server.counters().bufferedBytes);
    expect(peak).toBeLessThan(1 << 20);
    await peer.closed;
    await node.app.close();
  });

  it('graceful close delivers finished responses to a client that reads slowly', async () => {
    const running = await startWireApp(TestAppModule);
    const peer = await RawPeer.connect(running.port);
    peer.handshake({ maxFrameSize: 16 << 20 });
    await peer.waitForFrame((f) => f.type === FrameType.HELLO);
    peer.socket.pause(); // a slow reader: the server's writes back up
    for (let id = 1; id <= 8; id++) peer.write(rawFrame(FrameType.REQUEST, 0, id, requestBody('big', 1 << 20)));
    // The eight 1 MiB answers are done and queued behind a full socket.
    await waitFor(() => running.server.stats().calls.succeeded === 8, {
      timeoutMs: 5000,
      what: 'the eight answers to be done',
    });
    const listener = running.server.unwrap<NetServer>();
    const closing = running.app.close();
    // The graceful close has begun (listener closed, sessions draining) while the peer still reads nothing.
    await waitFor(() => !listener.listening, { what: 'the server to begin its graceful close' });
    peer.socket.resume();
    await peer.waitForFrame((f) => f.type === FrameType.GOAWAY, 5000);
    peer.write(rawFrame(FrameType.GOAWAY, 0, 0));
    await peer.closed;
    await closing;
    // Each 1 MiB answer arrives in fragments; the last fragment of each has no MORE flag.
    const answered = peer.received
      .filter((f) => f.type === FrameType.RESPONSE && (f.flags & RESPONSE_MORE) === 0)
      .map((f) => f.id);
    expect(answered.sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  }, 15_000);
});

describe('balancing an idle pool', () => {
  it('spreads calls made one at a time over every server (ties go round robin)', async () => {
    const nodes = await Promise.all(['a', 'b', 'c'].map((n) => startNode(n)));
    const client = clientOf(nodes);
    await client.connect();
    await waitFor(() => client.counters().openConnections === 3);
    const counts: Record<string, number> = {};
    for (let i = 0; i < 30; i++) {
      const name = await firstValueFrom(client.send<string>('who', 0));
      counts[name] = (counts[name] ?? 0) + 1;
    }
    expect(counts).toEqual({ a: 10, b: 10, c: 10 });
    client.close();
    await Promise.all(nodes.map((n) => n.app.close()));
  });
});
