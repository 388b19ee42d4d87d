/**
 * Uploads: 256 MiB as 64 KiB chunks, sent as one client stream (`send('digest', source)`)
 * versus the same bytes as 4 096 separate calls (16 in flight), and a slow handler's
 * effect on the client's memory. `npm run bench:upload` (or `tsc -p bench/tsconfig.json &&
 * node dist/bench/upload.js [MiB] [mode]`; `UPLOAD_PROFILE=<dir>` writes CPU profiles of both children).
 *
 * Each mode runs in a fresh server child and a fresh client child (this file, with `server`
 * or `client` as its first argument), so each process's peak RSS (`resourceUsage().maxRSS`)
 * is that mode's own. Both sides compute the SHA-256 of what went through, and the digests
 * of the modes must agree. Prints a markdown table (it goes by hand into BENCHMARKS.md,
 * section "Uploads").
 */
import 'reflect-metadata';
import { Controller, Logger, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { fork, type ChildProcess } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { firstValueFrom, lastValueFrom, mergeMap, Observable, range } from 'rxjs';
import { WireClient, WireServer } from '../lib/index.js';

const CHUNK_BYTES = 64 * 1024;
const CALLS_IN_FLIGHT = 16;
/** The slow handler waits this long after each chunk. */
const SLOW_MS_PER_CHUNK = 2;
/** The slow handler's upload from an async generator: larger than the Observable's, to show the bound does not grow with it. */
const SLOW_ITERABLE_MIB = 128;
/** From an Observable that pushes every chunk at once: 512 chunks, within the default maxStreamHeldValues (1 024). */
const SLOW_OBSERVABLE_MIB = 32;

type Mode = 'stream' | 'calls' | 'slow-iterable' | 'slow-observable';

interface ClientResult {
  ms: number;
  bytes: number;
  sha256: string;
  rssBeforeMiB: number;
  maxRssMiB: number;
}

const mib = (kib: number) => kib / 1024;

// ---- server child ----

/** Per upload id of the separate-calls mode: the running hash and size. */
const uploads = new Map<number, { hash: Hash; size: number }>();

@Controller()
class UploadController {
  @MessagePattern('digest')
  async digest(@Payload() payload: AsyncIterable<Uint8Array>): Promise<{ size: number; sha256: string }> {
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of payload) {
      size += chunk.length;
      hash.update(chunk);
    }
    return { size, sha256: hash.digest('hex') };
  }

  @MessagePattern('slow-digest')
  async slowDigest(@Payload() payload: AsyncIterable<Uint8Array>): Promise<{ size: number; sha256: string }> {
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of payload) {
      size += chunk.length;
      hash.update(chunk);
      await new Promise((resolve) => setTimeout(resolve, SLOW_MS_PER_CHUNK));
    }
    return { size, sha256: hash.digest('hex') };
  }

  /** One chunk of upload `id`, in order (the client sends them in order, one connection). */
  @MessagePattern('chunk')
  chunk(@Payload() data: { id: number; seq: number; bytes: Uint8Array }): number {
    let upload = uploads.get(data.id);
    if (upload === undefined) uploads.set(data.id, (upload = { hash: createHash('sha256'), size: 0 }));
    upload.hash.update(data.bytes);
    upload.size += data.bytes.length;
    return data.seq;
  }

  @MessagePattern('finish')
  finish(@Payload() id: number): { size: number; sha256: string } {
    const upload = uploads.get(id)!;
    uploads.delete(id);
    return { size: upload.size, sha256: upload.hash.digest('hex') };
  }
}

@Module({ controllers: [UploadController] })
class UploadModule {}

async function runServer(): Promise<void> {
  const server = new WireServer({ host: '127.0.0.1', port: 0 });
  const app = await NestFactory.createMicroservice(UploadModule, { strategy: server, logger: false });
  await app.listen();
  process.send!({ type: 'ready', port: server.port, rssMiB: mib(process.memoryUsage().rss / 1024) });
  process.on('message', (msg: { type: string }) => {
    if (msg.type !== 'done') return;
    process.send!({ type: 'peak', maxRssMiB: mib(process.resourceUsage().maxRSS) });
    void app.close().finally(() => process.exit(0));
  });
}

// ---- client child ----

/** Chunk `i` of the upload: fresh bytes each time (a source that reads a file allocates too). */
function chunkOf(base: Buffer, i: number): Buffer {
  const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  base.copy(chunk);
  chunk.writeUInt32BE(i, 0);
  return chunk;
}

// An AsyncIterable on purpose (a sync generator would be sent as one value): a file reader's shape.
// eslint-disable-next-line @typescript-eslint/require-await
async function* chunks(base: Buffer, n: number, hash: Hash): AsyncGenerator<Buffer> {
  for (let i = 0; i < n; i++) {
    const chunk = chunkOf(base, i);
    hash.update(chunk);
    yield chunk;
  }
}

