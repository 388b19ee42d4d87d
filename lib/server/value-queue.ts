/** Values per segment: at most 8 KiB of references, freed as soon as its values are taken. */
const SEGMENT_VALUES = 1024;

interface Segment {
  /** Filled by push() up to SEGMENT_VALUES; slots already taken are cleared. */
  readonly values: unknown[];
  next: Segment | null;
}

/**
 * A FIFO of the values (undefined included) a stream call holds, unencoded, until they may
 * be sent. Segments linked in order, as Node's own FixedQueue: holding a million values
 * never copies what is held (one array grown to that size reallocates and copies itself
 * about twenty times), taking from the front is O(1), and a segment's slots are freed as
 * soon as its last value is taken. A call that holds a few values pays for one small array.
 */
export class ValueQueue {
  /** Values held. */
  length = 0;
  /** Where shift() reads; null exactly when the queue is empty. */
  private head: Segment | null = null;
  /** Where push() writes; null exactly when the queue is empty. */
  private tail: Segment | null = null;
  /** Index in `head.values` of the oldest value held. */
  private readIndex = 0;

  push(value: unknown): void {
    let tail = this.tail;
    if (tail === null) {
      tail = this.head = this.tail = { values: [], next: null };
      this.readIndex = 0;
    } else if (tail.values.length === SEGMENT_VALUES) {
      tail = tail.next = this.tail = { values: [], next: null };
    }
    tail.values.push(value);
    this.length++;
  }

  /** The oldest value held. Only when `length > 0`. */
  peek(): unknown {
    return this.head!.values[this.readIndex];
  }

  /** Takes the oldest value held. Only when `length > 0`. */
  shift(): unknown {
    const head = this.head!;
    const value = head.values[this.readIndex];
    head.values[this.readIndex++] = undefined; // the queue no longer keeps it alive
    if (--this.length === 0) {
      this.head = this.tail = null;
    } else if (this.readIndex === SEGMENT_VALUES) {
      this.head = head.next;
      this.readIndex = 0;
    }
    return value;
  }
}
