/**
 * Micro-benchmark of the payload codec: encode + decode, ns/op, for the payload shapes a call
 * carries most often. Compares MsgpackCodec in each `payloadTypes` mode against msgpackr's Packr
 * with the options nest-wire 0.1 used (the baseline), in one process, interleaved, so a loaded
 * machine slows all alike.
 *
 *   tsc -p bench/tsconfig.json && node dist/bench/codec.js [--ms=400] [--rounds=5] [--encode-only]
 */
import { Packr, type Options } from 'msgpackr';
import { MsgpackCodec, type WireCodec } from '../lib/protocol/codec.js';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const MEASURE_MS = Number(args.get('ms') ?? 400);
const ROUNDS = Number(args.get('rounds') ?? 5);

/** nest-wire 0.1's codec: msgpackr with these options, nothing else. */
function baselineCodec(): WireCodec {
  const packr = new Packr({
    useRecords: false,
    moreTypes: false,
    encodeUndefinedAsNil: true,
    skipValues: [undefined],
    copyBuffers: true,
    int64AsType: 'auto',
    mapsAsObjects: true,
  } as unknown as Options);
  return { id: 1, name: 'msgpackr-0.1', encode: (v) => packr.pack(v), decode: (b) => packr.unpack(b) as unknown };
}

const text = (n: number) => 'x'.repeat(n);
const payloads: Array<[string, unknown]> = [
  ['{ id, body: 128 chars }', { id: 123, body: text(128) }],
  ['{ id, body: 4 KiB }', { id: 123, body: text(4096) }],
  ['{ id, body: 64 KiB }', { id: 123, body: text(65536) }],
  [
    'nested DTO with a Date',
    {
      orderId: 'ord_8f14e45fceea167a',
      customer: { id: 48213, name: 'Ada Lovelace', email: 'ada@example.com', tags: ['vip', 'eu'] },
      lines: [
        { sku: 'A-100', qty: 2, price: 19.99 },
        { sku: 'B-220', qty: 1, price: 5.5 },
        { sku: 'C-310', qty: 12, price: 0.75 },
      ],
      total: 54.48,
      paid: true,
      placedAt: new Date('2026-12-01T08:00:00.000Z'),
      note: null,
    },
  ],
];
// The same DTO with the Date already a string: what a Date costs in 'json' mode (toISOString).
const dto = payloads[3][1] as Record<string, unknown>;
payloads.push(['nested DTO, date as string', { ...dto, placedAt: '2026-12-01T08:00:00.000Z' }]);
payloads.push([
  '100 x { id, name, price, ok }',
  Array.from({ length: 100 }, (_, i) => ({ id: i * 7919, name: `item ${i}`, price: i + 0.99, ok: i % 2 === 0 })),
]);

const ENCODE_ONLY = args.has('encode-only');

function measure(codec: WireCodec, value: unknown): number {
  let sink = 0;
  const run = ENCODE_ONLY
    ? (n: number) => {
        for (let i = 0; i < n; i++) sink += codec.encode(value).length;
      }
    : (n: number) => {
        for (let i = 0; i < n; i++) {
          const bytes = codec.encode(value);
          sink += (codec.decode(bytes) as object) === null ? 0 : bytes.length;
        }
      };
  run(2000); // warm-up
  let n = 1000;
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const t0 = process.hrtime.bigint();
    let done = 0;
    let elapsed = 0;
    while (elapsed < MEASURE_MS / 3) {
      run(n);
      done += n;
      elapsed = Number(process.hrtime.bigint() - t0) / 1e6;
    }
    best = Math.min(best, (elapsed * 1e6) / done);
    n = Math.max(100, Math.round(done / 4));
  }
  if (sink === -1) console.log(sink);
  return best;
}

const codecs: WireCodec[] = [baselineCodec(), new MsgpackCodec(), new MsgpackCodec({ payloadTypes: 'native' })];
const names = ['msgpackr 0.1 (baseline)', "MsgpackCodec 'json'", "MsgpackCodec 'native'"];
const results = payloads.map(() => codecs.map(() => [] as number[]));
for (let round = 0; round < ROUNDS; round++) {
  payloads.forEach(([, value], p) => codecs.forEach((codec, c) => results[p][c].push(measure(codec, value))));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`${ENCODE_ONLY ? 'encode' : 'encode + decode'}, ns/op (median of ${ROUNDS} rounds of ${MEASURE_MS} ms)\n`);
console.log(`| payload | ${names.join(' | ')} |`);
console.log(`|---|${names.map(() => '---:').join('|')}|`);
payloads.forEach(([label], p) => {
  const base = median(results[p][0]);
  const cells = results[p].map((xs, c) => {
    const m = median(xs);
    return c === 0 ? m.toFixed(0) : `${m.toFixed(0)} (${((m / base - 1) * 100).toFixed(0)}%)`;
  });
  console.log(`| ${label} | ${cells.join(' | ')} |`);
});
