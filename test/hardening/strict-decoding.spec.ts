import 'reflect-metadata';
import { firstValueFrom } from 'rxjs';
import { WireAuthError, WireCodecError, WireLimitError } from '../../lib/index.js';
import { FrameType } from '../../lib/protocol/frame.js';
import { MsgpackCodec } from '../../lib/protocol/codec.js';
import { MAX_DECODE_DEPTH } from '../../lib/protocol/msgpack-validator.js';
import { decodeTransportError } from '../../lib/protocol/transport-error.js';
import { clientFor, startWireApp, withRunningApp } from '../helpers/apps.js';
import { rawFrame, RawPeer } from '../helpers/raw-peer.js';
import { TestAppModule } from '../helpers/test-app.js';
import { requestFrame } from './frames.js';

/**
 * Issue 11 item 8: payloads, metadata and HELLO credentials decode standard msgpack only.
 * The refused byte strings are what msgpackr itself produces for its private types.
 */
const hex = (s: string) => Buffer.from(s.replace(/\s/g, ''), 'hex');

const REFUSED: [string, Buffer][] = [
  ['0xc1 (never used)', hex('c1')],
  ['BigInt extension 0x42', hex('c720420000000000000100000000000000000000000000000000000000000000000000')],
  ['Error extension 0x65', hex('d4650093a54572726f72a178d40000')],
  ['RegExp extension 0x78 ((a+)+$)', hex('d4780092a628612b292b24a0')],
  ['Set extension 0x73', hex('d473009101')],
  ['typed array extension 0x74', hex('c70374040100')],
  ['cyclic object 0x69 / 0x70', hex('d66900000001d4724091a473656c66d67000000001')],
  ['record definition 0x72', hex('92d4724091a161014002')],
  ['undefined as fixext 1 type 0', hex('d40000')],
  ['timestamp of 1 byte (fixext 1, type -1)', hex('d4ff00')],
  ['timestamp of 16 bytes (fixext 16)', hex('d8ff' + '00'.repeat(16))],
  ['timestamp of 3 bytes (ext 8)', hex('c703ff000000')],
  [
    'timestamp 64 with 10^9 nanoseconds',
    (() => {
      const b = Buffer.alloc(10);
      b[0] = 0xd7;
      b[1] = 0xff;
      b.writeUInt32BE((1e9 * 4) >>> 0, 2);
      return b;
    })(),
  ],
  [
    'timestamp 96 with 10^9 nanoseconds',
    (() => {
      const b = Buffer.alloc(15);
      b[0] = 0xc7;
      b[1] = 12;
      b[2] = 0xff;
      b.writeUInt32BE(1e9, 3);
      return b;
    })(),
  ],
  ['invalid UTF-8 string', hex('a2c328')],
  ['truncated array', hex('93 01 02')],
  ['array32 claiming 4 billion elements', hex('ddffffffff00')],
  ['trailing bytes', hex('01 02')],
  ['nesting deeper than the limit', Buffer.alloc(MAX_DECODE_DEPTH + 2, 0x91)],
];

const ACCEPTED: [string, unknown][] = [
  ['nil, booleans, fixints', [null, true, false, 0, 127, -1, -32]],
  ['8 to 64-bit integers', [255, 65535, 2 ** 32 - 1, 2 ** 40, -128, -32768, -(2 ** 31), -(2 ** 40)]],
  ['floats', [1.5, -0.25, 1e300]],
  ['strings of every width', ['', 'a'.repeat(31), 'b'.repeat(255), 'c'.repeat(65535), 'd'.repeat(70000), 'héllo ✓ 😀']],
  ['binary', Buffer.from([1, 2, 3])],
  ['maps and arrays, nested', { a: [1, { b: [2, [3, { c: 'x' }]] }], list: Array.from({ length: 20 }, (_, i) => i) }],
  ['timestamps', [new Date(0), new Date(1700000000123), new Date(Date.UTC(2500, 0, 1))]],
];