async function runClient(mode: Mode, port: number, totalMiB: number): Promise<ClientResult> {
  const client = new WireClient({ host: '127.0.0.1', port, timeout: 0 });
  await client.connect();
  const base = Buffer.alloc(CHUNK_BYTES, 0x5a);
  const uploadMiB =
    mode === 'slow-iterable' ? SLOW_ITERABLE_MIB : mode === 'slow-observable' ? SLOW_OBSERVABLE_MIB : totalMiB;
  const n = (uploadMiB * 1024 * 1024) / CHUNK_BYTES;
  const local = createHash('sha256');
  const rssBeforeMiB = mib(process.memoryUsage().rss / 1024);
  const started = performance.now();
  let answer: { size: number; sha256: string };
  if (mode === 'stream') {
    answer = await firstValueFrom(client.send('digest', chunks(base, n, local)));
  } else if (mode === 'slow-iterable') {
    answer = await firstValueFrom(client.send('slow-digest', chunks(base, n, local)));
  } else if (mode === 'slow-observable') {
    // Pushes every chunk at once: what the client holds is bounded by maxStreamHeldValues (1 024).
    const source = new Observable<Buffer>((subscriber) => {
      for (let i = 0; i < n && !subscriber.closed; i++) {
        const chunk = chunkOf(base, i);
        local.update(chunk);
        subscriber.next(chunk);
      }
      subscriber.complete();
    });
    answer = await firstValueFrom(client.send('slow-digest', source));
  } else {
    const id = 1;
    await lastValueFrom(
      range(0, n).pipe(
        mergeMap((i) => {
          const bytes = chunkOf(base, i);
          local.update(bytes);
          return client.send<number>('chunk', { id, seq: i, bytes });
        }, CALLS_IN_FLIGHT),
      ),
    );
    answer = await firstValueFrom(client.send('finish', id));
  }
  const ms = performance.now() - started;
  const sha256 = local.digest('hex');
  if (answer.sha256 !== sha256 || answer.size !== n * CHUNK_BYTES) {
    throw new Error(
      `${mode}: server saw ${answer.size} bytes ${answer.sha256}, client sent ${n * CHUNK_BYTES} ${sha256}`,
    );
  }
  client.close();
  return { ms, bytes: answer.size, sha256, rssBeforeMiB, maxRssMiB: mib(process.resourceUsage().maxRSS) };
}

// ---- orchestration ----

function message<T>(child: ChildProcess, type: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (msg: { type: string }) => {
      if (msg.type !== type) return;
      child.off('message', onMessage);
      resolve(msg as T);
    };
    child.on('message', onMessage);
    child.once('exit', (code) => reject(new Error(`child exited (${code}) before "${type}"`)));
  });
}

async function runMode(mode: Mode, totalMiB: number) {
  const self = fileURLToPath(import.meta.url);
  const execArgv = process.env.UPLOAD_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.UPLOAD_PROFILE}`] : [];
  const server = fork(self, ['server'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
  const ready = await message<{ port: number; rssMiB: number }>(server, 'ready');
  const client = fork(self, ['client', mode, String(ready.port), String(totalMiB)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    execArgv,
  });
  const result = await message<{ result: ClientResult }>(client, 'result');
  server.send({ type: 'done' });
  const peak = await message<{ maxRssMiB: number }>(server, 'peak');
  return { mode, client: result.result, serverRssBeforeMiB: ready.rssMiB, serverMaxRssMiB: peak.maxRssMiB };
}

async function main(): Promise<void> {
  const role = process.argv[2];
  if (role === 'server') return runServer();
  if (role === 'client') {
    Logger.overrideLogger(false);
    const result = await runClient(process.argv[3] as Mode, Number(process.argv[4]), Number(process.argv[5]));
    process.send!({ type: 'result', result });
    return;
  }
  const totalMiB = Number(role ?? 256) || 256;
  const rows = [];
  const only = process.argv[3] as Mode | undefined;
  for (const mode of ['stream', 'calls', 'slow-iterable', 'slow-observable'] as Mode[]) {
    if (only !== undefined && mode !== only) continue;
    const r = await runMode(mode, totalMiB);
    process.stderr.write(`upload: ${mode} done in ${r.client.ms.toFixed(0)} ms\n`);
    rows.push(r);
  }
  const label: Record<Mode, string> = {
    stream: `one client stream, ${totalMiB} MiB as 64 KiB chunks`,
    calls: `${(totalMiB * 16).toLocaleString('en')} separate calls of 64 KiB, ${CALLS_IN_FLIGHT} in flight`,
    'slow-iterable': `slow handler (${SLOW_MS_PER_CHUNK} ms per chunk), ${SLOW_ITERABLE_MIB} MiB, async generator source`,
    'slow-observable': `slow handler (${SLOW_MS_PER_CHUNK} ms per chunk), ${SLOW_OBSERVABLE_MIB} MiB, Observable pushing every chunk at once`,
  };
  const out = [
    '| upload | time | MiB/s | client RSS before → peak (MiB) | server RSS before → peak (MiB) |',
    '|---|---|---|---|---|',
    ...rows.map((r) => {
      const mibs = r.client.bytes / 1048576 / (r.client.ms / 1000);
      return (
        `| ${label[r.mode]} | ${(r.client.ms / 1000).toFixed(2)} s | ${mibs.toFixed(0)} | ` +
        `${r.client.rssBeforeMiB.toFixed(0)} → ${r.client.maxRssMiB.toFixed(0)} | ` +
        `${r.serverRssBeforeMiB.toFixed(0)} → ${r.serverMaxRssMiB.toFixed(0)} |`
      );
    }),
  ];
  process.stdout.write(out.join('\n') + '\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`upload bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
