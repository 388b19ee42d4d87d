import type { WireConnection } from './connection.js';

/** Byte and frame counters shared by every connection of one client or server. */
export class TransportCounters {
  bytesIn = 0;
  bytesOut = 0;
  framesIn = 0;
  framesOut = 0;
  /** Socket writes: `framesOut / writes` is the coalescing ratio. */
  writes = 0;
}

/** What `counters()` adds up over a client's or a server's open connections. */
export interface ConnectionTotals {
  /** Socket writes. */
  writes: number;
  /** Frames encoded. */
  frames: number;
  /** Calls in flight. */
  inFlight: number;
  /** Bytes read but not yet decoded (partial frames, input held while reading is paused). */
  bufferedBytes: number;
}

/** Sums writes, frames, calls in flight and buffered input over the owners of open connections (client or server side). */
export function connectionTotals(owners: Iterable<{ wire: WireConnection; inFlight: number }>): ConnectionTotals {
  let writes = 0;
  let frames = 0;
  let inFlight = 0;
  let bufferedBytes = 0;
  for (const owner of owners) {
    writes += owner.wire.writes;
    frames += owner.wire.framesWritten;
    inFlight += owner.inFlight;
    bufferedBytes += owner.wire.bufferedBytes;
  }
  return { writes, frames, inFlight, bufferedBytes };
}
