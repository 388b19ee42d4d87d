/**
 * `npm run bench` / `npm run bench:quick`: closed-loop echo benchmark of nest-wire
 * against Nest's TCP transport and a raw-socket ceiling. See BENCHMARKS.md ("How it
 * is measured") for the method; this file only orchestrates:
 *
 *   parent (this process, client side, core 1)  <-- IPC -->  one server child per transport (core 0)
 *
 * For every cell (payload size x requests in flight) each transport gets a fresh
 * client connection, a warm-up, then a measured window. A cell that stops making
 * progress is reported as a hang; its server child is killed and restarted. After the
 * matrix come the sections of sections.ts: compression, head-of-line blocking, the
 * cost of the always-on stats, and memory per call in flight.
 */
import 'reflect-metadata';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { basename, dirname, extname, join, relative, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { DISTURBED_LOAD, ensureServer, runCellWithRetries, type CellSpec, type RetryBudget } from './cell.js';
import {
  allowedCpus,
  findTaskset,
  installSocketWriteCounter,
  pinProcess,
  TRANSPORT_LABEL,
  TRANSPORTS,
  type TransportName,
} from './common.js';
import { log, sleep } from './loop.js';
import { renderChart, renderMarkdown, type CellResult, type ExtraSections, type RunInfo } from './report.js';
import {
  getClientGc,
  runCompression,
  runHeadOfLine,
  runMemory,
  runStatsCost,
  type SectionContext,
} from './sections.js';
import { killAllChildren, SERVER_CORE, ServerProc } from './server-proc.js';
import { runUserCalls, USER_CELLS, USER_CELLS_QUICK, type UserCellSpec } from './user-calls.js';

const HERE = dirname(fileURLToPath(import.meta.url)); // dist/bench
const ROOT = resolve(HERE, '..', '..');
const CLIENT_CORE = 1;

// ---------------------------------------------------------------- options

export const SECTIONS = ['matrix', 'user', 'compression', 'hol', 'stats', 'memory'] as const;
export type Section = (typeof SECTIONS)[number];

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
  sections: Section[];
  /** Calls held in flight by the memory cells. */
  memCalls: number;
  /** Iterations of the stats() micro-measure. */
  statsIterations: number;
  out: string;
  chart: string;
  json: string;
  /** Directory for V8 CPU profiles of the server children (--profile), or null. */
  profileDir: string | null;
  /** Cells of the user section (--user-cells), or null for its default list. */
  userCells: UserCellSpec[] | null;
}

const USAGE = `usage: node dist/bench/run.js [--quick] [--duration=ms] [--warmup=ms] [--stall=ms]
  [--transports=nest-wire,nest-tcp,raw] [--sizes=128,4096,65536] [--inflight=1,16,256] [--sweep=1,4,16,...]
  [--sections=matrix,user,compression,hol,stats,memory] [--mem-calls=10000]
  [--out=BENCHMARKS.md] [--chart=bench/chart.svg] [--json=bench/results/full.json] [--profile]
  [--user-cells=128x256,128x4x64] (user section: SIZE x IN-FLIGHT [x CONNECTIONS])
  (with --out and no --chart / --json, those are written next to --out: <name>.svg, <name>.json)`;
