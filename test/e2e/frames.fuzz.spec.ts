import 'reflect-metadata';
import { once } from 'node:events';
import { connect } from 'node:net';
import fc from 'fast-check';
import { firstValueFrom } from 'rxjs';
import { WireClient, WireError } from '../../lib/index.js';
import { ERROR_TRANSPORT, FrameType, MAGIC, MAX_FRAME_TYPE } from '../../lib/protocol/frame.js';
import { decodeTransportError, encodeTransportError } from '../../lib/protocol/transport-error.js';
import { startWireApp, type RunningServer } from '../helpers/apps.js';
import { collectingDecoder } from '../helpers/frames.js';
import { CaseCounter, frameBoundaries, interestingLengths, mutate, mutationArb, params } from '../helpers/fuzz.js';
import { codec, helloFrame, rawFrame } from '../helpers/raw-peer.js';
import { TestAppModule } from '../helpers/test-app.js';
import { pause, waitFor } from '../helpers/wait.js';
import { FakeServer } from '../helpers/fake-server.js';

/**
 * Frame-level fuzzing after a valid handshake, against real endpoints on loopback:
 *   - a real WireServer (Nest app) fed random and mutated client frame sequences
 *     (requests with random flags, bodies and payloads, cancels and credits for random
 *     ids, frames a client must not send, unknown types) must answer or drop the
 *     connection with typed errors, keep serving a real WireClient, and end up with no
 *     call left running;
 *   - a real WireClient whose server answers with random / mutated frame sequences must
 *     settle every call (value, typed error, or the server's application error), never
 *     hang and never throw out of its socket handlers.
 * Few cases per run (each needs sockets and timers); `npm run fuzz` runs more.
 */

const counter = new CaseCounter();
afterAll(() => counter.report('frame fuzz against real endpoints'));

/** What the server may put in a transport ERROR (README, "Errors"), plus codes it may add for limits. */
const TRANSPORT_CODE = /^WIRE_[A-Z_]+$/;

async function within<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Active timers and sockets by type (not jest's stdio pipes). */
function resources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo())
    if (r !== 'PipeWrap' && r !== 'TTYWrap') counts[r] = (counts[r] ?? 0) + 1;
  return counts;
}

/** The resources once they have stopped changing (what earlier tests closed has gone). */
async function stableResources(): Promise<Record<string, number>> {
  let previous = JSON.stringify(resources());
  for (let i = 0; i < 15; i++) {
    await pause(200); // kept: "stopped changing" means unchanged across a real interval
    const now = JSON.stringify(resources());
    if (now === previous) break;
    previous = now;
  }
  return resources();
}

/** Types with more active resources than in `baseline` (bounded wait): what a peer left behind. */
async function leftBehind(baseline: Record<string, number>): Promise<Record<string, number>> {
  const excess = () => Object.fromEntries(Object.entries(resources()).filter(([type, n]) => n > (baseline[type] ?? 0)));
  await waitFor(() => Object.keys(excess()).length === 0, { timeoutMs: 3000, everyMs: 20 }).catch(() => {}); // the caller asserts what is left
  return excess();
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n & 0xffff);
  return b;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/**
 * Handlers of the test app whose work is bounded whatever the payload: they may get
 * random bytes as payload and be hit by mutations (which can also turn a REQUEST into an
 * EVENT, which nothing cancels).
 */
const SAFE_PATTERNS = [
  'sum',
  'echo',
  'nothing',
  'stream.fails',
  'rpc.error',
  'plain.error',
  'observable.error',
  'pipe',
  'guarded',
  'intercepted',
  'ctx',
  'user.created',
  'event.throws',
  'no.such.pattern',
  '{"cmd":"sum","version":2}',
  '',
];

const safeCallArb: fc.Arbitrary<[string, unknown]> = fc.oneof(
  fc.tuple(fc.constant('sum'), fc.array(fc.integer(), { maxLength: 5 })),
  fc.tuple(fc.constantFrom(...SAFE_PATTERNS), fc.jsonValue({ maxDepth: 3 })),
);

/**
 * Handlers whose work the payload decides (a count, a delay): only with the small,
 * well-formed payloads generated here, never with random bytes and never mutated. A fuzzer
 * must not make the *test app* run for minutes (`ticks` with a count of 10^9 as an EVENT)
 * or block the loop (`stream` with a count of 10^9 runs synchronously).
 * Not 'infinite': see the KNOWN ISSUE below; 'ticks' (up to 0.5 s) is the long-running stream.
 */
