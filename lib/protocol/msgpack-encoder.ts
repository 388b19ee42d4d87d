/**
 * How JavaScript values map onto msgpack (README "Payload types", docs/PROTOCOL.md §5):
 * - `'json'`: values arrive the way `JSON.stringify` + `JSON.parse` would deliver them (so code
 *   written for Nest's TCP transport keeps working), except that binary data (Buffer, Uint8Array,
 *   ArrayBuffer) stays binary.
 * - `'native'`: what msgpack can carry natively is carried natively (Date as a timestamp, BigInt
 *   as a 64-bit integer, Map, Set, typed arrays as binary, NaN, ±Infinity, -0); everything else as
 *   in `'json'`.
 */
export type PayloadTypes = 'json' | 'native';

/**
 * Small values share slabs of this size, one after the other (like Node's Buffer pool): a value
 * held by a caller keeps at most one slab alive.
 */
const SLAB_BYTES = 32 * 1024;
/** A value that needs more than this moves out of the shared slab into a buffer of its own. */
const LARGE_VALUE_BYTES = SLAB_BYTES / 4;
/** Room every encode starts with, so that headers and numbers need no check. */
const MIN_ROOM_BYTES = 64;
/** Strings shorter than this are encoded by hand: cheaper than a call into C++. */
const SHORT_STRING_CHARS = 64;

const UTF8 = new TextEncoder();

const TWO_32 = 2 ** 32;
const TWO_63 = 2 ** 63;
const TWO_64 = 2 ** 64;
const INT64_MIN = -(2n ** 63n);
const UINT64_MAX = 2n ** 64n - 1n;

/** Thrown for a value the mode cannot represent; the codec wraps it in `WireCodecError`. */
export class UnencodableValueError extends Error {}

type Utf8Write = (this: Buffer, s: string, offset: number, length: number) => number;
// Buffer#utf8Write skips `write`'s argument normalisation; Node has had it for years, but fall back.
const utf8Write: Utf8Write =
  (Buffer.prototype as unknown as { utf8Write?: Utf8Write }).utf8Write ??
  function (this: Buffer, s: string, offset: number, length: number) {
    return this.write(s, offset, length, 'utf8');
  };

/**
 * Writes standard msgpack only — nil, bool, int (smallest width), float64, str, bin, array,
 * map, and in `'native'` mode the timestamp extension (-1) — in one walk of the value. It
 * cannot produce msgpackr's private extensions (records, undefined, Set/RegExp/Error/typed
 * array extensions, bundled strings, 0xc1): it has no code for them.
 *
 * Output goes into a shared slab that is never written again once a value has been returned
 * from it (the next value goes after it, or into a new slab), so callers may hold the bytes
 * until they are written. A value that outgrows the room left in the slab moves to a buffer of
 * its own, sized for it (strings by their exact UTF-8 length, otherwise doubling), so that a
 * large value held in a queue costs about its size, never a slab several times larger.
 */
export class MsgpackEncoder {
  /** The slab small values share, and where the next value starts in it. */
  private shared: Buffer = Buffer.allocUnsafeSlow(SLAB_BYTES);
  private sharedView = new DataView(this.shared.buffer, this.shared.byteOffset, this.shared.byteLength);
  private sharedPos = 0;
  /**
   * The last value returned from `shared` while it still ends at `sharedPos` (what `recycle` may
   * take back), and where it starts; and the value before it, if it ends where the last begins
   * (a REQUEST's payload, then its metadata: recycled in the opposite order).
   */
  private lastShared: Buffer | null = null;
  private lastSharedStart = 0;
  private prevShared: Buffer | null = null;
  private prevSharedStart = 0;
  /** Where the value being encoded goes: `shared`, or (a large value) a buffer of its own. */
  private buf: Buffer = this.shared;
  private view: DataView = this.sharedView;
  /** Next byte to write in `buf`. */
  private pos = 0;
  /** Where the value being encoded begins in `buf`. */
  private start = 0;
  private readonly native: boolean;
  /** True while a value is being written (see encode). */
  private busy = false;