describe('hardening: strict msgpack decoding', () => {
  // Native payload types: a standard timestamp decodes to a Date (the default 'json' mode turns it into its ISO string).
  const codec = new MsgpackCodec({ payloadTypes: 'native' });

  it.each(REFUSED)('refuses %s with WIRE_CODEC', (_name, bytes) => {
    let err: unknown;
    try {
      codec.decode(bytes);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WireCodecError);
  });

  it.each(ACCEPTED)('accepts %s', (_name, value) => {
    expect(codec.decode(codec.encode(value))).toEqual(value);
  });

  it('refuses a value whose decoded heap passes the budget, before decoding it', () => {
    const bytes = Buffer.alloc(5 + 1_000_000, 0x90);
    bytes[0] = 0xdd;
    bytes.writeUInt32BE(1_000_000, 1);
    expect(() => codec.decode(bytes, { maxBytes: 1024 * 1024, lastBytes: 0 })).toThrow(WireLimitError);
    const budget = { maxBytes: 64 * 1024 * 1024, lastBytes: 0 };
    expect((codec.decode(bytes, budget) as unknown[]).length).toBe(1_000_000);
    // 40 bytes per empty array: the estimate is of the order V8 allocates.
    expect(budget.lastBytes).toBeGreaterThan(30 * 1_000_000);
  });

  describe('over a real socket', () => {
    const app = withRunningApp(TestAppModule, { payloadTypes: 'native' }, { payloadTypes: 'native' });

    it.each(REFUSED.slice(0, 14))(
      'answers a payload with %s by ERROR WIRE_CODEC, and echoes nothing',
      async (_name, bytes) => {
        const peer = await RawPeer.connect(app.running.port);
        peer.handshake();
        peer.write(requestFrame(1, 'echo', bytes));
        const f = await peer.waitForFrame((x) => x.id === 1);
        expect(f.type).toBe(FrameType.ERROR);
        expect(decodeTransportError(f.body).code).toBe('WIRE_CODEC');
        // The connection is still in step: a standard request is served.
        peer.write(requestFrame(2, 'echo', codec.encode({ ok: 1 })));
        const ok = await peer.waitForFrame((x) => x.id === 2);
        expect(codec.decode(ok.body)).toEqual({ ok: 1 });
        peer.destroy();
      },
    );

    it('refuses metadata that is not standard msgpack', async () => {
      const peer = await RawPeer.connect(app.running.port);
      peer.handshake();
      const p = Buffer.from('echo');
      const meta = hex('81a161d4780092a628612b292b24a0'); // { a: RegExp }
      const len = Buffer.alloc(4);
      len.writeUInt32BE(meta.length);
      const body = Buffer.concat([Buffer.from([0, p.length]), p, len, meta, codec.encode(1)]);
      peer.write(rawFrame(FrameType.REQUEST, 0x02, 3, body));
      const f = await peer.waitForFrame((x) => x.id === 3);
      expect(decodeTransportError(f.body).code).toBe('WIRE_CODEC');
      peer.destroy();
    });

    it('echoes every standard value back unchanged', async () => {
      for (const [, value] of ACCEPTED) {
        expect(await firstValueFrom(app.client.send('echo', value))).toEqual(value);
      }
    });
  });

  it('refuses HELLO credentials that are not standard msgpack, before authenticate sees them', async () => {
    let called = 0;
    const running = await startWireApp(TestAppModule, { authenticate: () => ++called > 0 });
    const { Packr } = await import('msgpackr');
    const privateCodec = {
      id: 1,
      name: 'msgpackr-private',
      encode: (v: unknown) => new Packr({ moreTypes: true, structuredClone: true }).pack(v),
      decode: (b: Uint8Array) => new Packr().unpack(b) as unknown,
    };
    const client = clientFor(running, { codec: privateCodec, credentials: /(a+)+$/ });
    client.on('error', () => {});
    const err: unknown = await firstValueFrom(client.send('sum', [1])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WireAuthError);
    expect(called).toBe(0);
    client.close();
    await running.app.close();
  });
});