const boundedCallArb: fc.Arbitrary<[string, unknown]> = fc.oneof(
  fc.tuple(fc.constant('stream'), fc.integer({ min: 0, max: 20 })),
  fc.tuple(fc.constant('ticks'), fc.oneof(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 20, max: 100 }))),
  fc.tuple(fc.constant('generate'), fc.integer({ min: 0, max: 600 })),
  fc.tuple(fc.constant('firehose'), fc.integer({ min: 0, max: 2000 })),
  fc.tuple(fc.constant('delayed'), fc.record({ id: fc.integer(), ms: fc.integer({ min: 0, max: 30 }) })),
  fc.tuple(fc.constant('slow'), fc.integer({ min: 0, max: 30 })),
);

const idArb = fc.oneof(fc.integer({ min: 0, max: 6 }), fc.integer({ min: 0, max: 0xffffffff }));

/** One frame a (possibly broken) client might send after the handshake; `mutable`: only safe calls. */
const clientFrameArb = (mutable: boolean): fc.Arbitrary<Buffer> =>
  fc.oneof(
    {
      weight: 6,
      arbitrary: fc
        .record({
          type: fc.constantFrom(FrameType.REQUEST, FrameType.EVENT),
          id: idArb,
          flags: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 255 })),
          budget: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 0xffffffff })),
          credit: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 0, max: 0xffffffff })),
          metadata: fc.option(
            fc.oneof(
              fc
                .dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 })
                .map((m) => Buffer.from(codec.encode(m))),
              fc.uint8Array({ maxLength: 12 }).map((b) => Buffer.from(b)),
            ),
            { nil: null },
          ),
          call: mutable
            ? safeCallArb
            : fc.oneof({ weight: 2, arbitrary: safeCallArb }, { weight: 3, arbitrary: boundedCallArb }),
          rawPayload: fc.option(fc.uint8Array({ maxLength: 12 }), { nil: null }),
        })
        .map(({ type, id, flags, budget, credit, metadata, call, rawPayload }) => {
          // KNOWN ISSUE (reported): an EVENT to a @MessagePattern handler returning an endless
          // Observable ('infinite') starts a subscription nothing ever ends (Nest's handleEvent),
          // not even the connection closing or app.close(). Since a mutation can turn any REQUEST
          // into an EVENT, 'infinite' is not fuzzed at all, or this process would never exit.
          const [pattern, data] = call;
          const p = Buffer.from(pattern);
          const parts: Buffer[] = [];
          // Fields present according to the flags actually sent (random flags may claim more).
          if (flags & 0x01) parts.push(u32(budget));
          if (flags & 0x04) parts.push(u32(credit));
          parts.push(u16(p.length), p);
          if (flags & 0x02) {
            const m = metadata ?? Buffer.from(codec.encode({}));
            parts.push(u32(m.length), m);
          }
          const random = rawPayload !== null && SAFE_PATTERNS.includes(pattern);
          parts.push(random ? Buffer.from(rawPayload) : Buffer.from(codec.encode(data)));
          return rawFrame(type, flags, id, Buffer.concat(parts));
        }),
    },
    { weight: 2, arbitrary: idArb.map((id) => rawFrame(FrameType.CANCEL, 0, id)) },
    {
      weight: 2,
      arbitrary: fc
        .tuple(
          idArb,
          fc.oneof(
            fc.integer({ min: 0, max: 10 }).map(u32),
            fc.uint8Array({ maxLength: 8 }).map((b) => Buffer.from(b)),
          ),
        )
        .map(([id, body]) => rawFrame(FrameType.CREDIT, 0, id, body)),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 16 }).map((b) => rawFrame(FrameType.PING, 0, 0, b)) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 16 }).map((b) => rawFrame(FrameType.PONG, 0, 0, b)) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 16 }).map((b) => rawFrame(FrameType.GOAWAY, 0, 0, b)) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          fc.constantFrom(FrameType.HELLO, FrameType.RESPONSE, FrameType.ERROR, FrameType.NACK),
          idArb,
          fc.integer({ min: 0, max: 255 }),
          fc.uint8Array({ maxLength: 24 }),
        )
        .map(([t, id, flags, b]) => rawFrame(t, flags, id, b)),
    },
    { weight: 1, arbitrary: fc.integer({ min: MAX_FRAME_TYPE + 1, max: 255 }).map((t) => rawFrame(t, 0, 1)) },
  );

const lengthValues = interestingLengths([1 << 20, 16 * 1024 * 1024]);

const clientStreamArb: fc.Arbitrary<Buffer> = fc.oneof(
  fc.array(clientFrameArb(false), { minLength: 1, maxLength: 8 }).map((frames) => Buffer.concat(frames)),
  fc
    .tuple(
      fc.array(clientFrameArb(true), { minLength: 1, maxLength: 8 }),
      fc.array(mutationArb(lengthValues), { minLength: 1, maxLength: 3 }),
    )
    .map(([frames, mutations]) => {
      const stream = Buffer.concat(frames);
      return mutate(stream, frameBoundaries(stream), mutations);
    }),
);