  constructor(types: PayloadTypes) {
    this.native = types === 'native';
  }

  encode(value: unknown): Buffer {
    // A toJSON or getter that itself encodes (with this codec) gets an encoder of its own.
    if (this.busy) return new MsgpackEncoder(this.native ? 'native' : 'json').encode(value);
    if (this.shared.length - this.sharedPos < MIN_ROOM_BYTES) this.newSharedSlab();
    this.buf = this.shared;
    this.view = this.sharedView;
    this.pos = this.start = this.sharedPos;
    this.busy = true;
    try {
      if (!this.write(value, '')) this.buf[this.pos++] = 0xc0; // top-level undefined: nil
      const bytes = this.buf.subarray(this.start, this.pos);
      // The bytes are the caller's now: the next value in this slab goes after them (unless recycled).
      if (this.buf === this.shared) {
        const follows = this.lastShared !== null && this.start === this.sharedPos;
        this.prevShared = follows ? this.lastShared : null;
        this.prevSharedStart = this.lastSharedStart;
        this.sharedPos = this.pos;
        this.lastShared = bytes;
        this.lastSharedStart = this.start;
      } else {
        this.lastShared = this.prevShared = null;
      }
      return bytes;
    } finally {
      this.busy = false;
    }
  }

  /**
   * The caller has copied `bytes` (the last value this encoder returned) and will not read
   * them again: if they are still the end of the shared slab, the next value is written
   * over them. A busy connection then encodes every small value into the same bytes instead
   * of filling (and dropping to the GC) a slab every few values.
   */
  recycle(bytes: Uint8Array): void {
    if (bytes !== this.lastShared) return;
    this.sharedPos = this.lastSharedStart;
    this.lastShared = this.prevShared;
    this.lastSharedStart = this.prevSharedStart;
    this.prevShared = null;
  }

  private newSharedSlab(): void {
    this.lastShared = this.prevShared = null;
    this.shared = Buffer.allocUnsafeSlow(SLAB_BYTES);
    this.sharedView = new DataView(this.shared.buffer, this.shared.byteOffset, this.shared.byteLength);
    this.sharedPos = 0;
  }

  /**
   * Makes room for `bytes` more (plus MIN_ROOM_BYTES). A value that stays small moves to a fresh
   * shared slab; a large one to a buffer of its own, exactly big enough or twice the value so
   * far, whichever is larger (so many small writes cost amortised O(1) copies).
   */
  private ensure(bytes: number): void {
    if (this.pos + bytes + MIN_ROOM_BYTES <= this.buf.length) return;
    const used = this.pos - this.start;
    const old = this.buf;
    const oldStart = this.start;
    const needed = used + bytes + MIN_ROOM_BYTES;
    if (needed <= LARGE_VALUE_BYTES) {
      this.newSharedSlab();
      this.buf = this.shared;
      this.view = this.sharedView;
    } else {
      this.buf = Buffer.allocUnsafeSlow(Math.max(needed, used * 2));
      this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    }
    old.copy(this.buf, 0, oldStart, oldStart + used);
    this.start = 0;
    this.pos = used;
  }

  /**
   * Writes `value`; returns false, writing nothing, for what JSON leaves out (undefined, a
   * function, a symbol, or a `toJSON` returning one): the caller drops the map entry or writes nil.
   * `key` is what JSON passes to `toJSON`: the property name, or the array index (a number here,
   * made a string only when a `toJSON` is called). Scalars are written without a bounds check:
   * the check on entry leaves MIN_ROOM_BYTES, more than the largest one (an ISO date, 25 bytes).
   */
  private write(value: unknown, key: string | number): boolean {
    if (this.buf.length - this.pos < MIN_ROOM_BYTES) this.ensure(0);
    switch (typeof value) {
      case 'string':
        this.writeString(value);
        return true;
      case 'number':
        this.writeNumber(value);
        return true;
      case 'boolean':
        this.buf[this.pos++] = value ? 0xc3 : 0xc2;
        return true;
      case 'object':
        if (value === null) {
          this.buf[this.pos++] = 0xc0;
          return true;
        }
        return this.writeObject(value, key);
      case 'bigint':
        return this.writeBigInt(value, key);
      default: // undefined, function, symbol
        return false;
    }
  }