const KNOWN_FLAGS = [
  'quick',
  'duration',
  'warmup',
  'stall',
  'transports',
  'sizes',
  'inflight',
  'sweep',
  'sections',
  'mem-calls',
  'out',
  'chart',
  'json',
  'profile',
  'user-cells',
  'help',
];

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
  const list = (name: string, dflt: number[]) => (flags.has(name) ? flags.get(name)!.split(',').map(Number) : dflt);
  const transports = flags.has('transports')
    ? (flags.get('transports')!.split(',') as TransportName[])
    : [...TRANSPORTS];
  for (const t of transports)
    if (!TRANSPORTS.includes(t)) throw new Error(`unknown transport ${t} (${TRANSPORTS.join(', ')})`);
  const sections = flags.has('sections') ? (flags.get('sections')!.split(',') as Section[]) : [...SECTIONS];
  for (const x of sections) if (!SECTIONS.includes(x)) throw new Error(`unknown section ${x} (${SECTIONS.join(', ')})`);
  const resultsDir = join(ROOT, 'bench', 'results');
  const out = flags.get('out');
  // An explicit --out carries its chart and raw results along, so a scratch run touches nothing else.
  const beside = (ext: string) =>
    out === undefined ? undefined : join(dirname(resolve(out)), basename(out, extname(out)) + ext);
  return {
    quick,
    warmupMs: num('warmup', quick ? 250 : 1000),
    durationMs: num('duration', quick ? 1000 : 5000),
    stallMs: num('stall', quick ? 2000 : 3000),
    transports,
    sizes: list('sizes', [128, 4096, 65536]),
    matrixInFlight: list('inflight', quick ? [1, 256] : [1, 16, 256]),
    sweepInFlight: list('sweep', quick ? [1, 16, 256, 4096] : [1, 4, 16, 64, 256, 1024, 4096]),
    sections,
    memCalls: Math.round(num('mem-calls', quick ? 4096 : 10_000)),
    statsIterations: 10_000,
    // Quick runs do not overwrite the committed report.
    out:
      out !== undefined ? resolve(out) : quick ? join(resultsDir, 'BENCHMARKS.quick.md') : join(ROOT, 'BENCHMARKS.md'),
    chart:
      flags.get('chart') ??
      beside('.svg') ??
      (quick ? join(resultsDir, 'chart.quick.svg') : join(ROOT, 'bench', 'chart.svg')),
    json: flags.get('json') ?? beside('.json') ?? join(resultsDir, quick ? 'quick.json' : 'full.json'),
    profileDir: flags.has('profile') ? join(resultsDir, 'profiles') : null,
    userCells: flags.has('user-cells') ? parseUserCells(flags.get('user-cells')!) : null,
  };
}

/** `128x256,128x4x64`: size x in flight per connection [x connections]. */
function parseUserCells(text: string): UserCellSpec[] {
  return text.split(',').map((cell) => {
    const parts = cell.split('x').map(Number);
    if (parts.length < 2 || parts.length > 3 || !parts.every((n) => Number.isInteger(n) && n > 0))
      throw new Error(`--user-cells: bad cell ${cell} (SIZExINFLIGHT or SIZExINFLIGHTxCONNECTIONS)`);
    return { size: parts[0], inFlight: parts[1], connections: parts[2] ?? 1 };
  });
}

// ---------------------------------------------------------------- main

