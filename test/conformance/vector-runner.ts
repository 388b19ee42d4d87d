import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import type { Observable } from 'rxjs';

/**
 * Runs docs/conformance/vectors.json (format: docs/conformance/README.md) against a peer
 * over a real loopback socket. It parses frames itself, without lib/protocol, so that
 * it checks the bytes as a peer written from docs/PROTOCOL.md would read them.
 */

export interface VectorFile {
  format: string;
  version: number;
  /** Preface + HELLO the runner sends, as a client, for `handshake: 'standard'`. */
  standardClientHandshake: string;
  /** Preface + HELLO the runner sends, as a server, for `handshake: 'standard'`. */
  standardServerHandshake: string;
  cases: Vector[];
}

export interface Vector {
  name: string;
  target: 'server' | 'client';
  description?: string;
  ref?: string;
  /**
   * 'protocol' (default): any conforming peer must pass. 'nest-wire': checks a choice nest-wire
   * makes where the protocol allows several (fragment cutting, credit policy).
   */
  scope?: 'protocol' | 'nest-wire';
  /** 'standard' (default): the runner does the handshake itself before `steps`. */
  handshake?: 'standard' | 'none';
  /** Every frame the peer sends in this case must have a length ≤ this. */
  peerMaxFrameSize?: number;
  steps: Step[];
}

type HexPiece = string | { repeat: string; count: number };
type Hex = string | HexPiece[];

export interface FrameMatcher {
  type: string;
  flags?: number;
  flagsSet?: number;
  id?: number | string;
  /** Binds the frame's id to this name (client cases): `{name}` in later hex and ids. */
  bind?: string;
  length?: number;
  maxLength?: number;
  body?: Hex;
  bodyLength?: number;
  /** ERROR with TRANSPORT, NACK, GOAWAY: the transport error's fields. */
  code?: string;
  message?: string;
  messagePrefix?: string;
  /** HELLO: fields that must have these values. */
  hello?: Partial<Record<'version' | 'codec' | 'features' | 'maxFrameSize' | 'maxInFlight' | 'heartbeatMs', number>>;
  /** REQUEST / EVENT: the parsed body. */
  pattern?: string;
  payload?: Hex;
  credit?: number;
}

export type Step =
  | { send: Hex }
  | { expect: FrameMatcher }
  | { expectUnordered: FrameMatcher[] }
  | { expectStream: { id: number | string; values: Hex[] } }
  | { expectClose: true }
  | { call: { name: string; pattern: string; data: Hex } }
  | { callStream: { name: string; pattern: string; values: Hex[] } }
  | { cancel: string }
  | { expectCall: { name: string; values: Hex[]; end: 'complete' | { error: string } | { applicationError: Hex } } };

export const FRAME_TYPES: Record<string, number> = {
  HELLO: 1,
  REQUEST: 2,
  EVENT: 3,
  RESPONSE: 4,
  ERROR: 5,
  CANCEL: 6,
  PING: 7,
  PONG: 8,
  GOAWAY: 9,
  NACK: 10,
  CREDIT: 11,
  STREAM: 12,
};
const TYPE_NAMES = Object.fromEntries(Object.entries(FRAME_TYPES).map(([k, v]) => [v, k]));
const PREFACE = Buffer.from('NWIR', 'latin1');
const WAIT_MS = 5000;

interface Frame {
  length: number;
  type: number;
  flags: number;
  id: number;
  body: Buffer;
}

/** The bytes of `hex` (whitespace ignored, `{name}` replaced by a bound id as 8 hex digits). */
export function hexBytes(hex: Hex, ids: Map<string, number> = new Map()): Buffer {
  const pieces = typeof hex === 'string' ? [hex] : hex;
  return Buffer.concat(
    pieces.map((p) => {
      if (typeof p !== 'string') return Buffer.from(hexBytes(p.repeat, ids).toString('hex').repeat(p.count), 'hex');
      const clean = p
        .replace(/\{([A-Za-z0-9_]+)\}/g, (_m, name: string) => {
          const id = ids.get(name);
          if (id === undefined) throw new Error(`{${name}} is not bound`);
          return id.toString(16).padStart(8, '0');
        })
        .replace(/\s+/g, '');
      assert.match(clean, /^([0-9a-fA-F]{2})*$/, `not hex: ${p.slice(0, 40)}`);
      return Buffer.from(clean, 'hex');
    }),
  );
}

