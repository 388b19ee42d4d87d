/**
 * Log-linear latency histogram (HDR-style), in whole microseconds.
 *
 * Values below 128 µs get one bucket each; above that every power of two is split
 * into 64 equal buckets, so a recorded value is off by at most 1/64 (1.6 %) of
 * itself. Memory is fixed (about 2 000 counters up to 2^31 µs) whatever the number
 * of samples: recording is O(1) and nothing is sorted.
 */
const LINEAR = 128;
const SUB_BITS = 6;
const SUB = 1 << SUB_BITS; // 64 buckets per octave
const FIRST_EXP = 7; // 2^7 = 128 = LINEAR
const MAX_US = 2 ** 31 - 1;
const BUCKETS = LINEAR + (31 - FIRST_EXP) * SUB;

export class Histogram {
  private counts = new Float64Array(BUCKETS);
  count = 0;
  min = Infinity;
  max = 0;
  private sum = 0;

  /** Records one latency in microseconds (fractions are rounded). */
  record(us: number): void {
    let v = Math.round(us);
    if (v < 0) v = 0;
    else if (v > MAX_US) v = MAX_US;
    this.counts[bucketOf(v)]++;
    this.count++;
    this.sum += v;
    if (v < this.min) this.min = v;
    if (v > this.max) this.max = v;
  }

  /** Adds every sample of `other` (same bucket layout) to this histogram. */
  add(other: Histogram): void {
    for (let i = 0; i < BUCKETS; i++) this.counts[i] += other.counts[i];
    this.count += other.count;
    this.sum += other.sum;
    if (other.min < this.min) this.min = other.min;
    if (other.max > this.max) this.max = other.max;
  }

  get mean(): number {
    return this.count === 0 ? 0 : this.sum / this.count;
  }

  /** The value at quantile `q` (0..1), as the middle of its bucket, in µs. */
  percentile(q: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min(Math.max(midpointOf(i), this.min), this.max);
    }
    return this.max;
  }
}

function bucketOf(v: number): number {
  if (v < LINEAR) return v;
  const e = 31 - Math.clz32(v); // v in [2^e, 2^(e+1))
  return LINEAR + (e - FIRST_EXP) * SUB + ((v >>> (e - SUB_BITS)) & (SUB - 1));
}

function midpointOf(i: number): number {
  if (i < LINEAR) return i;
  const e = FIRST_EXP + Math.floor((i - LINEAR) / SUB);
  const sub = (i - LINEAR) % SUB;
  const width = 2 ** (e - SUB_BITS);
  return (SUB + sub) * width + (width - 1) / 2;
}
