/** BENCHMARKS.md and the SVG chart, generated from the results of one run. */
import type { SocketState, TransportName } from './common.js';
import { PAYLOAD_VARIANTS, TRANSPORT_LABEL } from './common.js';

export interface CellResult {
  transport: TransportName;
  size: number;
  inFlight: number;
  /** 'hang': no progress for the stall timeout; 'failed': could not run (connect, server). */
  status: 'ok' | 'hang' | 'failed';
  note: string | null;
  /** Calls completed (and checked) in the measured window. */
  calls: number;
  seconds: number;
  /** CPU used by other processes on the machine during the window, in cores (NaN if unknown). */
  otherLoad: number;
  /** Times the cell was measured again because other processes disturbed it (this is the quietest run). */
  retries?: number;
  rps: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
  clientCpuUsPerCall: number;
  serverCpuUsPerCall: number;
  /** libuv write requests (≈ write syscalls) per call, same counter for every transport. */
  clientWritesPerCall: number;
  serverWritesPerCall: number;
  /** nest-wire's own `counters().writes` per call (client) and the server's, when available. */
  wireClientWritesPerCall: number | null;
  wireServerWritesPerCall: number | null;
  /** Bytes the client socket wrote / read per call (`socket.bytesWritten` / `bytesRead` deltas). */
  socketBytesOutPerCall?: number | null;
  socketBytesInPerCall?: number | null;
  /** nest-wire: the same from the client's `stats().transport` (bytesOut / bytesIn). */
  wireBytesOutPerCall?: number | null;
  wireBytesInPerCall?: number | null;
  /** Failed or mismatched calls over the whole cell (warm-up, window and drain). */
  errors: number;
  firstError: string | null;
  diagnostics: { client: SocketState | null; server: SocketState[] | null; outstanding: number } | null;
}

/** Compression cells: nest-wire echoing a compressible payload, compression off / deflate / brotli. */
export interface CompressionSection {
  size: number;
  inFlight: number;
  /** Length of one payload's msgpack encoding (what nest-wire would send uncompressed). */
  msgpackBytes: number;
  rows: { algorithm: 'off' | 'deflate' | 'brotli'; result: CellResult }[];
}

export interface LatencySummary {
  calls: number;
  rps: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
  /** CPU time of the client (this process) and of the server child over the window, in cores. */
  clientCores: number;
  serverCores: number;
  otherLoad: number;
}

/** Head-of-line cells: small calls alone, then sharing their connection with a stream of large responses. */
export interface HolResult {
  transport: TransportName;
  status: 'ok' | 'hang' | 'failed';
  note: string | null;
  alone: LatencySummary | null;
  withBlobs: LatencySummary | null;
  /** The large responses completed during the "with" window. */
  blobs: { completed: number; mibPerSec: number; p50Us: number; maxUs: number } | null;
  errors: number;
  firstError: string | null;
}

export interface HolSection {
  smallSize: number;
  smallInFlight: number;
  blobBytes: number;
  blobInFlight: number;
  stallMs: number;
  rows: HolResult[];
}

/** Micro-measures of the always-on statistics. */
export interface StatsCostSection {
  iterations: number;
  /** Batches of `iterations` calls; the median batch is reported. */
  batches?: number;
  clientStatsUs: number | null;
  clientCountersUs: number | null;
  serverStatsUs: number | null;
  /** `CallStats.settled()` (the per-call upkeep: counters and one histogram record), in ns; null if not importable. */
  upkeepNs: number | null;
  note: string | null;
}

export interface MemoryResult {
  transport: TransportName;
  status: 'ok' | 'failed';
  note: string | null;
  /** Calls held in flight. */
  n: number;
  /** Heap delta per in-flight call after a full GC (heapUsed, and external + array buffers). */
  client: { heap: number; external: number } | null;
  server: { heap: number; external: number } | null;
  /** Heap still above the baseline per call once all calls completed (after a full GC). */
  clientAfter: { heap: number; external: number } | null;
  serverAfter: { heap: number; external: number } | null;
  errors: number;
  firstError: string | null;
}

export interface MemorySection {
  n: number;
  gcClient: boolean;
  rows: MemoryResult[];
}

/** One cell of the user-shaped section (bench/user-calls.ts). */
export interface UserCallsResult {
  transport: TransportName;
  size: number;
  /** Calls in flight per connection. */
  inFlight: number;
  connections: number;
  status: 'ok' | 'hang' | 'failed';
  note: string | null;
  rps: number;
  p50Us: number;
  p99Us: number;
  clientCpuUsPerCall: number;
  serverCpuUsPerCall: number;
  /** CPU time over wall time in the window: how busy each process's core was (0..1). */
  clientCores: number;
  serverCores: number;
  /** Calls completed per socket write of each process (how many frames a write batches). */
  clientCallsPerWrite: number;
  serverCallsPerWrite: number;
  otherLoad: number;
  errors: number;
}

export interface UserCallsSection {
  rows: UserCallsResult[];
}

/** The sections measured besides the payload × in-flight matrix; a missing one was not run. */
export interface ExtraSections {
  user?: UserCallsSection;
  compression?: CompressionSection;
  hol?: HolSection;
  statsCost?: StatsCostSection;
  memory?: MemorySection;
}

export interface RunInfo {
  command: string;
  date: string;
  mode: 'quick' | 'full';
  warmupMs: number;
  durationMs: number;
  stallMs: number;
  nproc: number;
  cpuModel: string;
  node: string;
  platform: string;
  pinning: string;
  nestVersions: string;
  totalSeconds: number;
  disturbedLoad: number;
  retried: number;
  sizes: number[];
  matrixInFlight: number[];
  sweepInFlight: number[];
  transports: TransportName[];
  /** Path of the chart relative to the markdown file. */
  chartPath: string;
}

// ---------------------------------------------------------------- formatting

const COLORS: Record<TransportName, string> = { 'nest-wire': '#2563eb', 'nest-tcp': '#dc2626', raw: '#6b7280' };

export function sizeLabel(size: number): string {
  return size >= 1048576 && size % 1048576 === 0
    ? `${size / 1048576} MiB`
    : size >= 1024
      ? `${size / 1024} KiB`
      : `${size} B`;
}