  private writeNumber(n: number): void {
    const buf = this.buf;
    if (n >>> 0 === n) {
      if (n === 0 && this.native && 1 / n < 0) {
        this.writeFloat(n); // -0 (JSON writes it as 0)
      } else if (n < 0x80) {
        buf[this.pos++] = n;
      } else if (n < 0x100) {
        buf[this.pos++] = 0xcc;
        buf[this.pos++] = n;
      } else if (n < 0x10000) {
        buf[this.pos++] = 0xcd;
        buf[this.pos++] = n >>> 8;
        buf[this.pos++] = n & 0xff;
      } else {
        buf[this.pos++] = 0xce;
        this.view.setUint32(this.pos, n);
        this.pos += 4;
      }
    } else if (n >> 0 === n) {
      if (n >= -0x20) {
        buf[this.pos++] = n & 0xff;
      } else if (n >= -0x80) {
        buf[this.pos++] = 0xd0;
        buf[this.pos++] = n & 0xff;
      } else if (n >= -0x8000) {
        buf[this.pos++] = 0xd1;
        this.view.setInt16(this.pos, n);
        this.pos += 2;
      } else {
        buf[this.pos++] = 0xd2;
        this.view.setInt32(this.pos, n);
        this.pos += 4;
      }
    } else if (Number.isInteger(n) && (this.native ? Number.isSafeInteger(n) : n >= -TWO_63 && n < TWO_64)) {
      // An integer beyond 32 bits goes out as an integer, so other languages read an integer.
      // 'json' sends every integer-valued double that fits 64 bits this way: exact on the wire,
      // and a 'json' receiver's nearest number is the same double. 'native' sends only safe
      // integers, since a 'native' receiver turns integers beyond 2^53 into BigInt.
      const hi = Math.floor(n / TWO_32);
      buf[this.pos++] = n < 0 ? 0xd3 : 0xcf;
      if (n < 0) this.view.setInt32(this.pos, hi);
      else this.view.setUint32(this.pos, hi);
      this.view.setUint32(this.pos + 4, n - hi * TWO_32);
      this.pos += 8;
    } else if (!this.native && !Number.isFinite(n)) {
      buf[this.pos++] = 0xc0; // NaN, ±Infinity: null, as JSON
    } else {
      this.writeFloat(n);
    }
  }

  private writeFloat(n: number): void {
    this.buf[this.pos++] = 0xcb;
    this.view.setFloat64(this.pos, n);
    this.pos += 8;
  }

  private writeBigInt(n: bigint, key: string | number): boolean {
    if (!this.native) {
      // The common `BigInt.prototype.toJSON = ...` patch keeps working as over JSON.
      const toJSON = (n as unknown as { toJSON?: unknown }).toJSON;
      if (typeof toJSON === 'function') return this.write(toJSON.call(n, String(key)), key);
    }
    if (n >= -0x80000000n && n <= 0xffffffffn) {
      this.writeNumber(Number(n));
    } else if (n >= INT64_MIN && n <= UINT64_MAX) {
      this.buf[this.pos++] = n < 0n ? 0xd3 : 0xcf;
      if (n < 0n) this.view.setBigInt64(this.pos, n);
      else this.view.setBigUint64(this.pos, n);
      this.pos += 8;
    } else {
      throw new UnencodableValueError(`BigInt ${n} does not fit a 64-bit integer`);
    }
    return true;
  }

