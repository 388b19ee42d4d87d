import { isAscii, isUtf8 } from 'node:buffer';
import { WireCodecError, WireLimitError } from '../errors.js';

/**
 * What one decode may allocate, owned by whoever decodes (a session, a client
 * connection). The caller sets `maxBytes` before `decode()`; the validator leaves its
 * estimate of the decoded value's JS heap in `lastBytes`, so the caller can charge it
 * to a per-connection or per-server total and release it when the value is dropped.
 */
export class DecodeBudget {
  /** Most estimated heap bytes the next decoded value may take. */
  maxBytes: number;
  /** Estimated heap bytes of the last value validated (also set when it was refused). */
  lastBytes = 0;

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }
}

/** Limit of a decode without a budget (a HELLO's credentials, a test's decode). */
export const DEFAULT_DECODE_LIMIT_BYTES = 64 * 1024 * 1024;

/** Deepest nesting of arrays and maps accepted (msgpackr decodes recursively). */
export const MAX_DECODE_DEPTH = 512;

/**
 * Heap estimate, per decoded element, in bytes. Deliberately on the high side of what V8
 * allocates (64-bit, pointer compression off): a slot in its parent, plus the object
 * itself. 16 million empty arrays (16 MiB of 0x90 bytes) estimate 640 MiB; V8 took 685.
 */
const SLOT_BYTES = 8;
const ARRAY_BYTES = 32;
const MAP_BYTES = 56;
/** A map entry: key slot, value slot, and dictionary-mode overhead. */
const ENTRY_BYTES = 24;
const STRING_BYTES = 24;
const BINARY_BYTES = 96;
/** A float or an integer beyond V8's small integers is a boxed HeapNumber. */
const NUMBER_BYTES = 16;
/** A Date object (timestamp extension). */
const DATE_BYTES = 48;

/** remaining[d] of `validateMsgpack`; shared: validation is synchronous, never re-entered. */
const STACK = new Uint32Array(MAX_DECODE_DEPTH + 1);

/**
 * What `validateMsgpack` saw in the value it last accepted, read by the codec right after it
 * (same synchronous call): whether every string was ASCII (then its bytes read as latin1 are its
 * characters), and whether it held only the types msgpack-decoder.ts reads (no binary, float32,
 * 64-bit integer or extension).
 */
export const lastValidated = { allStringsAscii: true, commonTypesOnly: true };

/** Timestamp extension type (-1). */
const TIMESTAMP_TYPE = 0xff;

/**
 * Walks msgpack bytes once, without allocating, and refuses everything that is not
 * standard msgpack (`WireCodecError`): the reserved byte 0xc1, every extension type but
 * the timestamp (-1, with 4, 8 or 12 bytes of data and nanoseconds below 10^9), invalid
 * UTF-8 in strings, nesting deeper than `MAX_DECODE_DEPTH`, truncated input and
 * trailing bytes. msgpackr's private extensions (BigInt 0x42, Error 0x65, cycles
 * 0x69/0x70, records 0x72, RegExp 0x78, Set, typed arrays...) therefore never reach it.
 *
 * Returns an estimate of the JS heap the decoded value takes, and throws
 * `WireLimitError` as soon as it passes `maxBytes`: a 40-byte brotli payload that
 * inflates to 16 million empty arrays is refused before a single array exists.
 */