function fmtUs(us: number): string {
  if (!Number.isFinite(us)) return '–';
  if (us < 1000) return `${us.toFixed(us < 100 ? 1 : 0)} µs`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(us < 10_000 ? 2 : 1)} ms`;
  return `${(us / 1_000_000).toFixed(2)} s`;
}

function fmtRps(r: CellResult | undefined): string {
  if (r === undefined) return '–';
  if (r.status === 'hang') return '**hangs** / 0';
  if (r.status === 'failed') return '**failed** / 0';
  return Math.round(r.rps).toLocaleString('en-US');
}

function fmtNum(x: number | null | undefined, digits = 1): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits);
}

function ratio(a: CellResult | undefined, b: CellResult | undefined): string {
  if (a === undefined || b === undefined) return '–';
  if (a.status !== 'ok' && b.status !== 'ok') return 'both fail';
  if (b.status !== 'ok') return `∞ (${TRANSPORT_LABEL[b.transport]} ${b.status === 'hang' ? 'hangs' : 'fails'})`;
  if (a.status !== 'ok') return '0';
  return `${(a.rps / b.rps).toFixed(2)}×`;
}

function latencyTriple(rs: (CellResult | undefined)[], key: 'p50Us' | 'p99Us'): string {
  return rs.map((r) => (r === undefined ? '–' : r.status !== 'ok' ? r.status : fmtUs(r[key]))).join(' · ');
}

class Index {
  private readonly map = new Map<string, CellResult>();
  constructor(results: CellResult[]) {
    for (const r of results) this.map.set(`${r.transport}|${r.size}|${r.inFlight}`, r);
  }
  get(t: TransportName, size: number, inFlight: number): CellResult | undefined {
    return this.map.get(`${t}|${size}|${inFlight}`);
  }
}

// ---------------------------------------------------------------- markdown

export function renderMarkdown(info: RunInfo, results: CellResult[], extras: ExtraSections = {}): string {
  const idx = new Index(results);
  const ts = info.transports;
  const has = (t: TransportName) => ts.includes(t);
  const order: TransportName[] = (['nest-wire', 'nest-tcp', 'raw'] as TransportName[]).filter(has);
  const sweepSize = Math.min(...info.sizes);
  const L: string[] = [];
  L.push('# Benchmarks');
  L.push('');
  L.push(
    `Generated by \`${info.command}\` (bench/run.ts); do not edit by hand, re-run it. ` +
      `nest-wire against Nest's built-in TCP transport and a raw-socket ceiling, echo requests over loopback.`,
  );
  L.push('');
  L.push('| | |');
  L.push('|---|---|');
  L.push(
    `| Command | \`${info.command}\` (${info.mode} mode: warm-up ${info.warmupMs} ms, measured window ${info.durationMs} ms per cell, hang after ${info.stallMs} ms without a response) |`,
  );
  L.push(`| Date | ${info.date} (run took ${Math.round(info.totalSeconds)} s) |`);
  L.push(`| Machine | ${info.nproc} CPUs (nproc), ${info.cpuModel}, ${info.platform} |`);
  L.push(`| Node | ${info.node}; ${info.nestVersions} |`);
  L.push(`| Pinning | ${info.pinning} |`);
  L.push(
    `| Payload | a string of exactly N ASCII characters ([0-9a-z]), sent as the message data of \`send('echo', payload)\`; the handler (\`@MessagePattern('echo')\`) returns it unchanged. ${PAYLOAD_VARIANTS} different strings per size are used in turn. The raw ceiling sends the same characters as N bytes. |`,
  );
  L.push('');

  // Summary
  const summary = [...summarize(results, idx, info), ...summarizeExtras(extras)];
  if (summary.length > 0) {
    L.push('## Summary');
    L.push('');
    for (const s of summary) L.push(`- ${s}`);
    L.push('');
  }
  L.push(`![Throughput and p99 latency per cell](${info.chartPath})`);
  L.push('');

  // Per payload size
  L.push('## Results by payload size');
  L.push('');
  L.push(
    'req/s are calls completed and checked per second of the measured window; p50 / p99 are the latency of one call (send to checked response) ' +
      'with that many calls kept in flight. Ratios compare req/s.',
  );
  L.push('');
  for (const size of info.sizes) {
    const inflights = uniqueSorted(results.filter((r) => r.size === size).map((r) => r.inFlight)).filter(
      (n) => info.matrixInFlight.includes(n) || size !== sweepSize,
    );
    L.push(`### ${sizeLabel(size)}`);
    L.push('');
    const head = ['in flight', ...order.map((t) => `${TRANSPORT_LABEL[t]} req/s`)];
    if (has('nest-wire') && has('nest-tcp')) head.push('nest-wire / TCP');
    if (has('nest-wire') && has('raw')) head.push('nest-wire / raw');
    head.push(
      `p50 (${order.map((t) => TRANSPORT_LABEL[t]).join(' · ')})`,
      `p99 (${order.map((t) => TRANSPORT_LABEL[t]).join(' · ')})`,
    );
    L.push(row(head));
    L.push(row(head.map((_, i) => (i === 0 ? '---:' : '---:'))));
    for (const n of inflights) {
      const rs = order.map((t) => idx.get(t, size, n));
      const cells = [String(n), ...rs.map(fmtRps)];
      if (has('nest-wire') && has('nest-tcp'))
        cells.push(ratio(idx.get('nest-wire', size, n), idx.get('nest-tcp', size, n)));
      if (has('nest-wire') && has('raw')) cells.push(ratio(idx.get('nest-wire', size, n), idx.get('raw', size, n)));
      cells.push(latencyTriple(rs, 'p50Us'), latencyTriple(rs, 'p99Us'));
      L.push(row(cells));
    }
    L.push('');
    L.push('<details><summary>CPU and socket writes per call</summary>');
    L.push('');
    L.push(
      detailTable(
        order,
        inflights.map((n) => [size, n]),
        idx,
      ),
    );
    L.push('');
    L.push('</details>');
    L.push('');
  }

  // Load sweep
  L.push(`## Load sweep (${sizeLabel(sweepSize)})`);
  L.push('');
  L.push('Throughput and latency as the number of calls kept in flight grows (one connection per client).');
  L.push('');
  {
    const head = ['in flight', ...order.map((t) => `${TRANSPORT_LABEL[t]} req/s`)];
    if (has('nest-wire') && has('nest-tcp')) head.push('nest-wire / TCP');
    if (has('nest-wire') && has('raw')) head.push('nest-wire / raw');
    head.push(...order.map((t) => `p99 ${TRANSPORT_LABEL[t]}`));
    L.push(row(head));
    L.push(row(head.map(() => '---:')));
    for (const n of info.sweepInFlight) {
      const rs = order.map((t) => idx.get(t, sweepSize, n));
      const cells = [String(n), ...rs.map(fmtRps)];
      if (has('nest-wire') && has('nest-tcp'))
        cells.push(ratio(idx.get('nest-wire', sweepSize, n), idx.get('nest-tcp', sweepSize, n)));
      if (has('nest-wire') && has('raw'))
        cells.push(ratio(idx.get('nest-wire', sweepSize, n), idx.get('raw', sweepSize, n)));
      cells.push(...rs.map((r) => (r === undefined ? '–' : r.status !== 'ok' ? r.status : fmtUs(r.p99Us))));
      L.push(row(cells));
    }
    L.push('');
    L.push('<details><summary>CPU and socket writes per call</summary>');
    L.push('');
    L.push(
      detailTable(
        order,
        info.sweepInFlight.map((n) => [sweepSize, n]),
        idx,
      ),
    );
    L.push('');
    L.push('</details>');
    L.push('');
  }

  L.push(...renderExtras(info, results, extras));

  // Hangs and errors
  const bad = results.filter((r) => r.status !== 'ok' || r.errors > 0 || r.note !== null);
  const extraBad = extraProblems(extras);
  L.push('## Hangs, errors and anomalies');
  L.push('');
  if (bad.length === 0 && extraBad.length === 0) {
    L.push('None: every call of every cell came back with its own payload.');
  } else {
    for (const line of extraBad) L.push(`- ${line}`);
    for (const r of bad) {
      const where = `${TRANSPORT_LABEL[r.transport]}, ${sizeLabel(r.size)} × ${r.inFlight} in flight`;
      const parts: string[] = [];
      if (r.status !== 'ok') parts.push(`**${r.status}**`);
      if (r.note !== null) parts.push(r.note);
      if (r.errors > 0) parts.push(`${r.errors} failed calls (first: ${r.firstError ?? '?'})`);
      if (r.diagnostics !== null) parts.push(describeDiagnostics(r.diagnostics));
      L.push(`- ${where}: ${parts.join('; ')}.`);
    }
  }
  L.push('');

  const extraLines = extraMethod(extras);
  L.push(extraLines.length > 0 ? METHOD_TEXT(info).trimEnd() : METHOD_TEXT(info));
  L.push(...extraLines);
  return L.join('\n') + '\n';
}

// ---------------------------------------------------------------- extra sections

function fmtBytes(x: number | null | undefined): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '–';
  const sign = x < 0 ? '−' : '';
  const a = Math.abs(x);
  if (a >= 10 * 1024) return `${sign}${(a / 1024).toFixed(1)} KiB`;
  return `${sign}${Math.round(a).toLocaleString('en-US')} B`;
}

function fmtUsFine(us: number | null): string {
  return us === null || !Number.isFinite(us) ? '–' : us < 10 ? `${us.toFixed(2)} µs` : fmtUs(us);
}

function bytesPair(socket: number | null | undefined, lib: number | null | undefined): string {
  return lib === null || lib === undefined ? fmtBytes(socket) : `${fmtBytes(socket)} (stats(): ${fmtBytes(lib)})`;
}

