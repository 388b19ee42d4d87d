import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Socket } from 'node:net';

export type TransportName = 'nest-wire' | 'nest-tcp' | 'raw';
export const TRANSPORTS: readonly TransportName[] = ['nest-wire', 'nest-tcp', 'raw'];
export const TRANSPORT_LABEL: Record<TransportName, string> = {
  'nest-wire': 'nest-wire',
  'nest-tcp': 'Nest TCP',
  raw: 'raw socket',
};

/** Distinct payloads per size; request k sends payload k % PAYLOAD_VARIANTS. */
export const PAYLOAD_VARIANTS = 64;

/**
 * The echoed payloads: strings of exactly `size` ASCII characters ([0-9a-z]), all
 * different (a seeded PRNG), so a response delivered to the wrong call is caught by
 * the equality check. Nest transports send the string itself as the message data;
 * the raw ceiling sends the same characters as bytes.
 */
export function makePayloads(size: number): string[] {
  let seed = (size * 2654435761) >>> 0 || 1;
  const next = () => {
    // xorshift32
    seed ^= seed << 13;
    seed >>>= 0;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    seed >>>= 0;
    return seed;
  };
  const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz';
  const out: string[] = [];
  for (let k = 0; k < PAYLOAD_VARIANTS; k++) {
    const chars = new Array<string>(size);
    for (let i = 0; i < size; i++) chars[i] = alphabet[next() % 36];
    out.push(chars.join(''));
  }
  return out;
}

/**
 * Counts write requests handed to libuv by every `net.Socket` of this process: one
 * per `_write` and one per `_writev` (a corked batch leaves as a single writev), so
 * roughly one per write syscall. The same counter is used for every transport.
 */
export const socketWrites = { count: 0, installed: false };

export function installSocketWriteCounter(): void {
  if (socketWrites.installed) return;
  const proto = Socket.prototype as unknown as Record<string, unknown>;
  for (const name of ['_write', '_writev']) {
    const original = proto[name];
    if (typeof original !== 'function') continue;
    proto[name] = function (this: unknown, ...args: unknown[]) {
      socketWrites.count++;
      return (original as (...a: unknown[]) => unknown).apply(this, args);
    };
  }
  socketWrites.installed = true;
}

/** Path of the `taskset` binary, or null. */
export function findTaskset(): string | null {
  for (const candidate of ['/usr/bin/taskset', '/bin/taskset', '/usr/local/bin/taskset']) {
    try {
      execFileSync(candidate, ['--version'], { stdio: 'ignore' });
      return candidate;
    } catch {
      /* try the next */
    }
  }
  try {
    const found = execFileSync('sh', ['-c', 'command -v taskset'], { encoding: 'utf8' }).trim();
    return found.length > 0 ? found : null;
  } catch {
    return null;
  }
}

