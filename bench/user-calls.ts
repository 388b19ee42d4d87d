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
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { lastValueFrom, type Observable } from 'rxjs';
import { WireClient } from '../lib/index.js';
import { DISTURBED_LOAD, ensureServer, HOST, type RetryBudget, type Timing } from './cell.js';
import {
  machineBusyUs,
  makePayloads,
  socketWrites,
  TRANSPORT_LABEL,
  type ServerStats,
  type TransportName,
} from './common.js';
import { Histogram } from './histogram.js';
import { LoadLoop, log, sleep, watch, watchDrain, withTimeout, type CallDone } from './loop.js';
import { RawClient } from './raw.js';
import type { UserCallsResult, UserCallsSection } from './report.js';
import { trackChild, type ServerProc } from './server-proc.js';

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

/** What the client child measured in one user cell (bench/user-client.ts). */
export interface UserClientReport {
  status: 'ok' | 'hang' | 'failed';
  note: string | null;
  calls: number;
  seconds: number;
  p50Us: number;
  p99Us: number;
  /** CPU time of the client process during the measured window, µs. */
  clientUs: number;
  /** Socket writes of the client process during the measured window. */
  writes: number;
  errors: number;
}

/** The edges of the measured window, where the parent samples the server and the machine. */
export interface WindowHooks {
  start(): Promise<void>;
  end(): Promise<void>;
}

/**
 * The client side of one user cell, run in a fresh child process (bench/user-client.ts): connect,
 * warm up, measure a window, drain, close. What the process ran before cannot shape its figures.
 */