describe('frame fuzz: a real WireServer after a valid handshake', () => {
  let running: RunningServer;
  let client: WireClient;
  const connectionErrors: unknown[] = [];

  beforeAll(async () => {
    running = await startWireApp(TestAppModule, { handshakeTimeoutMs: 500, maxFrameSize: 1 << 20 });
    running.server.on('connectionError', (err) => connectionErrors.push(err));
    client = new WireClient({ host: '127.0.0.1', port: running.port, timeout: 3000 });
    await client.connect();
  });
  afterAll(async () => {
    client.close();
    await running.app.close();
  });

  it('answers or drops each peer with typed errors, keeps serving, and leaves no call running', async () => {
    const baseline = await stableResources();
    let served = 0;
    const outcomes = { closedByServer: 0, stillOpen: 0, transportErrors: new Map<string, number>() };
    await fc.assert(
      fc.asyncProperty(clientStreamArb, fc.boolean(), async (stream, linger) => {
        counter.hit('real WireServer, random frames after the handshake');
        const socket = connect({ host: '127.0.0.1', port: running.port });
        socket.on('error', () => {});
        const decoder = collectingDecoder({ maxFrameSize: 1 << 24, expectMagic: true });
        let undecodable = false;
        socket.on('data', (d: Buffer) => {
          // This peer never grants credit beyond what it sent, and the server may close: just record.
          try {
            decoder.decoder.push(d);
          } catch {
            undecodable = true;
          }
        });
        const closed = new Promise<void>((r) => socket.once('close', () => r()));
        await once(socket, 'connect');
        socket.write(Buffer.concat([MAGIC, helloFrame({ maxFrameSize: 1 << 24 }), stream]));
        const gone = (await within(closed, linger ? 60 : 10)) !== 'timeout';
        if (gone) outcomes.closedByServer++;
        else outcomes.stillOpen++;
        socket.destroy();
        await closed;
        // What the server said is well-formed nest-wire.
        expect(undecodable).toBe(false);
        // Its HELLO first (unless the peer's own connection ERROR made it drop the socket before the HELLO left).
        if (decoder.frames.length > 0) expect(decoder.frames[0].type).toBe(FrameType.HELLO);
        for (const f of decoder.frames.slice(1)) {
          expect([
            FrameType.RESPONSE,
            FrameType.ERROR,
            FrameType.PONG,
            FrameType.GOAWAY,
            FrameType.NACK,
            FrameType.PING,
          ]).toContain(f.type);
          if (f.type === FrameType.ERROR && (f.flags & ERROR_TRANSPORT) !== 0) {
            const { code } = decodeTransportError(f.body);
            expect(code).toMatch(TRANSPORT_CODE);
            outcomes.transportErrors.set(code, (outcomes.transportErrors.get(code) ?? 0) + 1);
          }
        }
        // And the real client is still served.
        expect(await firstValueFrom(client.send('sum', [served, 2]))).toBe(served + 2);
        served++;
      }),
      params(60, 0.01, true),
    );
    await waitFor(() => running.server.counters().connections === 1, {
      timeoutMs: 5000,
      what: 'fuzzed connections to be gone',
    });
    await waitFor(() => running.server.counters().inFlight === 0, {
      timeoutMs: 5000,
      what: 'calls of fuzzed connections to stop',
    });
    // No timer or socket started for a fuzzed peer outlives it (a leaked stream keeps a timer).
    expect(await leftBehind(baseline)).toEqual({});
    for (const err of connectionErrors) expect(err).toBeInstanceOf(WireError);
    console.info(
      `server frame fuzz: ${served} peers, ${outcomes.closedByServer} dropped by the server, ${outcomes.stillOpen} left open; ` +
        `transport errors sent: ${JSON.stringify(Object.fromEntries(outcomes.transportErrors))}`,
    );
  });
});