function plan(opts: Options): CellSpec[] {
  if (!opts.sections.includes('matrix')) return [];
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

/** Rough duration of the sections after the matrix, in ms (for the estimate and the time budget). */
function extraMs(opts: Options): number {
  const cell = opts.warmupMs + opts.durationMs + 300;
  const has = (t: TransportName) => opts.transports.includes(t);
  let ms = 0;
  if (opts.sections.includes('user'))
    ms +=
      (opts.userCells ?? (opts.quick ? USER_CELLS_QUICK : USER_CELLS)).length * opts.transports.length * (cell + 500);
  if (opts.sections.includes('compression') && has('nest-wire')) ms += 3 * (cell + 1500);
  const hol = (['nest-wire', 'nest-tcp'] as TransportName[]).filter(has).length;
  if (opts.sections.includes('hol')) ms += hol * (opts.warmupMs * 2 + opts.durationMs * 2 + 1000);
  if (opts.sections.includes('stats') && has('nest-wire')) ms += 2000;
  if (opts.sections.includes('memory')) ms += hol * (4000 + opts.memCalls);
  return ms;
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
  const expectedMs = cells.length * opts.transports.length * perCellMs + extraMs(opts);
  // Bounded time: every cell has its own stall timeout; this is the backstop.
  const budgetMs = expectedMs * 2 + 120_000;
  const backstop = setTimeout(() => {
    log(`bench: exceeded its time budget of ${Math.round(budgetMs / 1000)} s, aborting`);
    killAllChildren();
    process.exit(2);
  }, budgetMs);
  backstop.unref();
  // Taken now, before any client exists: the memory cells need a full GC in this process.
  if (opts.sections.includes('memory')) getClientGc();

  log(
    `bench: ${opts.quick ? 'quick' : 'full'} mode, ${cells.length} cells x ${opts.transports.length} transports, ` +
      `warm-up ${opts.warmupMs} ms + ${opts.durationMs} ms each, then ${opts.sections.filter((x) => x !== 'matrix').join(', ') || 'nothing else'} ` +
      `(about ${Math.round(expectedMs / 1000)} s)`,
  );
  log(
    taskset === null
      ? 'bench: taskset not found (or a single CPU): processes are not pinned'
      : `bench: client pinned to core ${CLIENT_CORE} (${pinned ? `allowed ${allowedCpus(process.pid)}` : 'taskset failed'}), servers to core ${SERVER_CORE}`,
  );

  const servers = new Map<TransportName, ServerProc>();
  for (const t of opts.transports) servers.set(t, new ServerProc(t, taskset, opts.profileDir));
  const results: CellResult[] = [];
  const extras: ExtraSections = {};
  let serverCpus = '?';
  const budget: RetryBudget = { left: opts.quick ? 4 : 16, used: 0 };
  let index = 0;
  const total = cells.length * opts.transports.length;
  try {
    for (const cell of cells) {
      // Transports alternate within a cell, so drift over the run hits all of them alike.
      for (const t of opts.transports) {
        index++;
        const server = servers.get(t)!;
        if (await ensureServer(server)) serverCpus = allowedCpus(server.pid);
        const label = `[${String(index).padStart(2)}/${total}] ${sizeLabel(cell.size).padStart(6)} x ${String(cell.inFlight).padStart(4)} in flight  ${TRANSPORT_LABEL[t].padEnd(10)}`;
        results.push(await runCellWithRetries(server, cell, opts, budget, label));
        await sleep(50);
      }
    }
    const ctx: SectionContext = { timing: opts, transports: opts.transports, taskset, budget, servers };
    const has = (x: Section) => opts.sections.includes(x);
    if (has('user'))
      extras.user = await runUserCalls(
        servers,
        opts.transports,
        opts,
        budget,
        opts.userCells ?? (opts.quick ? USER_CELLS_QUICK : USER_CELLS),
        opts.profileDir,
      );
    if (has('compression') && opts.transports.includes('nest-wire')) extras.compression = await runCompression(ctx);
    if (has('hol')) extras.hol = await runHeadOfLine(ctx);
    if (has('stats')) extras.statsCost = await runStatsCost(ctx, opts.statsIterations);
    if (has('memory')) extras.memory = await runMemory(ctx, opts.memCalls);
    for (const s of servers.values()) if (s.alive && serverCpus === '?') serverCpus = allowedCpus(s.pid);
  } finally {
    await Promise.all([...servers.values()].map((s) => s.stop(s.dirty)));
    killAllChildren();
  }

  const info: RunInfo = {
    command:
      process.env.npm_lifecycle_event !== undefined
        ? `npm run ${process.env.npm_lifecycle_event}`
        : `node ${relative(ROOT, fileURLToPath(import.meta.url))} ${process.argv.slice(2).join(' ')}`.trim(),
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
    retried: budget.used,
    sizes: opts.sizes,
    matrixInFlight: opts.matrixInFlight,
    sweepInFlight: opts.sweepInFlight,
    transports: opts.transports,
    chartPath: relative(dirname(opts.out), opts.chart).split('\\').join('/'),
  };
  mkdirSync(dirname(opts.json), { recursive: true });
  writeFileSync(opts.json, JSON.stringify({ info, results, extras }, null, 2) + '\n');
  mkdirSync(dirname(opts.out), { recursive: true });
  mkdirSync(dirname(opts.chart), { recursive: true });
  writeFileSync(opts.chart, renderChart(info, results));
  writeFileSync(opts.out, renderMarkdown(info, results, extras) + sectionsOfOtherScripts(opts.out));
  log(
    `bench: done in ${info.totalSeconds.toFixed(0)} s; wrote ${relative(ROOT, opts.out)}, ${relative(ROOT, opts.chart)}, ${relative(ROOT, opts.json)}`,
  );
}

/**
 * Sections this run does not write, kept from the file being replaced: the hand-written
 * performance notes and "Tail latency" (written by bench/tail-latency.ts). They stay at the
 * end of the file; everything from the first of them on is kept.
 */
const KEPT_SECTIONS = ['\n## Performance notes\n', '\n## Tail latency\n'];

function sectionsOfOtherScripts(path: string): string {
  let previous: string;
  try {
    previous = readFileSync(path, 'utf8');
  } catch {
    return '';
  }
  const found = KEPT_SECTIONS.map((heading) => previous.indexOf(heading)).filter((at) => at >= 0);
  return found.length === 0 ? '' : previous.slice(Math.min(...found));
}

export function sizeLabel(size: number): string {
  return size >= 1048576 && size % 1048576 === 0
    ? `${size / 1048576} MiB`
    : size >= 1024
      ? `${size / 1024} KiB`
      : `${size} B`;
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
