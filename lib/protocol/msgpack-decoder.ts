import { isAscii } from 'node:buffer';

/**
 * Returned by `decodeCommonMsgpack` when the value holds something it leaves to msgpackr.
 */
export const NOT_COMMON: unique symbol = Symbol('not common msgpack');

/** Strings up to this many bytes are checked for ASCII in JS; longer ones by Node (SIMD). */
const JS_ASCII_BYTES = 256;
/** ASCII strings up to this many bytes are built with String.fromCharCode (no call into C++). */
const CHAR_CODE_BYTES = 16;

type Slice = (this: Buffer, start: number, end: number) => string;
// Buffer#latin1Slice / #utf8Slice skip toString's argument handling; Node has had them for years, but fall back.
const proto = Buffer.prototype as unknown as { latin1Slice?: Slice; utf8Slice?: Slice };
const latin1Slice: Slice =
  proto.latin1Slice ??
  function (this: Buffer, start: number, end: number) {
    return this.toString('latin1', start, end);
  };
const utf8Slice: Slice =
  proto.utf8Slice ??
  function (this: Buffer, start: number, end: number) {
    return this.toString('utf8', start, end);
  };

let src: Buffer = Buffer.alloc(0);
let pos = 0;
/** Every string of the value being decoded is ASCII (the validator said so): no byte needs looking at. */
let ascii = false;

/**
 * Decodes the msgpack a call carries most often — nil, booleans, integers up to 32 bits,
 * float64, strings, arrays, and maps with string keys — into the values msgpackr
 * (with the codec's options) gives for the same bytes, in one walk that allocates only
 * the result. ASCII strings are read as latin1 (the same characters, without UTF-8
 * decoding). On anything else (binary, 64-bit integers, float32, extensions such as the
 * timestamp, a non-string map key, a `__proto__` key) it returns `NOT_COMMON` and the
 * caller decodes with msgpackr instead, so those keep msgpackr's exact semantics.
 *
 * `bytes` must already have passed `validateMsgpack`: lengths, UTF-8, nesting depth and
 * the end of input are not checked again here. `allStringsAscii`: the validator found only
 * ASCII strings (`lastValidated`), so they are read without looking at their bytes.
 */
export function decodeCommonMsgpack(bytes: Uint8Array, allStringsAscii = false): unknown {
  src = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  pos = 0;
  ascii = allStringsAscii;
  try {
    return read();
  } finally {
    src = EMPTY;
  }
}

const EMPTY = Buffer.alloc(0);

function read(): unknown {
  const b = src[pos++];
  if (b <= 0x7f) return b;
  if (b >= 0xe0) return b - 0x100;
  if (b <= 0x8f) return readMap(b & 0x0f);
  if (b <= 0x9f) return readArray(b & 0x0f);
  if (b <= 0xbf) return readString(b & 0x1f);
  switch (b) {
    case 0xc0:
      return null;
    case 0xc2:
      return false;
    case 0xc3:
      return true;
    case 0xcb: {
      const v = src.readDoubleBE(pos);
      pos += 8;
      return v;
    }
    case 0xcc:
      return src[pos++];
    case 0xcd: {
      const v = (src[pos] << 8) | src[pos + 1];
      pos += 2;
      return v;
    }
    case 0xce: {
      const v = src.readUInt32BE(pos);
      pos += 4;
      return v;
    }
    case 0xd0:
      return (src[pos++] << 24) >> 24;
    case 0xd1: {
      const v = (((src[pos] << 8) | src[pos + 1]) << 16) >> 16;
      pos += 2;
      return v;
    }
    case 0xd2: {
      const v = src.readInt32BE(pos);
      pos += 4;
      return v;
    }
    case 0xd9: {
      const n = src[pos++];
      return readString(n);
    }
    case 0xda: {
      const n = (src[pos] << 8) | src[pos + 1];
      pos += 2;
      return readString(n);
    }
    case 0xdb: {
      const n = src.readUInt32BE(pos);
      pos += 4;
      return readString(n);
    }
    case 0xdc: {
      const n = (src[pos] << 8) | src[pos + 1];
      pos += 2;
      return readArray(n);
    }
    case 0xdd: {
      const n = src.readUInt32BE(pos);
      pos += 4;
      return readArray(n);
    }
    case 0xde: {
      const n = (src[pos] << 8) | src[pos + 1];
      pos += 2;
      return readMap(n);
    }
    case 0xdf: {
      const n = src.readUInt32BE(pos);
      pos += 4;
      return readMap(n);
    }
    default:
      // bin, float32, 64-bit integers, extensions: msgpackr's.
      return NOT_COMMON;
  }
}