export function validateMsgpack(bytes: Uint8Array, maxBytes: number): number {
  const end = bytes.length;
  // remaining[d]: elements still expected at depth d (a map counts 2 per entry).
  const remaining = STACK;
  let depth = 0;
  remaining[0] = 1;
  let p = 0;
  let heap = SLOT_BYTES;
  lastValidated.allStringsAscii = true;
  lastValidated.commonTypesOnly = true;
  while (depth >= 0) {
    if (remaining[depth] === 0) {
      depth--;
      continue;
    }
    remaining[depth]--;
    if (p >= end) throw truncated();
    const b = bytes[p++];
    let count = -1; // elements of a container that starts here
    let skip = 0; // bytes of a str / bin / ext body
    if (b <= 0x7f || b >= 0xe0) {
      // fixint; a run of them (an array of small numbers) is skipped in a tight loop.
      let r = remaining[depth];
      while (r > 0 && p < end) {
        const c = bytes[p];
        if (c > 0x7f && c < 0xe0) break;
        p++;
        r--;
      }
      remaining[depth] = r;
      continue;
    }
    if (b <= 0x8f) {
      count = (b & 0x0f) * 2;
      heap += MAP_BYTES + (b & 0x0f) * ENTRY_BYTES;
    } else if (b <= 0x9f) {
      count = b & 0x0f;
      heap += ARRAY_BYTES + count * SLOT_BYTES;
    } else if (b <= 0xbf) {
      skip = b & 0x1f;
      checkString(bytes, p, skip, end);
      heap += STRING_BYTES + skip;
    } else {
      switch (b) {
        case 0xc0: // nil
        case 0xc2: // false
        case 0xc3: // true
          continue;
        case 0xc4: // bin 8/16/32
        case 0xc5:
        case 0xc6:
          lastValidated.commonTypesOnly = false;
          skip = lengthAt(bytes, p, 1 << (b - 0xc4), end);
          p += 1 << (b - 0xc4);
          heap += BINARY_BYTES + skip;
          break;
        case 0xca: // float32/64
          lastValidated.commonTypesOnly = false;
          p += 4;
          heap += NUMBER_BYTES;
          break;
        case 0xcb:
          p += 8;
          heap += NUMBER_BYTES;
          break;
        case 0xcc: // uint8/16/32/64
        case 0xd0: // int8/16/32/64
          p += 1;
          break;
        case 0xcd:
        case 0xd1:
          p += 2;
          break;
        case 0xce:
        case 0xd2:
          p += 4;
          heap += NUMBER_BYTES;
          break;
        case 0xcf:
        case 0xd3:
          lastValidated.commonTypesOnly = false;
          p += 8;
          heap += NUMBER_BYTES;
          break;
        case 0xd9: // str 8/16/32
        case 0xda:
        case 0xdb:
          skip = lengthAt(bytes, p, 1 << (b - 0xd9), end);
          p += 1 << (b - 0xd9);
          checkString(bytes, p, skip, end);
          heap += STRING_BYTES + skip;
          break;
        case 0xdc: // array 16/32
        case 0xdd:
          count = lengthAt(bytes, p, b === 0xdc ? 2 : 4, end);
          p += b === 0xdc ? 2 : 4;
          heap += ARRAY_BYTES + count * SLOT_BYTES;
          break;
        case 0xde: // map 16/32
        case 0xdf: {
          const n = lengthAt(bytes, p, b === 0xde ? 2 : 4, end);
          p += b === 0xde ? 2 : 4;
          count = n * 2;
          heap += MAP_BYTES + n * ENTRY_BYTES;
          break;
        }
        case 0xd6: // fixext 4: timestamp 32
          lastValidated.commonTypesOnly = false;
          p = checkTimestamp(bytes, p, 4, end);
          heap += DATE_BYTES;
          break;
        case 0xd7: // fixext 8: timestamp 64
          lastValidated.commonTypesOnly = false;
          p = checkTimestamp(bytes, p, 8, end);
          heap += DATE_BYTES;
          break;
        case 0xc7: // ext 8: only timestamp 96 (12 bytes)
          lastValidated.commonTypesOnly = false;
          if (p >= end) throw truncated();
          p = checkTimestamp(bytes, p + 1, bytes[p], end);
          heap += DATE_BYTES;
          break;
        default:
          // 0xc1 (never used), fixext 1/2/16, ext 16/32: msgpackr's private types or nothing standard.
          throw new WireCodecError(
            `msgpack byte 0x${b.toString(16)} at offset ${p - 1} is not accepted (standard msgpack only)`,
          );
      }
    }
    p += skip;
    // Every element takes at least one byte: a count beyond the input is a lie, refuse it now.
    if (p > end || count > end - p) throw truncated();
    if (heap > maxBytes) {
      throw new WireLimitError(`decoded value would take more than ${maxBytes} bytes (maxDecodedBytes)`);
    }
    if (count > 0) {
      if (depth === MAX_DECODE_DEPTH)
        throw new WireCodecError(`msgpack value nested deeper than ${MAX_DECODE_DEPTH} levels`);
      remaining[++depth] = count;
    }
  }
  if (p !== end) throw new WireCodecError(`${end - p} bytes after the end of the msgpack value`);
  return heap;
}

