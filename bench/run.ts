/**
 * `npm run bench` / `npm run bench:quick`: closed-loop echo benchmark of nest-wire
 * against Nest's TCP transport and a raw-socket ceiling. See BENCHMARKS.md ("How it
 * is measured") for the method; this file only orchestrates:
 *
 *   parent (this process, client side, core 1)  <-- IPC -->  one server child per transport (core 0)
 *
 * For every cell (payload size x requests in flight) each transport gets a fresh
 * client connection, a warm-up, then a measured window. A cell that stops making
 * progress is reported as a hang; its server child is killed and restarted.
 */
import 'reflect-metadata';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { createClient, type BenchClient } from './clients.js';
import {
  allowedCpus,
  findTaskset,
  installSocketWriteCounter,
  machineBusyUs,
  makePayloads,
  pinProcess,
  socketWrites,
  TRANSPORT_LABEL,
  TRANSPORTS,
  type ChildMessage,
  type ParentMessage,
  type ServerStats,
  type SocketState,
  type TransportName,
} from './common.js';
import { Histogram } from './histogram.js';
import { renderChart, renderMarkdown, type CellResult, type RunInfo } from './report.js';

const HOST = '127.0.0.1';
const HERE = dirname(fileURLToPath(import.meta.url)); // dist/bench
const ROOT = resolve(HERE, '..', '..');
const SERVER_SCRIPT = join(HERE, 'server.js');
const SERVER_CORE = 0;
const CLIENT_CORE = 1;

// ---------------------------------------------------------------- options

interface Options {
  quick: boolean;
  warmupMs: number;
  durationMs: number;
  /** No completion for this long while calls are in flight: the cell hangs. */
  stallMs: number;
  transports: TransportName[];
  sizes: number[];
  matrixInFlight: number[];
  sweepInFlight: number[];
  out: string;
  chart: string;
  json: string;
  /** Directory for V8 CPU profiles of the server children (--profile), or null. */
  profileDir: string | null;
}

const USAGE = `usage: node dist/bench/run.js [--quick] [--duration=ms] [--warmup=ms] [--stall=ms]
  [--transports=nest-wire,nest-tcp,raw] [--sizes=128,4096,65536] [--inflight=1,16,256] [--sweep=1,4,16,...]
  [--out=BENCHMARKS.md] [--chart=bench/chart.svg] [--json=bench/results/full.json] [--profile]`;
const KNOWN_FLAGS = ['quick', 'duration', 'warmup', 'stall', 'transports', 'sizes', 'inflight', 'sweep', 'out', 'chart', 'json', 'profile', 'help'];