function renderExtras(info: RunInfo, results: CellResult[], x: ExtraSections): string[] {
  const L: string[] = [];
  if (x.user !== undefined) L.push(...renderUserCalls(x.user, info.disturbedLoad));
  if (x.compression !== undefined) L.push(...renderCompression(x.compression));
  if (x.hol !== undefined) L.push(...renderHol(x.hol));
  if (x.statsCost !== undefined) L.push(...renderStatsCost(x.statsCost, info, results));
  if (x.memory !== undefined) L.push(...renderMemory(x.memory));
  return L;
}

function renderUserCalls(u: UserCallsSection, disturbedLoad: number): string[] {
  const L: string[] = [];
  L.push('## Calls as applications make them (objects, default options, `lastValueFrom`)');
  L.push('');
  L.push(
    "Each caller awaits `lastValueFrom(client.send('echo', { id, body }))` (`body` a string of the size shown) and checks that the answer has the same `id` and `body`; " +
      'clients have their default options (nest-wire: `new WireClient({ host, port })`, so the 30 s timeout is on). The raw-socket ceiling echoes `body` as bytes. ' +
      'Every cell runs in fresh processes: its client in a child process of its own (pinned to the client core) and a restarted server, so what earlier cells left in a process (its heap, its compiled code) does not shape the figures. ' +
      '"busy" is CPU time over wall time of each process (1.00 = its core saturated); "calls/write" is calls completed per ' +
      'socket write of each process (how many requests, or answers, one write carries); "other load" is what other processes ' +
      `kept busy meanwhile (above ${disturbedLoad} core a cell is less reliable).`,
  );
  L.push('');
  L.push(
    row([
      'cell',
      'raw socket',
      'Nest TCP',
      'nest-wire',
      'wire / TCP',
      'wire / raw',
      'p50 raw · TCP · wire',
      'CPU µs/call client + server: TCP · wire',
      'busy client / server: TCP · wire',
      'calls/write client / server: TCP · wire',
      'other load (cores) raw · TCP · wire',
    ]),
  );
  L.push(row(Array<string>(11).fill('---')));
  const key = (r: UserCallsResult) => `${r.size}|${r.inFlight}|${r.connections}`;
  const cells = [...new Map(u.rows.map((r) => [key(r), r])).values()];
  const find = (c: UserCallsResult, t: TransportName) => u.rows.find((r) => r.transport === t && key(r) === key(c));
  const rps = (r: UserCallsResult | undefined) =>
    r === undefined ? '–' : r.status !== 'ok' ? `**${r.status}**` : Math.round(r.rps).toLocaleString('en-US');
  const over = (a: UserCallsResult | undefined, b: UserCallsResult | undefined) =>
    a === undefined || b === undefined || a.status !== 'ok' || b.status !== 'ok'
      ? '–'
      : `${(a.rps / b.rps).toFixed(2)}×`;
  const ok = (r: UserCallsResult | undefined): r is UserCallsResult => r !== undefined && r.status === 'ok';
  for (const c of cells) {
    const raw = find(c, 'raw');
    const tcp = find(c, 'nest-tcp');
    const wire = find(c, 'nest-wire');
    const name = `${sizeLabel(c.size)} × ${c.connections > 1 ? `${c.connections} conn × ${c.inFlight}` : c.inFlight}`;
    L.push(
      row([
        name,
        rps(raw),
        rps(tcp),
        rps(wire),
        over(wire, tcp),
        over(wire, raw),
        [raw, tcp, wire].map((r) => (ok(r) ? fmtUs(r.p50Us) : '–')).join(' · '),
        [tcp, wire]
          .map((r) => (ok(r) ? `${fmtNum(r.clientCpuUsPerCall)} + ${fmtNum(r.serverCpuUsPerCall)}` : '–'))
          .join(' · '),
        [tcp, wire].map((r) => (ok(r) ? `${fmtNum(r.clientCores, 2)} / ${fmtNum(r.serverCores, 2)}` : '–')).join(' · '),
        [tcp, wire]
          .map((r) =>
            ok(r) && r.clientCallsPerWrite !== undefined
              ? `${fmtNum(r.clientCallsPerWrite, 1)} / ${fmtNum(r.serverCallsPerWrite, 1)}`
              : '–',
          )
          .join(' · '),
        [raw, tcp, wire].map((r) => (ok(r) ? fmtNum(r.otherLoad, 2) : '–')).join(' · '),
      ]),
    );
  }
  L.push('');
  const notes = u.rows
    .filter((r) => r.note !== null)
    .map((r) => `- ${TRANSPORT_LABEL[r.transport]}, ${sizeLabel(r.size)} × ${r.inFlight}: ${r.note}`);
  if (notes.length > 0) L.push(...notes, '');
  return L;
}