/** What one side of the socket has received: the peer's preface, then frames, then maybe a close. */
class Inbox {
  private buffered: Buffer = Buffer.alloc(0);
  private prefaceSeen = false;
  readonly frames: Frame[] = [];
  closed = false;
  private wake: (() => void) | null = null;
  private failure: Error | null = null;

  constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
      this.parse();
      this.notify();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.notify();
    });
  }

  private parse(): void {
    if (!this.prefaceSeen) {
      if (this.buffered.length < 4) return;
      const preface = this.buffered.subarray(0, 4);
      if (!preface.equals(PREFACE)) this.failure = new Error(`peer preface is ${preface.toString('hex')}, not NWIR`);
      this.prefaceSeen = true;
      this.buffered = this.buffered.subarray(4);
    }
    while (this.buffered.length >= 4) {
      const length = this.buffered.readUInt32BE(0);
      if (length < 6) {
        this.failure = new Error(`peer sent a frame length of ${length}`);
        return;
      }
      if (this.buffered.length < 4 + length) return;
      const b = this.buffered;
      this.frames.push({
        length,
        type: b[4],
        flags: b[5],
        id: b.readUInt32BE(6),
        body: Buffer.from(b.subarray(10, 4 + length)),
      });
      this.buffered = b.subarray(4 + length);
    }
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  /** The next frame (skipping the peer's heartbeat PINGs unless `keepPings`), or null once closed. */
  async next(keepPings: boolean): Promise<Frame | null> {
    const until = Date.now() + WAIT_MS;
    for (;;) {
      if (this.failure !== null) throw this.failure;
      while (this.frames.length > 0) {
        const f = this.frames.shift()!;
        if (!keepPings && f.type === FRAME_TYPES.PING && f.id === 0) continue;
        return f;
      }
      if (this.closed) return null;
      const left = until - Date.now();
      if (left <= 0) throw new Error(`nothing received within ${WAIT_MS} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }
}

function describeFrame(f: Frame): string {
  const body = f.body.subarray(0, 48).toString('hex') + (f.body.length > 48 ? '…' : '');
  return `${TYPE_NAMES[f.type] ?? f.type} flags=0x${f.flags.toString(16)} id=${f.id} length=${f.length} body=${body}`;
}

const MATCHER_KEYS = new Set([
  'type',
  'flags',
  'flagsSet',
  'id',
  'bind',
  'length',
  'maxLength',
  'body',
  'bodyLength',
  'code',
  'message',
  'messagePrefix',
  'hello',
  'pattern',
  'payload',
  'credit',
]);

/** Why `f` does not match `m` (null if it does). */
function mismatch(f: Frame, m: FrameMatcher, ids: Map<string, number>): string | null {
  // A check this runner does not know must fail the case, not be skipped.
  for (const key of Object.keys(m)) assert.ok(MATCHER_KEYS.has(key), `unknown matcher key "${key}"`);
  const type = FRAME_TYPES[m.type];
  assert.ok(type !== undefined, `unknown frame type name ${m.type}`);
  if (f.type !== type) return `type is not ${m.type}`;
  if (m.flags !== undefined && f.flags !== m.flags) return `flags are not 0x${m.flags.toString(16)}`;
  if (m.flagsSet !== undefined && (f.flags & m.flagsSet) !== m.flagsSet)
    return `flags lack 0x${m.flagsSet.toString(16)}`;
  if (m.id !== undefined) {
    const want = typeof m.id === 'number' ? m.id : ids.get(m.id.replace(/[{}]/g, ''));
    if (f.id !== want) return `id is not ${want}`;
  }
  if (m.length !== undefined && f.length !== m.length) return `length is not ${m.length}`;
  if (m.maxLength !== undefined && f.length > m.maxLength) return `length is above ${m.maxLength}`;
  if (m.body !== undefined && !f.body.equals(hexBytes(m.body, ids))) return 'body differs';
  if (m.bodyLength !== undefined && f.body.length !== m.bodyLength) return `body length is not ${m.bodyLength}`;
  if (m.code !== undefined || m.message !== undefined || m.messagePrefix !== undefined) {
    const codeLength = f.body[0] ?? 0;
    if (f.body.length < 1 + codeLength) return 'transport error body is truncated';
    const code = f.body.toString('latin1', 1, 1 + codeLength);
    let message: string;
    try {
      message = new TextDecoder('utf-8', { fatal: true }).decode(f.body.subarray(1 + codeLength));
    } catch {
      return 'transport error message is not valid UTF-8';
    }
    if (m.code !== undefined && code !== m.code) return `code is ${code}, not ${m.code}`;
    if (m.message !== undefined && message !== m.message) return `message is "${message}", not "${m.message}"`;
    if (m.messagePrefix !== undefined && !message.startsWith(m.messagePrefix)) {
      return `message "${message.slice(0, 80)}" does not start with "${m.messagePrefix}"`;
    }
  }
  if (m.hello !== undefined) {
    const b = f.body;
    if (b.length < 16) return 'HELLO body shorter than 16';
    const fields: Record<string, number> = {
      version: b[0],
      codec: b[1],
      features: b.readUInt16BE(2),
      maxFrameSize: b.readUInt32BE(4),
      maxInFlight: b.readUInt32BE(8),
      heartbeatMs: b.readUInt32BE(12),
    };
    for (const [k, v] of Object.entries(m.hello)) if (fields[k] !== v) return `HELLO ${k} is ${fields[k]}, not ${v}`;
  }
  if (m.pattern !== undefined || m.payload !== undefined || m.credit !== undefined) {
    const call = parseCallBody(f);
    if (typeof call === 'string') return call;
    if (m.pattern !== undefined && call.pattern !== m.pattern) return `pattern is "${call.pattern}"`;
    if (m.payload !== undefined && !call.payload.equals(hexBytes(m.payload, ids))) {
      return `payload is ${call.payload.toString('hex')}`;
    }
    if (m.credit !== undefined && call.credit !== m.credit) return `credit is ${call.credit}`;
  }
  return null;
}

/** REQUEST / EVENT body, by docs/PROTOCOL.md §2.2. */
function parseCallBody(f: Frame): { credit: number; pattern: string; payload: Buffer } | string {
  const b = f.body;
  let p = 0;
  if (f.flags & 0x01) p += 4;
  let credit = -1;
  if (f.flags & 0x04) {
    if (b.length < p + 4) return 'credit truncated';
    credit = b.readUInt32BE(p);
    p += 4;
  }
  if (b.length < p + 2) return 'pattern length truncated';
  const patternLength = b.readUInt16BE(p);
  const pattern = b.toString('utf8', p + 2, p + 2 + patternLength);
  p += 2 + patternLength;
  if (f.flags & 0x02) p += 4 + b.readUInt32BE(p);
  return { credit, pattern, payload: b.subarray(p) };
}

function expectMatch(f: Frame | null, m: FrameMatcher, ids: Map<string, number>): Frame {
  assert.ok(f !== null, `expected ${JSON.stringify(m)}, but the connection closed`);
  const why = mismatch(f, m, ids);
  assert.equal(why, null, `expected ${JSON.stringify(m).slice(0, 300)}; got ${describeFrame(f)}: ${why}`);
  if (m.bind !== undefined) ids.set(m.bind, f.id);
  return f;
}

/** The side under test, as the runner drives it. */
export interface CallDriver {
  /** Client cases: starts a call on the client under test. */
  call(pattern: string, data: Buffer): Observable<unknown>;
  /** Client cases: starts a call whose input is a request stream of these codec values (then complete). */
  callStream(pattern: string, values: Buffer[]): Observable<unknown>;
  /** Decodes a codec value given in hex, to compare with what a call delivered. */
  decode(bytes: Buffer): unknown;
}

interface CallRecord {
  values: unknown[];
  end: { complete: true } | { error: unknown } | null;
  settled: Promise<void>;
  unsubscribe(): void;
}

class CaseRun {
  readonly ids = new Map<string, number>();
  private readonly calls = new Map<string, CallRecord>();

  constructor(
    readonly vector: Vector,
    readonly inbox: Inbox,
    private readonly driver: CallDriver | null,
  ) {}

  private async next(keepPings: boolean): Promise<Frame | null> {
    const f = await this.inbox.next(keepPings);
    const max = this.vector.peerMaxFrameSize;
    if (f !== null && max !== undefined) {
      assert.ok(f.length <= max, `frame above the peer's maxFrameSize ${max}: ${describeFrame(f)}`);
    }
    return f;
  }

  async run(steps: Step[]): Promise<void> {
    for (const [i, step] of steps.entries()) {
      try {
        await this.step(step);
      } catch (err) {
        const where = `${this.vector.name}, step ${i + 1} (${JSON.stringify(step).slice(0, 120)})`;
        (err as Error).message = `${where}: ${(err as Error).message}`;
        throw err;
      }
    }
  }

  private async step(step: Step): Promise<void> {
    if ('send' in step) {
      if (!this.inbox.socket.destroyed) this.inbox.socket.write(hexBytes(step.send, this.ids));
    } else if ('expect' in step) {
      expectMatch(await this.next(step.expect.type === 'PING'), step.expect, this.ids);
    } else if ('expectUnordered' in step) {
      const left = [...step.expectUnordered];
      while (left.length > 0) {
        const f = await this.next(left.some((m) => m.type === 'PING'));
        assert.ok(f !== null, `expected ${left.length} more frame(s), but the connection closed`);
        const at = left.findIndex((m) => mismatch(f, m, this.ids) === null);
        assert.ok(at >= 0, `unexpected ${describeFrame(f)}; still expecting ${JSON.stringify(left).slice(0, 300)}`);
        if (left[at].bind !== undefined) this.ids.set(left[at].bind, f.id);
        left.splice(at, 1);
      }
    } else if ('expectStream' in step) {
      await this.expectStream(step.expectStream.id, step.expectStream.values);
    } else if ('expectClose' in step) {
      const f = await this.next(false);
      assert.equal(f === null ? null : describeFrame(f), null, 'expected the peer to close the connection');
    } else if ('call' in step) {
      const data = hexBytes(step.call.data, this.ids);
      this.startCall(step.call.name, () => this.driver!.call(step.call.pattern, data));
    } else if ('callStream' in step) {
      const values = step.callStream.values.map((v) => hexBytes(v, this.ids));
      this.startCall(step.callStream.name, () => this.driver!.callStream(step.callStream.pattern, values));
    } else if ('cancel' in step) {
      this.calls.get(step.cancel)!.unsubscribe();
    } else if ('expectCall' in step) {
      await this.expectCall(step.expectCall);
    } else {
      throw new Error(`unknown step kind ${Object.keys(step).join(', ')}`);
    }
  }

  /** A stream's values in order; END on the last value, or a separate END | NO_VALUE after it. */
  private async expectStream(idRef: number | string, values: Hex[]): Promise<void> {
    const id = typeof idRef === 'number' ? idRef : this.ids.get(idRef.replace(/[{}]/g, ''))!;
    for (const [i, v] of values.entries()) {
      const f = expectMatch(await this.next(false), { type: 'RESPONSE', id, body: v }, this.ids);
      const last = i === values.length - 1;
      assert.ok(f.flags === 0 || (last && f.flags === 0x01), `value ${i + 1} has flags 0x${f.flags.toString(16)}`);
      if (f.flags === 0x01) return;
    }
    expectMatch(await this.next(false), { type: 'RESPONSE', id, flags: 0x03, bodyLength: 0 }, this.ids);
  }

  private startCall(name: string, start: () => Observable<unknown>): void {
    const record: CallRecord = { values: [], end: null, settled: Promise.resolve(), unsubscribe: () => {} };
    record.settled = new Promise<void>((resolve) => {
      const sub = start().subscribe({
        next: (v) => record.values.push(v),
        error: (error) => {
          record.end = { error };
          resolve();
        },
        complete: () => {
          record.end = { complete: true };
          resolve();
        },
      });
      record.unsubscribe = () => {
        sub.unsubscribe();
        resolve();
      };
    });
    this.calls.set(name, record);
  }

  private async expectCall(want: Extract<Step, { expectCall: unknown }>['expectCall']): Promise<void> {
    const record = this.calls.get(want.name)!;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([record.settled, new Promise((r) => (timer = setTimeout(r, WAIT_MS)))]);
    clearTimeout(timer);
    assert.ok(record.end !== null, `call ${want.name} did not settle`);
    assert.deepEqual(
      record.values,
      want.values.map((v) => this.driver!.decode(hexBytes(v, this.ids))),
    );
    const end = record.end;
    if (want.end === 'complete') {
      assert.ok('complete' in end, `call ${want.name} failed: ${String((end as { error: unknown }).error)}`);
    } else if ('error' in want.end) {
      assert.ok('error' in end, `call ${want.name} completed`);
      assert.equal((end.error as { code?: string }).code, want.end.error);
    } else {
      assert.ok('error' in end, `call ${want.name} completed`);
      assert.deepEqual(end.error, this.driver!.decode(hexBytes(want.end.applicationError, this.ids)));
    }
  }
}

/** What `handshake: 'standard'` expects from the implementation under test. */
const PEER_HELLO: FrameMatcher = { type: 'HELLO', id: 0, hello: { version: 1, codec: 1 } };

/** Runs a `target: 'server'` case over a fresh connection to `port`. */
export async function runServerCase(file: VectorFile, vector: Vector, port: number): Promise<void> {
  const socket = connect({ host: '127.0.0.1', port });
  const inbox = new Inbox(socket);
  await once(socket, 'connect');
  const run = new CaseRun(vector, inbox, null);
  try {
    if ((vector.handshake ?? 'standard') === 'standard') {
      await run.run([{ send: file.standardClientHandshake }, { expect: PEER_HELLO }]);
    }
    await run.run(vector.steps);
  } finally {
    socket.destroy();
  }
}

/**
 * Runs a `target: 'client'` case: listens on a loopback port, lets `startClient` connect a
 * client to it, and plays the server's part on the first connection.
 */
export async function runClientCase(
  file: VectorFile,
  vector: Vector,
  startClient: (port: number) => { driver: CallDriver; close(): void },
): Promise<void> {
  let accepted!: (s: Socket) => void;
  const first = new Promise<Socket>((r) => (accepted = r));
  const later: Socket[] = [];
  let taken = false;
  const server: Server = createServer((s) => {
    if (taken) {
      later.push(s);
      s.on('error', () => {});
      return;
    }
    taken = true;
    accepted(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const client = startClient((server.address() as AddressInfo).port);
  let socket: Socket | null = null;
  try {
    socket = await first;
    const inbox = new Inbox(socket);
    const run = new CaseRun(vector, inbox, client.driver);
    if ((vector.handshake ?? 'standard') === 'standard') {
      await run.run([{ expect: PEER_HELLO }, { send: file.standardServerHandshake }]);
    }
    await run.run(vector.steps);
  } finally {
    client.close();
    socket?.destroy();
    for (const s of later) s.destroy();
    await new Promise((r) => server.close(r));
  }
}