  private writeString(s: string): void {
    const chars = s.length;
    // Header sized for `chars` bytes (exact for ASCII); moved below if the UTF-8 is longer.
    const header = chars < 0x20 ? 1 : chars < 0x100 ? 2 : chars < 0x10000 ? 3 : 5;
    // Room for the worst case (3 bytes a UTF-16 unit) is the fast path. A long string that does
    // not fit it gets room for one byte a unit (ASCII, the common case), then its exact length
    // if that was not enough: a large value's buffer is its size, not three times it.
    const worstFits = this.pos + chars * 3 + 5 + MIN_ROOM_BYTES <= this.buf.length;
    if (!worstFits) this.ensure((chars < SHORT_STRING_CHARS ? chars * 3 : chars) + 5);
    let buf = this.buf;
    const at = this.pos;
    let bytes: number;
    if (!worstFits && chars >= SHORT_STRING_CHARS) {
      const out = UTF8.encodeInto(s, buf.subarray(at + header, buf.length - MIN_ROOM_BYTES));
      if (out.read === chars) {
        bytes = out.written;
      } else {
        this.ensure(Buffer.byteLength(s) + 5);
        buf = this.buf;
        bytes = utf8Write.call(buf, s, this.pos + header, buf.length - this.pos - header);
      }
    } else if (chars < SHORT_STRING_CHARS) {
      let p = at + header;
      for (let i = 0; i < chars; i++) {
        let c = s.charCodeAt(i);
        if (c < 0x80) {
          buf[p++] = c;
        } else if (c < 0x800) {
          buf[p++] = (c >> 6) | 0xc0;
          buf[p++] = (c & 0x3f) | 0x80;
        } else {
          let c2: number;
          if ((c & 0xfc00) === 0xd800 && ((c2 = s.charCodeAt(i + 1)) & 0xfc00) === 0xdc00) {
            c = 0x10000 + ((c & 0x3ff) << 10) + (c2 & 0x3ff);
            i++;
            buf[p++] = (c >> 18) | 0xf0;
            buf[p++] = ((c >> 12) & 0x3f) | 0x80;
          } else {
            // A lone surrogate becomes U+FFFD, as Buffer#write (and JSON over a socket) would.
            if ((c & 0xf800) === 0xd800) c = 0xfffd;
            buf[p++] = (c >> 12) | 0xe0;
          }
          buf[p++] = ((c >> 6) & 0x3f) | 0x80;
          buf[p++] = (c & 0x3f) | 0x80;
        }
      }
      bytes = p - at - header;
    } else {
      bytes = utf8Write.call(buf, s, at + header, buf.length - at - header);
    }
    const needed = bytes < 0x20 ? 1 : bytes < 0x100 ? 2 : bytes < 0x10000 ? 3 : 5;
    return this.finishString(buf, this.pos, header, needed, bytes);
  }

  /** Writes the str header for `bytes` at `at`, moving the bytes if `needed` differs from `header`. */
  private finishString(buf: Buffer, at: number, header: number, needed: number, bytes: number): void {
    if (needed !== header) buf.copyWithin(at + needed, at + header, at + header + bytes);
    if (needed === 1) {
      buf[at] = 0xa0 | bytes;
    } else if (needed === 2) {
      buf[at] = 0xd9;
      buf[at + 1] = bytes;
    } else if (needed === 3) {
      buf[at] = 0xda;
      buf[at + 1] = bytes >>> 8;
      buf[at + 2] = bytes & 0xff;
    } else {
      buf[at] = 0xdb;
      this.view.setUint32(at + 1, bytes);
    }
    this.pos = at + needed + bytes;
  }

  private writeBinary(bytes: ArrayBufferView | ArrayBuffer): void {
    const src =
      bytes instanceof ArrayBuffer
        ? new Uint8Array(bytes)
        : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const n = src.length;
    if (n > 0xffffffff) throw new UnencodableValueError(`binary value of ${n} bytes exceeds msgpack's 4 GiB bin`);
    this.ensure(n + 5);
    const buf = this.buf;
    if (n < 0x100) {
      buf[this.pos++] = 0xc4;
      buf[this.pos++] = n;
    } else if (n < 0x10000) {
      buf[this.pos++] = 0xc5;
      buf[this.pos++] = n >>> 8;
      buf[this.pos++] = n & 0xff;
    } else {
      buf[this.pos++] = 0xc6;
      this.view.setUint32(this.pos, n);
      this.pos += 4;
    }
    buf.set(src, this.pos);
    this.pos += n;
  }

