import { jest } from '@jest/globals';
import { WriteCoalescer } from '../../lib/connection/write-coalescer.js';
import { RESPONSE_END } from '../../lib/protocol/frame.js';
import { FrameEncoder } from '../../lib/protocol/frame-encoder.js';
import { collectingDecoder } from '../helpers/frames.js';
import { socketPair } from '../helpers/socket-pair.js';
import { nextTurn, waitFor } from '../helpers/wait.js';

describe('WriteCoalescer (real loopback sockets)', () => {
  it('writes the first frame of a turn at once and the rest of the turn together', async () => {
    const pair = await socketPair();
    const encoder = new FrameEncoder();
    const coalescer = new WriteCoalescer(pair.a, encoder);
    const { decoder, frames } = collectingDecoder({ maxFrameSize: 1 << 20, expectMagic: false });
    pair.b.on('data', (c) => decoder.push(c));
    for (let i = 1; i <= 500; i++) {
      encoder.encodeResponse(i, RESPONSE_END, Buffer.from([i & 0x7f]));
      coalescer.schedule();
    }
    // 500 frames of 11 bytes stay under the 8 KiB early-write mark: only the first has left.
    expect(coalescer.writes).toBe(1);
    await new Promise((r) => setImmediate(r));
    expect(coalescer.writes).toBe(2);
    await waitFor(() => frames.length === 500, { what: 'the 500 frames to arrive' });
    expect(frames.map((f) => f.id)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
    await pair.close();
  });

  it('writes the first frame at once only on the first connection of the process to write this turn', async () => {
    const pairs = [await socketPair(), await socketPair()];
    const encoders = [new FrameEncoder(), new FrameEncoder()];
    const coalescers = pairs.map((p, i) => new WriteCoalescer(p.a, encoders[i]));
    const received = [0, 0];
    pairs.forEach((p, i) => {
      const { decoder, frames } = collectingDecoder({ maxFrameSize: 1 << 20, expectMagic: false });
      p.b.on('data', (c) => {
        decoder.push(c);
        received[i] = frames.length;
      });
    });
    const send = (i: number, id: number) => {
      encoders[i].encodeResponse(id, RESPONSE_END, Buffer.from([id]));
      coalescers[i].schedule();
    };
    send(0, 1);
    send(1, 1);
    send(1, 2);
    // The first connection's frame left at once; the second's wait for the end of the turn, together.
    expect(coalescers.map((c) => c.writes)).toEqual([1, 0]);
    await new Promise((r) => setImmediate(r));
    expect(coalescers.map((c) => c.writes)).toEqual([1, 1]);
    // Next turn, alone again: its first frame leaves at once.
    send(1, 3);
    expect(coalescers[1].writes).toBe(2);
    await waitFor(() => received[0] === 1 && received[1] === 3, { what: 'every frame to arrive' });
    for (const p of pairs) await p.close();
  });

  /**
   * Writes `turns` turns of 40 frames of `bodyBytes` each (every body filled with its id's
   * low byte) through a coalescer on loopback; checks that every frame arrived intact and
   * in order, and returns how many distinct arenas the socket was given bytes from.
   */
  async function arenasUsed(turns: number, bodyBytes: number, readerPausedUntilWritten = false): Promise<number> {
    const pair = await socketPair();
    if (readerPausedUntilWritten) pair.b.pause(); // the kernel's buffers fill: writes stay pending
    const encoder = new FrameEncoder();
    const coalescer = new WriteCoalescer(pair.a, encoder);
    const { decoder, frames } = collectingDecoder({ maxFrameSize: 1 << 20, expectMagic: false });
    pair.b.on('data', (c) => decoder.push(c));
    const write = jest.spyOn(pair.a, 'write');
    let id = 0;
    for (let turn = 0; turn < turns; turn++) {
      for (let i = 0; i < 40; i++) {
        id++;
        encoder.encodeResponse(id, RESPONSE_END, Buffer.alloc(bodyBytes, id & 0xff));
        coalescer.schedule();
      }
      await new Promise((r) => setImmediate(r));
    }
    pair.b.resume();
    await waitFor(() => frames.length === id, { what: 'every frame to arrive' });
    const intact = (f: (typeof frames)[number], i: number) =>
      f.id === i + 1 && f.body.length === bodyBytes && f.body.every((b) => b === ((i + 1) & 0xff));
    expect(frames.every(intact)).toBe(true);
    const arenas = new Set(write.mock.calls.map(([chunk]) => (chunk as Buffer).buffer));
    await pair.close();
    return arenas.size;
  }

  it('reuses the arena after a write the socket took at once, and every frame still arrives intact', async () => {
    // 800 KiB through a 4 KiB, then 8 KiB... arena: without reuse it would take dozens of arenas.
    expect(await arenasUsed(200, 100)).toBeLessThanOrEqual(4);
  });

  it('does not reuse an arena while a write is still pending: frames written to a reader that stopped arrive intact', async () => {
    // 16 MiB written while the reader is paused: most writes stay pending in libuv, their arenas untouched.
    expect(await arenasUsed(400, 1000, true)).toBeGreaterThan(100);
  });

  it('writes 4 KiB frames before they spill out of the full arena, so that arena keeps serving them', async () => {
    // 8 MiB written: the arenas of the first turn (4, 8, 16, 32, 64 KiB), then the 64 KiB one over and over.
    expect(await arenasUsed(50, 4096)).toBeLessThanOrEqual(6);
  });

  it('writes a batch early once 8 KiB and 16 frames are pending', async () => {
    const pair = await socketPair();
    const encoder = new FrameEncoder();
    const coalescer = new WriteCoalescer(pair.a, encoder);
    for (let i = 1; i <= 100; i++) {
      encoder.encodeResponse(i, RESPONSE_END, Buffer.alloc(1000));
      coalescer.schedule();
    }
    // First frame at once, then one write per 16 frames (16 KiB here): far fewer writes than frames.
    expect(coalescer.writes).toBeGreaterThanOrEqual(6);
    expect(coalescer.writes).toBeLessThanOrEqual(8);
    await pair.close();
  });

  it('queues while the socket is full and writes everything on drain, in order', async () => {
    const pair = await socketPair();
    pair.b.pause(); // the reader stops
    // Fill the kernel's buffers (and Node's) with 32 MiB of filler frames (id 0).
    const filler = new FrameEncoder();
    for (let i = 0; i < 32; i++) filler.encodeResponse(0, 0, Buffer.alloc(1 << 20));
    for (const chunk of filler.take()!) pair.a.write(chunk);

    const encoder = new FrameEncoder();
    const coalescer = new WriteCoalescer(pair.a, encoder);
    const payload = Buffer.alloc(1024, 1);
    let id = 0;
    encoder.encodeResponse(++id, 0, payload);
    coalescer.flush();
    expect(coalescer.isBlocked).toBe(true);
    expect(coalescer.writes).toBe(1);
    for (let i = 0; i < 500; i++) {
      encoder.encodeResponse(++id, 0, payload);
      coalescer.schedule();
    }
    // The flush scheduled for this turn has run, and one more is asked for by hand: while
    // blocked neither writes (the socket has not drained: the reader is paused).
    await nextTurn();
    coalescer.flush();
    expect(coalescer.writes).toBe(1); // nothing written while blocked
    expect(encoder.pendingBytes).toBeGreaterThan(500 * 1024);

    const { decoder, frames } = collectingDecoder({ maxFrameSize: 2 << 20, expectMagic: false });
    pair.b.on('data', (c) => decoder.push(c));
    pair.b.resume();
    await waitFor(() => frames.filter((f) => f.id > 0).length === id, {
      timeoutMs: 10_000,
      what: 'every frame to arrive',
    });
    expect(coalescer.writes).toBe(2); // the backlog left in one write, on drain
    const ids = frames.filter((f) => f.id > 0).map((f) => f.id);
    expect(ids).toEqual(Array.from({ length: id }, (_, i) => i + 1));
    await pair.close();
  });

  it('tells waiters once their frames were handed to the OS, and fails them after close', async () => {
    const pair = await socketPair();
    const encoder = new FrameEncoder();
    const coalescer = new WriteCoalescer(pair.a, encoder);
    encoder.encodeResponse(1, RESPONSE_END, Buffer.from([1]));
    const written = await new Promise<Error | null | undefined>((r) => coalescer.whenWritten(r));
    expect(written).toBeFalsy();
    coalescer.close();
    const failed = await new Promise<Error | null | undefined>((r) => coalescer.whenWritten(r));
    expect(failed).toBeInstanceOf(Error);
    await pair.close();
  });
});
