import { performance } from 'node:perf_hooks';
import { MsgpackCodec } from '../../lib/protocol/codec.js';
import { validateMsgpack } from '../../lib/protocol/msgpack-validator.js';
import { figure } from '../hardening/target.js';

/**
 * Issue 11 item 8, the cost of strict decoding: a measurement (figures printed, no speed
 * asserted), so it runs with `npm run soak`; the refusals are in test/hardening/strict-decoding.spec.ts.
 */
describe('hardening: strict msgpack decoding (measured)', () => {
  const codec = new MsgpackCodec({ payloadTypes: 'native' });

  it('costs little next to the decode itself (figures printed, no speed asserted)', () => {
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
    const out: Record<string, string> = {};
    for (const [name, bytes] of cases) {
      const n = 2000;
      let t = performance.now();
      for (let i = 0; i < n; i++) validateMsgpack(bytes, 1 << 30);
      const validate = ((performance.now() - t) * 1000) / n;
      t = performance.now();
      for (let i = 0; i < n; i++) codec.decode(bytes);
      const decode = ((performance.now() - t) * 1000) / n;
      out[name] = `${bytes.length} B: validate ${validate.toFixed(2)} µs, validate+decode ${decode.toFixed(2)} µs`;
    }
    figure('8-validator-cost', out);
    expect(Object.keys(out)).toHaveLength(3);
  });
});