  private writeObject(obj: object, key: string | number): boolean {
    if (Array.isArray(obj)) {
      this.writeArray(obj);
      return true;
    }
    // Plain objects, the common case, skip the instanceof checks below.
    if (obj.constructor === Object && typeof (obj as { toJSON?: unknown }).toJSON !== 'function') {
      this.writeFields(obj as Record<string, unknown>);
      return true;
    }
    if (obj instanceof Uint8Array || obj instanceof ArrayBuffer) {
      // Before toJSON: Buffer has one, and binary data stays binary in both modes.
      this.writeBinary(obj);
      return true;
    }
    if (obj instanceof Date) {
      if (this.native) {
        this.writeTimestamp(obj);
        return true;
      }
      if (obj.toJSON === DATE_TO_JSON) {
        this.writeIsoDate(obj);
        return true;
      }
    } else if (this.native) {
      if (ArrayBuffer.isView(obj)) {
        this.writeBinary(obj); // other typed arrays, DataView: their bytes
        return true;
      }
      if (obj instanceof Map) {
        this.writeMap(obj);
        return true;
      }
      if (obj instanceof Set) {
        this.writeArray([...obj]);
        return true;
      }
    }
    const toJSON = (obj as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') {
      const json: unknown = toJSON.call(obj, String(key));
      // A toJSON returning its own object (some ORMs do) would loop: write the fields instead.
      if (json !== obj) return this.write(json, key);
    } else if (obj.constructor !== Object && isBoxedPrimitive(obj)) {
      // new Number(1), new String('a')...: JSON writes the primitive.
      return this.write((obj as { valueOf(): unknown }).valueOf(), key);
    }
    this.writeFields(obj as Record<string, unknown>);
    return true;
  }

  private writeArray(items: readonly unknown[]): void {
    const n = items.length;
    this.writeLength(n, 0x90, 0xdc);
    for (let i = 0; i < n; i++) {
      if (!this.write(items[i], i)) this.buf[this.pos++] = 0xc0; // undefined element: null, as JSON
    }
  }

  /** Own enumerable string keys, as JSON; entries whose value JSON leaves out are dropped. */
  private writeFields(obj: Record<string, unknown>): void {
    const keys = Object.keys(obj);
    const n = keys.length;
    // Offsets from `start`: a slab that grows moves the value.
    const header = this.pos - this.start;
    this.writeLength(n, 0x80, 0xde);
    let written = 0;
    for (let i = 0; i < n; i++) {
      const key = keys[i];
      const keyStart = this.pos - this.start;
      this.writeString(key);
      if (this.write(obj[key], key)) written++;
      else this.pos = this.start + keyStart;
    }
    if (written !== n) this.rewriteLength(this.start + header, n, written);
  }

  private writeMap(map: Map<unknown, unknown>): void {
    this.writeLength(map.size, 0x80, 0xde);
    for (const [k, v] of map) {
      // A receiver decodes a map to an object: only keys that make a property name.
      if (typeof k !== 'string' && typeof k !== 'number') {
        throw new UnencodableValueError(`a Map key must be a string or a number to be sent, got ${typeof k}`);
      }
      this.write(k, '');
      if (!this.write(v, '')) this.buf[this.pos++] = 0xc0; // the entry exists: its value is nil
    }
  }

  /** fixarray/fixmap, 16-bit or 32-bit header; `fix` is 0x90 or 0x80, `wide` 0xdc or 0xde. */
  private writeLength(n: number, fix: number, wide: number): void {
    const buf = this.buf;
    if (n < 0x10) {
      buf[this.pos++] = fix | n;
    } else if (n < 0x10000) {
      buf[this.pos++] = wide;
      buf[this.pos++] = n >>> 8;
      buf[this.pos++] = n & 0xff;
    } else {
      buf[this.pos++] = wide + 1;
      this.view.setUint32(this.pos, n);
      this.pos += 4;
    }
  }

