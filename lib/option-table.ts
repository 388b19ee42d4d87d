import { checkInteger, MAX_TIMEOUT_MS } from './option-checks.js';
import { MAX_PATTERN_BYTES, MAX_STREAM_CREDIT, MIN_MAX_FRAME_SIZE } from './protocol/frame.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Limits carried in 32-bit fields (frame length, HELLO limits, counters peers compare). */
const UINT32_MAX = 0xffffffff;
/** Smallest byte budget accepted: below it not even a small call with its metadata fits. */
const MIN_BYTE_BUDGET = 1024;
const UNBOUNDED = Number.MAX_SAFE_INTEGER;

/**
 * One integer option: its default, its valid range and what it is. The public interfaces in
 * options.ts keep the doc comments editors show; this row is what resolution applies and
 * what test/options.spec.ts checks README's options table against.
 */
export interface IntegerOptionRow {
  /** Which constructor takes it; a nested option (`retry.maxAttempts`) its parent's side. */
  readonly side: 'server' | 'client' | 'both';
  readonly default: number;
  readonly min: number;
  readonly max: number;
  readonly unit: 'bytes' | 'ms' | 'count' | 'percent' | 'port';
  /** Said after the name in a refusal, e.g. `(ms, 0 disables)`; empty for none. */
  readonly note: string;
  /** What it limits or sets, in a few words. */
  readonly what: string;
}

const timeout = (side: IntegerOptionRow['side'], dflt: number, what: string): IntegerOptionRow => ({
  side,
  default: dflt,
  min: 0,
  max: MAX_TIMEOUT_MS,
  unit: 'ms',
  note: '(ms, 0 disables)',
  what,
});

