export interface Closable {
  close(): Promise<void>;
}

const SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/**
 * Closes `apps` in order on SIGINT or SIGTERM, or, in a process started by
 * `cluster.main.js`, when that parent goes away (its IPC channel closes); the process
 * then exits once nothing is left running. A repeated signal while closing is ignored.
 */
export function closeOnSignals(...apps: Closable[]): void {
  let closing = false;
  const stopListening = (): void => {
    SIGNALS.forEach((s) => process.off(s, onSignal));
    process.off('disconnect', onParentGone); // lets the IPC channel stop holding the process
  };
  const shutDown = (reason: string): void => {
    if (closing) return;
    closing = true;
    console.log(`${reason}, shutting down`);
    closeInOrder(apps).then(stopListening, (err: unknown) => {
      console.error('shutdown failed:', err);
      process.exit(1);
    });
  };
  const onSignal = (signal: NodeJS.Signals): void => shutDown(`${signal} received`);
  const onParentGone = (): void => shutDown('parent process gone');
  SIGNALS.forEach((s) => process.on(s, onSignal));
  if (process.connected) process.on('disconnect', onParentGone);
}

async function closeInOrder(apps: Closable[]): Promise<void> {
  for (const app of apps) await app.close();
}