function parseOptions(argv: string[]): Options {
  const flags = new Map<string, string>();
  for (const arg of argv) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (m === null || !KNOWN_FLAGS.includes(m[1])) throw new Error(`unknown argument ${arg}\n${USAGE}`);
    flags.set(m[1], m[2] ?? 'true');
  }
  if (flags.has('help')) {
    process.stdout.write(USAGE + '\n');
    process.exit(0);
  }
  const quick = flags.get('quick') === 'true';
  const num = (name: string, dflt: number) => {
    const v = flags.get(name);
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number`);
    return n;
  };
  const list = (name: string, dflt: number[]) =>
    flags.has(name) ? flags.get(name)!.split(',').map(Number) : dflt;
  const transports = flags.has('transports')
    ? (flags.get('transports')!.split(',') as TransportName[])
    : [...TRANSPORTS];
  for (const t of transports) if (!TRANSPORTS.includes(t)) throw new Error(`unknown transport ${t} (${TRANSPORTS.join(', ')})`);
  const resultsDir = join(ROOT, 'bench', 'results');
  return {
    quick,
    warmupMs: num('warmup', quick ? 250 : 1000),
    durationMs: num('duration', quick ? 1000 : 5000),
    stallMs: num('stall', quick ? 2000 : 3000),
    transports,
    sizes: list('sizes', [128, 4096, 65536]),
    matrixInFlight: list('inflight', quick ? [1, 256] : [1, 16, 256]),
    sweepInFlight: list('sweep', quick ? [1, 16, 256, 4096] : [1, 4, 16, 64, 256, 1024, 4096]),
    // Quick runs do not overwrite the committed report.
    out: flags.get('out') ?? (quick ? join(resultsDir, 'BENCHMARKS.quick.md') : join(ROOT, 'BENCHMARKS.md')),
    chart: flags.get('chart') ?? (quick ? join(resultsDir, 'chart.quick.svg') : join(ROOT, 'bench', 'chart.svg')),
    json: flags.get('json') ?? join(resultsDir, quick ? 'quick.json' : 'full.json'),
    profileDir: flags.has('profile') ? join(resultsDir, 'profiles') : null,
  };
}

// ---------------------------------------------------------------- output helpers

const log = (line: string) => process.stderr.write(line + '\n');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolvePromise(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

export function formatUs(us: number): string {
  if (!Number.isFinite(us)) return '–';
  if (us < 1000) return `${us.toFixed(us < 100 ? 1 : 0)} µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(us < 10_000 ? 2 : 1)} ms`;
  return `${(us / 1_000_000).toFixed(2)} s`;
}

// ---------------------------------------------------------------- server child

const children = new Set<ChildProcess>();

function killAllChildren(): void {
  for (const child of children) {
    try {
      child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  children.clear();
}

class ServerProc {
  port = 0;
  dirty = false;
  private child: ChildProcess | null = null;
  private seq = 0;
  private readonly waiting = new Map<number, (stats: ServerStats) => void>();
  private exited = true;

  constructor(
    readonly transport: TransportName,
    private readonly taskset: string | null,
    private readonly profileDir: string | null,
  ) {}

  get alive(): boolean {
    return this.child !== null && !this.exited;
  }

  get pid(): number {
    return this.child?.pid ?? 0;
  }

  async start(): Promise<void> {
    const nodeArgs =
      this.profileDir === null
        ? []
        : ['--cpu-prof', `--cpu-prof-dir=${this.profileDir}`, `--cpu-prof-name=server-${this.transport}-${Date.now()}.cpuprofile`];
    const args = [...nodeArgs, SERVER_SCRIPT, this.transport];
    const stdio: ['ignore', 'inherit', 'inherit', 'ipc'] = ['ignore', 'inherit', 'inherit', 'ipc'];
    const child =
      this.taskset !== null
        ? spawn(this.taskset, ['-c', String(SERVER_CORE), process.execPath, ...args], { stdio })
        : spawn(process.execPath, args, { stdio });
    this.child = child;
    this.exited = false;
    this.dirty = false;
    children.add(child);
    const ready = new Promise<number>((resolveReady, reject) => {
      child.on('message', (msg: ChildMessage) => {
        if (msg.type === 'ready') resolveReady(msg.port);
        else if (msg.type === 'fatal') reject(new Error(msg.message));
        else if (msg.type === 'stats') {
          const cb = this.waiting.get(msg.seq);
          this.waiting.delete(msg.seq);
          cb?.(msg.stats);
        }
      });
      child.once('exit', (code, signal) => {
        this.exited = true;
        children.delete(child);
        reject(new Error(`server child exited (${signal ?? code}) before it was ready`));
      });
      child.once('error', reject);
    });
    this.port = await withTimeout(ready, 20_000, `starting the ${this.transport} server`);
  }

  stats(timeoutMs: number): Promise<ServerStats> {
    const child = this.child;
    if (child === null || this.exited || !child.connected) return Promise.reject(new Error('server child is not running'));
    const seq = ++this.seq;
    const p = new Promise<ServerStats>((r) => this.waiting.set(seq, r));
    child.send({ type: 'stats', seq } satisfies ParentMessage);
    return withTimeout(p, timeoutMs, `${this.transport} server stats`).finally(() => this.waiting.delete(seq));
  }

  /** Ends the child: politely if it is healthy, SIGKILL otherwise (or if it lingers). */
  async stop(force: boolean): Promise<void> {
    const child = this.child;
    this.child = null;
    if (child === null || this.exited) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    if (!force && child.connected) child.send({ type: 'exit' } satisfies ParentMessage);
    else child.kill('SIGKILL');
    try {
      await withTimeout(gone, 3000, 'server exit');
    } catch {
      child.kill('SIGKILL');
      await withTimeout(gone, 3000, 'server exit after SIGKILL').catch(() => {});
    }
    children.delete(child);
  }
}

// ---------------------------------------------------------------- closed loop

/** Keeps `inFlight` calls outstanding: each completion starts the next call. */
class LoadLoop {
  hist = new Histogram();
  completed = 0;
  windowErrors = 0;
  totalErrors = 0;
  firstError: string | null = null;
  outstanding = 0;
  lastProgress = performance.now();
  private seq = 0;
  private stopped = false;
  private finished = false;

  constructor(
    private readonly client: BenchClient,
    private readonly inFlight: number,
    private readonly variants: number,
  ) {}

  start(): void {
    this.lastProgress = performance.now();
    for (let i = 0; i < this.inFlight; i++) this.issue();
  }

  /** Starts the measured window: counters and histogram start from zero. */
  resetWindow(): void {
    this.hist = new Histogram();
    this.completed = 0;
    this.windowErrors = 0;
  }

  /** Stops issuing new calls; the outstanding ones may still complete. */
  stop(): void {
    this.stopped = true;
  }

  /** Ignore whatever still arrives (the connection is about to be torn down). */
  finish(): void {
    this.stopped = true;
    this.finished = true;
  }

  private issue(): void {
    const k = this.seq++ % this.variants;
    const t0 = performance.now();
    this.outstanding++;
    this.client.call(k, (ok, err) => {
      if (this.finished) return;
      this.outstanding--;
      const t1 = performance.now();
      this.lastProgress = t1;
      if (ok) {
        this.completed++;
        this.hist.record((t1 - t0) * 1000);
      } else {
        this.windowErrors++;
        this.totalErrors++;
        if (this.firstError === null) this.firstError = err instanceof Error ? err.message : String(err);
      }
      if (!this.stopped) {
        // After an error, do not re-issue synchronously: a failing client must not spin.
        if (ok) this.issue();
        else setTimeout(() => !this.stopped && this.issue(), 1);
      }
    });
  }
}

/** Waits `ms`, returning early with 'stall' if the loop stops making progress. */
async function watch(loop: LoadLoop, ms: number, stallMs: number): Promise<'ok' | 'stall'> {
  const end = performance.now() + ms;
  for (;;) {
    const now = performance.now();
    if (now >= end) return 'ok';
    if (loop.outstanding > 0 && now - loop.lastProgress > stallMs) return 'stall';
    await sleep(Math.min(50, end - now));
  }
}

/** Longest wait for the calls outstanding at the end of a window, even if they progress. */
const DRAIN_LIMIT_MS = 30_000;

/** After `stop()`: waits until no call is outstanding, or progress stops. */
async function watchDrain(loop: LoadLoop, stallMs: number): Promise<'ok' | 'stall' | 'slow'> {
  const start = performance.now();
  for (;;) {
    if (loop.outstanding === 0) return 'ok';
    const now = performance.now();
    if (now - loop.lastProgress > stallMs) return 'stall';
    if (now - start > DRAIN_LIMIT_MS) return 'slow';
    await sleep(10);
  }
}

// ---------------------------------------------------------------- one cell

interface CellSpec {
  size: number;
  inFlight: number;
}

const payloadCache = new Map<number, string[]>();
function payloadsFor(size: number): string[] {
  let p = payloadCache.get(size);
  if (p === undefined) payloadCache.set(size, (p = makePayloads(size)));
  return p;
}

async function runCell(server: ServerProc, spec: CellSpec, opts: Options): Promise<CellResult> {
  const { transport } = server;
  const base: CellResult = {
    transport,
    size: spec.size,
    inFlight: spec.inFlight,
    status: 'ok',
    note: null,
    calls: 0,
    seconds: 0,
    otherLoad: NaN,
    rps: 0,
    p50Us: NaN,
    p99Us: NaN,
    maxUs: NaN,
    clientCpuUsPerCall: NaN,
    serverCpuUsPerCall: NaN,
    clientWritesPerCall: NaN,
    serverWritesPerCall: NaN,
    wireClientWritesPerCall: null,
    wireServerWritesPerCall: null,
    errors: 0,
    firstError: null,
    diagnostics: null,
  };
  const payloads = payloadsFor(spec.size);
  const client = createClient(transport, HOST, server.port, payloads);
  const loop = new LoadLoop(client, spec.inFlight, payloads.length);
  const fail = async (status: 'hang' | 'failed', note: string): Promise<CellResult> => {
    let serverSockets: SocketState[] | null = null;
    try {
      serverSockets = (await server.stats(1000)).sockets;
    } catch {
      /* the server may be wedged */
    }
    const diagnostics = { client: client.socketState(), server: serverSockets, outstanding: loop.outstanding };
    loop.finish();
    client.destroy();
    server.dirty = true;
    return {
      ...base,
      status,
      note,
      rps: 0,
      errors: loop.totalErrors,
      firstError: loop.firstError,
      diagnostics,
    };
  };

  try {
    await withTimeout(client.connect(), 5000, 'connect');
  } catch (err) {
    return fail('failed', `connect failed: ${(err as Error).message}`);
  }
  loop.start();
  if ((await watch(loop, opts.warmupMs, opts.stallMs)) === 'stall') {
    return fail('hang', `no response for ${opts.stallMs} ms during warm-up (${loop.outstanding} calls outstanding)`);
  }

  // ---- measured window
  loop.resetWindow();
  const w0 = socketWrites.count;
  const lw0 = client.libraryWrites();
  const c0 = process.cpuUsage();
  const m0 = machineBusyUs();
  const t0 = performance.now();
  let s0: ServerStats;
  try {
    s0 = await server.stats(opts.stallMs);
  } catch (err) {
    return fail('hang', `server did not answer: ${(err as Error).message}`);
  }
  if ((await watch(loop, opts.durationMs, opts.stallMs)) === 'stall') {
    return fail('hang', `no response for ${opts.stallMs} ms during the measured window (${loop.outstanding} calls outstanding)`);
  }
  const t1 = performance.now();
  const c1 = process.cpuUsage(c0);
  const m1 = machineBusyUs();
  const w1 = socketWrites.count;
  const lw1 = client.libraryWrites();
  const calls = loop.completed;
  const hist = loop.hist;
  const windowErrors = loop.windowErrors;
  let s1: ServerStats;
  try {
    s1 = await server.stats(opts.stallMs);
  } catch (err) {
    return fail('hang', `server did not answer: ${(err as Error).message}`);
  }

  // ---- drain and close
  loop.stop();
  const drained = await watchDrain(loop, opts.stallMs);
  if (drained !== 'ok' || calls === 0) {
    const why =
      drained === 'stall'
        ? `${loop.outstanding} calls never came back (no response for ${opts.stallMs} ms after the window)`
        : drained === 'slow'
          ? `${loop.outstanding} calls still outstanding ${DRAIN_LIMIT_MS} ms after the window`
          : 'no call completed in the measured window';
    return fail('hang', `${why}; ${calls} calls had completed in the window`);
  }
  loop.finish();
  client.destroy();
  const note: string | null = windowErrors > 0 ? `${windowErrors} errors in the measured window` : null;

  const seconds = (t1 - t0) / 1000;
  const per = (x: number) => (calls > 0 ? x / calls : NaN);
  const serverCpu = s1.cpu.user + s1.cpu.system - (s0.cpu.user + s0.cpu.system);
  // Whatever else kept the machine's cores busy during the window, in cores (0..nproc).
  const otherLoad =
    m0 !== null && m1 !== null ? Math.max(0, m1 - m0 - (c1.user + c1.system) - serverCpu) / (seconds * 1e6) : NaN;
  return {
    ...base,
    note,
    calls,
    seconds,
    rps: calls / seconds,
    p50Us: hist.percentile(0.5),
    p99Us: hist.percentile(0.99),
    maxUs: hist.count > 0 ? hist.max : NaN,
    otherLoad,
    clientCpuUsPerCall: per(c1.user + c1.system),
    serverCpuUsPerCall: per(serverCpu),
    clientWritesPerCall: per(w1 - w0),
    serverWritesPerCall: per(s1.socketWrites - s0.socketWrites),
    wireClientWritesPerCall: lw0 !== null && lw1 !== null ? per(lw1 - lw0) : null,
    wireServerWritesPerCall:
      s0.wireWrites !== null && s1.wireWrites !== null ? per(s1.wireWrites - s0.wireWrites) : null,
    errors: loop.totalErrors,
    firstError: loop.firstError,
    diagnostics: null,
  };
}

// ---------------------------------------------------------------- main

/** Other processes used more than this many cores during a window: the cell is measured again. */
const DISTURBED_LOAD = 0.15;
const MAX_RETRIES_PER_CELL = 2;

function disturbed(r: CellResult): boolean {
  return r.status === 'ok' && r.otherLoad > DISTURBED_LOAD;
}

function plan(opts: Options): CellSpec[] {
  const cells: CellSpec[] = [];
  const seen = new Set<string>();
  const add = (size: number, inFlight: number) => {
    const key = `${size}x${inFlight}`;
    if (seen.has(key)) return;
    seen.add(key);
    cells.push({ size, inFlight });
  };
  for (const size of opts.sizes) for (const n of opts.matrixInFlight) add(size, n);
  // The load sweep is at the smallest payload; cells shared with the matrix are measured once.
  const sweepSize = Math.min(...opts.sizes);
  for (const n of opts.sweepInFlight) add(sweepSize, n);
  return cells;
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const startedAt = new Date();
  const runStart = performance.now();
  installSocketWriteCounter();

  // Before pinning: afterwards this process only sees its own core.
  const nproc = os.availableParallelism();
  const taskset = nproc >= 2 ? findTaskset() : null;
  let pinned = false;
  if (taskset !== null) pinned = pinProcess(taskset, process.pid, CLIENT_CORE);
  const cells = plan(opts);
  const perCellMs = opts.warmupMs + opts.durationMs + 300;
  const expectedMs = cells.length * opts.transports.length * perCellMs;
  // Bounded time: every cell has its own stall timeout; this is the backstop.
  const budgetMs = expectedMs * 2 + 120_000;
  const backstop = setTimeout(() => {
    log(`bench: exceeded its time budget of ${Math.round(budgetMs / 1000)} s, aborting`);
    killAllChildren();
    process.exit(2);
  }, budgetMs);
  backstop.unref();

  log(
    `bench: ${opts.quick ? 'quick' : 'full'} mode, ${cells.length} cells x ${opts.transports.length} transports, ` +
      `warm-up ${opts.warmupMs} ms + ${opts.durationMs} ms each (about ${Math.round(expectedMs / 1000)} s)`,
  );
  log(
    taskset === null
      ? 'bench: taskset not found (or a single CPU): processes are not pinned'
      : `bench: client pinned to core ${CLIENT_CORE} (${pinned ? `allowed ${allowedCpus(process.pid)}` : 'taskset failed'}), servers to core ${SERVER_CORE}`,
  );

  const servers = new Map<TransportName, ServerProc>();
  for (const t of opts.transports) servers.set(t, new ServerProc(t, taskset, opts.profileDir));
  const results: CellResult[] = [];
  let serverCpus = '?';
  let retriesLeft = opts.quick ? 4 : 16;
  let retried = 0;
  let index = 0;
  const total = cells.length * opts.transports.length;
  try {
    for (const cell of cells) {
      // Transports alternate within a cell, so drift over the run hits all of them alike.
      for (const t of opts.transports) {
        index++;
        const server = servers.get(t)!;
        if (server.dirty || !server.alive) {
          if (server.dirty) log(`  restarting the ${TRANSPORT_LABEL[t]} server`);
          await server.stop(true);
          await server.start();
          serverCpus = allowedCpus(server.pid);
        }
        const label = `[${String(index).padStart(2)}/${total}] ${sizeLabel(cell.size).padStart(6)} x ${String(cell.inFlight).padStart(4)} in flight  ${TRANSPORT_LABEL[t].padEnd(10)}`;
        let r = await runCell(server, cell, opts);
        log(`${label} ${describe(r)}`);
        // Other processes took a noticeable share of the machine: measure again, keep the quieter run.
        for (let attempt = 1; attempt <= MAX_RETRIES_PER_CELL && disturbed(r) && retriesLeft > 0; attempt++) {
          retriesLeft--;
          retried++;
          await sleep(500);
          if (server.dirty || !server.alive) {
            await server.stop(true);
            await server.start();
          }
          const again = await runCell(server, cell, opts);
          log(`${' '.repeat(label.length - 8)}(again) ${describe(again)}`);
          if (again.status === 'ok' && !(again.otherLoad >= r.otherLoad)) r = { ...again, retries: attempt };
          else r = { ...r, retries: attempt };
        }
        results.push(r);
        await sleep(50);
      }
    }
  } finally {
    await Promise.all([...servers.values()].map((s) => s.stop(s.dirty)));
    killAllChildren();
  }

  const info: RunInfo = {
    command: process.env.npm_lifecycle_event !== undefined ? `npm run ${process.env.npm_lifecycle_event}` : `node ${relative(ROOT, fileURLToPath(import.meta.url))} ${process.argv.slice(2).join(' ')}`.trim(),
    date: startedAt.toISOString(),
    mode: opts.quick ? 'quick' : 'full',
    warmupMs: opts.warmupMs,
    durationMs: opts.durationMs,
    stallMs: opts.stallMs,
    nproc,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    node: process.version,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    pinning:
      taskset !== null && pinned
        ? `server child on core ${SERVER_CORE} (allowed CPUs ${serverCpus}), client (this process) on core ${CLIENT_CORE} (allowed CPUs ${allowedCpus(process.pid)}), via taskset`
        : 'not pinned (taskset unavailable)',
    nestVersions: nestVersions(),
    totalSeconds: (performance.now() - runStart) / 1000,
    disturbedLoad: DISTURBED_LOAD,
    retried,
    sizes: opts.sizes,
    matrixInFlight: opts.matrixInFlight,
    sweepInFlight: opts.sweepInFlight,
    transports: opts.transports,
    chartPath: relative(dirname(opts.out), opts.chart).split('\\').join('/'),
  };
  mkdirSync(dirname(opts.json), { recursive: true });
  writeFileSync(opts.json, JSON.stringify({ info, results }, null, 2) + '\n');
  mkdirSync(dirname(opts.out), { recursive: true });
  mkdirSync(dirname(opts.chart), { recursive: true });
  writeFileSync(opts.chart, renderChart(info, results));
  writeFileSync(opts.out, renderMarkdown(info, results));
  log(`bench: done in ${info.totalSeconds.toFixed(0)} s; wrote ${relative(ROOT, opts.out)}, ${relative(ROOT, opts.chart)}, ${relative(ROOT, opts.json)}`);
}

export function sizeLabel(size: number): string {
  return size >= 1024 ? `${size / 1024} KiB` : `${size} B`;
}

function describe(r: CellResult): string {
  if (r.status !== 'ok') return `${r.status.toUpperCase()}: ${r.note ?? ''}${r.firstError ? ` (first error: ${r.firstError})` : ''}`;
  const errs = r.errors > 0 ? `  errors ${r.errors} (${r.firstError})` : '';
  return (
    `${Math.round(r.rps).toLocaleString('en-US').padStart(9)} req/s  p50 ${formatUs(r.p50Us).padStart(9)}  p99 ${formatUs(r.p99Us).padStart(9)}  ` +
    `cpu µs/call client ${r.clientCpuUsPerCall.toFixed(1)} server ${r.serverCpuUsPerCall.toFixed(1)}  ` +
    `writes/call ${r.clientWritesPerCall.toFixed(3)}/${r.serverWritesPerCall.toFixed(3)}  other load ${fmtLoad(r.otherLoad)}${errs}${r.note ? `  (${r.note})` : ''}`
  );
}

function fmtLoad(x: number): string {
  return Number.isFinite(x) ? `${x.toFixed(2)} cores` : '?';
}

function nestVersions(): string {
  const out: string[] = [];
  for (const name of ['@nestjs/core', '@nestjs/microservices']) {
    try {
      const pkg = JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as {
        version: string;
      };
      out.push(`${name} ${pkg.version}`);
    } catch {
      out.push(`${name} ?`);
    }
  }
  return out.join(', ');
}

process.on('exit', killAllChildren);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    log(`bench: ${signal}, stopping`);
    killAllChildren();
    process.exit(130);
  });
}

main().catch((err: unknown) => {
  log(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  killAllChildren();
  process.exit(1);
});
