// Cost of the strict msgpack pre-scan next to msgpackr's decode (issue 11 item 8).
// Run: npm run bench:validator
import { performance } from 'node:perf_hooks';
import { Packr } from 'msgpackr';
import { MsgpackCodec } from '../lib/protocol/codec.js';
import { validateMsgpack } from '../lib/protocol/msgpack-validator.js';

const codec = new MsgpackCodec();
const bare = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, copyBuffers: true });
const cases: [string, Uint8Array][] = [
  [
    '128 B object',
    codec.encode({
      id: 12345,
      name: 'user-12345',
      email: 'someone@example.com',
      tags: ['a', 'b', 'c'],
      active: true,
      score: 0.5,
      note: 'x'.repeat(30),
    }),
  ],
  ['64 KiB string', codec.encode('s'.repeat(64 * 1024))],
  ['10 000 small ints', codec.encode(Array.from({ length: 10_000 }, (_, i) => i % 100))],
];
const time = (n: number, f: () => void) => {
  for (let i = 0; i < n; i++) f();
  const t = performance.now();
  for (let i = 0; i < n; i++) f();
  return ((performance.now() - t) * 1000) / n;
};
for (const [name, bytes] of cases) {
  const n = name.startsWith('128') ? 200_000 : 5_000;
  const v = time(n, () => validateMsgpack(bytes, 1 << 30));
  const d = time(n, () => bare.unpack(bytes) as unknown);
  console.log(
    `${name.padEnd(18)} ${String(bytes.length).padStart(6)} B  validate ${v.toFixed(3)} µs  msgpackr decode ${d.toFixed(3)} µs  (+${((v / d) * 100).toFixed(0)}%)`,
  );
}