export async function driveUserCell(
  transport: TransportName,
  port: number,
  spec: UserCellSpec,
  timing: Timing,
  window: WindowHooks,
): Promise<UserClientReport> {
  const report: UserClientReport = {
    status: 'ok',
    note: null,
    calls: 0,
    seconds: 0,
    p50Us: NaN,
    p99Us: NaN,
    clientUs: NaN,
    writes: 0,
    errors: 0,
  };
  const bodies = makePayloads(spec.size);
  const clients: UserClient[] = [];
  for (let i = 0; i < spec.connections; i++) clients.push(createUserClient(transport, port));
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
  const fail = (status: 'hang' | 'failed', note: string): UserClientReport => {
    group.finish();
    for (const c of clients) c.close();
    return { ...report, status, note, errors: group.errors };
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
  await window.start();
  const c0 = process.cpuUsage();
  const w0 = socketWrites.count;
  const t0 = performance.now();
  if ((await watch(group, timing.durationMs, timing.stallMs)) === 'stall')
    return fail('hang', 'no progress during the window');
  const seconds = (performance.now() - t0) / 1000;
  const c1 = process.cpuUsage(c0);
  const w1 = socketWrites.count;
  await window.end();
  const calls = group.completed;
  const hist = group.histogram();
  group.stop();
  if ((await watchDrain(group, timing.stallMs)) !== 'ok')
    return fail('hang', `${group.outstanding} calls never came back`);
  group.finish();
  for (const c of clients) c.close();
  return {
    ...report,
    note: group.errors > 0 ? `${group.errors} errors (${group.firstError})` : null,
    calls,
    seconds,
    p50Us: hist.percentile(0.5),
    p99Us: hist.percentile(0.99),
    clientUs: c1.user + c1.system,
    writes: w1 - w0,
    errors: group.errors,
  };
}

const CLIENT_SCRIPT = fileURLToPath(new URL('./user-client.js', import.meta.url));

/** Messages of the client child to this process. */
type ClientMessage = { type: 'window-start' } | { type: 'window-end' } | { type: 'report'; report: UserClientReport };

/**
 * One user cell: its client runs in a fresh child process (pinned like this one: it inherits the
 * affinity) against `server`, which the caller has (re)started; this process samples the server's
 * CPU and the machine's at the edges of the client's measured window.
 */
export async function runUserCell(
  server: ServerProc,
  spec: UserCellSpec,
  timing: Timing,
  profileDir: string | null = null,
): Promise<UserCallsResult> {
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
  const profileArgs =
    profileDir === null
      ? []
      : [
          '--cpu-prof',
          `--cpu-prof-dir=${profileDir}`,
          `--cpu-prof-name=client-${server.transport}-${Date.now()}.cpuprofile`,
        ];
  const child = spawn(
    process.execPath,
    [...profileArgs, CLIENT_SCRIPT, JSON.stringify({ transport: server.transport, port: server.port, spec, timing })],
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
  );
  trackChild(child);
  let s0: ServerStats | null = null;
  let s1: ServerStats | null = null;
  let m0: number | null = null;
  let m1: number | null = null;
  const report = await new Promise<UserClientReport | null>((resolveReport) => {
    child.on('message', (msg: ClientMessage) => {
      void (async () => {
        if (msg.type === 'window-start') {
          s0 = await server.stats(timing.stallMs);
          m0 = machineBusyUs();
          child.send({ type: 'go' });
        } else if (msg.type === 'window-end') {
          m1 = machineBusyUs();
          s1 = await server.stats(timing.stallMs);
          child.send({ type: 'go' });
        } else {
          resolveReport(msg.report);
        }
      })().catch(() => {
        // The server did not report (it hung or died): the client waits for a `go` that never comes.
        child.kill();
        resolveReport(null);
      });
    });
    child.on('exit', () => resolveReport(null));
  });
  if (child.exitCode === null) await once(child, 'exit');
  if (report === null) {
    server.dirty = true;
    return { ...base, status: 'failed', note: 'the client process ended without a report' };
  }
  if (report.status !== 'ok' || s0 === null || s1 === null) {
    server.dirty = true;
    return {
      ...base,
      status: report.status === 'ok' ? 'failed' : report.status,
      note: report.note,
      errors: report.errors,
    };
  }
  const before: ServerStats = s0;
  const after: ServerStats = s1;
  const { calls, seconds, clientUs } = report;
  const serverUs = after.cpu.user + after.cpu.system - (before.cpu.user + before.cpu.system);
  return {
    ...base,
    note: report.note,
    rps: calls / seconds,
    p50Us: report.p50Us,
    p99Us: report.p99Us,
    clientCpuUsPerCall: calls > 0 ? clientUs / calls : NaN,
    serverCpuUsPerCall: calls > 0 ? serverUs / calls : NaN,
    clientCores: clientUs / (seconds * 1e6),
    serverCores: serverUs / (seconds * 1e6),
    clientCallsPerWrite: calls / report.writes,
    serverCallsPerWrite: calls / (after.socketWrites - before.socketWrites),
    otherLoad: m0 !== null && m1 !== null ? Math.max(0, m1 - m0 - clientUs - serverUs) / (seconds * 1e6) : NaN,
    errors: report.errors,
  };
}

export function userCellLabel(spec: UserCellSpec): string {
  const size = spec.size >= 1024 ? `${spec.size / 1024} KiB` : `${spec.size} B`;
  return spec.connections > 1 ? `${size} x ${spec.connections} conn x ${spec.inFlight}` : `${size} x ${spec.inFlight}`;
}

/**
 * Every user-shaped cell, the transports alternating within a cell; a disturbed cell is measured
 * again. Each cell gets fresh processes: a new client child and a restarted server.
 */
export async function runUserCalls(
  servers: Map<TransportName, ServerProc>,
  transports: TransportName[],
  timing: Timing,
  budget: RetryBudget,
  cells: UserCellSpec[],
  profileDir: string | null = null,
): Promise<UserCallsSection> {
  const rows: UserCallsResult[] = [];
  for (const spec of cells) {
    for (const t of transports) {
      const server = servers.get(t)!;
      // The server's heap and compiled code after the cells before must not count either.
      server.dirty = true;
      await ensureServer(server, false);
      let r = await runUserCell(server, spec, timing, profileDir);
      const label = `[user] ${userCellLabel(spec).padStart(22)}  ${TRANSPORT_LABEL[t].padEnd(10)}`;
      log(`${label} ${describeUser(r)}`);
      if (r.status === 'ok' && r.otherLoad > DISTURBED_LOAD && budget.left > 0) {
        budget.left--;
        budget.used++;
        await sleep(500);
        server.dirty = true;
        await ensureServer(server, false);
        const again = await runUserCell(server, spec, timing, profileDir);
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