/** Every integer option with a fixed range, once. Options whose range depends on another stay in options.ts. */
export const INTEGER_OPTIONS = {
  port: { side: 'both', default: 3000, min: 0, max: 65535, unit: 'port', note: '', what: 'TCP port' },
  maxFrameSize: {
    side: 'both',
    default: 16 * MiB,
    min: MIN_MAX_FRAME_SIZE,
    max: UINT32_MAX,
    unit: 'bytes',
    note: '(bytes)',
    what: 'largest frame this side accepts',
  },
  handshakeTimeoutMs: {
    side: 'both',
    default: 10_000,
    min: 1,
    max: MAX_TIMEOUT_MS,
    unit: 'ms',
    note: '',
    what: 'time allowed for the handshake',
  },
  heartbeatIntervalMs: timeout('both', 5_000, 'silence before a PING'),
  maxDecodedBytes: {
    side: 'both',
    default: 16 * MiB,
    min: MIN_BYTE_BUDGET,
    max: UNBOUNDED,
    unit: 'bytes',
    note: '',
    what: 'estimated heap of one decoded payload',
  },
  maxQueuedBytes: {
    side: 'both',
    default: 64 * MiB,
    min: MIN_BYTE_BUDGET,
    max: UNBOUNDED,
    unit: 'bytes',
    note: '',
    what: 'bytes queued for a socket that does not drain',
  },
  drainTimeoutMs: timeout('server', 10_000, 'wait for running calls on close()'),
  idleTimeoutMs: timeout('server', 0, 'drain a connection idle this long'),
  maxPatternBytes: {
    side: 'server',
    default: 1024,
    min: 1,
    max: MAX_PATTERN_BYTES,
    unit: 'bytes',
    note: '',
    what: 'longest pattern',
  },
  maxMetadataEntries: {
    side: 'server',
    default: 64,
    min: 0,
    max: UNBOUNDED,
    unit: 'count',
    note: '',
    what: 'metadata entries per call',
  },
  maxMetadataBytes: {
    side: 'server',
    default: 8 * KiB,
    min: 0,
    max: UINT32_MAX,
    unit: 'bytes',
    note: '',
    what: 'encoded metadata per call',
  },
  maxConnections: {
    side: 'server',
    default: 10_000,
    min: 1,
    max: UNBOUNDED,
    unit: 'count',
    note: '',
    what: 'connections accepted at once',
  },
  maxInFlightPerConnection: {
    side: 'server',
    default: 1024,
    min: 1,
    max: UINT32_MAX,
    unit: 'count',
    note: '',
    what: 'calls run at once per connection',
  },
  // 2^20: five times the 200 000-row stream README measures; the queue's slots cost 8 bytes per
  // value, so 8 MiB per connection at the bound besides the values (which the handler made).
  maxStreamBufferValues: {
    side: 'server',
    default: 1_048_576,
    min: 1,
    max: UNBOUNDED,
    unit: 'count',
    note: '',
    what: 'stream values held, unencoded, per connection',
  },
  maxConcurrentCalls: {
    side: 'server',
    default: 0,
    min: 0,
    max: UINT32_MAX,
    unit: 'count',
    note: '(0: no limit)',
    what: 'calls run at once across the server',
  },
  maxDecodedBytesPerConnection: {
    side: 'server',
    default: 64 * MiB,
    min: MIN_BYTE_BUDGET,
    max: UNBOUNDED,
    unit: 'bytes',
    note: '',
    what: 'estimated heap of the inputs running on one connection',
  },
  maxDecodedBytesPerServer: {
    side: 'server',
    default: 256 * MiB,
    min: MIN_BYTE_BUDGET,
    max: UNBOUNDED,
    unit: 'bytes',
    note: '',
    what: 'estimated heap of the inputs running on the server',
  },
  resolveIntervalMs: timeout('client', 30_000, 'how often host names are resolved again'),
  timeout: timeout('client', 30_000, 'time a call may take'),
  nackRetries: { side: 'client', default: 3, min: 0, max: 100, unit: 'count', note: '', what: 'NACK re-sends' },
  poolSize: { side: 'client', default: 1, min: 1, max: 1024, unit: 'count', note: '', what: 'connections per server' },
  connectTimeoutMs: {
    side: 'client',
    default: 10_000,
    min: 1,
    max: MAX_TIMEOUT_MS,
    unit: 'ms',
    note: '',
    what: 'time allowed to open the TCP connection',
  },
  maxPendingCalls: {
    side: 'client',
    default: 10_000,
    min: 1,
    max: UNBOUNDED,
    unit: 'count',
    note: '',
    what: 'calls outstanding at once',
  },
  streamCredit: {
    side: 'client',
    default: 256,
    min: 1,
    max: MAX_STREAM_CREDIT,
    unit: 'count',
    note: '',
    what: 'stream values sent ahead of consumption',
  },
  maxStreamHeldValues: {
    side: 'client',
    default: 1024,
    min: 1,
    max: 1_000_000,
    unit: 'count',
    note: '',
    what: "values of an Observable source held beyond the server's credit",
  },
  maxFragmentedBytes: {
    side: 'client',
    default: 64 * MiB,
    min: MIN_BYTE_BUDGET,
    max: UNBOUNDED,
    unit: 'bytes',
    note: '',
    what: 'partly received fragmented values per connection',
  },
  'compression.thresholdBytes': {
    side: 'both',
    default: 1024,
    min: 0,
    max: UNBOUNDED,
    unit: 'bytes',
    note: '',
    what: 'smallest payload compressed',
  },
  'reconnect.initialDelayMs': {
    side: 'client',
    default: 100,
    min: 1,
    max: MAX_TIMEOUT_MS,
    unit: 'ms',
    note: '',
    what: 'first reconnect delay',
  },
  'retry.maxAttempts': {
    side: 'client',
    default: 3,
    min: 1,
    max: 10,
    unit: 'count',
    note: '',
    what: 'attempts per call',
  },
  'retry.budget.percent': {
    side: 'client',
    default: 20,
    min: 0,
    max: 100,
    unit: 'percent',
    note: '',
    what: 'retries as a share of calls started',
  },
  'retry.budget.minPerSecond': {
    side: 'client',
    default: 10,
    min: 0,
    max: 1_000_000,
    unit: 'count',
    note: '',
    what: 'retries allowed each second regardless',
  },
  'hedge.maxExtraPercent': {
    side: 'client',
    default: 5,
    min: 1,
    max: 100,
    unit: 'percent',
    note: '',
    what: 'hedged copies as a share of calls started',
  },
  'outlierDetection.consecutiveFailures': {
    side: 'client',
    default: 5,
    min: 1,
    max: 1_000_000,
    unit: 'count',
    note: '',
    what: 'failures in a row that eject an endpoint',
  },
  'outlierDetection.baseEjectionMs': {
    side: 'client',
    default: 30_000,
    min: 1,
    max: MAX_TIMEOUT_MS,
    unit: 'ms',
    note: '',
    what: 'first ejection time',
  },
  'outlierDetection.maxEjectedPercent': {
    side: 'client',
    default: 50,
    min: 0,
    max: 100,
    unit: 'percent',
    note: '',
    what: 'share of endpoints ejected at once',
  },
} as const satisfies Record<string, IntegerOptionRow>;

export type IntegerOptionName = keyof typeof INTEGER_OPTIONS;

/**
 * The value of integer option `name`: `given`, or its default when absent (null counts as
 * absent, as with `??`), refused with `WireOptionsError` outside its range. `where` is
 * `WireServer` or `WireClient`.
 */
export function resolveInteger(name: IntegerOptionName, given: number | undefined, where: string): number {
  const row: IntegerOptionRow = INTEGER_OPTIONS[name];
  const label = row.note === '' ? `${where} option ${name}` : `${where} option ${name} ${row.note}`;
  return checkInteger(given ?? row.default, row.min, row.max, label);
}
