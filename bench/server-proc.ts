/** The bench's handle on one server child (bench/server.ts) and its IPC requests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildMessage, HeapSample, ParentMessage, ServerConfig, ServerStats, TransportName } from './common.js';
import { withTimeout } from './loop.js';

const HERE = dirname(fileURLToPath(import.meta.url)); // dist/bench
const SERVER_SCRIPT = join(HERE, 'server.js');
export const SERVER_CORE = 0;

const children = new Set<ChildProcess>();

/** Another child of the bench (a user cell's client): killed with the servers if the bench aborts. */
export function trackChild(child: ChildProcess): void {
  children.add(child);
  child.once('exit', () => children.delete(child));
}

export function killAllChildren(): void {
  for (const child of children) {
    try {
      child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  children.clear();
}

type Reply = Extract<ChildMessage, { seq: number }>;

export class ServerProc {
  port = 0;
  dirty = false;
  private child: ChildProcess | null = null;
  private seq = 0;
  private readonly waiting = new Map<number, (msg: Reply) => void>();
  private exited = true;

  constructor(
    readonly transport: TransportName,
    private readonly taskset: string | null,
    private readonly profileDir: string | null,
    /** nest-wire server options (compression, limits); {} for the default server. */
    readonly config: ServerConfig = {},
  ) {}

  get alive(): boolean {
    return this.child !== null && !this.exited;
  }

  get pid(): number {
    return this.child?.pid ?? 0;
  }

  async start(): Promise<void> {
    const profileArgs =
      this.profileDir === null
        ? []
        : [
            '--cpu-prof',
            `--cpu-prof-dir=${this.profileDir}`,
            `--cpu-prof-name=server-${this.transport}-${Date.now()}.cpuprofile`,
          ];
    // --expose-gc: only used on request (heap samples of the memory cells).
    const args = ['--expose-gc', ...profileArgs, SERVER_SCRIPT, this.transport, JSON.stringify(this.config)];
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
        else {
          const cb = this.waiting.get(msg.seq);
          this.waiting.delete(msg.seq);
          cb?.(msg);
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

  private request<T extends Reply['type']>(
    msg: Extract<ParentMessage, { seq: number }> & { type: T },
    timeoutMs: number,
  ): Promise<Extract<Reply, { type: T }>> {
    const child = this.child;
    if (child === null || this.exited || !child.connected)
      return Promise.reject(new Error('server child is not running'));
    const p = new Promise<Extract<Reply, { type: T }>>((r) => this.waiting.set(msg.seq, r as (m: Reply) => void));
    child.send(msg);
    return withTimeout(p, timeoutMs, `${this.transport} server ${msg.type}`).finally(() =>
      this.waiting.delete(msg.seq),
    );
  }

  async stats(timeoutMs: number): Promise<ServerStats> {
    return (await this.request({ type: 'stats', seq: ++this.seq }, timeoutMs)).stats;
  }

  /** Heap after a full GC in the child (null if it has no `gc`), and calls held by `hold`. */
  async heap(timeoutMs: number): Promise<{ heap: HeapSample | null; held: number }> {
    const r = await this.request({ type: 'heap', seq: ++this.seq }, timeoutMs);
    return { heap: r.heap, held: r.held };
  }

  /** µs per call of the nest-wire server's `stats()`, timed in the child (median of `batches`); null for other transports. */
  async statsCost(iterations: number, batches: number, timeoutMs: number): Promise<number | null> {
    return (await this.request({ type: 'statsCost', seq: ++this.seq, iterations, batches }, timeoutMs)).usPerCall;
  }

  /** Lets the calls waiting in the `hold` handler complete. */
  release(): void {
    const child = this.child;
    if (child !== null && !this.exited && child.connected) child.send({ type: 'release' } satisfies ParentMessage);
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
