import fc from 'fast-check';
import { WireFrameTooLargeError, WireHandshakeError, WireProtocolError } from '../../lib/errors.js';

/**
 * Case counts for the property-based tests. `npm test` runs each property a bounded
 * number of times (the `quick` figure given to `runs`); `npm run fuzz` sets FUZZ_RUNS
 * and every property runs that many times instead (scaled for the slow, socket-driven
 * ones). FUZZ_SEED replays a run; fast-check prints the seed and path of a failure.
 */
const envRuns = Number(process.env.FUZZ_RUNS ?? '');
export const FUZZ_RUNS: number | null = Number.isFinite(envRuns) && envRuns > 0 ? Math.floor(envRuns) : null;
const envSeed = Number(process.env.FUZZ_SEED ?? '');
export const FUZZ_SEED: number | undefined = Number.isFinite(envSeed) && process.env.FUZZ_SEED ? envSeed : undefined;

/** Runs for one property: `quick` under `npm test`, `FUZZ_RUNS * scale` under `npm run fuzz`. */
export function runs(quick: number, scale = 1): number {
  return FUZZ_RUNS === null ? quick : Math.max(1, Math.round(FUZZ_RUNS * scale));
}

/**
 * fast-check parameters for a property with `quick` runs by default. `slow`: each case
 * costs sockets and timers, so a failure is reported as found instead of being shrunk
 * (shrinking could take minutes); replay it with FUZZ_SEED.
 */
export function params<T>(quick: number, scale = 1, slow = false): fc.Parameters<T> {
  return { numRuns: runs(quick, scale), seed: FUZZ_SEED, endOnFailure: slow, verbose: slow ? 1 : 0 };
}

/** Counts the cases each property really executed (shrinking included), for the closing report. */
export class CaseCounter {
  private readonly counts = new Map<string, number>();

  hit(name: string): void {
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
  }

  /** Cases run; names starting with a space are breakdowns of another count, not added. */
  get total(): number {
    let n = 0;
    for (const [name, v] of this.counts) if (!name.startsWith(' ')) n += v;
    return n;
  }

  report(suite: string): void {
    const lines = [...this.counts].map(([name, n]) => `  ${String(n).padStart(8)}  ${name}`);
    console.info(
      `${suite}: ${this.total} fuzz cases run (${FUZZ_RUNS === null ? 'npm test quick mode' : `FUZZ_RUNS=${FUZZ_RUNS}`})\n${lines.join('\n')}`,
    );
  }
}

/**
 * The only exceptions a FrameDecoder may throw. Note: in lib/errors.ts the size and
 * handshake errors are siblings of WireProtocolError under WireError, not subclasses.
 */
export function isDecoderError(err: unknown): boolean {
  return err instanceof WireProtocolError || err instanceof WireFrameTooLargeError || err instanceof WireHandshakeError;
}

/** A deterministic PRNG (mulberry32) for workloads that must be reproducible. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A byte-level edit of a stream; applied in order by `mutate`. */
export type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; count: number }
  | { kind: 'truncate'; at: number }
  /** Overwrites a u32 at a frame boundary (`frame` indexes the boundaries) with `value`. */
  | { kind: 'length'; frame: number; value: number }
  /** Overwrites the type byte of a frame. */
  | { kind: 'type'; frame: number; value: number }
  /** Repeats a slice of the stream at another place (duplicated / misplaced frames). */
  | { kind: 'splice'; from: number; count: number; at: number };

/** Values a mutated length field is biased towards: both sides of every limit. */
export function interestingLengths(limits: number[]): number[] {
  const out = new Set<number>([0, 1, 5, 6, 7, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff]);
  for (const l of limits) for (const d of [-1, 0, 1, 4]) if (l + d >= 0 && l + d <= 0xffffffff) out.add(l + d);
  return [...out];
}

export function mutationArb(lengthValues: number[]): fc.Arbitrary<Mutation> {
  const pos = fc.nat({ max: 1 << 20 });
  return fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({ kind: fc.constant('flip' as const), at: pos, bit: fc.integer({ min: 0, max: 7 }) }),
    },
    {
      weight: 2,
      arbitrary: fc.record({ kind: fc.constant('set' as const), at: pos, value: fc.integer({ min: 0, max: 255 }) }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('insert' as const),
        at: pos,
        bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant('delete' as const), at: pos, count: fc.integer({ min: 1, max: 16 }) }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: pos }) },
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant('length' as const),
        frame: fc.nat({ max: 64 }),
        value: fc.oneof(fc.constantFrom(...lengthValues), fc.integer({ min: 0, max: 0xffffffff })),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('type' as const),
        frame: fc.nat({ max: 64 }),
        value: fc.oneof(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: 255 })),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('splice' as const),
        from: pos,
        count: fc.integer({ min: 1, max: 64 }),
        at: pos,
      }),
    },
  );
}

/**
 * Applies `mutations` to a copy of `bytes`. `boundaries` are the offsets where the
 * valid stream's frames start (the targets of 'length' and 'type' edits).
 */
export function mutate(bytes: Uint8Array, boundaries: number[], mutations: Mutation[]): Buffer {
  let buf = Buffer.from(bytes);
  for (const m of mutations) {
    const n = buf.length;
    switch (m.kind) {
      case 'flip':
        if (n > 0) buf[m.at % n] ^= 1 << m.bit;
        break;
      case 'set':
        if (n > 0) buf[m.at % n] = m.value;
        break;
      case 'insert': {
        const at = m.at % (n + 1);
        buf = Buffer.concat([buf.subarray(0, at), m.bytes, buf.subarray(at)]);
        break;
      }
      case 'delete': {
        if (n === 0) break;
        const at = m.at % n;
        buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at + m.count)]);
        break;
      }
      case 'truncate':
        buf = buf.subarray(0, m.at % (n + 1));
        break;
      case 'length': {
        if (boundaries.length === 0) break;
        const at = boundaries[m.frame % boundaries.length];
        if (at + 4 <= n) buf.writeUInt32BE(m.value >>> 0, at);
        break;
      }
      case 'type': {
        if (boundaries.length === 0) break;
        const at = boundaries[m.frame % boundaries.length] + 4;
        if (at < n) buf[at] = m.value;
        break;
      }
      case 'splice': {
        if (n === 0) break;
        const from = m.from % n;
        const slice = Buffer.from(buf.subarray(from, from + m.count));
        const at = m.at % (n + 1);
        buf = Buffer.concat([buf.subarray(0, at), slice, buf.subarray(at)]);
        break;
      }
    }
  }
  return buf;
}

/** Offsets where each frame of a valid frame stream starts (after `start`, e.g. past the preface). */
export function frameBoundaries(bytes: Uint8Array, start = 0): number[] {
  const out: number[] = [];
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = start;
  while (p + 4 <= view.length) {
    out.push(p);
    p += 4 + view.readUInt32BE(p);
  }
  return out;
}

/** Cuts `bytes` at the given points (any numbers: taken modulo the length, sorted, deduplicated). */
export function splitAt(bytes: Buffer, points: number[]): Buffer[] {
  const cuts = [...new Set(points.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of cuts) {
    out.push(bytes.subarray(prev, c));
    prev = c;
  }
  out.push(bytes.subarray(prev));
  return out;
}