describe('frame fuzz: a real WireClient against a server sending random frames', () => {
  let fake: FakeServer;
  let script: Buffer = Buffer.alloc(0);

  beforeAll(async () => {
    fake = await FakeServer.start((s) => {
      // Answer the client's preface + HELLO with ours, then the script, once the request is in.
      let answered = false;
      let seen = 0;
      s.on('data', (d: Buffer) => {
        seen += d.length;
        if (!answered) {
          answered = true;
          s.write(Buffer.concat([MAGIC, helloFrame({ maxFrameSize: 1 << 20, maxInFlight: 0 })]));
        }
        if (seen > 30 && script.length > 0) {
          const out = script;
          script = Buffer.alloc(0);
          s.write(out);
        }
      });
    });
  });
  afterAll(() => fake.close());

  /** One frame a (possibly broken) server might send; ids 1..3 hit the client's first calls. */
  const serverFrameArb: fc.Arbitrary<Buffer> = fc.oneof(
    {
      weight: 4,
      arbitrary: fc
        .tuple(
          fc.integer({ min: 0, max: 3 }),
          fc.integer({ min: 0, max: 3 }),
          fc.oneof(
            fc.jsonValue({ maxDepth: 2 }).map((v) => Buffer.from(codec.encode(v))),
            fc.uint8Array({ maxLength: 8 }).map((b) => Buffer.from(b)),
          ),
        )
        .map(([id, flags, body]) => rawFrame(FrameType.RESPONSE, flags, id, flags & 0x02 ? Buffer.alloc(0) : body)),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(
          fc.integer({ min: 0, max: 3 }),
          fc.boolean(),
          fc.constantFrom('WIRE_TIMEOUT', 'WIRE_CODEC', 'WIRE_OVERLOADED', 'WIRE_NEW_THING', 'WIRE_FRAME_TOO_LARGE'),
          fc.jsonValue({ maxDepth: 1 }),
        )
        .map(([id, transport, code, value]) =>
          rawFrame(
            FrameType.ERROR,
            transport ? ERROR_TRANSPORT : 0,
            id,
            transport ? encodeTransportError(code, 'fuzzed') : Buffer.from(codec.encode(value)),
          ),
        ),
    },
    {
      weight: 1,
      arbitrary: fc
        .integer({ min: 0, max: 3 })
        .map((id) => rawFrame(FrameType.NACK, 0, id, encodeTransportError('WIRE_OVERLOADED', 'busy'))),
    },
    {
      weight: 1,
      arbitrary: fc.constant(rawFrame(FrameType.GOAWAY, 0, 0, encodeTransportError('WIRE_DRAINING', 'bye'))),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 8 }).map((b) => rawFrame(FrameType.PING, 0, 0, b)) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.integer({ min: 1, max: 255 }), fc.integer({ min: 0, max: 3 }), fc.uint8Array({ maxLength: 16 }))
        .map(([t, id, b]) => rawFrame(t, 0, id, b)),
    },
  );

  it("settles every call (value, typed error or the server's error value), never hangs, leaves nothing pending", async () => {
    const baseline = await stableResources();
    const tally = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(
        fc.array(serverFrameArb, { minLength: 1, maxLength: 6 }),
        fc.option(fc.array(mutationArb(lengthValues), { minLength: 1, maxLength: 3 }), { nil: null }),
        async (frames, mutations) => {
          counter.hit('real WireClient, random frames after the handshake');
          const stream = Buffer.concat(frames);
          script = mutations === null ? stream : mutate(stream, frameBoundaries(stream), mutations);
          const c = new WireClient({
            host: '127.0.0.1',
            port: fake.port,
            timeout: 150,
            handshakeTimeoutMs: 300,
            reconnect: { initialDelayMs: 10, maxDelayMs: 50 },
          });
          const events: unknown[] = [];
          c.on('error', (err) => events.push(err));
          try {
            const outcomes: (string | undefined)[] = [undefined, undefined, undefined];
            [c.send('sum', [1, 2]), c.send('echo', 'x'), c.send('stream', 3)].forEach((obs, i) =>
              obs.subscribe({
                error: (err) => (outcomes[i] = err instanceof WireError ? err.code : 'app-error'),
                complete: () => (outcomes[i] = 'completed'),
              }),
            );
            // Every call has a 150 ms timeout: all must settle well within 2 s.
            await waitFor(() => !outcomes.includes(undefined), { timeoutMs: 2000, everyMs: 10 }).catch(() => {}); // asserted below
            for (const outcome of outcomes) {
              expect(outcome).toBeDefined(); // else: hung
              tally.set(outcome!, (tally.get(outcome!) ?? 0) + 1);
            }
            for (const err of events) expect(err).toBeInstanceOf(WireError);
            expect(c.counters()).toMatchObject({ inFlight: 0, pending: 0, queued: 0 });
          } finally {
            c.close();
          }
        },
      ),
      params(40, 0.005, true),
    );
    console.info(`client frame fuzz: call outcomes ${JSON.stringify(Object.fromEntries(tally))}`);
    // Every client was closed: none of its sockets or timers may be left.
    expect(await leftBehind(baseline)).toEqual({});
  });
});
