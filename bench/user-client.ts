/**
 * The client of one user-shaped cell, in a process of its own (started by `runUserCell` in
 * user-calls.ts for every cell and transport), so that what ran before in the bench process —
 * the matrix's cells, other transports — cannot shape its figures: measured, after the matrix's
 * 64 KiB x 256 cell the same process's 128 B x 16 calls cost 30 % more client CPU (BENCHMARKS.md,
 * "Performance notes"). Argument: JSON `{ transport, port, spec, timing }`. Over IPC it says
 * `window-start` and `window-end` (and waits for `go`: the parent samples the server there), then
 * sends its `report`.
 */
import 'reflect-metadata';
import type { Timing } from './cell.js';
import { installSocketWriteCounter, type TransportName } from './common.js';
import { driveUserCell, type UserCellSpec } from './user-calls.js';

interface Args {
  transport: TransportName;
  port: number;
  spec: UserCellSpec;
  timing: Timing;
}

function ask(type: 'window-start' | 'window-end'): Promise<void> {
  return new Promise((resolveAsk) => {
    process.once('message', () => resolveAsk());
    process.send!({ type });
  });
}

async function main(): Promise<void> {
  const { transport, port, spec, timing } = JSON.parse(process.argv[2]) as Args;
  installSocketWriteCounter();
  const report = await driveUserCell(transport, port, spec, timing, {
    start: () => ask('window-start'),
    end: () => ask('window-end'),
  });
  process.send!({ type: 'report', report }, () => process.exit(0));
}

main().catch((err: unknown) => {
  process.stderr.write(
    `bench user client failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
