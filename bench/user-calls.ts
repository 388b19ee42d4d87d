/**
 * The "user-shaped calls" section: calls made the way applications make them, next to
 * the matrix's bare-string calls. Each caller does
 *
 *   const answer = await lastValueFrom(client.send('echo', { id, body }));
 *   // answer.id === id && answer.body === body
 *
 * with a client created with its default options (`new WireClient({ host, port })`, so
 * the 30 s default timeout is on; `ClientProxyFactory.create({ transport: TCP })` for
 * Nest TCP). The raw-socket ceiling echoes `body` as bytes (it has no serializer). One
 * cell spreads its callers over several client connections ("64 connections x 4").
 */
import { ClientProxyFactory, Transport } from '@nestjs/microservices';
import { performance } from 'node:perf_hooks';
import { lastValueFrom, type Observable } from 'rxjs';
import { WireClient } from '../lib/index.js';
import { DISTURBED_LOAD, ensureServer, HOST, type RetryBudget, type Timing } from './cell.js';
import { machineBusyUs, makePayloads, socketWrites, TRANSPORT_LABEL, type TransportName } from './common.js';
import { Histogram } from './histogram.js';
import { LoadLoop, log, sleep, watch, watchDrain, withTimeout, type CallDone } from './loop.js';
import { RawClient } from './raw.js';
import type { UserCallsResult, UserCallsSection } from './report.js';
import type { ServerProc } from './server-proc.js';

export interface UserCellSpec {
  size: number;
  /** Calls in flight per connection. */
  inFlight: number;
  connections: number;
}

export const USER_CELLS: UserCellSpec[] = [
  { size: 128, inFlight: 1, connections: 1 },
  { size: 128, inFlight: 16, connections: 1 },
  { size: 128, inFlight: 256, connections: 1 },
  { size: 4096, inFlight: 256, connections: 1 },
  { size: 65536, inFlight: 16, connections: 1 },
  { size: 65536, inFlight: 256, connections: 1 },
  { size: 128, inFlight: 4, connections: 64 },
];
export const USER_CELLS_QUICK: UserCellSpec[] = [
  { size: 128, inFlight: 1, connections: 1 },
  { size: 128, inFlight: 256, connections: 1 },
  { size: 128, inFlight: 4, connections: 64 },
];

interface Echo {
  id: number;
  body: string;
}

/** One connection of a user-shaped cell. */
interface UserClient {
  connect(): Promise<void>;
  call(id: number, body: string, done: CallDone): void;
  close(): void;
}

function settle(answer: Promise<Echo>, id: number, body: string, done: CallDone): void {
  answer.then(
    (a) =>
      a !== null && a.id === id && a.body === body
        ? done(true)
        : done(false, new Error('echo differs from the request')),
    (err: unknown) => done(false, err),
  );
}

class NestUserClient implements UserClient {
  constructor(
    private readonly client: {
      send<R, I>(pattern: string, data: I): Observable<R>;
      connect(): Promise<unknown>;
      close(): unknown;
    },
  ) {}

  async connect(): Promise<void> {
    await this.client.connect();
  }

  call(id: number, body: string, done: CallDone): void {
    settle(lastValueFrom(this.client.send<Echo, Echo>('echo', { id, body })), id, body, done);
  }

  close(): void {
    void this.client.close();
  }
}

class RawUserClient implements UserClient {
  private readonly raw: RawClient;
  private readonly bodies = new Map<string, Buffer>();

  constructor(port: number) {
    this.raw = new RawClient(HOST, port);
  }

  connect(): Promise<void> {
    return this.raw.connect();
  }

  call(_id: number, body: string, done: CallDone): void {
    let bytes = this.bodies.get(body);
    if (bytes === undefined) this.bodies.set(body, (bytes = Buffer.from(body, 'latin1')));
    const expected = bytes;
    this.raw.call(expected, (err, payload) => {
      if (err !== null) done(false, err);
      else if (payload !== null && payload.equals(expected)) done(true);
      else done(false, new Error('echo differs from the request'));
    });
  }