function renderCompression(c: CompressionSection): string[] {
  const L: string[] = [];
  L.push(`## Compression (${sizeLabel(c.size)} of JSON text, nest-wire)`);
  L.push('');
  L.push(
    `nest-wire echoing a compressible payload — JSON text of exactly ${c.size.toLocaleString('en-US')} characters (an array of small records: ids, names, e-mails, cities, tags), ` +
      `${c.msgpackBytes.toLocaleString('en-US')} bytes as msgpack — with ${c.inFlight} calls in flight, without compression and with \`compression: { algorithm }\` ` +
      'on both the `WireServer` and the `WireClient` (default threshold 1 024 bytes, so every request and every response is compressed). ' +
      "Bytes per call are measured at the client's socket (`socket.bytesWritten` / `bytesRead` deltas over the window, frame headers included); " +
      "the client's own `stats().transport` counters are shown in parentheses.",
  );
  L.push('');
  const head = [
    'compression',
    'req/s',
    'p50',
    'p99',
    'client CPU µs/call',
    'server CPU µs/call',
    'bytes/call client → server',
    'bytes/call server → client',
    'wire bytes vs off',
    'errors',
    'other load',
  ];
  L.push(row(head));
  L.push(row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
  const off = c.rows.find((r) => r.algorithm === 'off')?.result;
  const total = (r: CellResult | undefined) =>
    r === undefined || r.status !== 'ok' ? NaN : (r.socketBytesOutPerCall ?? NaN) + (r.socketBytesInPerCall ?? NaN);
  for (const { algorithm, result: r } of c.rows) {
    const name = algorithm === 'off' ? 'off' : `\`${algorithm}\``;
    if (r.status !== 'ok') {
      L.push(row([name, fmtRps(r), '–', '–', '–', '–', '–', '–', '–', String(r.errors), '–']));
      continue;
    }
    const ratioWire = total(r) / total(off);
    L.push(
      row([
        name,
        fmtRps(r),
        fmtUs(r.p50Us),
        fmtUs(r.p99Us),
        fmtNum(r.clientCpuUsPerCall),
        fmtNum(r.serverCpuUsPerCall),
        bytesPair(r.socketBytesOutPerCall, r.wireBytesOutPerCall),
        bytesPair(r.socketBytesInPerCall, r.wireBytesInPerCall),
        Number.isFinite(ratioWire) ? `${(ratioWire * 100).toFixed(1)} %` : '–',
        String(r.errors),
        fmtLoad(r),
      ]),
    );
  }
  L.push('');
  // When does it pay? Bytes saved per call against the CPU it adds per call (both sides).
  const verdicts: string[] = [];
  for (const { algorithm, result: r } of c.rows) {
    if (algorithm === 'off' || off === undefined || off.status !== 'ok' || r.status !== 'ok') continue;
    const saved = total(off) - total(r);
    const extraCpu = r.clientCpuUsPerCall + r.serverCpuUsPerCall - (off.clientCpuUsPerCall + off.serverCpuUsPerCall);
    if (!Number.isFinite(saved) || !Number.isFinite(extraCpu)) continue;
    if (saved <= 0) {
      verdicts.push(`\`${algorithm}\` saved no bytes here`);
    } else if (extraCpu <= 0) {
      verdicts.push(
        `\`${algorithm}\` saves ${fmtBytes(saved)} per call and, in this run, no CPU was added (the smaller frames cost less to move than the compression took)`,
      );
    } else {
      const mbps = saved / extraCpu; // bytes per µs = MB/s
      verdicts.push(
        `\`${algorithm}\` saves ${fmtBytes(saved)} per call (both directions) for ${extraCpu.toFixed(0)} µs of extra CPU (both sides): ` +
          `the transfer time saved exceeds the CPU spent only on links slower than about ${mbps.toFixed(0)} MB/s (${((mbps * 8) / 1000).toFixed(1)} Gbit/s) for this connection`,
      );
    }
  }
  L.push(
    '**When compression pays.** It trades CPU for bytes: it pays on links slower than the CPU can compress — WAN, cross-region, ' +
      'metered or congested links, or a connection whose bandwidth is the bottleneck — and for payloads that compress well (text, JSON, repeated keys). ' +
      'It does not pay on loopback, as here, or on a fast LAN: the bytes cost almost nothing to move, so the CPU spent compressing and decompressing ' +
      'is pure overhead and req/s drops. Already-compressed or random data (images, encrypted blobs) only costs CPU; the library sends a payload ' +
      'uncompressed when compression does not make it smaller, but it has still spent the time trying.' +
      (verdicts.length > 0 ? ` Rough break-even from this run (bytes saved ÷ CPU added): ${verdicts.join('; ')}.` : ''),
  );
  L.push('');
  return L;
}

function renderHol(h: HolSection): string[] {
  const L: string[] = [];
  const blob = sizeLabel(h.blobBytes);
  L.push(`## Head-of-line blocking (${sizeLabel(h.smallSize)} calls next to ${blob} responses)`);
  L.push('');
  L.push(
    `${sizeLabel(h.smallSize)} echo calls, ${h.smallInFlight} in flight on one connection (\`poolSize\` 1), measured alone, then again while the same ` +
      `client connection also receives a stream of ${blob} responses (\`send('blob', ${h.blobBytes})\`, ${h.blobInFlight} in flight, ` +
      'each checked in full). If a large response is written as one frame, every small response queued behind it waits for all of it: ' +
      "the small calls' p99 then grows to about the time one large response takes to cross. Cutting large values into fragments only helps as far as " +
      'the data queued ahead of a small response stays small: whatever already sits in the socket buffers (several MiB each way on Linux loopback with buffer ' +
      'autotuning) still goes first. "busy" is the CPU time of the client and of the server over the window, in cores.',
  );
  L.push('');
  const head = [
    'transport',
    'alone: req/s',
    'alone: p50 · p99 · max',
    `with ${blob}: req/s`,
    `with ${blob}: p50 · p99 · max`,
    'p99 with / alone',
    `${blob} responses (MiB/s, p50)`,
    'busy alone → with (client · server)',
    'other load',
    'errors',
  ];
  L.push(row(head));
  L.push(row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
  const lat = (x: LatencySummary | null) =>
    x === null ? '–' : `${fmtUs(x.p50Us)} · ${fmtUs(x.p99Us)} · ${fmtUs(x.maxUs)}`;
  const rps = (x: LatencySummary | null) => (x === null ? '–' : Math.round(x.rps).toLocaleString('en-US'));
  for (const r of h.rows) {
    const status = r.status === 'ok' ? '' : ` (**${r.status === 'hang' ? 'hangs' : 'failed'}**)`;
    const ratioP99 =
      r.alone !== null && r.withBlobs !== null ? `${(r.withBlobs.p99Us / r.alone.p99Us).toFixed(1)}×` : '–';
    const blobs =
      r.blobs === null ? '–' : `${r.blobs.completed} (${r.blobs.mibPerSec.toFixed(0)} MiB/s, ${fmtUs(r.blobs.p50Us)})`;
    const busy = (x: LatencySummary | null) =>
      x === null ? '–' : `${x.clientCores.toFixed(2)} · ${x.serverCores.toFixed(2)}`;
    L.push(
      row([
        TRANSPORT_LABEL[r.transport] + status,
        rps(r.alone),
        lat(r.alone),
        rps(r.withBlobs),
        lat(r.withBlobs),
        ratioP99,
        blobs,
        `${busy(r.alone)} → ${busy(r.withBlobs)}`,
        `${r.alone === null ? '–' : r.alone.otherLoad.toFixed(2)} · ${r.withBlobs === null ? '–' : r.withBlobs.otherLoad.toFixed(2)}`,
        String(r.errors),
      ]),
    );
  }
  L.push('');
  return L;
}

function renderStatsCost(c: StatsCostSection, info: RunInfo, results: CellResult[]): string[] {
  const L: string[] = [];
  L.push('## Cost of the always-on statistics');
  L.push('');
  L.push(
    "nest-wire's `stats()` counters (calls by outcome, a latency histogram, frames, writes, bytes) are always on: there is no switch to turn them off, " +
      'so every CPU µs/call figure above already includes their upkeep. The lines below are micro-measures (tight loops in one process: ' +
      `the median of ${c.batches ?? 1} batches of ${c.iterations.toLocaleString('en-US')} calls after a warm-up), not end-to-end numbers:`,
  );
  L.push('');
  L.push(
    `- \`WireClient#stats()\`: ${fmtUsFine(c.clientStatsUs)} per call (one connection; copies the counters and reads four percentiles from the histogram).`,
  );
  L.push(`- \`WireServer#stats()\` (timed in the server child): ${fmtUsFine(c.serverStatsUs)} per call.`);
  L.push(`- \`WireClient#counters()\`: ${fmtUsFine(c.clientCountersUs)} per call.`);
  if (c.upkeepNs !== null) {
    const ref = results.find(
      (r) =>
        r.transport === 'nest-wire' &&
        r.size === Math.min(...info.sizes) &&
        r.inFlight === Math.max(...info.matrixInFlight) &&
        r.status === 'ok',
    );
    const share =
      ref !== undefined
        ? ` — about ${((c.upkeepNs / 1000 / ref.clientCpuUsPerCall) * 100).toFixed(1)} % of the client's ${fmtNum(ref.clientCpuUsPerCall)} µs of CPU per call at ${sizeLabel(ref.size)} × ${ref.inFlight} in flight`
        : '';
    L.push(
      `- Per-call upkeep, \`CallStats.settled()\` alone (an outcome counter, one \`performance.now()\` and one histogram record; the rest is a few integer increments per frame; median of ${c.batches ?? 1} batches of 200,000): ` +
        `${c.upkeepNs.toFixed(0)} ns per call${share}.`,
    );
  }
  if (c.note !== null) L.push(`- Note: ${c.note}.`);
  L.push('');
  return L;
}

function renderMemory(m: MemorySection): string[] {
  const L: string[] = [];
  L.push(`## Memory per call in flight (${m.n.toLocaleString('en-US')} calls)`);
  L.push('');
  L.push(
    `Heap after a full GC, with 0 and with ${m.n.toLocaleString('en-US')} calls held in flight on one connection, divided by ${m.n.toLocaleString('en-US')}: ` +
      'the calls go to a `hold` handler that answers only when the bench releases it (all of them wait on one shared promise). Client: the bench process; ' +
      'server: the server child, asked over IPC. "heap" is V8\'s `heapUsed`, "external" is memory outside the V8 heap (Buffers). ' +
      "The client figure includes the caller's own subscription (an observer with three closures, as any `send().subscribe()` has); the server figure " +
      'includes one promise reaction of the handler. "Left after" is what is still above the baseline once every call has completed (after a full GC): ' +
      'tables that grew and keep their capacity, or a leak.',
  );
  L.push('');
  L.push(
    row([
      'transport',
      'client heap / call',
      'client external / call',
      'server heap / call',
      'server external / call',
      'left after: client · server heap / call',
      'errors',
    ]),
  );
  L.push(row(['---', '---:', '---:', '---:', '---:', '---:', '---:']));
  for (const r of m.rows) {
    const name = TRANSPORT_LABEL[r.transport] + (r.status === 'ok' ? '' : ' (**failed**)');
    L.push(
      row([
        name,
        fmtBytes(r.client?.heap),
        fmtBytes(r.client?.external),
        fmtBytes(r.server?.heap),
        fmtBytes(r.server?.external),
        `${fmtBytes(r.clientAfter?.heap)} · ${fmtBytes(r.serverAfter?.heap)}`,
        String(r.errors),
      ]),
    );
  }
  L.push('');
  if (!m.gcClient) L.push('The bench process could not get `gc()`: client figures are missing.\n');
  return L;
}

function summarizeExtras(x: ExtraSections): string[] {
  const out: string[] = [];
  const c = x.compression;
  if (c !== undefined) {
    const off = c.rows.find((r) => r.algorithm === 'off')?.result;
    const parts: string[] = [];
    for (const { algorithm, result: r } of c.rows) {
      if (algorithm === 'off' || off === undefined || off.status !== 'ok' || r.status !== 'ok') continue;
      const wire =
        ((r.socketBytesOutPerCall ?? NaN) + (r.socketBytesInPerCall ?? NaN)) /
        ((off.socketBytesOutPerCall ?? NaN) + (off.socketBytesInPerCall ?? NaN));
      parts.push(
        `${algorithm} sends ${(wire * 100).toFixed(0)} % of the bytes at ${(r.rps / off.rps).toFixed(2)}× the req/s`,
      );
    }
    if (parts.length > 0)
      out.push(
        `Compression (${sizeLabel(c.size)} of JSON, ${c.inFlight} in flight, loopback): ${parts.join('; ')} of no compression.`,
      );
  }
  if (x.hol !== undefined) {
    const parts = x.hol.rows
      .filter((r) => r.alone !== null && r.withBlobs !== null)
      .map((r) => `${TRANSPORT_LABEL[r.transport]} ${fmtUs(r.alone!.p99Us)} → ${fmtUs(r.withBlobs!.p99Us)}`);
    const bad = x.hol.rows
      .filter((r) => r.status !== 'ok')
      .map((r) => `${TRANSPORT_LABEL[r.transport]} ${r.status === 'hang' ? 'hangs' : 'fails'}`);
    if (parts.length + bad.length > 0) {
      out.push(
        `Head-of-line: p99 of ${sizeLabel(x.hol.smallSize)} calls alone → next to ${sizeLabel(x.hol.blobBytes)} responses on the same connection: ${[...parts, ...bad].join('; ')}.`,
      );
    }
  }
  const m = x.memory;
  if (m !== undefined) {
    const parts = m.rows
      .filter((r) => r.status === 'ok')
      .map(
        (r) =>
          `${TRANSPORT_LABEL[r.transport]} ${fmtBytes(r.client?.heap)} client / ${fmtBytes(r.server?.heap)} server`,
      );
    if (parts.length > 0)
      out.push(`Heap per call in flight (${m.n.toLocaleString('en-US')} held): ${parts.join('; ')}.`);
  }
  if (x.statsCost !== undefined && x.statsCost.clientStatsUs !== null) {
    out.push(
      `Statistics are always on (no switch); a \`stats()\` call costs ${fmtUsFine(x.statsCost.clientStatsUs)} on the client, ${fmtUsFine(x.statsCost.serverStatsUs)} on the server` +
        (x.statsCost.upkeepNs !== null
          ? `, and their per-call upkeep about ${x.statsCost.upkeepNs.toFixed(0)} ns (micro-measures).`
          : ' (micro-measure).'),
    );
  }
  const problems = extraProblems(x).length;
  if (problems > 0)
    out.push(
      `${problems} problem${problems === 1 ? '' : 's'} in the compression, head-of-line, stats or memory sections (see "Hangs, errors and anomalies").`,
    );
  return out;
}

function extraProblems(x: ExtraSections): string[] {
  const out: string[] = [];
  for (const { algorithm, result: r } of x.compression?.rows ?? []) {
    if (r.status !== 'ok' || r.errors > 0 || r.note !== null) {
      const parts: string[] = [];
      if (r.status !== 'ok') parts.push(`**${r.status}**`);
      if (r.note !== null) parts.push(r.note);
      if (r.errors > 0) parts.push(`${r.errors} failed calls (first: ${r.firstError ?? '?'})`);
      if (r.diagnostics !== null) parts.push(describeDiagnostics(r.diagnostics));
      out.push(`Compression cell, nest-wire with compression ${algorithm}: ${parts.join('; ')}.`);
    }
  }
  for (const r of x.hol?.rows ?? []) {
    if (r.status !== 'ok' || r.errors > 0 || r.note !== null) {
      out.push(
        `Head-of-line cell, ${TRANSPORT_LABEL[r.transport]}: ${r.status !== 'ok' ? `**${r.status}**; ` : ''}${r.note ?? ''}` +
          `${r.errors > 0 ? `${r.note !== null ? '; ' : ''}${r.errors} failed calls (first: ${r.firstError ?? '?'})` : ''}.`,
      );
    }
  }
  for (const r of x.memory?.rows ?? []) {
    if (r.status !== 'ok' || r.errors > 0 || r.note !== null) {
      out.push(
        `Memory cell, ${TRANSPORT_LABEL[r.transport]}: ${r.status !== 'ok' ? '**failed**; ' : ''}${r.note ?? ''}` +
          `${r.errors > 0 ? `${r.note !== null ? '; ' : ''}${r.errors} failed calls (first: ${r.firstError ?? '?'})` : ''}.`,
      );
    }
  }
  if (x.statsCost?.note) out.push(`Stats cost: ${x.statsCost.note}.`);
  return out;
}

function extraMethod(x: ExtraSections): string[] {
  const L: string[] = [];
  if (x.compression !== undefined) {
    L.push(
      `- **Compression cells.** One nest-wire server child per setting (off, \`deflate\`, \`brotli\`), started with \`new WireServer({ compression })\` and ` +
        'met by a client with the same option; otherwise measured like every other cell (closed loop, same window, CPU from both processes, ' +
        "re-measured when disturbed). Bytes on the wire are the client socket's `bytesWritten` / `bytesRead` deltas over the measured window " +
        'divided by its calls: what the kernel was handed, frame headers and the few control frames included.',
    );
  }
  if (x.hol !== undefined) {
    L.push(
      `- **Head-of-line cells.** One client and one connection per transport (the matrix's running server): ${x.hol.smallInFlight} small calls kept in flight for a warm-up and a window, ` +
        `then ${x.hol.blobInFlight} \`blob\` calls of ${sizeLabel(x.hol.blobBytes)} join them in their own closed loop; after a warm-up (and at least one large response) the small calls are measured again. ` +
        `The stall timeout is ${x.hol.stallMs} ms here. Both processes' CPU time is sampled at the start and end of each window (the server's over IPC).`,
    );
  }
  if (x.statsCost !== undefined) {
    L.push(
      '- **Stats cost.** After a short burst of calls (so the histogram holds data), `stats()` and `counters()` are called in a tight loop in the bench process, ' +
        "and the server child times its own `stats()` on request; `CallStats.settled()` (internal, loaded from the compiled library) is timed in batches of 200 000 calls, minus the loop's own `performance.now()`.",
    );
  }
  if (x.memory !== undefined) {
    L.push(
      `- **Memory cells.** A fresh server child per transport (nest-wire: \`maxInFlightPerConnection: ${x.memory.n}\`, so the server runs them all rather than pausing the socket at its default 1 024) ` +
        `and a client with \`maxPendingCalls: ${x.memory.n}\`; three warm-up rounds of 64 held calls; then a full GC (twice) and a heap sample on each side before, while and after ${x.memory.n} calls are held. ` +
        "The bench process gets `gc()` with `v8.setFlagsFromString('--expose-gc')` and `vm.runInNewContext('gc')`; the server children run with `--expose-gc`.",
    );
  }
  if (L.length > 0) L.push('');
  return L;
}

function describeDiagnostics(d: NonNullable<CellResult['diagnostics']>): string {
  const s = (x: SocketState) =>
    `${x.paused ? 'reading paused' : 'reading'}, ${x.writableLength.toLocaleString('en-US')} bytes waiting to be written`;
  const server =
    d.server === null
      ? 'server did not answer'
      : d.server.length === 0
        ? 'no server socket'
        : d.server.map(s).join(' / ');
  return `when it was stopped: ${d.outstanding} calls outstanding; client socket ${d.client === null ? '?' : s(d.client)}; server socket ${server}`;
}

function fmtLoad(r: CellResult): string {
  if (!Number.isFinite(r.otherLoad)) return '?';
  const retried = r.retries ? ` (${r.retries + 1} runs)` : '';
  return `${r.otherLoad.toFixed(2)}${retried}`;
}

function detailTable(order: TransportName[], cells: [number, number][], idx: Index): string {
  const out: string[] = [];
  const head = [
    'in flight',
    'transport',
    'req/s',
    'p50',
    'p99',
    'client CPU µs/call',
    'server CPU µs/call',
    'client writes/call',
    'server writes/call',
    'errors',
    'other load',
  ];
  out.push(row(head));
  out.push(row(['---:', '---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
  for (const [size, n] of cells) {
    for (const t of order) {
      const r = idx.get(t, size, n);
      if (r === undefined) continue;
      if (r.status !== 'ok') {
        out.push(row([String(n), TRANSPORT_LABEL[t], fmtRps(r), '–', '–', '–', '–', '–', '–', String(r.errors), '–']));
        continue;
      }
      const cw =
        r.wireClientWritesPerCall !== null
          ? `${fmtNum(r.clientWritesPerCall, 3)} (counters(): ${fmtNum(r.wireClientWritesPerCall, 3)})`
          : fmtNum(r.clientWritesPerCall, 3);
      const sw =
        r.wireServerWritesPerCall !== null
          ? `${fmtNum(r.serverWritesPerCall, 3)} (counters(): ${fmtNum(r.wireServerWritesPerCall, 3)})`
          : fmtNum(r.serverWritesPerCall, 3);
      out.push(
        row([
          String(n),
          TRANSPORT_LABEL[t],
          fmtRps(r),
          fmtUs(r.p50Us),
          fmtUs(r.p99Us),
          fmtNum(r.clientCpuUsPerCall),
          fmtNum(r.serverCpuUsPerCall),
          cw,
          sw,
          String(r.errors),
          fmtLoad(r),
        ]),
      );
    }
  }
  return out.join('\n');
}

function summarize(results: CellResult[], idx: Index, info: RunInfo): string[] {
  const out: string[] = [];
  const pairs = (other: TransportName) => {
    const rs: { r: number; size: number; n: number }[] = [];
    const failsOther: string[] = [];
    for (const w of results.filter((x) => x.transport === 'nest-wire')) {
      const o = idx.get(other, w.size, w.inFlight);
      if (o === undefined) continue;
      if (w.status === 'ok' && o.status === 'ok') rs.push({ r: w.rps / o.rps, size: w.size, n: w.inFlight });
      else if (w.status === 'ok') failsOther.push(`${sizeLabel(w.size)} × ${w.inFlight}`);
    }
    return { rs, failsOther };
  };
  const fmtRange = (rs: { r: number; size: number; n: number }[]) => {
    const min = rs.reduce((a, b) => (b.r < a.r ? b : a));
    const max = rs.reduce((a, b) => (b.r > a.r ? b : a));
    return `from ${min.r.toFixed(2)}× (${sizeLabel(min.size)} × ${min.n} in flight) to ${max.r.toFixed(2)}× (${sizeLabel(max.size)} × ${max.n})`;
  };
  if (info.transports.includes('nest-wire') && info.transports.includes('nest-tcp')) {
    const { rs, failsOther } = pairs('nest-tcp');
    if (rs.length > 0)
      out.push(
        `nest-wire / Nest TCP throughput ${fmtRange(rs)}, geometric mean ${geomean(rs.map((x) => x.r)).toFixed(2)}× over ${rs.length} cells where both ran.`,
      );
    if (failsOther.length > 0) out.push(`Nest TCP hangs or fails where nest-wire runs: ${failsOther.join(', ')}.`);
  }
  if (info.transports.includes('nest-wire') && info.transports.includes('raw')) {
    const { rs } = pairs('raw');
    if (rs.length > 0)
      out.push(
        `nest-wire reaches ${fmtRange(rs)} of the raw-socket ceiling (geometric mean ${geomean(rs.map((x) => x.r)).toFixed(2)}×).`,
      );
  }
  {
    const size = Math.min(...info.sizes);
    const n = Math.max(...info.matrixInFlight);
    const parts = info.transports
      .map((t) => idx.get(t, size, n))
      .filter((r): r is CellResult => r !== undefined && r.status === 'ok')
      .map((r) => `${TRANSPORT_LABEL[r.transport]} ${fmtNum(r.clientCpuUsPerCall)} / ${fmtNum(r.serverCpuUsPerCall)}`);
    if (parts.length > 0)
      out.push(`CPU per call (client / server, µs) at ${sizeLabel(size)} × ${n} in flight: ${parts.join('; ')}.`);
  }
  const noisy = results.filter((r) => r.status === 'ok' && r.otherLoad > info.disturbedLoad);
  if (info.retried > 0 || noisy.length > 0) {
    out.push(
      `Other processes were busy on the machine during this run: ${info.retried} measurements were repeated; ` +
        (noisy.length === 0
          ? 'every cell kept has less than ' + info.disturbedLoad + ' core of other load.'
          : `${noisy.length} ${noisy.length === 1 ? 'cell' : 'cells'} still had more than ${info.disturbedLoad} core of other load (column "other load" in the details) and ${noisy.length === 1 ? 'is' : 'are'} less reliable.`),
    );
  }
  const wireBad = results.filter((r) => r.transport === 'nest-wire' && (r.status !== 'ok' || r.errors > 0));
  out.push(
    wireBad.length === 0
      ? 'nest-wire: no hang and no failed or mismatched call in any cell.'
      : `nest-wire had problems in ${wireBad.length} cells (see "Hangs, errors and anomalies").`,
  );
  return out;
}

function geomean(xs: number[]): number {
  return Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);
}

function uniqueSorted(xs: number[]): number[] {
  return [...new Set(xs)].sort((a, b) => a - b);
}

function row(cells: string[]): string {
  return `| ${cells.join(' | ')} |`;
}

const METHOD_TEXT = (info: RunInfo) => `## How it is measured

- **Processes.** \`bench/run.ts\` (the client side) starts one server child per transport (\`bench/server.ts\`) and talks to it over an IPC channel. With \`taskset\` available, every server child runs on core 0 (\`taskset -c 0\`) and the bench process pins itself to core 1 (\`taskset -a -p -c 1\`), so client and server never share a core; V8's helper threads share their process's core. The children exit when the bench exits (they leave as soon as the IPC channel closes) and are killed with SIGKILL after a hang.
- **Transports.** *nest-wire*: \`NestFactory.createMicroservice(EchoModule, { strategy: new WireServer(...) })\` and \`new WireClient({ timeout: 0 })\`. *Nest TCP*: the same module with \`{ transport: Transport.TCP }\` and \`ClientProxyFactory.create({ transport: Transport.TCP })\` (\`ClientTCP\`, JSON framing). Both call \`client.send('echo', payload)\` and subscribe once per call. *raw socket*: a plain \`net\` echo server and client speaking \`[u32 length][u32 id][payload]\`, pipelined, each side collecting a turn's frames and writing them once from \`setImmediate\`; no serialization, no Nest, no RxJS: the ceiling for one connection between two Node processes.
- **Closed loop.** A client connection keeps exactly N calls outstanding: when a call completes (or fails) the next one starts. One connection per client (\`poolSize\` 1). Each cell (payload size × N) opens a fresh client connection to the transport's running server, runs a warm-up of ${info.warmupMs} ms, then a measured window of ${info.durationMs} ms, then stops issuing and waits for the outstanding calls to come back. Transports alternate within each cell (nest-wire, Nest TCP, raw, then the next cell), so slow drift in the machine affects all three alike. The load sweep cells shared with the ${sizeLabel(Math.min(...info.sizes))} table (N = ${info.matrixInFlight.join(', ')}) are the same measurements.
- **Checking.** Every response is compared with the payload of its own call (strict string equality for the Nest transports, byte equality for raw); ${PAYLOAD_VARIANTS} different payloads are used in turn, so an answer delivered to the wrong call is caught. A failed or different response counts as an error; errors over the whole cell are reported.
- **Hangs.** If no call completes for ${info.stallMs} ms while calls are outstanding, or the server child stops answering IPC, the cell is reported as "hangs / 0 req/s"; the socket states at that moment (bytes waiting to be written, whether reading is paused) are recorded, the client connection is destroyed and the server child is killed and restarted for the next cell. A global time budget kills everything if the run exceeds it.
- **Throughput.** req/s = calls completed and checked in the measured window / window length (from \`performance.now()\`).
- **Latency.** Each call's time from \`send()\` to its checked response goes into a log-linear histogram (1 µs buckets below 128 µs, then 64 buckets per power of two: values are within 1.6 %, memory is fixed, nothing is sorted). p50 and p99 are read from it. With a closed loop, latency ≈ N / throughput: it includes the time a call waits behind the others in flight.
- **CPU.** \`process.cpuUsage()\` deltas (user + system) over the measured window divided by the calls of the window: in the bench process for the client (in the user-shaped section, in that cell's client child, which reports it over IPC), and in the server child, which reports its own over IPC at the start and end of the window. A core that is 100 % busy shows as 10^6 / req/s µs per call: where a side's CPU per call × req/s ≈ 1 s/s, that side is the bottleneck.
- **Socket writes.** Both processes count the write requests their \`net.Socket\`s hand to libuv (one per \`_write\`, one per \`_writev\`: a corked batch is one writev), the same counter for every transport; divided by the calls of the window. For nest-wire the library's own \`counters().writes\` of the client and of the \`WireServer\` are shown next to it in parentheses (they should agree).
- **Reading the numbers.** The raw ceiling writes once per event-loop turn on each side. In a closed loop this settles into lock-step batches (writes/call = 1/N: all N calls leave in one write and come back in one write), so the client and the server take turns instead of working at the same time, and req/s ≈ 10^6 / (client + server CPU µs per call). nest-wire writes the first frame of a turn at once (on the first of the process's connections to write in that turn), a batch early once 8 KiB and 16 frames are pending, and the rest at the end of the turn, so its two sides overlap (calls per write in the user-shaped section); where one side's busy reaches 1.00, that side is the bottleneck. Nest TCP writes every message at once, so its two sides overlap, but each call costs more CPU.
- **Other load.** The machine's busy time (user + system, from \`/proc/stat\`) minus the CPU time of the client and the server over the window gives the load of other processes, in cores (column "other load"). If it exceeds ${info.disturbedLoad} core, the cell is measured again (at most twice, and only a limited number of times per run) and the run with the least other load is kept. With two cores and the two bench processes pinned one per core, any other process steals time from one of them.
- **Caveats.** Loopback on one machine: no network latency, no NIC. Two cores, one per process: a 100 %-busy side caps throughput. Numbers from different machines or runs are not comparable; ratios within one run are the useful part. Quick mode (\`npm run bench:quick\`) uses fewer, shorter cells and writes \`bench/results/BENCHMARKS.quick.md\` instead of this file; raw results of every run are written to \`bench/results/*.json\`.
`;

// ---------------------------------------------------------------- SVG chart

interface Panel {
  x: number;
  y: number;
  w: number;
  h: number;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** 1-2-5 steps: the nice values of a log axis. */
function niceBelow(x: number): number {
  const d = Math.pow(10, Math.floor(Math.log10(x)));
  return x >= 5 * d ? 5 * d : x >= 2 * d ? 2 * d : d;
}

function niceAbove(x: number): number {
  const d = Math.pow(10, Math.floor(Math.log10(x)));
  return x <= d ? d : x <= 2 * d ? 2 * d : x <= 5 * d ? 5 * d : 10 * d;
}

function logTicks(min: number, max: number): { lo: number; hi: number; ticks: number[] } {
  // Margins, so the shortest bar stays visible and the tallest does not touch the frame.
  const lo = niceBelow(min * 0.6);
  const hi = niceAbove(max * 1.1);
  const decades = Math.log10(hi / lo);
  const ticks: number[] = [];
  for (let d = Math.pow(10, Math.floor(Math.log10(lo))); d <= hi * 1.0001; d *= 10) {
    for (const m of decades <= 2.5 ? [1, 2, 5] : [1]) {
      const t = m * d;
      if (t >= lo * 0.9999 && t <= hi * 1.0001) ticks.push(t);
    }
  }
  if (!ticks.some((t) => Math.abs(t - lo) < lo * 1e-6)) ticks.unshift(lo);
  if (!ticks.some((t) => Math.abs(t - hi) < hi * 1e-6)) ticks.push(hi);
  return { lo, hi, ticks };
}

function fmtCount(x: number): string {
  if (x >= 1e6) return `${+(x / 1e6).toFixed(1)}M`;
  if (x >= 1e3) return `${+(x / 1e3).toFixed(1)}k`;
  return String(+x.toFixed(1));
}

function fmtTickUs(us: number): string {
  if (us >= 1e6) return `${+(us / 1e6).toFixed(1)} s`;
  if (us >= 1e3) return `${+(us / 1e3).toFixed(1)} ms`;
  return `${+us.toFixed(1)} µs`;
}

function axis(
  p: Panel,
  title: string,
  min: number,
  max: number,
  fmt: (x: number) => string,
): { y: (v: number) => number; svg: string[] } {
  const { lo, hi, ticks } = logTicks(Math.max(min, 1e-3), Math.max(max, min * 10, 1e-2));
  const y = (v: number) => p.y + p.h - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * p.h;
  const svg: string[] = [];
  svg.push(`<text x="${p.x}" y="${p.y - 12}" class="title">${esc(title)}</text>`);
  svg.push(`<rect x="${p.x}" y="${p.y}" width="${p.w}" height="${p.h}" class="frame"/>`);
  for (const t of ticks) {
    const ty = y(t).toFixed(1);
    const major = Math.abs(Math.log10(t) - Math.round(Math.log10(t))) < 1e-9;
    svg.push(`<line x1="${p.x}" x2="${p.x + p.w}" y1="${ty}" y2="${ty}" class="${major ? 'grid' : 'grid minor'}"/>`);
    svg.push(`<text x="${p.x - 6}" y="${ty}" class="ytick">${esc(fmt(t))}</text>`);
  }
  return { y, svg };
}

function barPanel(
  p: Panel,
  title: string,
  groups: { label: string; sub: string }[],
  series: { t: TransportName; values: (number | null | 'hang' | 'failed')[] }[],
  fmt: (x: number) => string,
): string[] {
  const nums = series.flatMap((s) => s.values.filter((v): v is number => typeof v === 'number' && v > 0));
  if (nums.length === 0) return [];
  const { y, svg } = axis(p, title, Math.min(...nums), Math.max(...nums), fmt);
  const gw = p.w / groups.length;
  const bw = Math.min(18, (gw * 0.8) / series.length);
  const base = p.y + p.h;
  groups.forEach((g, gi) => {
    const gx = p.x + gi * gw + (gw - bw * series.length) / 2;
    series.forEach((s, si) => {
      const v = s.values[gi];
      const bx = gx + si * bw;
      if (typeof v === 'number' && v > 0) {
        const top = y(v);
        svg.push(
          `<rect x="${bx.toFixed(1)}" y="${top.toFixed(1)}" width="${(bw - 1).toFixed(1)}" height="${(base - top).toFixed(1)}" fill="${COLORS[s.t]}"><title>${esc(`${TRANSPORT_LABEL[s.t]} ${g.label} × ${g.sub}: ${fmt(v)}`)}</title></rect>`,
        );
      } else if (v === 'hang' || v === 'failed') {
        const cx = bx + bw / 2;
        svg.push(
          `<text x="${cx.toFixed(1)}" y="${(base - 6).toFixed(1)}" class="hang" transform="rotate(-90 ${cx.toFixed(1)} ${(base - 6).toFixed(1)})">${v === 'hang' ? 'hangs' : 'failed'}</text>`,
        );
      }
    });
    const cx = (p.x + gi * gw + gw / 2).toFixed(1);
    svg.push(`<text x="${cx}" y="${base + 14}" class="xtick">${esc(g.sub)}</text>`);
    if (gi === 0 || groups[gi - 1].label !== g.label) {
      const span = groups.filter((x) => x.label === g.label).length;
      const lx = (p.x + gi * gw + (gw * span) / 2).toFixed(1);
      svg.push(`<text x="${lx}" y="${base + 30}" class="xlabel">${esc(g.label)}</text>`);
      if (gi > 0)
        svg.push(`<line x1="${p.x + gi * gw}" x2="${p.x + gi * gw}" y1="${p.y}" y2="${base + 32}" class="sep"/>`);
    }
  });
  return svg;
}

function linePanel(
  p: Panel,
  title: string,
  xs: number[],
  series: { t: TransportName; values: (number | null | 'hang' | 'failed')[] }[],
  fmt: (x: number) => string,
): string[] {
  const nums = series.flatMap((s) => s.values.filter((v): v is number => typeof v === 'number' && v > 0));
  if (nums.length === 0) return [];
  const { y, svg } = axis(p, title, Math.min(...nums), Math.max(...nums), fmt);
  const step = p.w / xs.length;
  const xOf = (i: number) => p.x + step * (i + 0.5);
  const base = p.y + p.h;
  xs.forEach((x, i) => svg.push(`<text x="${xOf(i).toFixed(1)}" y="${base + 14}" class="xtick">${x}</text>`));
  svg.push(`<text x="${p.x + p.w / 2}" y="${base + 30}" class="xlabel">calls in flight</text>`);
  for (const s of series) {
    let path = '';
    s.values.forEach((v, i) => {
      if (typeof v === 'number' && v > 0) {
        path += `${path === '' ? 'M' : 'L'}${xOf(i).toFixed(1)},${y(v).toFixed(1)} `;
        svg.push(
          `<circle cx="${xOf(i).toFixed(1)}" cy="${y(v).toFixed(1)}" r="3" fill="${COLORS[s.t]}"><title>${esc(`${TRANSPORT_LABEL[s.t]} ${xs[i]} in flight: ${fmt(v)}`)}</title></circle>`,
        );
      } else {
        if (v === 'hang' || v === 'failed') {
          svg.push(
            `<text x="${xOf(i).toFixed(1)}" y="${base - 6}" class="hang" text-anchor="middle">✕ ${v === 'hang' ? 'hangs' : 'failed'}</text>`,
          );
        }
        if (path !== '') {
          svg.push(`<path d="${path.trim()}" stroke="${COLORS[s.t]}" class="line"/>`);
          path = '';
        }
      }
    });
    if (path !== '') svg.push(`<path d="${path.trim()}" stroke="${COLORS[s.t]}" class="line"/>`);
  }
  return svg;
}

export function renderChart(info: RunInfo, results: CellResult[]): string {
  const idx = new Index(results);
  const order: TransportName[] = (['nest-wire', 'nest-tcp', 'raw'] as TransportName[]).filter((t) =>
    info.transports.includes(t),
  );
  const W = 1100;
  const H = 720;
  const value = (r: CellResult | undefined, key: 'rps' | 'p99Us') =>
    r === undefined ? null : r.status !== 'ok' ? r.status : r[key];
  const cells: [number, number][] = [];
  for (const size of info.sizes) for (const n of info.matrixInFlight) cells.push([size, n]);
  const groups = cells.map(([size, n]) => ({ label: sizeLabel(size), sub: `${n}` }));
  const matrixSeries = (key: 'rps' | 'p99Us') =>
    order.map((t) => ({ t, values: cells.map(([s, n]) => value(idx.get(t, s, n), key)) }));
  const sweepSize = Math.min(...info.sizes);
  const sweepSeries = (key: 'rps' | 'p99Us') =>
    order.map((t) => ({ t, values: info.sweepInFlight.map((n) => value(idx.get(t, sweepSize, n), key)) }));

  const pw = 450;
  const ph = 230;
  const top = 115;
  const A: Panel = { x: 90, y: top, w: pw, h: ph };
  const B: Panel = { x: 90 + pw + 110, y: top, w: pw, h: ph };
  const C: Panel = { x: 90, y: top + ph + 100, w: pw, h: ph };
  const D: Panel = { x: 90 + pw + 110, y: top + ph + 100, w: pw, h: ph };
  const svg: string[] = [];
  svg.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif" font-size="12">`,
  );
  svg.push(`<style>
  .title { font-size: 14px; font-weight: 600; fill: #111827; }
  .frame { fill: none; stroke: #9ca3af; }
  .grid { stroke: #e5e7eb; }
  .grid.minor { stroke-dasharray: 2 3; }
  .sep { stroke: #d1d5db; stroke-dasharray: 4 3; }
  .ytick { text-anchor: end; dominant-baseline: middle; fill: #374151; font-size: 11px; }
  .xtick { text-anchor: middle; fill: #374151; font-size: 11px; }
  .xlabel { text-anchor: middle; fill: #111827; font-size: 12px; font-weight: 600; }
  .hang { fill: #b91c1c; font-size: 11px; font-weight: 600; }
  .line { fill: none; stroke-width: 2; }
  .legend { fill: #111827; font-size: 12px; }
  .note { fill: #6b7280; font-size: 11px; }
</style>`);
  svg.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  svg.push(
    `<text x="${W / 2}" y="26" text-anchor="middle" class="title" style="font-size:16px">nest-wire vs Nest TCP vs raw socket — echo, closed loop, one connection (log scales)</text>`,
  );
  svg.push(
    `<text x="${W / 2}" y="44" text-anchor="middle" class="note">${esc(`${info.date.slice(0, 10)} · ${info.nproc} CPUs · Node ${info.node} · ${info.mode} mode (${info.durationMs} ms per cell)`)}</text>`,
  );
  let lx = W / 2 - order.length * 65;
  for (const t of order) {
    svg.push(
      `<rect x="${lx}" y="60" width="12" height="12" fill="${COLORS[t]}"/><text x="${lx + 17}" y="70" class="legend">${esc(TRANSPORT_LABEL[t])}</text>`,
    );
    lx += 130;
  }
  svg.push(
    ...barPanel(A, 'Throughput (req/s, higher is better) — payload × in flight', groups, matrixSeries('rps'), fmtCount),
  );
  svg.push(
    ...barPanel(B, 'p99 latency (lower is better) — payload × in flight', groups, matrixSeries('p99Us'), fmtTickUs),
  );
  svg.push(
    ...linePanel(
      C,
      `Load sweep at ${sizeLabel(sweepSize)}: throughput (req/s)`,
      info.sweepInFlight,
      sweepSeries('rps'),
      fmtCount,
    ),
  );
  svg.push(
    ...linePanel(
      D,
      `Load sweep at ${sizeLabel(sweepSize)}: p99 latency`,
      info.sweepInFlight,
      sweepSeries('p99Us'),
      fmtTickUs,
    ),
  );
  svg.push('</svg>');
  return svg.join('\n') + '\n';
}
