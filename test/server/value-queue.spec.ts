import { ValueQueue } from '../../lib/server/value-queue.js';

describe('ValueQueue', () => {
  it('gives values back in order across segments, undefined included', () => {
    const q = new ValueQueue();
    const n = 5_000; // several 1 024-value segments
    for (let i = 0; i < n; i++) q.push(i % 7 === 0 ? undefined : i);
    expect(q.length).toBe(n);
    for (let i = 0; i < n; i++) {
      expect(q.peek()).toBe(i % 7 === 0 ? undefined : i);
      expect(q.shift()).toBe(i % 7 === 0 ? undefined : i);
    }
    expect(q.length).toBe(0);
  });

  it('keeps order when pushes and shifts interleave over segment boundaries', () => {
    const q = new ValueQueue();
    let pushed = 0;
    let taken = 0;
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 300; i++) q.push(pushed++);
      for (let i = 0; i < 200; i++) expect(q.shift()).toBe(taken++);
    }
    while (q.length > 0) expect(q.shift()).toBe(taken++);
    expect(taken).toBe(pushed);
    q.push('again'); // usable once emptied
    expect(q.shift()).toBe('again');
  });
});