  close(): void {
    this.raw.close();
  }
}

function createUserClient(transport: TransportName, port: number): UserClient {
  switch (transport) {
    case 'nest-wire': {
      // Default options, as an application has them: the 30 s timeout stays on.
      const client = new WireClient({ host: HOST, port });
      client.on('error', () => {});
      return new NestUserClient(client);
    }
    case 'nest-tcp':
      return new NestUserClient(ClientProxyFactory.create({ transport: Transport.TCP, options: { host: HOST, port } }));
    case 'raw':
      return new RawUserClient(port);
  }
}

/** The loops of a cell seen as one, for the watchdogs of loop.ts. */
class LoopGroup {
  constructor(readonly loops: LoadLoop[]) {}
  get outstanding(): number {
    let n = 0;
    for (const l of this.loops) n += l.outstanding;
    return n;
  }
  get lastProgress(): number {
    let t = 0;
    for (const l of this.loops) if (l.lastProgress > t) t = l.lastProgress;
    return t;
  }
  get completed(): number {
    let n = 0;
    for (const l of this.loops) n += l.completed;
    return n;
  }
  get errors(): number {
    let n = 0;
    for (const l of this.loops) n += l.totalErrors;
    return n;
  }
  get firstError(): string | null {
    for (const l of this.loops) if (l.firstError !== null) return l.firstError;
    return null;
  }
  histogram(): Histogram {
    const h = new Histogram();
    for (const l of this.loops) h.add(l.hist);
    return h;
  }
  start(): void {
    for (const l of this.loops) l.start();
  }
  resetWindow(): void {
    for (const l of this.loops) l.resetWindow();
  }
  stop(): void {
    for (const l of this.loops) l.stop();
  }
  finish(): void {
    for (const l of this.loops) l.finish();
  }
}

let nextId = 1;

export async function runUserCell(server: ServerProc, spec: UserCellSpec, timing: Timing): Promise<UserCallsResult> {
  const base: UserCallsResult = {
    transport: server.transport,
    ...spec,
    status: 'ok',
    note: null,
    rps: 0,
    p50Us: NaN,
    p99Us: NaN,
    clientCpuUsPerCall: NaN,
    serverCpuUsPerCall: NaN,
    clientCores: NaN,
    serverCores: NaN,
    clientCallsPerWrite: NaN,
    serverCallsPerWrite: NaN,
    otherLoad: NaN,
    errors: 0,
  };
  const bodies = makePayloads(spec.size);
  const clients: UserClient[] = [];
  for (let i = 0; i < spec.connections; i++) clients.push(createUserClient(server.transport, server.port));
  const group = new LoopGroup(
    clients.map(
      (client) =>
        new LoadLoop(
          (k, done) => {
            const id = nextId++;
            client.call(id, bodies[k], done);
          },
          spec.inFlight,
          bodies.length,
        ),
    ),
  );
  const fail = (status: 'hang' | 'failed', note: string): UserCallsResult => {
    group.finish();
    for (const c of clients) c.close();
    server.dirty = true;
    return { ...base, status, note, errors: group.errors };
  };
  try {
    await withTimeout(Promise.all(clients.map((c) => c.connect())), 10_000, 'connect');
  } catch (err) {
    return fail('failed', `connect failed: ${(err as Error).message}`);
  }
  group.start();
  if ((await watch(group, timing.warmupMs, timing.stallMs)) === 'stall')
    return fail('hang', 'no progress during warm-up');
  group.resetWindow();
  const s0 = await server.stats(timing.stallMs);
  const c0 = process.cpuUsage();
  const m0 = machineBusyUs();
  const w0 = socketWrites.count;
  const t0 = performance.now();
  if ((await watch(group, timing.durationMs, timing.stallMs)) === 'stall')
    return fail('hang', 'no progress during the window');
  const seconds = (performance.now() - t0) / 1000;
  const c1 = process.cpuUsage(c0);
  const m1 = machineBusyUs();
  const w1 = socketWrites.count;
  const s1 = await server.stats(timing.stallMs);
  const calls = group.completed;
  const hist = group.histogram();
  group.stop();
  if ((await watchDrain(group, timing.stallMs)) !== 'ok')
    return fail('hang', `${group.outstanding} calls never came back`);
  group.finish();
  for (const c of clients) c.close();
  const clientUs = c1.user + c1.system;
  const serverUs = s1.cpu.user + s1.cpu.system - (s0.cpu.user + s0.cpu.system);
  return {
    ...base,
    note: group.errors > 0 ? `${group.errors} errors (${group.firstError})` : null,
    rps: calls / seconds,
    p50Us: hist.percentile(0.5),
    p99Us: hist.percentile(0.99),
    clientCpuUsPerCall: calls > 0 ? clientUs / calls : NaN,
    serverCpuUsPerCall: calls > 0 ? serverUs / calls : NaN,
    clientCores: clientUs / (seconds * 1e6),
    serverCores: serverUs / (seconds * 1e6),
    clientCallsPerWrite: calls / (w1 - w0),
    serverCallsPerWrite: calls / (s1.socketWrites - s0.socketWrites),
    otherLoad: m0 !== null && m1 !== null ? Math.max(0, m1 - m0 - clientUs - serverUs) / (seconds * 1e6) : NaN,
    errors: group.errors,
  };
}

