/**
 * `expect(actual).toEqual(expected)` for byte arrays, without jest's deep equality, which
 * walks a Buffer index by index (about a second per 100 KiB on a busy 2-core machine).
 * On a difference it asserts on the lengths and the 16 bytes from the first differing
 * offset, so the failure still shows where the bytes part.
 */
export function expectSameBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual).toBeInstanceOf(Uint8Array);
  if (Buffer.compare(actual, expected) === 0) return;
  const n = Math.min(actual.length, expected.length);
  let at = 0;
  while (at < n && actual[at] === expected[at]) at++;
  const around = (b: Uint8Array) => ({
    length: b.length,
    firstDifferenceAt: at,
    bytes: Buffer.from(b.subarray(at, at + 16)).toString('hex'),
  });
  expect(around(actual)).toEqual(around(expected));
}
