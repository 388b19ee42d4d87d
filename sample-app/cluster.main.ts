import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * The math service and the gateway as two processes (`service.main.js`,
 * `gateway.main.js`, same environment), talking over nest-wire on TCP. Signals are
 * passed on to both; when one exits, the other is stopped.
 */
const ENTRY_POINTS = ['service.main.js', 'gateway.main.js'];
const SIGNALS = ['SIGINT', 'SIGTERM'] as const;

let stopping = false;
const children: ChildProcess[] = ENTRY_POINTS.map((file) => fork(fileURLToPath(new URL(file, import.meta.url))));

const stopAll = (signal: NodeJS.Signals): void => {
  stopping = true;
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill(signal);
};

for (const child of children) {
  child.on('exit', (code, signal) => {
    if (code !== 0 && !stopping) process.exitCode = code ?? 1;
    if (!stopping) {
      console.error(`${ENTRY_POINTS[children.indexOf(child)]} exited (${signal ?? code}); stopping the other process`);
      stopAll('SIGTERM');
    }
  });
}
SIGNALS.forEach((signal) => process.once(signal, () => stopAll(signal)));
