import 'reflect-metadata';
import { ClientProxyFactory, Transport, type ClientProxy } from '@nestjs/microservices';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Observable } from 'rxjs';
import { WireClient, type WireServerOptions } from '../../lib/index.js';
import { requestFrame } from '../hardening/frames.js';
import { rawConnection, runFor } from '../hardening/target.js';
import { codec } from '../helpers/raw-peer.js';

/**
 * Issue 15: a synchronous Observable of 200 000 values of 1 KiB to a consumer that is slow for
 * 2 s completes, every value in order, and the server's memory is what the producer made, not
 * an encoded copy of it. The server runs in a child process (test/soak/push-stream-server.ts)
 * whose peak RSS growth over its baseline (after a full GC) is measured.
 *
 * How the consumer is slow: its process's event loop is busy for 2 s on the first value (a
 * gateway doing synchronous work, or a long GC pause). Meanwhile it reads nothing, so it grants
 * no credit: the server sent 256 values (the default streamCredit) and holds the rest.
 *
 * Two producers: `rows` streams 200 000 rows the process loaded before the baseline (from(rows)),
 * `range` makes each 1 KiB value as it emits it (range().pipe(map())). The same two over Nest's
 * TCP transport give the figure to compare with.
 */

const VALUES = 200_000;
const SLOW_MS = 2000;
const LOADER = join(process.cwd(), 'test/helpers/ts-loader.mjs');
const SCRIPT = join(process.cwd(), 'test/soak/push-stream-server.ts');

interface Stats {
  rss: number;
  baselineRss: number;
  peakRss: number;
  maxRss: number;
  inFlight: number;
  maxLagMs: number;
  heapGrowth: number;
  externalGrowth: number;
}