function readArray(n: number): unknown {
  const array = new Array<unknown>(n);
  for (let i = 0; i < n; i++) {
    const v = read();
    if (v === NOT_COMMON) return NOT_COMMON;
    array[i] = v;
  }
  return array;
}

function readMap(n: number): unknown {
  const object: Record<string, unknown> = {};
  for (let i = 0; i < n; i++) {
    const b = src[pos++];
    let key: string;
    if (b >= 0xa0 && b <= 0xbf) key = readKey(b & 0x1f);
    else if (b === 0xd9) key = readString(src[pos++]);
    else return NOT_COMMON; // a long or non-string key: msgpackr's conversion
    // msgpackr renames it (an own property named __proto__ cannot be assigned plainly).
    if (key === '__proto__') return NOT_COMMON;
    const v = read();
    if (v === NOT_COMMON) return NOT_COMMON;
    object[key] = v;
  }
  return object;
}

/** Map keys up to this many bytes are looked up in (and added to) the key cache. */
const CACHED_KEY_BYTES = 16;
const KEY_CACHE_SLOTS = 4096;

/** A key string and a copy of its bytes. */
interface CachedKey {
  readonly bytes: Buffer;
  readonly key: string;
}

/**
 * Recently read short map keys by a hash of their bytes (one entry per slot, the last one
 * read wins): the same keys come back in every payload, and handing V8 the same string
 * instance each time spares building it and looking it up when it becomes a property name.
 */
const keyCache = new Array<CachedKey | undefined>(KEY_CACHE_SLOTS);

function readKey(n: number): string {
  if (n > CACHED_KEY_BYTES) return readString(n);
  const s = src;
  const start = pos;
  const slot = ((n << 7) ^ (n > 0 ? (s[start] << 4) ^ s[start + n - 1] : 0) ^ (n > 1 ? s[start + 1] << 9 : 0)) & 0xfff;
  const cached = keyCache[slot];
  if (cached !== undefined && cached.bytes.length === n) {
    const bytes = cached.bytes;
    let i = 0;
    while (i < n && bytes[i] === s[start + i]) i++;
    if (i === n) {
      pos = start + n;
      return cached.key;
    }
  }
  const key = readString(n);
  keyCache[slot] = { bytes: Buffer.from(s.subarray(start, start + n)), key };
  return key;
}

function readString(n: number): string {
  const start = pos;
  const end = (pos += n);
  if (ascii) return n <= CHAR_CODE_BYTES ? shortAscii(src, start, n) : latin1Slice.call(src, start, end);
  if (n <= JS_ASCII_BYTES) {
    const s = src;
    for (let i = start; i < end; i++) if (s[i] >= 0x80) return utf8Slice.call(s, start, end);
    if (n <= CHAR_CODE_BYTES) return shortAscii(s, start, n);
    return latin1Slice.call(s, start, end);
  }
  return isAscii(src.subarray(start, end)) ? latin1Slice.call(src, start, end) : utf8Slice.call(src, start, end);
}

function shortAscii(s: Buffer, p: number, n: number): string {
  switch (n) {
    case 0:
      return '';
    case 1:
      return String.fromCharCode(s[p]);
    case 2:
      return String.fromCharCode(s[p], s[p + 1]);
    case 3:
      return String.fromCharCode(s[p], s[p + 1], s[p + 2]);
    case 4:
      return String.fromCharCode(s[p], s[p + 1], s[p + 2], s[p + 3]);
    default: {
      let out = '';
      for (let i = p, end = p + n; i < end; i++) out += String.fromCharCode(s[i]);
      return out;
    }
  }
}