  /** A map header at `at` said `was` entries; `now` were written. Keeps the smallest header. */
  private rewriteLength(at: number, was: number, now: number): void {
    const size = (n: number) => (n < 0x10 ? 1 : n < 0x10000 ? 3 : 5);
    const shift = size(was) - size(now);
    if (shift > 0) {
      this.buf.copyWithin(at + size(now), at + size(was), this.pos);
      this.pos -= shift;
    }
    const end = this.pos;
    this.pos = at;
    this.writeLength(now, 0x80, 0xde);
    this.pos = end;
  }

  /**
   * What `Date#toJSON` returns (its ISO string, or null when invalid), written straight into
   * the output: no string to allocate and encode on the way, which is most of a Date's cost.
   */
  private writeIsoDate(date: Date): void {
    const year = date.getUTCFullYear();
    if (!(year >= 0 && year <= 9999)) {
      // Invalid (NaN): null, as JSON. Years outside 0-9999 have a longer form: let Date write it.
      if (Number.isNaN(year)) this.buf[this.pos++] = 0xc0;
      else this.writeString(date.toISOString());
      return;
    }
    const buf = this.buf;
    const p = this.pos;
    buf[p] = 0xb8; // fixstr of 24 bytes: YYYY-MM-DDTHH:mm:ss.sssZ
    writeDigits(buf, p + 1, year, 4);
    buf[p + 5] = 0x2d; // -
    writeDigits(buf, p + 6, date.getUTCMonth() + 1, 2);
    buf[p + 8] = 0x2d;
    writeDigits(buf, p + 9, date.getUTCDate(), 2);
    buf[p + 11] = 0x54; // T
    writeDigits(buf, p + 12, date.getUTCHours(), 2);
    buf[p + 14] = 0x3a; // :
    writeDigits(buf, p + 15, date.getUTCMinutes(), 2);
    buf[p + 17] = 0x3a;
    writeDigits(buf, p + 18, date.getUTCSeconds(), 2);
    buf[p + 20] = 0x2e; // .
    writeDigits(buf, p + 21, date.getUTCMilliseconds(), 3);
    buf[p + 24] = 0x5a; // Z
    this.pos = p + 25;
  }

  /** The msgpack timestamp extension (-1), in its smallest form, as the spec gives it. */
  private writeTimestamp(date: Date): void {
    const ms = date.getTime();
    if (Number.isNaN(ms)) {
      throw new UnencodableValueError(
        "an invalid Date has no msgpack timestamp (payloadTypes 'native'); send null or a valid Date",
      );
    }
    const seconds = Math.floor(ms / 1000);
    const nanos = (ms - seconds * 1000) * 1e6;
    const buf = this.buf;
    if (nanos === 0 && seconds >= 0 && seconds < TWO_32) {
      buf[this.pos++] = 0xd6;
      buf[this.pos++] = 0xff;
      this.view.setUint32(this.pos, seconds);
      this.pos += 4;
    } else if (seconds >= 0 && seconds < 2 ** 34) {
      buf[this.pos++] = 0xd7;
      buf[this.pos++] = 0xff;
      // 30 bits of nanoseconds, then 34 bits of seconds.
      this.view.setUint32(this.pos, nanos * 4 + Math.floor(seconds / TWO_32));
      this.view.setUint32(this.pos + 4, seconds >>> 0);
      this.pos += 8;
    } else {
      buf[this.pos++] = 0xc7;
      buf[this.pos++] = 12;
      buf[this.pos++] = 0xff;
      this.view.setUint32(this.pos, nanos);
      this.view.setBigInt64(this.pos + 4, BigInt(seconds));
      this.pos += 12;
    }
  }
}

// eslint-disable-next-line @typescript-eslint/unbound-method
const DATE_TO_JSON = Date.prototype.toJSON;

/** `n` as `width` ASCII decimal digits, zero-padded, at `at`. */
function writeDigits(buf: Buffer, at: number, n: number, width: number): void {
  for (let i = at + width - 1; i >= at; i--) {
    buf[i] = 0x30 + (n % 10);
    n = Math.floor(n / 10);
  }
}

function isBoxedPrimitive(obj: object): boolean {
  return obj instanceof Number || obj instanceof String || obj instanceof Boolean || obj instanceof BigInt;
}
