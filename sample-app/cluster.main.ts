import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { formatAddress } from 'nest-wire';
import { loadConfig } from './config.js';

/**
 * Two math services (`service.main.js` on `WIRE_HOST`, ports `WIRE_PORTS`, default
 * 4101 and 4102) and a gateway (`gateway.main.js`) whose `WireClient` lists both, as
 * separate processes talking over nest-wire on TCP.
 *
 * Stop a service (`kill <pid>`, printed below) and the gateway's calls move to the
 * other one; `GET /stats` shows each endpoint's state and the calls each service
 * handled. Start it again (`WIRE_PORT=4101 node dist/sample-app/service.main.js`) and
 * the gateway reconnects. Ctrl-C (or SIGTERM to this process) stops every process;
 * so does the gateway exiting, or a service failing (a non-zero exit code, e.g. its
 * port is taken). The children also stop if this process dies (their IPC channel closes).
 */
const SIGNALS = ['SIGINT', 'SIGTERM'] as const;

interface Part {
  name: string;
  child: ChildProcess;
  isService: boolean;
}

const config = loadConfig();
const addresses = config.clusterWirePorts.map((port) => formatAddress({ host: config.wireHost, port }));
const entry = (file: string): string => fileURLToPath(new URL(file, import.meta.url));

const parts: Part[] = [
  ...config.clusterWirePorts.map((port, i) => ({
    name: `service ${addresses[i]}`,
    child: fork(entry('service.main.js'), { env: { ...process.env, WIRE_PORT: String(port) } }),
    isService: true,
  })),
  {
    name: 'gateway',
    child: fork(entry('gateway.main.js'), { env: { ...process.env, WIRE_SERVERS: addresses.join(',') } }),
    isService: false,
  },
];

for (const { name, child, isService } of parts) {
  console.log(`${name}: pid ${child.pid}${isService ? ` (try: kill ${child.pid})` : ''}`);
}

let stopping = false;

const running = (part: Part): boolean => part.child.exitCode === null && part.child.signalCode === null;

const stopAll = (signal: NodeJS.Signals): void => {
  stopping = true;
  for (const part of parts) if (running(part)) part.child.kill(signal);
};

for (const part of parts) {
  part.child.on('exit', (code, signal) => {
    if (stopping) return;
    const how = signal ?? `exit code ${code}`;
    // A service stopped on purpose: the gateway carries on with the others (that is the demo).
    if (part.isService && (signal !== null || code === 0)) {
      const left = parts.filter((p) => p.isService && running(p)).map((p) => p.name);
      console.log(
        `${part.name} exited (${how}); services left from this cluster: ${left.length > 0 ? left.join(', ') : 'none'}`,
      );
      return;
    }
    console.error(`${part.name} exited (${how}); stopping the other processes`);
    if (code !== 0) process.exitCode = code ?? 1;
    stopAll('SIGTERM');
  });
}
SIGNALS.forEach((signal) => process.once(signal, () => stopAll(signal)));

// Killing `npm run start:cluster` (rather than Ctrl-C, which signals every process) may
// leave this process orphaned: then stop everything too.
const parentPid = process.ppid;
setInterval(() => {
  if (process.ppid !== parentPid && !stopping) {
    console.error('parent process gone; stopping');
    stopAll('SIGTERM');
  }
}, 1000).unref();
