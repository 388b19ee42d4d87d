/**
 * 'json' payload types on input: a msgpack timestamp (from a 'native' peer or another language)
 * reaches the handler as its ISO string, the way a Date reaches it through JSON.
 */

/** 0xff bytes looked at before giving up and walking: bounds the scan of 0xff-rich binary data. */
const MAX_FF_PROBES = 64;

/**
 * False when `bytes` cannot hold a timestamp, so that decoding skips the walk. A timestamp is
 * `d6 ff`, `d7 ff` or `c7 0c ff`; 0xff never occurs in UTF-8, so outside binary data, floats
 * and the integer -1 (`ff`) this finds nothing, with a memchr-speed scan. A false positive
 * costs one walk of the decoded value, no more than decoding it did.
 */
export function mayHoldTimestamp(bytes: Uint8Array): boolean {
  // Buffer#indexOf is memchr; Uint8Array#indexOf is ~40x slower on 64 KiB.
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let probes = 0;
  for (let i = buf.indexOf(0xff, 1); i !== -1; i = buf.indexOf(0xff, i + 1)) {
    const before = buf[i - 1];
    if (before === 0xd6 || before === 0xd7 || before === 0x0c || ++probes > MAX_FF_PROBES) return true;
  }
  return false;
}

/** Replaces every Date in a freshly decoded value (plain objects, arrays) by `toJSON()`'s result. */
export function datesToJson(value: unknown): unknown {
  if (value instanceof Date) return value.toJSON(); // an invalid Date: null, as JSON
  if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = datesToJson(value[i]);
  } else {
    const obj = value as Record<string, unknown>;
    for (const key of Object.keys(obj)) obj[key] = datesToJson(obj[key]);
  }
  return value;
}
