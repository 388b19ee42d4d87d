import { Controller, Module } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';

/** Largest `blob` the handler agrees to produce. */
const MAX_BLOB_BYTES = 64 * 1024 * 1024;

const blobs = new Map<number, string>();

/**
 * A flat string of `size` ASCII characters ([0-9a-z] repeating with a 37-character
 * period, so it is not trivially compressible), made once per size.
 */
export function blobOf(size: number): string {
  let s = blobs.get(size);
  if (s === undefined) {
    const buf = Buffer.allocUnsafe(size);
    const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz_';
    for (let i = 0; i < size; i++) buf[i] = alphabet.charCodeAt(i % alphabet.length);
    s = buf.toString('latin1');
    blobs.set(size, s);
  }
  return s;
}

/**
 * The `hold` handler's gate: every call waits on the same promise until the bench
 * parent sends `release` (server.ts), so nothing but the calls themselves (one promise
 * reaction each) is held while they are in flight.
 */
export const holdGate = {
  held: 0,
  promise: null as Promise<void> | null,
  open: null as (() => void) | null,
  wait(): Promise<void> {
    if (this.promise === null) this.promise = new Promise<void>((r) => (this.open = r));
    return this.promise;
  },
  release(): void {
    const open = this.open;
    this.promise = null;
    this.open = null;
    open?.();
  },
};

/** The handlers every Nest transport in the bench serves. */
@Controller()
export class EchoController {
  /** Returns its payload. */
  @MessagePattern('echo')
  echo(@Payload() data: unknown): unknown {
    return data;
  }

  /** Returns a string of the requested length (head-of-line cells: large responses). */
  @MessagePattern('blob')
  blob(@Payload() size: unknown): string {
    if (typeof size !== 'number' || !Number.isInteger(size) || size < 0 || size > MAX_BLOB_BYTES) {
      throw new Error(`blob: bad size ${String(size)}`);
    }
    return blobOf(size);
  }

  /** Answers 'held' once the bench releases the gate (memory cells: calls held in flight). */
  @MessagePattern('hold')
  hold(): Promise<string> {
    holdGate.held++;
    return holdGate.wait().then(() => {
      holdGate.held--;
      return 'held';
    });
  }
}

@Module({ controllers: [EchoController] })
export class EchoModule {}
