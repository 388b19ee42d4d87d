import type { WireServerStats } from 'nest-wire';

/**
 * The contract between the gateway and the math service: message patterns and
 * the payloads they carry. Both sides import it, so a rename cannot drift.
 */

/** Request/response: `number[]` → their sum. */
export const SUM = 'math.sum';
/** Request/response with an object pattern (routed as Nest's normalised JSON). */
export const DIVIDE = { cmd: 'math.divide' } as const;
/** Streaming: emits `from`, `from - 1`, … `0`, one value per tick. */
export const COUNTDOWN = 'math.countdown';
/** Event (fire and forget): a user was created. */
export const USER_CREATED = 'user.created';
/** Request/response: the `user.created` events the service has received. */
export const USER_EVENTS = 'users.events';
/** Request/response: echoes what the transport context knows about the call. */
export const CALL_INFO = 'diag.call-info';
/** Request/response: answers after `ms` milliseconds (to demonstrate timeouts). */
export const SLEEP = 'diag.sleep';
/** Request/response: the answering service's identity and its `WireServer#stats()`. */
export const SERVER_STATS = 'diag.server-stats';

/** Client streaming: a stream of byte chunks → `UploadDigest` (size and SHA-256, computed as they arrive). */
export const UPLOAD_DIGEST = 'files.digest';
/** Bidirectional: a stream of lines → the same lines upper-cased, each answered as it arrives. */
export const UPPERCASE_LINES = 'text.uppercase';

export interface UploadDigest {
  size: number;
  sha256: string;
  /** Chunks the service read. */
  chunks: number;
}

/** Limits the service enforces (the gateway checks them too, to answer HTTP 400 early). */
export const MAX_COUNTDOWN_FROM = 100;
export const MAX_TICK_MS = 1000;
export const MAX_SLEEP_MS = 60_000;

export interface DivideRequest {
  a: number;
  b: number;
}

export interface CountdownRequest {
  from: number;
  tickMs: number;
}

export interface UserCreatedEvent {
  id: string;
  name: string;
  email: string;
  createdAt: string;
}

export interface RecordedUserEvent extends UserCreatedEvent {
  receivedAt: string;
}

export interface CallInfo {
  pattern: string;
  metadata: Record<string, string>;
  deadline: string | null;
  remoteAddress: string;
}

export interface SleepRequest {
  ms: number;
}

export interface SleepResult {
  sleptMs: number;
}

/** Countdown streams the service has served, by how they ended. */
export interface CountdownCounts {
  started: number;
  /** Running now. */
  active: number;
  /** Ran to the end. */
  completed: number;
  /** Stopped early: the caller unsubscribed (CANCEL), or its deadline passed. */
  stopped: number;
  /** Of those, how many saw `ctx.getSignal()` abort. */
  aborted: number;
  /** Values produced, across all countdowns. */
  values: number;
}

/** What `SERVER_STATS` answers: which service process answered, and its transport statistics. */
export interface ServerInfo {
  /** `host:port` the service listens on. */
  address: string;
  pid: number;
  uptimeSeconds: number;
  countdowns: CountdownCounts;
  /** `WireServer#stats()`: calls handled by outcome (this one included), latency, connections, bytes. */
  server: WireServerStats;
}