/** Pins every thread of `pid` to `core`; returns false if taskset refused. */
export function pinProcess(taskset: string, pid: number, core: number): boolean {
  try {
    execFileSync(taskset, ['-a', '-p', '-c', String(core), String(pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** `Cpus_allowed_list` of a process (Linux), or '?'. */
export function allowedCpus(pid: number): string {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /Cpus_allowed_list:\s*(\S+)/.exec(status);
    return m === null ? '?' : m[1];
  } catch {
    return '?';
  }
}

/**
 * Compressible payloads for the compression cells: JSON text of exactly `size` ASCII
 * characters, an array of small records (`{"id":..,"name":..,"email":..,...}`) with
 * values drawn from a seeded PRNG and small vocabularies, padded with spaces before the
 * closing bracket (still valid JSON). All `PAYLOAD_VARIANTS` strings differ. Every
 * transport would send the string as is (nest-wire: one msgpack str).
 */
export function makeJsonPayloads(size: number): string[] {
  let seed = (size * 2246822519) >>> 0 || 7;
  const next = () => {
    seed ^= seed << 13;
    seed >>>= 0;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    seed >>>= 0;
    return seed;
  };
  const first = ['ana', 'bruno', 'carla', 'diego', 'eva', 'farid', 'greta', 'hugo', 'ines', 'jonas', 'kira', 'leo'];
  const last = ['silva', 'costa', 'meyer', 'novak', 'haddad', 'tanaka', 'garcia', 'okafor', 'rossi', 'larsen'];
  const cities = ['Lisbon', 'Porto', 'Berlin', 'Lagos', 'Osaka', 'Madrid', 'Oslo', 'Cairo', 'Lima', 'Quito'];
  const tags = ['red', 'green', 'blue', 'gold', 'beta', 'admin', 'trial', 'vip'];
  const out: string[] = [];
  for (let k = 0; k < PAYLOAD_VARIANTS; k++) {
    const records: string[] = [];
    let length = 2; // '[' and ']'
    for (let id = k * 100_000; ; id++) {
      const f = first[next() % first.length];
      const l = last[next() % last.length];
      const record =
        `{"id":${id},"name":"${f} ${l}","email":"${f}.${l}${next() % 1000}@example.com",` +
        `"active":${next() % 2 === 0},"score":${(next() % 100_000) / 1000},"city":"${cities[next() % cities.length]}",` +
        `"tags":["${tags[next() % tags.length]}","${tags[next() % tags.length]}"],"visits":${next() % 5000}}`;
      const extra = record.length + (records.length > 0 ? 1 : 0);
      if (length + extra > size) break;
      records.push(record);
      length += extra;
    }
    out.push('[' + records.join(',') + ' '.repeat(size - length) + ']');
  }
  return out;
}

/** Options of a server child besides its transport (nest-wire only). */
export interface ServerConfig {
  compression?: { algorithm: 'deflate' | 'brotli' };
  maxInFlightPerConnection?: number;
}

/** A heap sample after a full GC (`process.memoryUsage()`), in bytes. */
export interface HeapSample {
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

// ---- IPC between the bench (parent, client side) and the server child ----

export interface SocketState {
  writableLength: number;
  readableLength: number;
  paused: boolean;
}

export interface ServerStats {
  /** process.cpuUsage() of the server child. */
  cpu: NodeJS.CpuUsage;
  /** Write requests of all its sockets (see installSocketWriteCounter). */
  socketWrites: number;
  /** nest-wire only: the server's own write counter, if the library exposes one. */
  wireWrites: number | null;
  /** State of the accepted sockets (diagnostics for hangs). */
  sockets: SocketState[];
  /** Calls waiting in the `hold` handler now. */
  held: number;
}

export type ParentMessage =
  | { type: 'stats'; seq: number }
  /** Full GC, then a heap sample. */
  | { type: 'heap'; seq: number }
  /** Times `batches` × `iterations` calls of the nest-wire server's `stats()`, median batch (null for other transports). */
  | { type: 'statsCost'; seq: number; iterations: number; batches: number }
  /** Lets every call waiting in the `hold` handler complete. */
  | { type: 'release' }
  | { type: 'exit' };
export type ChildMessage =
  | { type: 'ready'; port: number }
  | { type: 'stats'; seq: number; stats: ServerStats }
  | { type: 'heap'; seq: number; heap: HeapSample | null; held: number }
  | { type: 'statsCost'; seq: number; usPerCall: number | null }
  | { type: 'fatal'; message: string };

/** Full garbage collection (twice, so finalizers' garbage goes too), if `gc` can be had. */
export function fullGc(gc: (() => void) | null): boolean {
  if (gc === null) return false;
  gc();
  gc();
  return true;
}

/** A heap sample of this process (run `fullGc` first). */
export function heapSample(): HeapSample {
  const m = process.memoryUsage();
  return { heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers };
}

// ---- load from other processes on the machine

let clockTicks = 0;

/**
 * CPU time (µs) the whole machine spent in user and system mode, from /proc/stat,
 * or null where that file does not exist. Interrupt time is left out: the kernel
 * accounts loopback traffic there, which is the bench's own.
 */
export function machineBusyUs(): number | null {
  try {
    if (clockTicks === 0) {
      try {
        clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
      } catch {
        clockTicks = 100;
      }
    }
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal ...
    return ((f[0] + f[1] + f[2]) * 1e6) / clockTicks;
  } catch {
    return null;
  }
}
