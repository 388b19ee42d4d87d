import type { EventEmitter } from 'node:events';

/**
 * Hands `err` to the `event` listeners of `emitter` if there are any (the application
 * handles it), else to `fallback` (a log line): never both, never neither. Shared by
 * `WireClient` and `WireServer`, whose `on()` events work this way.
 */
export function emitOr(emitter: EventEmitter, event: string, err: Error, fallback: (err: Error) => void): void {
  if (emitter.listenerCount(event) > 0) emitter.emit(event, err);
  else fallback(err);
}