/** The big-endian length of `size` (1, 2 or 4) bytes at `p`. */
function lengthAt(bytes: Uint8Array, p: number, size: number, end: number): number {
  if (p + size > end) throw truncated();
  if (size === 1) return bytes[p];
  if (size === 2) return (bytes[p] << 8) | bytes[p + 1];
  return bytes[p] * 0x1000000 + ((bytes[p + 1] << 16) | (bytes[p + 2] << 8) | bytes[p + 3]);
}

/** Strings longer than this are checked by Node's native (SIMD) UTF-8 validator. */
const NATIVE_UTF8_BYTES = 32;

/** Strings up to this many bytes are checked for ASCII in JS (128 bytes: 56 ns against 110 for Node's). */
const JS_ASCII_BYTES = 192;

/** True when no byte of `bytes[p, end)` has its high bit set (four at a time, no early exit). */
function isAsciiRange(bytes: Uint8Array, p: number, end: number): boolean {
  let bits = 0;
  let i = p;
  for (; i + 4 <= end; i += 4) bits |= bytes[i] | bytes[i + 1] | bytes[i + 2] | bytes[i + 3];
  for (; i < end; i++) bits |= bytes[i];
  return bits < 0x80;
}

function checkString(bytes: Uint8Array, p: number, n: number, end: number): void {
  if (p + n > end) throw truncated();
  if (n > NATIVE_UTF8_BYTES) {
    // ASCII is valid UTF-8, and the usual case: checked first (it tells the decoder more), in
    // JS while that is cheaper than a view and a call into C++.
    if (n <= JS_ASCII_BYTES ? isAsciiRange(bytes, p, p + n) : isAscii(bytes.subarray(p, p + n))) return;
    lastValidated.allStringsAscii = false;
    if (!isUtf8(bytes.subarray(p, p + n))) throw new WireCodecError(`msgpack string at offset ${p} is not valid UTF-8`);
    return;
  }
  for (let i = p, last = p + n; i < last; i++) {
    if (bytes[i] >= 0x80) {
      lastValidated.allStringsAscii = false;
      if (!isUtf8(bytes.subarray(p, last)))
        throw new WireCodecError(`msgpack string at offset ${p} is not valid UTF-8`);
      return;
    }
  }
}

/** `p` points at the ext type byte; `n` is the data length. Returns the offset after the data. */
function checkTimestamp(bytes: Uint8Array, p: number, n: number, end: number): number {
  if (p + 1 + n > end) throw truncated();
  const type = bytes[p];
  if (type !== TIMESTAMP_TYPE) {
    throw new WireCodecError(`msgpack extension type ${(type << 24) >> 24} is not accepted (standard msgpack only)`);
  }
  const d = p + 1;
  if (n === 8) {
    const nanoseconds = (bytes[d] * 0x1000000 + (bytes[d + 1] << 16) + (bytes[d + 2] << 8) + bytes[d + 3]) >>> 2;
    if (nanoseconds >= 1e9) throw new WireCodecError('msgpack timestamp with nanoseconds of 10^9 or more');
  } else if (n === 12) {
    const nanoseconds = bytes[d] * 0x1000000 + (bytes[d + 1] << 16) + (bytes[d + 2] << 8) + bytes[d + 3];
    if (nanoseconds >= 1e9) throw new WireCodecError('msgpack timestamp with nanoseconds of 10^9 or more');
  } else if (n !== 4) {
    throw new WireCodecError(`msgpack timestamp of ${n} bytes (must be 4, 8 or 12)`);
  }
  return d + n;
}

function truncated(): WireCodecError {
  return new WireCodecError('msgpack value truncated');
}
