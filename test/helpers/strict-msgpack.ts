/**
 * A small msgpack reader that knows the standard (github.com/msgpack/msgpack/blob/master/spec.md)
 * and nothing else: what a Go, Rust or Java peer's decoder accepts. It throws on 0xc1, on any
 * extension other than the timestamp (-1) of 4, 8 or 12 bytes with nanoseconds < 10^9, on
 * truncation and on trailing bytes. Independent of lib/ and of msgpackr on purpose.
 *
 * Values: nil → null, ints → number when safe else bigint, floats → `{ float: n }` (so a test
 * sees the wire type), str → string, bin → Uint8Array, array → array, map → array of
 * [key, value] pairs, timestamp → `{ timestamp: { seconds: bigint, nanoseconds } }`.
 */
export type StrictValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | { float: number }
  | { timestamp: { seconds: bigint; nanoseconds: number } }
  | StrictValue[]
  | { map: Array<[StrictValue, StrictValue]> };

export function readStrict(bytes: Uint8Array): StrictValue {
  const reader = new StrictReader(bytes);
  const value = reader.read();
  if (reader.pos !== bytes.length) throw new Error(`${bytes.length - reader.pos} trailing bytes`);
  return value;
}

/** Plain JS view of a StrictValue (floats as numbers, maps as objects with string keys). */
export function plain(value: StrictValue): unknown {
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return value;
  if (Array.isArray(value)) return value.map(plain);
  if ('float' in value) return value.float;
  if ('timestamp' in value) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of value.map) out[String(plain(k))] = plain(v);
  return out;
}

class StrictReader {
  pos = 0;
  private readonly view: DataView;

  constructor(private readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private take(n: number): number {
    if (this.pos + n > this.bytes.length) throw new Error(`truncated at byte ${this.pos}`);
    const at = this.pos;
    this.pos += n;
    return at;
  }

  read(): StrictValue {
    const b = this.bytes[this.take(1)];
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if ((b & 0xf0) === 0x80) return this.map(b & 0x0f);
    if ((b & 0xf0) === 0x90) return this.array(b & 0x0f);
    if ((b & 0xe0) === 0xa0) return this.str(b & 0x1f);
    const v = this.view;
    switch (b) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        return this.bin(v.getUint8(this.take(1)));
      case 0xc5:
        return this.bin(v.getUint16(this.take(2)));
      case 0xc6:
        return this.bin(v.getUint32(this.take(4)));
      case 0xc7:
        return this.ext(v.getUint8(this.take(1)));
      case 0xc8:
        return this.ext(v.getUint16(this.take(2)));
      case 0xc9:
        return this.ext(v.getUint32(this.take(4)));
      case 0xca:
        return { float: v.getFloat32(this.take(4)) };
      case 0xcb:
        return { float: v.getFloat64(this.take(8)) };
      case 0xcc:
        return v.getUint8(this.take(1));
      case 0xcd:
        return v.getUint16(this.take(2));
      case 0xce:
        return v.getUint32(this.take(4));
      case 0xcf:
        return safe(v.getBigUint64(this.take(8)));
      case 0xd0:
        return v.getInt8(this.take(1));
      case 0xd1:
        return v.getInt16(this.take(2));
      case 0xd2:
        return v.getInt32(this.take(4));
      case 0xd3:
        return safe(v.getBigInt64(this.take(8)));
      case 0xd4:
        return this.ext(1);
      case 0xd5:
        return this.ext(2);
      case 0xd6:
        return this.ext(4);
      case 0xd7:
        return this.ext(8);
      case 0xd8:
        return this.ext(16);
      case 0xd9:
        return this.str(v.getUint8(this.take(1)));
      case 0xda:
        return this.str(v.getUint16(this.take(2)));
      case 0xdb:
        return this.str(v.getUint32(this.take(4)));
      case 0xdc:
        return this.array(v.getUint16(this.take(2)));
      case 0xdd:
        return this.array(v.getUint32(this.take(4)));
      case 0xde:
        return this.map(v.getUint16(this.take(2)));
      case 0xdf:
        return this.map(v.getUint32(this.take(4)));
      default:
        throw new Error(`byte 0x${b.toString(16)} (never used) at ${this.pos - 1}`);
    }
  }

  private str(n: number): string {
    const at = this.take(n);
    return new TextDecoder('utf-8', { fatal: true }).decode(this.bytes.subarray(at, at + n));
  }

  private bin(n: number): Uint8Array {
    const at = this.take(n);
    return this.bytes.slice(at, at + n);
  }

  private array(n: number): StrictValue[] {
    const out: StrictValue[] = [];
    for (let i = 0; i < n; i++) out.push(this.read());
    return out;
  }

  private map(n: number): { map: Array<[StrictValue, StrictValue]> } {
    const out: Array<[StrictValue, StrictValue]> = [];
    for (let i = 0; i < n; i++) out.push([this.read(), this.read()]);
    return { map: out };
  }

  private ext(n: number): StrictValue {
    const type = this.view.getInt8(this.take(1));
    const at = this.take(n);
    if (type !== -1) throw new Error(`extension type ${type} is not standard`);
    const v = this.view;
    if (n === 4) return { timestamp: { seconds: BigInt(v.getUint32(at)), nanoseconds: 0 } };
    if (n === 8) {
      const hi = v.getUint32(at);
      const nanoseconds = hi >>> 2;
      if (nanoseconds >= 1e9) throw new Error('timestamp nanoseconds >= 10^9');
      return { timestamp: { seconds: (BigInt(hi & 3) << 32n) | BigInt(v.getUint32(at + 4)), nanoseconds } };
    }
    if (n === 12) {
      const nanoseconds = v.getUint32(at);
      if (nanoseconds >= 1e9) throw new Error('timestamp nanoseconds >= 10^9');
      return { timestamp: { seconds: v.getBigInt64(at + 4), nanoseconds } };
    }
    throw new Error(`timestamp of ${n} bytes`);
  }
}

function safe(n: bigint): number | bigint {
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
}
