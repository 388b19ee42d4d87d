/** Sub-buckets per power of two: values within one bucket differ by at most 1/16 (6 %). */
const SUB_BITS = 4;
const SUB = 1 << SUB_BITS;
/** Microseconds up to 2^31 (about 36 minutes); larger values land in the last bucket. */
const BUCKETS = (31 - SUB_BITS + 1) * SUB + SUB;

/**
 * Log-linear latency histogram over integer microseconds: a fixed array of counters,
 * O(1) to record with no allocation, percentiles read from the counts. Cheap enough to
 * stay on for every call, unlike a sorted array of samples.
 */
export class LatencyHistogram {
  private readonly counts = new Float64Array(BUCKETS);
  count = 0;
  private maxUs = 0;

  record(ms: number): void {
    const us = ms <= 0 ? 0 : Math.min(Math.round(ms * 1000), 0x7fffffff);
    this.counts[bucketOf(us)]++;
    this.count++;
    if (us > this.maxUs) this.maxUs = us;
  }

  /** The `p`-th percentile (0-100) in ms: the upper bound of the bucket holding it. */
  percentile(p: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(upperBoundOf(i), this.maxUs) / 1000;
    }
    return this.maxUs / 1000;
  }

  get maxMs(): number {
    return this.maxUs / 1000;
  }

  reset(): void {
    this.counts.fill(0);
    this.count = 0;
    this.maxUs = 0;
  }
}

function bucketOf(us: number): number {
  if (us < SUB) return us;
  const exp = 31 - Math.clz32(us); // >= SUB_BITS
  return (exp - SUB_BITS + 1) * SUB + ((us >>> (exp - SUB_BITS)) & (SUB - 1));
}

function upperBoundOf(index: number): number {
  if (index < SUB) return index;
  const exp = (index >> SUB_BITS) + SUB_BITS - 1;
  const sub = index & (SUB - 1);
  return (SUB + sub + 1) * 2 ** (exp - SUB_BITS) - 1;
}
