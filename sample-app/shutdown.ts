export interface Closable {
  close(): Promise<void>;
}

const SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/**
 * Closes `apps` in order on SIGINT or SIGTERM; the process then exits once nothing
 * is left running. A repeated signal while closing is ignored.
 */
export function closeOnSignals(...apps: Closable[]): void {
  let closing = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (closing) return;
    closing = true;
    console.log(`${signal} received, shutting down`);
    closeInOrder(apps).then(
      () => SIGNALS.forEach((s) => process.off(s, onSignal)),
      (err: unknown) => {
        console.error('shutdown failed:', err);
        process.exit(1);
      },
    );
  };
  SIGNALS.forEach((s) => process.on(s, onSignal));
}

async function closeInOrder(apps: Closable[]): Promise<void> {
  for (const app of apps) await app.close();
}
