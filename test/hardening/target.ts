import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { firstValueFrom } from 'rxjs';
import { WireClient, type WireServerOptions } from '../../lib/index.js';
import { MAGIC } from '../../lib/protocol/frame.js';
import { helloFrame } from '../helpers/raw-peer.js';
import type { Hello } from '../../lib/protocol/hello.js';

const LOADER = join(process.cwd(), 'test/helpers/ts-loader.mjs');
const SCRIPT = join(process.cwd(), 'test/hardening/target-server.ts');

export interface TargetStats {
  rss: number;
  heapUsed: number;
  peakRss: number;
  peakHeapUsed: number;
  maxLagMs: number;
  connections: number;
  inFlight: number;
}

/** A nest-wire server running in a child process (test/hardening/target-server.ts). */
export class Target {
  /** Set once the child has exited: its code, or the signal, and what it wrote to stderr. */
  exit: { code: number | null; signal: string | null; stderr: string } | null = null;
  readonly exited: Promise<void>;
  private lines: string[] = [];
  private waiters: (() => void)[] = [];
  private stderr = '';

  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    readonly port: number,
  ) {
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exit = { code, signal, stderr: this.stderr };
        for (const w of this.waiters.splice(0)) w();
        resolve();
      }),
    );
  }

  static async start(options: WireServerOptions = {}, heapMiB = 1024): Promise<Target> {
    const child = spawn(
      process.execPath,
      [`--max-old-space-size=${heapMiB}`, '--import', LOADER, SCRIPT, JSON.stringify(options)],
      {
        stdio: 'pipe',
      },
    );
    let buffered = '';
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const port = await new Promise<number>((resolve, reject) => {
      const onData = (d: Buffer) => {
        buffered += d.toString();
        const m = /PORT (\d+)\n/.exec(buffered);
        if (m) {
          child.stdout.off('data', onData);
          resolve(Number(m[1]));
        }
      };
      child.stdout.on('data', onData);
      child.once('exit', (code) => reject(new Error(`target exited (${code}) before listening: ${stderr}`)));
    });
    const target = new Target(child, port);
    child.stderr.on('data', (d) => (target.stderr += d));
    let rest = '';
    child.stdout.on('data', (d: Buffer) => {
      rest += d.toString();
      let i: number;
      while ((i = rest.indexOf('\n')) >= 0) {
        target.lines.push(rest.slice(0, i));
        rest = rest.slice(i + 1);
        for (const w of target.waiters.splice(0)) w();
      }
    });
    return target;
  }

  get alive(): boolean {
    return this.exit === null;
  }

  private async command(cmd: string, prefix: string, timeoutMs = 60_000): Promise<string> {
    if (!this.alive) throw new Error(`target is gone: ${JSON.stringify(this.exit)}`);
    this.lines = [];
    this.child.stdin.write(`${cmd}\n`);
    const until = performance.now() + timeoutMs;
    for (;;) {
      const line = this.lines.find((l) => l.startsWith(prefix));
      if (line !== undefined) return line.slice(prefix.length);
      if (!this.alive) throw new Error(`target died: ${JSON.stringify(this.exit)}`);
      if (performance.now() > until) throw new Error(`target did not answer ${cmd}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100).unref();
      });
    }
  }

  async stats(): Promise<TargetStats> {
    return JSON.parse(await this.command('stats', 'STATS ')) as TargetStats;
  }

  async reset(): Promise<void> {
    await this.command('reset', 'RESET');
  }

  async stop(): Promise<void> {
    if (this.alive) {
      this.child.stdin.end();
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      await this.exited;
      clearTimeout(timer);
    }
  }
}

/** A raw socket that has sent the preface and a HELLO, and reads (and drops) what comes back unless paused. */
export async function rawConnection(port: number, hello: Partial<Hello> = {}, read = true): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  await once(socket, 'connect');
  socket.write(Buffer.concat([MAGIC, helloFrame(hello)]));
  if (read) socket.resume();
  else socket.pause();
  return socket;
}

/** Percentile `p` (0-100) of `values`. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Waits `ms` — only to let an attack run for a while; never an ordering barrier. */
export const runFor = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Prints a measured figure so the report can quote it (grep FIGURE). */
export function figure(item: string, values: Record<string, unknown>): void {
  process.stderr.write(`FIGURE ${item} ${JSON.stringify(values)}\n`);
}

/** Resolves when `socket` closes. */
export const closedOf = (socket: Socket) => new Promise<void>((r) => socket.once('close', () => r()));

/** Writes `batch` `times` times as fast as the socket takes it; stops once the server closes it. */
export async function flood(socket: Socket, batch: Buffer, times: number): Promise<void> {
  const closed = closedOf(socket);
  for (let i = 0; i < times && !socket.destroyed; i++) {
    if (!socket.write(batch)) await Promise.race([new Promise<void>((r) => socket.once('drain', () => r())), closed]);
  }
}

/** The target still serves an ordinary client: `sum` answers over a fresh connection. */
export async function sumWorks(port: number, timeoutMs = 15_000): Promise<void> {
  const client = new WireClient({ host: '127.0.0.1', port, timeout: timeoutMs });
  try {
    expect(await firstValueFrom(client.send('sum', [20, 22]))).toBe(42);
  } finally {
    client.close();
  }
}