export function userCellLabel(spec: UserCellSpec): string {
  const size = spec.size >= 1024 ? `${spec.size / 1024} KiB` : `${spec.size} B`;
  return spec.connections > 1 ? `${size} x ${spec.connections} conn x ${spec.inFlight}` : `${size} x ${spec.inFlight}`;
}

/** Every user-shaped cell, the transports alternating within a cell; a disturbed cell is measured again. */
export async function runUserCalls(
  servers: Map<TransportName, ServerProc>,
  transports: TransportName[],
  timing: Timing,
  budget: RetryBudget,
  cells: UserCellSpec[],
): Promise<UserCallsSection> {
  const rows: UserCallsResult[] = [];
  for (const spec of cells) {
    for (const t of transports) {
      const server = servers.get(t)!;
      await ensureServer(server);
      let r = await runUserCell(server, spec, timing);
      const label = `[user] ${userCellLabel(spec).padStart(22)}  ${TRANSPORT_LABEL[t].padEnd(10)}`;
      log(`${label} ${describeUser(r)}`);
      if (r.status === 'ok' && r.otherLoad > DISTURBED_LOAD && budget.left > 0) {
        budget.left--;
        budget.used++;
        await sleep(500);
        await ensureServer(server, false);
        const again = await runUserCell(server, spec, timing);
        log(`${' '.repeat(label.length - 8)}(again) ${describeUser(again)}`);
        if (again.status === 'ok' && !(again.otherLoad >= r.otherLoad)) r = again;
      }
      rows.push(r);
      await sleep(50);
    }
  }
  return { rows };
}

function describeUser(r: UserCallsResult): string {
  if (r.status !== 'ok') return `${r.status.toUpperCase()}: ${r.note ?? ''}`;
  return (
    `${Math.round(r.rps).toLocaleString('en-US').padStart(9)} req/s  p50 ${(r.p50Us / 1000).toFixed(3)} ms  ` +
    `cpu µs/call client ${r.clientCpuUsPerCall.toFixed(1)} server ${r.serverCpuUsPerCall.toFixed(1)}  ` +
    `busy client ${r.clientCores.toFixed(2)} server ${r.serverCores.toFixed(2)}  ` +
    `calls/write client ${r.clientCallsPerWrite.toFixed(1)} server ${r.serverCallsPerWrite.toFixed(1)}  other load ${r.otherLoad.toFixed(2)}${r.note ? `  (${r.note})` : ''}`
  );
}