class Child {
  private lines: string[] = [];
  private waiters: (() => void)[] = [];
  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    readonly port: number,
  ) {}

  static async start(kind: 'wire' | 'tcp', options: WireServerOptions = {}): Promise<Child> {
    const child = spawn(
      process.execPath,
      ['--expose-gc', '--max-old-space-size=2048', '--import', LOADER, SCRIPT, kind, JSON.stringify(options)],
      { stdio: 'pipe' },
    );
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
      if (process.env.PUSH_TRACE) process.stderr.write(d);
    });
    let rest = '';
    let self: Child | null = null;
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        rest += d.toString();
        let i: number;
        while ((i = rest.indexOf('\n')) >= 0) {
          const line = rest.slice(0, i);
          rest = rest.slice(i + 1);
          const m = /^PORT (\d+)$/.exec(line);
          if (m !== null) resolve(Number(m[1]));
          else if (self !== null) {
            self.lines.push(line);
            for (const w of self.waiters.splice(0)) w();
          }
        }
      });
      child.once('exit', (code) => reject(new Error(`server exited (${code}): ${stderr}`)));
    });
    self = new Child(child, port);
    return self;
  }

  private async reply(command: string, prefix: string): Promise<string> {
    this.child.stdin.write(`${command}\n`);
    for (;;) {
      const i = this.lines.findIndex((l) => l.startsWith(prefix));
      if (i >= 0) return this.lines.splice(i, 1)[0].slice(prefix.length);
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  async reset(): Promise<void> {
    await this.reply('reset', 'RESET');
  }

  async stats(): Promise<Stats> {
    return JSON.parse(await this.reply('stats', 'STATS ')) as Stats;
  }

  stop(): void {
    this.child.stdin.end();
    this.child.kill();
  }
}

/** Consumes the stream: busy for SLOW_MS on the first value, then checks every value's order. */
function consume(values$: Observable<{ i: number; text: string }>): Promise<{ received: number; inOrder: boolean }> {
  let received = 0;
  let inOrder = true;
  return new Promise((resolve, reject) =>
    values$.subscribe({
      next: (v) => {
        if (v.i !== received || v.text.length !== 1024) inOrder = false;
        if (received++ === 0) {
          const until = performance.now() + SLOW_MS;
          while (performance.now() < until);
        }
      },
      error: reject,
      complete: () => resolve({ received, inOrder }),
    }),
  );
}

async function measure(
  kind: 'wire' | 'tcp',
  pattern: 'rows' | 'range',
): Promise<{ received: number; inOrder: boolean; growthMiB: number; maxLagMs: number; ms: number }> {
  const child = await Child.start(kind);
  let client: WireClient | ClientProxy | null = null;
  try {
    client =
      kind === 'wire'
        ? new WireClient({ host: '127.0.0.1', port: child.port, timeout: 120_000 })
        : ClientProxyFactory.create({ transport: Transport.TCP, options: { host: '127.0.0.1', port: child.port } });
    await client.connect();
    await child.reset();
    const started = performance.now();
    const result = await consume(client.send(pattern, VALUES));
    const ms = performance.now() - started;
    const s = await child.stats();
    const figure = {
      kind,
      pattern,
      ...result,
      growthMiB: s.peakRss - s.baselineRss,
      kernelPeakGrowthMiB: s.maxRss - s.baselineRss,
      heapGrowthMiB: s.heapGrowth,
      externalGrowthMiB: s.externalGrowth,
      maxLagMs: s.maxLagMs,
      ms,
    };
    console.info(`push-stream-memory: ${JSON.stringify(figure)}`);
    return figure;
  } finally {
    await client?.close();
    child.stop();
  }
}

describe('push streams: 200 000 values of 1 KiB to a consumer slow for 2 s (server in a child process)', () => {
  it('nest-wire, from(rows) over loaded rows: every value in order; the server holds references, not copies', async () => {
    const r = await measure('wire', 'rows');
    expect(r.received).toBe(VALUES);
    expect(r.inOrder).toBe(true);
    // The rows are the producer's (loaded before the baseline): what the server adds is its
    // queue of references (8 B a value, 1.6 MiB) and the encoded bytes in flight (measured:
    // +24 MiB RSS, heap +9 MiB).
    expect(r.growthMiB).toBeLessThan(64);
  }, 120_000);

  it('nest-wire, range().pipe(map()) making each value: every value in order; the server holds the values, unencoded', async () => {
    const r = await measure('wire', 'range');
    expect(r.received).toBe(VALUES);
    expect(r.inOrder).toBe(true);
    // The producer made 200 000 values of ~1.1 KiB of heap each (≈ 220 MiB): held as they are,
    // never as a second, encoded copy (measured: +244 MiB RSS, heap +219 MiB). Bound: the
    // values, 64 MiB of encoded bytes at most (maxQueuedBytes), and slack for the runtime.
    expect(r.growthMiB).toBeLessThan(220 + 64 + 100);
  }, 120_000);

  // Figures to compare with, not a check of nest-wire: Nest's TCP transport itself is what can fail
  // here (under load its client saw the connection close mid-stream), so it runs only when asked:
  // PUSH_STREAM_COMPARE_TCP=1 npm run soak (the README's Nest TCP figures come from such a run).
  const compareTcp = process.env.PUSH_STREAM_COMPARE_TCP === '1' ? it : it.skip;
  compareTcp(
    'Nest TCP, the same two producers (the figures to compare with)',
    async () => {
      for (const pattern of ['rows', 'range'] as const) {
        const r = await measure('tcp', pattern);
        expect(r.received).toBe(VALUES);
        expect(r.inOrder).toBe(true);
      }
    },
    240_000,
  );

  it('a peer that never reads, 1 024 calls for fresh 1 000 KiB answers: what is held is what the handlers made, until the connection is closed', async () => {
    const child = await Child.start('wire', { heartbeatIntervalMs: 1000 });
    try {
      await child.reset();
      const socket = await rawConnection(child.port, {}, false);
      const frames = [];
      for (let i = 1; i <= 1024; i++) frames.push(requestFrame(i, 'fresh.big', codec.encode(null)));
      socket.write(Buffer.concat(frames));
      await runFor(1000);
      const held = await child.stats();
      await runFor(3000); // the stalled connection is closed after two heartbeats (2 s)
      const s = await child.stats();
      const figure = {
        peakGrowthMiB: s.peakRss - s.baselineRss,
        heapGrowthMiB: s.heapGrowth,
        rssNowMiB: s.rss - s.baselineRss,
        maxLagMs: s.maxLagMs,
        callsRunningAt1s: held.inFlight,
        callsRunningAt4s: s.inFlight,
      };
      console.info(`push-stream-memory (peer that never reads): ${JSON.stringify(figure)}`);
      socket.destroy();
      // 64 MiB written and unread, at most 1 024 answers of 1 000 KiB held (maxInFlightPerConnection;
      // requests that arrive once the backlog is full get NACK), and slack for the runtime. Measured:
      // +550 MiB, 459 calls holding their answer at 1 s; before answers were held unencoded (they were
      // encoded, held up to 64 MiB, and the calls past that failed): +533 MiB, 193 calls.
      expect(figure.peakGrowthMiB).toBeLessThan(64 + 1024 + 200);
    } finally {
      child.stop();
    }
  }, 60_000);
});
